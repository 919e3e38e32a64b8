"""Idempotency keys and the markers that carry them: one typed value per kind, one parser.

A key names one remote write: `CommentKey(12, 1, 55)` is Okdesk comment 55 of issue 12,
forwarded into the target made in handoff 1, text "comment:12:1:55".  The text is the primary
key of the write's op in the state store, and the write carries it as a marker (`okbx:` + the
text) at the very end of its text, so that any run, with or without the store, can find the
write again on the remote side.  No other module builds or splits a key: they construct these
values and read their fields.  The texts are those of earlier releases, so existing state
stores and the markers already in both accounts keep their meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import datetime
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


# -- the route: a target per handoff, comments into it, the report back -------------------------
@dataclass(frozen=True)
class TaskKey(Key):
    """The Bitrix24 task made for handoff `cycle` (found again by its XML_ID)."""

    kind: ClassVar[str] = "task"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class LinkCommentKey(Key):
    """The internal comment in the issue naming the target of handoff `cycle`; its marker names the
    route (unless the programmers') and `previous` (plain, or `x-` and its UTF-8 in hex) for a lost store."""

    kind: ClassVar[str] = "linkcomment"
    issue_id: int
    cycle: int
    route: str | None = None
    previous: str | None = None

    @classmethod
    def of(cls, issue_id: int, cycle: int, route: str, previous: str | None) -> LinkCommentKey:
        plain = previous is None or re.fullmatch(r"[a-z0-9_]{1,40}", previous)
        token = previous if plain or previous is None else "x-" + previous.encode("utf-8").hex()
        return cls(issue_id, cycle, route if route != DEFAULT_ROUTE or token else None, token)


@dataclass(frozen=True)
class CommentKey(Key):
    """Okdesk comment `comment_id`, forwarded into the task made in handoff `cycle`."""

    kind: ClassVar[str] = "comment"
    issue_id: int
    cycle: int
    comment_id: int


@dataclass(frozen=True)
class TaskNoteKey(Key):
    """A note from okbx into the target: `why` is left, renew, issuedeleted, moved...  A renew note
    is written BEFORE the task is reopened (the renewal itself carries no marker) and names the
    task's closedDate at that moment (`stamp`: epoch seconds, or "open"), so a rebuilt store can
    tell a task not renewed yet (still that date) from one completed again after its renewal."""

    kind: ClassVar[str] = "note"
    why: str
    issue_id: int
    cycle: int
    stamp: str | None = None

    @classmethod
    def renew(cls, issue_id: int, cycle: int, closed_before: datetime | None) -> TaskNoteKey:
        return cls("renew", issue_id, cycle, closed_stamp(closed_before))


def closed_stamp(closed_at: datetime | None) -> str:
    """A task's closedDate as a key part (whole seconds, as Bitrix24 keeps them), or "open"."""
    return str(int(closed_at.timestamp())) if closed_at is not None else "open"


@dataclass(frozen=True)
class IssueNoteKey(Key):
    """A note from okbx into the issue: `why` is taskdeleted, stuck...; `stamp` tells notes of the
    same kind and handoff apart (a parking: the time it was parked)."""

    kind: ClassVar[str] = "inote"
    why: str
    issue_id: int
    cycle: int
    stamp: int | None = None


@dataclass(frozen=True)
class TimeKey(Key):
    """Bitrix24 elapsed item `item_id`, copied as an Okdesk time entry ("[okbx:time:5]")."""

    kind: ClassVar[str] = "time"
    item_id: int


@dataclass(frozen=True)
class SummaryKey(Key):
    """The one report of a completion.  Posted on its own while Okdesk refuses the status return,
    its marker says so (`pending`), so a rebuilt store knows the return is still owed."""

    kind: ClassVar[str] = "summary"
    issue_id: int
    cycle: int
    pending: str | None = None  # "pending" or None

    @property
    def report(self) -> SummaryKey:
        """The key of the report itself, whatever the marker says about the return."""
        return SummaryKey(self.issue_id, self.cycle)

    def return_pending(self) -> SummaryKey:
        return SummaryKey(self.issue_id, self.cycle, "pending")


@dataclass(frozen=True)
class LateKey(Key):
    """The note about time logged after a completion, named by its first elapsed item."""

    kind: ClassVar[str] = "late"
    issue_id: int
    first_item: int


@dataclass(frozen=True)
class ReturnKey(Key):
    """The status change back after handoff `cycle` (its comment carries the marker)."""

    kind: ClassVar[str] = "return"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class HandoffKey(Key):  # the issue entered a route at handoff `cycle` before its target could be made
    kind: ClassVar[str] = "handoff"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class RenewKey(Key):
    kind: ClassVar[str] = "renew"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class DeadlineKey(Key):
    """The task's deadline set to `value` (digits of the ISO time, or "none"), replacing
    `previous` as okbx knew it ("baseline": not a write, the deadline taken as given)."""

    kind: ClassVar[str] = "deadline"
    issue_id: int
    value: str
    previous: str

    @classmethod
    def move(cls, issue_id: int, to: datetime, previous: datetime | None) -> DeadlineKey:
        return cls(issue_id, _digits(to), _digits(previous))

    @classmethod
    def baseline(cls, issue_id: int, value: datetime) -> DeadlineKey:
        return cls(issue_id, _digits(value), "baseline")


def _digits(moment: datetime | None) -> str:
    return re.sub(r"[^0-9]", "", moment.isoformat()) or "none" if moment else "none"


@dataclass(frozen=True)
class CloseKey(Key):
    kind: ClassVar[str] = "close"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class GoneKey(Key):
    kind: ClassVar[str] = "gone"
    what: str  # "task" | "issue"
    issue_id: int
    cycle: int


TASK_XML_PREFIX = "okdesk:"


def task_xml_id(issue_id: int, route: str = DEFAULT_ROUTE) -> str:
    """The XML_ID of a route's task for an issue (reused by its every handoff); the programmers' as ever."""
    return f"{TASK_XML_PREFIX}{issue_id}" + ("" if route == DEFAULT_ROUTE else f":{route}")


def issue_of_xml_id(xml_id: str | None, route: str = DEFAULT_ROUTE) -> int | None:
    """The issue a route's task was made for, from its XML_ID."""
    number = (xml_id or "").removeprefix(TASK_XML_PREFIX).split(":")[0]
    return int(number) if _INT.fullmatch(number) and xml_id == task_xml_id(int(number), route) else None


DEAL_ORIGINATOR = "okbx"  # a deal has no xmlId: originatorId/originId is okbx's marker (routes-files.md 1.4)


def deal_origin(issue_id: int, cycle: int, route: str) -> str:  # its op key: the handoff's TaskKey
    return f"{TASK_XML_PREFIX}{issue_id}:{cycle}:{route}"


# -- billing and the debt hold ------------------------------------------------------------------
@dataclass(frozen=True)
class InvoiceKey(Key):
    """The invoice of the completion of handoff `cycle` (its xmlId is this marker)."""

    kind: ClassVar[str] = "invoice"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class InvoiceNoteKey(Key):
    kind: ClassVar[str] = "invnote"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class TaskLinkKey(Key):
    """The invoice of handoff `cycle` named among the task's CRM links."""

    kind: ClassVar[str] = "tasklink"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class PaidKey(Key):
    """The note that invoice `invoice_id` was paid or declined."""

    kind: ClassVar[str] = "paid"
    issue_id: int
    invoice_id: int


@dataclass(frozen=True)
class HoldKey(Key):
    """The issue held for the debt named by its oldest overdue invoice `debt_ref`."""

    kind: ClassVar[str] = "hold"
    issue_id: int
    debt_ref: int

    @property
    def release(self) -> ReleaseKey:
        return ReleaseKey(self.issue_id, self.debt_ref)


@dataclass(frozen=True)
class ReleaseKey(Key):
    kind: ClassVar[str] = "release"
    issue_id: int
    debt_ref: int


# -- finding markers in what the remote side returns -------------------------------------------
def _last_token(plain: str) -> Key | None:
    tail = plain.rstrip()
    if tail.endswith("]"):  # the plain-text form of a time entry: "... [okbx:time:5]"
        tail = tail[:-1]
    start = tail.rfind(PREFIX)
    if start < 0:
        return None
    match = _TOKEN.match(tail[start:])
    return parse(match.group(1)) if match else None


def in_bbcode(text: str) -> Key | None:
    """The key of a Bitrix24 comment okbx wrote ("...\\n[I]okbx:...[/I]"), or None."""
    tail = text.rstrip()
    if not tail.endswith("[/I]"):
        return None
    return _last_token(tail[: -len("[/I]")])


def strip_tags(content: str) -> str:
    return re.sub(r"<[^>]*>", "", content)


def in_html(content: str) -> Key | None:
    """The key of an Okdesk comment okbx wrote (its marker span may have been sanitised away)."""
    return _last_token(strip_tags(content))


def in_text(text: str) -> Key | None:
    """The key of an Okdesk time entry okbx wrote ("... [okbx:time:5]")."""
    tail = text.rstrip()
    return _last_token(tail) if tail.endswith("]") else None


ITEMS_LINE = "Bitrix24 time items:"
_ITEMS = re.compile(re.escape(ITEMS_LINE) + r" ([0-9]+(?:, [0-9]+)*)\s*$")


def items_line(item_ids: list[int]) -> str:
    """The line a report ends with before its marker: which elapsed items it copied, so a store
    rebuilt from the markers knows them even where a person deleted the time entry since."""
    listed = ", ".join(str(i) for i in sorted(item_ids)) or "none"
    return f"{ITEMS_LINE} {listed}"


def reported_items(content: str) -> list[int]:
    """The elapsed items a report of okbx lists (its line just before the marker)."""
    plain = strip_tags(content.replace("<br>", "\n")).rstrip()
    start = plain.rfind(PREFIX)
    if start < 0:
        return []
    found = _ITEMS.search(plain[:start])
    return [int(i) for i in found.group(1).split(", ")] if found else []
