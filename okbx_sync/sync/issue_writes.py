"""The programmers' route, Okdesk side: the link comment, time entries, the report, the return;
and the route's decisions kept in the store only (close, gone, a deadline taken as given)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from .. import keys
from ..core.action import Action, Completed, Context, Effect, Found, LocalAction, OpRecord, WorkLine
from ..core.notes import IssueComment
from ..model import ElapsedItem
from ..state import lifecycle
from . import render

if TYPE_CHECKING:
    from ..state.store import Op


@dataclass(frozen=True)
class PostLinkComment(IssueComment):
    task_cycle: int = 1
    # the marker, when it says more than the op key: the route and the status to go back to
    said: keys.LinkCommentKey | None = None
    responsible_id: int | None = None  # whose task list the URL opens (the route's responsible)
    kind: ClassVar[str] = "link_comment"

    @property
    def ref(self) -> keys.Key:
        return keys.LinkCommentKey(self.issue_id, self.task_cycle)

    @property
    def marker(self) -> str:
        return self.said.marker if self.said is not None else super().marker

    @property
    def detail(self) -> str:
        return "internal comment with the task's URL"

    def perform(self, ctx: Context) -> Effect:
        task_id = ctx.task_id(self.issue_id)
        url = ctx.bitrix.task_url(task_id, self.responsible_id)
        route = self.said.route if self.said is not None and self.said.route != keys.DEFAULT_ROUTE else None
        return self.post(ctx, render.link_comment(url, task_id, self.marker, route), False)


@dataclass(frozen=True)
class PostReport(IssueComment):
    """The summary comment at completion, or a short note about time logged after it.  Posted on
    its own while Okdesk refuses the status return, its marker says the return is owed."""

    report: keys.SummaryKey | keys.LateKey = field(default=keys.SummaryKey(0, 0))
    html: str = field(default="", compare=False)
    public: bool = False
    total_seconds: int = 0
    item_count: int = 0
    return_owed: bool = False
    rows: tuple[dict[str, object], ...] = field(default=(), compare=False)  # the report's lines
    target: tuple[str, str, int] | None = field(default=None, compare=False)  # (route, kind, id) it reports
    note: str = field(default="", compare=False)  # what a report without time says, for plans and logs
    kind: ClassVar[str] = "summary"

    def completes(self) -> Completed | None:
        if not isinstance(self.report, keys.SummaryKey):
            return None  # a late-time note: that time is copied, not invoiced
        work = tuple(
            WorkLine(int(str(r.get("user_id") or 0)), str(r.get("user") or ""), int(str(r.get("seconds") or 0)))
            for r in self.rows
        )
        if self.target is None:
            return Completed(self.issue_id, self.report.cycle, work)
        route, kind, target_id = self.target
        return Completed(self.issue_id, self.report.cycle, work, route, target_id if kind == "task" else None)

    def op_record(self) -> OpRecord:
        detail: dict[str, object] = {"detail": self.detail}
        if self.target is not None:  # billing reads which route and task a completion was, after a move too
            detail |= dict(zip(("route", "target", "target_id"), self.target, strict=True))
        return OpRecord(None, None, detail)

    @property
    def ref(self) -> keys.Key:
        return self.report

    @property
    def marker(self) -> str:
        if self.return_owed and isinstance(self.report, keys.SummaryKey):
            return self.report.return_pending().marker
        return self.report.marker

    @property
    def detail(self) -> str:
        if self.note:
            return f"report: {self.note[:100]}"
        minutes = round(self.total_seconds / 60)
        what = "summary" if isinstance(self.report, keys.SummaryKey) else "late time note"
        return f"{what}: {minutes // 60}:{minutes % 60:02d} in {self.item_count} entries"

    def perform(self, ctx: Context) -> Effect:
        return self.post(ctx, self.html, self.public)


@dataclass(frozen=True)
class CopyTimeEntry(Action):
    item: ElapsedItem
    employee_id: int
    comment: str = field(compare=False)
    report: keys.Key = field(compare=False)
    cycle: int = 0
    row: dict[str, object] = field(default_factory=dict, compare=False, hash=False)  # its line in the report
    kind: ClassVar[str] = "time"
    side: ClassVar[str] = "Okdesk"

    @property
    def ref(self) -> keys.Key:
        return keys.TimeKey(self.item.id)

    @property
    def detail(self) -> str:
        minutes = round(self.item.seconds / 60)
        return f"{minutes // 60}:{minutes % 60:02d} by Bitrix24 user {self.item.user_id} -> employee {self.employee_id}"

    def op_record(self) -> OpRecord:
        item = self.item
        # the item's line of the report, kept so a report written after a crash still lists it
        detail = {**self.row, "task_id": item.task_id, "user_id": item.user_id, "employee_id": self.employee_id}
        return OpRecord(self.cycle, self.report.text, detail)

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        entry = ctx.remote.time_entries(self.issue_id).get(self.key)
        if entry is not None:
            return Found(str(entry.id))
        if self.item.id in ctx.remote.reported_items(self.issue_id):
            return Found(None)  # a report of okbx lists it: copied, and the entry deleted since by a person
        return None

    def perform(self, ctx: Context) -> Effect:
        item = self.item
        ctx.okdesk.add_time_entry(
            self.issue_id,
            employee_id=self.employee_id,
            seconds=item.seconds,
            logged_at=item.created_at or ctx.store.now(),
            comment=self.comment,
        )
        return None, None


@dataclass(frozen=True)
class ReturnIssue(Action):
    """The status change back, with its comment: the summary itself (one comment, one write), or a
    short note when the summary had to go on its own.  The comment carries the marker."""

    cycle: int
    from_status: str
    to_status: str
    comment_html: str = field(default="", compare=False)
    public: bool = False
    summary: PostReport | None = field(default=None, compare=False)  # the summary this change carries
    kind: ClassVar[str] = "return"
    side: ClassVar[str] = "Okdesk"

    @property
    def ref(self) -> keys.Key:
        return keys.ReturnKey(self.issue_id, self.cycle)

    @property
    def marker(self) -> str:
        return self.summary.marker if self.summary else super().marker

    @property
    def _carried(self) -> str:
        return self.summary.key if self.summary else self.key

    @property
    def detail(self) -> str:
        carried = f", with the {self.summary.detail}" if self.summary else ""
        return f"status {self.from_status} -> {self.to_status}{carried}"

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        written = ctx.remote.issue(self.issue_id)
        if self.summary is not None and self._owed(written):
            if self.key in written:  # the report went alone, then the return with its own note
                return Found(written[self.key])
            # the report went alone while Okdesk refused the return: it is there, the return is not
            return Found(written[self.summary.key], carried_only=True, replan=True)
        remote_id = written.get(self._carried)
        if remote_id is not None:
            return Found(remote_id)
        if op is not None and op.unsure:
            # A lost answer: the status tells whether a person moved the issue meanwhile.
            issue = ctx.okdesk.get_issue(self.issue_id)
            if issue.status != self.from_status:
                return Found(
                    f"status:{issue.status}",
                    replan=self.summary is not None,  # the summary never went: post it alone next cycle
                    by_marker=False,
                )
        return None

    def _owed(self, written: dict[str, str]) -> bool:
        """The report of this handoff went alone, saying the return is owed: the change is not done."""
        assert self.summary is not None
        return isinstance(self.summary.report, keys.SummaryKey) and (
            self.summary.report.return_pending().text in written
        )

    def perform(self, ctx: Context) -> Effect:
        # The transition's comment carries the marker: a status alone cannot tell our change
        # from a consultant's (who may hand the issue off again before we look).
        issue = ctx.okdesk.change_status(
            self.issue_id, self.to_status, comment_html=self.comment_html, public=self.public
        )
        ctx.remote.issue(self.issue_id)[self._carried] = ""
        return issue.status, None

    def also_completes(self) -> list[Action]:
        return [self.summary] if self.summary is not None else []

    def completes(self) -> Completed | None:
        return self.summary.completes() if self.summary is not None else None


# -- decisions kept in the store only -----------------------------------------------------------
@dataclass(frozen=True)
class CloseLink(LocalAction):
    cycle: int
    kind: ClassVar[str] = "close"

    @property
    def ref(self) -> keys.Key:
        return keys.CloseKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return "link done; comments no longer forwarded"

    def apply_locally(self, ctx: Context) -> Effect:
        return None, lifecycle.completed(self.issue_id, ctx.store.now())


@dataclass(frozen=True)
class RememberDeadline(LocalAction):
    """A link made before okbx followed deadlines: the issue's deadline now is taken as the one the
    task was given, so only later moves reach the task (a programmer's own date is not overwritten)."""

    deadline: datetime
    kind: ClassVar[str] = "deadline"

    @property
    def ref(self) -> keys.Key:
        return keys.DeadlineKey.baseline(self.issue_id, self.deadline)

    @property
    def detail(self) -> str:
        return f"deadline {self.deadline:%d.%m.%Y %H:%M} taken as the task's (link older than deadline sync)"

    def op_record(self) -> OpRecord:
        return OpRecord(None, None, {"detail": self.detail, "okdesk_deadline": self.deadline.isoformat()})


@dataclass(frozen=True)
class MarkGone(LocalAction):
    """The task (or the issue) was deleted: the link stops."""

    what: str  # "task" | "issue"
    cycle: int
    kind: ClassVar[str] = "gone"
    stops_link: ClassVar[bool] = True  # counted by the safety policy: an outage looks like this

    @property
    def ref(self) -> keys.Key:
        return keys.GoneKey(self.what, self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"{self.what} was deleted; link stopped"

    def apply_locally(self, ctx: Context) -> Effect:
        return None, lifecycle.gone(self.issue_id, self.what, self.detail)
