"""The key type every kind is, and the parser from a key text to its typed value."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

PREFIX = "okbx:"
DEFAULT_ROUTE = "programmers"  # the route of every earlier release: its markers carry no route
# kinds and parts are ASCII words and numbers; anything else after "okbx:" is not ours
_TOKEN = re.compile(r"okbx:([a-z]+(?::[a-z0-9_-]+)+)$")
_INT = re.compile(r"[0-9]{1,18}")  # ids and handoff numbers; 18 digits fit SQLite's integer
_WORD = re.compile(r"[a-z0-9_-]+")
_KINDS: dict[str, type[Key]] = {}
K = TypeVar("K", bound="Key")


@dataclass(frozen=True)
class Key:
    """Base of every key kind; the dataclass fields, in order, are the parts of its text."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _KINDS[cls.kind] = cls

    @property
    def parts(self) -> tuple[str, ...]:
        values = (getattr(self, f.name) for f in fields(self))
        return tuple(_part(v) for v in values if v is not None)

    @property
    def text(self) -> str:
        return ":".join((self.kind, *self.parts))

    @property
    def marker(self) -> str:
        return PREFIX + self.text

    def __str__(self) -> str:
        return self.text

    @property
    def issue(self) -> int | None:
        """The Okdesk issue the write belongs to, when the key names one."""
        value = getattr(self, "issue_id", None)
        return value if isinstance(value, int) else None

    @property
    def handoff(self) -> int | None:
        """The handoff (cycle) number the key names, if any."""
        value = getattr(self, "cycle", None)
        return value if isinstance(value, int) else None

    @classmethod
    def _from_parts(cls: type[K], parts: list[str]) -> K | None:
        specs = fields(cls)
        optional = sum(1 for f in specs if f.default is None)
        if not len(specs) - optional <= len(parts) <= len(specs):
            return None
        values: list[Any] = []
        for spec, part in zip(specs, parts, strict=False):
            number = spec.type in ("int", "int | None")
            if not (_INT if number else _WORD).fullmatch(part):
                return None
            values.append(int(part) if number else part)
        return cls(*values)


def _part(value: object) -> str:
    return str(int(value)) if isinstance(value, bool) else str(value)


def parse(text: str) -> Key | None:
    """The typed key of a key text ("comment:12:1:55"), or None when it is not one of ours."""
    kind, _, rest = text.partition(":")
    cls = _KINDS.get(kind)
    return cls._from_parts(rest.split(":")) if cls is not None and rest else None


def parse_as(cls: type[K], text: str) -> K | None:
    key = parse(text)
    return key if isinstance(key, cls) else None
