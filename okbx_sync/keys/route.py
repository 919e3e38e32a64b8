"""The keys of a route: its target per handoff, the comments into it, the report back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from .base import _INT, DEFAULT_ROUTE, Key


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
