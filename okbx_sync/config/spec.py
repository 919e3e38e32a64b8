"""How a configuration key is declared: its kind, default (or REQUIRED), check and choices.

Each key is declared once, as a field of its section's dataclass (sections.py) made with
`setting(...)`; the loader, `okbx init`'s template and the test of config.example.yaml all read
that one declaration.  Every number has a range: a value outside it is an error naming the key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

REQUIRED: Any = object()
Check = Callable[[Any], str | None]

MAX_ID = 2**53 - 1  # ids: exact in JSON and in SQLite; anything larger is a typo, not an account's id
DAY = 86_400
WEEK_MINUTES = 7 * 24 * 60
TEN_YEARS_DAYS = 3650
MAX_RATE = 1e9  # per hour, in any currency: far above any programmer


@dataclass(frozen=True)
class Key:
    kind: str  # str int float bool url secret secret_url int_list id_list str_list int_map rate_map path tz
    default: Any = REQUIRED
    check: Check | None = None
    choices: tuple[str, ...] = ()
    # a key of the one route of a configuration without `routes:` (okdesk.handoff_status...):
    # required there when `needed` is set, and refused next to `routes:` (the routes say it)
    route_key: bool = False
    needed: bool = False


def setting(
    kind: str,
    default: Any = REQUIRED,
    *,
    check: Check | None = None,
    choices: tuple[str, ...] = (),
    route_key: bool = False,
    needed: bool = False,
) -> Any:
    """A dataclass field that carries its key's declaration (read by `keys_of`)."""
    meta = {"key": Key(kind, default, check, choices, route_key or needed, needed)}
    if default is REQUIRED or kind == "path":  # a path's default is resolved against the file's folder
        return field(metadata=meta)
    if isinstance(default, dict):
        assert not default, "a mapping's default is empty"
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


def in_range(low: float, high: float, *, above: bool = False, words: str = "") -> Check:
    """`above`: the lower bound itself is excluded (a rate of requests must be more than 0)."""
    words = words or (f"more than {low:g} and at most {high:g}" if above else f"from {low:g} to {high:g}")

    def check(value: Any) -> str | None:
        inside = (value > low if above else value >= low) and value <= high
        return None if inside else f"must be {words}"

    return check


positive_id = in_range(1, MAX_ID, words="an id: a whole number from 1 to 2**53")
not_negative = in_range(0, MAX_ID, words="a whole number from 0 to 2**53")


def share(value: Any) -> str | None:
    return None if 0 < value <= 1 else "must be between 0 and 1"
