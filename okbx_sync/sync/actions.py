"""The actions a sync cycle can take: small frozen values named as verbs.

Each has a stable `key` (the idempotency key in the state store, also embedded in the marker
the remote write carries), a `kind` for counting and history, and a readable `detail` for
`--dry-run` and logs.  Actions hold no behaviour; `apply.py` executes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..markup import marker
from ..model import Comment, ElapsedItem, Issue


@dataclass(frozen=True)
class Action:
    issue_id: int

    @property
    def key(self) -> str:
        raise NotImplementedError

    kind = "action"
    side = ""  # which system is written: "Bitrix24", "Okdesk", or "" for local state only

    @property
    def marker(self) -> str:
        return marker(*self.key.split(":"))

    @property
    def detail(self) -> str:
        return ""


@dataclass(frozen=True)
class CreateTask(Action):
    issue: Issue
    cycle: int
    fields: dict[str, object] = field(hash=False, compare=False)
    adopt_only: bool = False  # the issue left the handoff status: adopt a task already made, create none
    kind = "task"
    side = "Bitrix24"

    @property
    def key(self) -> str:
        return f"task:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return str(self.fields.get("TITLE", ""))


@dataclass(frozen=True)
class PostLinkComment(Action):
    task_cycle: int
    kind = "link_comment"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"linkcomment:{self.issue_id}:{self.task_cycle}"

    @property
    def detail(self) -> str:
        return "internal comment with the task's URL"


@dataclass(frozen=True)
class ForwardComment(Action):
    comment: Comment
    task_cycle: int
    text: str = field(compare=False)
    kind = "comment"
    side = "Bitrix24"

    @property
    def key(self) -> str:
        return f"comment:{self.issue_id}:{self.task_cycle}:{self.comment.id}"

    @property
    def detail(self) -> str:
        who = "client" if self.comment.author.kind == "contact" else "consultant"
        scope = "public" if self.comment.public else "internal"
        return f"{scope} comment #{self.comment.id} by {who} {self.comment.author.name}"


@dataclass(frozen=True)
class TaskNote(Action):
    """A comment from okbx itself into the task (handoff again, issue left handoff or was deleted)."""

    note: str  # e.g. "left:12:1"
    text: str = field(compare=False)
    kind = "task_note"
    side = "Bitrix24"

    @property
    def key(self) -> str:
        return f"note:{self.note}"

    @property
    def detail(self) -> str:
        return self.text.splitlines()[0][:80]


@dataclass(frozen=True)
class IssueNote(Action):
    """An internal comment from okbx into the Okdesk issue (e.g. the task was deleted)."""

    note: str
    html: str = field(compare=False)
    kind = "issue_note"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"inote:{self.note}"

    @property
    def detail(self) -> str:
        return self.note.split(":")[0]


@dataclass(frozen=True)
class CopyTimeEntry(Action):
    item: ElapsedItem
    employee_id: int
    comment: str = field(compare=False)
    report_key: str = field(compare=False)
    cycle: int = 0
    row: dict[str, object] = field(default_factory=dict, compare=False, hash=False)  # its line in the report
    kind = "time"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"time:{self.item.id}"

    @property
    def detail(self) -> str:
        minutes = round(self.item.seconds / 60)
        return f"{minutes // 60}:{minutes % 60:02d} by Bitrix24 user {self.item.user_id} -> employee {self.employee_id}"


@dataclass(frozen=True)
class PostReport(Action):
    """The summary comment at completion, or a short note about time logged after it."""

    report_key: str  # "summary:<issue>:<cycle>" or "late:<issue>:<first item id>"
    html: str = field(compare=False)
    public: bool = False
    total_seconds: int = 0
    item_count: int = 0
    kind = "summary"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return self.report_key

    @property
    def detail(self) -> str:
        minutes = round(self.total_seconds / 60)
        what = "summary" if self.report_key.startswith("summary:") else "late time note"
        return f"{what}: {minutes // 60}:{minutes % 60:02d} in {self.item_count} entries"


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
    kind = "return"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"return:{self.issue_id}:{self.cycle}"

    @property
    def marker(self) -> str:
        return self.summary.marker if self.summary else super().marker

    @property
    def detail(self) -> str:
        carried = f", with the {self.summary.detail}" if self.summary else ""
        return f"status {self.from_status} -> {self.to_status}{carried}"


@dataclass(frozen=True)
class RenewTask(Action):
    task_id: int
    cycle: int  # the new cycle
    closed_before: datetime | None = None  # the task's closedDate before okbx renews it
    kind = "renew"
    side = "Bitrix24"

    @property
    def key(self) -> str:
        return f"renew:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return f"reopen task {self.task_id} (handoff #{self.cycle})"


@dataclass(frozen=True)
class CloseLink(Action):
    cycle: int
    kind = "close"

    @property
    def key(self) -> str:
        return f"close:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return "link done; comments no longer forwarded"


@dataclass(frozen=True)
class MarkGone(Action):
    """The task (or the issue) was deleted: the link stops."""

    what: str  # "task" | "issue"
    cycle: int
    kind = "gone"

    @property
    def key(self) -> str:
        return f"gone:{self.what}:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return f"{self.what} was deleted; link stopped"


LOCAL_ACTIONS = (CloseLink, MarkGone)
