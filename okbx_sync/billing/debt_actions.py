"""The debt hold's actions: hold an issue of a debtor, release it when the debt is paid.

The hold's note names the status the issue had (and, for `delayed`, the date it was postponed
to), so a store rebuilt after a loss releases it to the right place.  Okdesk requires `delay_to`
for the status `delayed` (crm-billing.md 1.7): an issue held while postponed goes back to
`delayed` with its date, or, when that date passed during the hold, to `debt.expired_delay_status`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from .. import keys
from ..core.action import Context, Effect, Found, LocalAction, OpRecord
from ..core.notes import IssueComment, note_html
from ..state.lifecycle import Track

if TYPE_CHECKING:
    from ..state.store import Op

DELAYED = "delayed"  # the one Okdesk status that demands a date (delay_to)
STATUS_BEFORE = re.compile(r"\(status before: ([\w.-]+)(?:, delayed until ([0-9T:+.-]+))?\)")


def status_before(text: str) -> tuple[str, datetime | None] | None:
    """(status, delayed_to) as a hold note wrote them, or None."""
    found = STATUS_BEFORE.search(text)
    if found is None:
        return None
    try:
        until = datetime.fromisoformat(found.group(2)) if found.group(2) else None
    except ValueError:
        until = None
    return found.group(1), until


@dataclass(frozen=True)
class HoldIssue(IssueComment):
    """Move an issue of a debtor company to the debt status, with a note saying why."""

    debt_ref: int = 0  # the oldest overdue invoice when the hold began: names this debt
    okdesk_company_id: int = 0
    from_status: str = ""
    to_status: str = ""
    reason: str = field(default="", compare=False)
    public: bool = False
    delayed_to: datetime | None = None  # the issue's postponement, when it is `delayed`
    kind: ClassVar[str] = "hold"
    TRACK: ClassVar[Track] = Track.DEBT
    moves_for_debt: ClassVar[bool] = True  # counted by the safety policy (debt.max_changes)

    @property
    def ref(self) -> keys.Key:
        return keys.HoldKey(self.issue_id, self.debt_ref)

    @property
    def detail(self) -> str:
        return f"hold: {self.from_status} -> {self.to_status} ({self.reason})"

    def op_record(self) -> OpRecord:
        detail = {
            "detail": self.detail,
            "previous_status": self.from_status,
            "okdesk_company_id": self.okdesk_company_id,
            "delayed_to": self.delayed_to.isoformat() if self.delayed_to else None,
        }
        return OpRecord(None, None, detail)

    def perform(self, ctx: Context) -> Effect:
        # the status before is in the note too: after a lost state store the release reads it back
        until = f", delayed until {self.delayed_to.isoformat()}" if self.delayed_to else ""
        text = (
            f"Work is paused: {self.reason}. The issue returns to its status when the debt is paid "
            f"(status before: {self.from_status}{until})."
        )
        issue = ctx.okdesk.change_status(
            self.issue_id, self.to_status, comment_html=note_html(text, self.marker), public=self.public
        )
        return issue.status, None


@dataclass(frozen=True)
class ReleaseIssue(IssueComment):
    """The debt cleared: the held issue returns to the status it had, with a note."""

    debt_ref: int = 0
    debt_status: str = ""
    to_status: str = ""
    public: bool = False
    why: str = field(default="", compare=False)  # why not the status before the hold, if so
    delay_to: datetime | None = None  # back to `delayed`: until when
    kind: ClassVar[str] = "release"
    TRACK: ClassVar[Track] = Track.DEBT
    moves_for_debt: ClassVar[bool] = True

    @property
    def ref(self) -> keys.Key:
        return keys.ReleaseKey(self.issue_id, self.debt_ref)

    @property
    def detail(self) -> str:
        until = f" until {self.delay_to:%d.%m.%Y %H:%M}" if self.delay_to else ""
        return f"release: {self.debt_status} -> {self.to_status}{until}"

    def perform(self, ctx: Context) -> Effect:
        until = f" until {self.delay_to:%d.%m.%Y %H:%M}" if self.delay_to else ""
        because = f": {self.why}" if self.why else ""
        text = f"The debt is paid: work resumes (status '{self.to_status}'{until}{because})."
        issue = ctx.okdesk.change_status(
            self.issue_id,
            self.to_status,
            comment_html=note_html(text, self.marker),
            public=self.public,
            delay_to=self.delay_to,
        )
        return issue.status, None

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        found = super().find(ctx, op)
        if found is not None:
            return found
        issue = ctx.okdesk.get_issue(self.issue_id)
        if issue.status != self.debt_status:  # a person moved it out meanwhile: leave it alone
            return Found(f"status:{issue.status}", by_marker=False)
        return None


@dataclass(frozen=True)
class LeaveAlone(LocalAction):
    """A held issue a person moved out of the debt status: the hold ends without a write."""

    debt_ref: int
    status: str
    kind: ClassVar[str] = "release"
    TRACK: ClassVar[Track] = Track.DEBT

    @property
    def ref(self) -> keys.Key:
        return keys.ReleaseKey(self.issue_id, self.debt_ref)

    @property
    def detail(self) -> str:
        return f"moved out of the debt status by a person (now '{self.status}'): left alone"


@dataclass(frozen=True)
class EndHold(LocalAction):
    """A held issue deleted in Okdesk (a direct "not found"): nothing is left to release, the hold ends."""

    debt_ref: int
    kind: ClassVar[str] = "release"
    TRACK: ClassVar[Track] = Track.DEBT

    @property
    def ref(self) -> keys.Key:
        return keys.ReleaseKey(self.issue_id, self.debt_ref)

    @property
    def detail(self) -> str:
        return "the issue was deleted in Okdesk: the hold ends"
