"""The actions a sync cycle can take, each kind in one place.

An action is a small frozen value named as a verb.  Its kind knows everything about itself:
  key / marker   its idempotency key (`keys.py`), carried by the remote write as a marker;
  detail         a readable line for `--dry-run`, logs and history;
  find(ctx, op)  whether the write is already on the remote side (by its marker), whatever the
                 state store says: the applier asks before every write;
  perform(ctx)   the write itself, returning the remote id and the change to the link.
The applier (`apply.py`) runs any kind the same way: intent, find, write, result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ApiError
from ..model import Comment, ElapsedItem, Issue, Task
from . import keys, rebuild, render
from .keys import Key

if TYPE_CHECKING:
    from ..clients.bitrix24 import Bitrix24Client
    from ..clients.okdesk import OkdeskClient
    from ..config import Config
    from ..state.store import Op, Store
    from .remote import RemoteMarkers


@dataclass
class Context:
    """What an action needs to find or perform itself."""

    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    store: Store
    config: Config
    remote: RemoteMarkers
    # issue id -> when okbx last wrote a comment there: that write moves the issue's updated_at,
    # and the next cycle must not take it for a change (engine.py)
    own_writes: dict[int, datetime] = field(default_factory=dict)
    # XML_ID -> tasks carrying it, looked up for many creates in one request; each used once
    tasks_by_xml_id: dict[str, list[Task]] = field(default_factory=dict)

    def rebuilt(self, issue_id: int, task: Task, *, floor_cycle: int) -> rebuild.RebuiltLink:
        """Where the link of a task okbx has no record of really stands, from the markers on both sides."""
        written = (self.remote.issue(issue_id), self.remote.task(task.id))
        return rebuild.link_from_remote(
            issue_id, task, *written, self.config.bitrix24.done_statuses, floor_cycle=floor_cycle
        )

    def task_id(self, issue_id: int) -> int:
        link = self.store.link(issue_id)
        if link is None or link.task_id is None:
            raise ApiError("okbx", "state", f"issue {issue_id} has no task yet")
        return link.task_id


@dataclass(frozen=True)
class Found:
    """A write found on the remote side: adopted instead of repeated."""

    remote_id: str | None
    link_update: dict[str, Any] = field(default_factory=dict)
    replan: bool = False  # what was found does not fit the rest of this issue's plan
    op_cycle: int | None = None  # the handoff the adopted write belongs to, when it differs
    by_marker: bool = True  # False: inferred from the remote state (e.g. the status), not a marker


Effect = tuple[str | None, dict[str, Any]]  # (remote id, changes to the link)


@dataclass(frozen=True)
class Action:
    issue_id: int
    kind: ClassVar[str] = "action"
    side: ClassVar[str] = ""  # which system is written: "Bitrix24", "Okdesk", or "" for local state only

    @property
    def ref(self) -> Key:
        raise NotImplementedError

    @property
    def key(self) -> str:
        return self.ref.text

    @property
    def marker(self) -> str:
        return self.ref.marker

    @property
    def detail(self) -> str:
        return ""

    # -- how the applier runs it --------------------------------------------------------------
    def prepare(self, ctx: Context) -> None:
        """Local bookkeeping before anything else (e.g. the link a new task belongs to)."""

    def op_record(self) -> tuple[int | None, str | None, dict[str, Any]]:
        """(cycle, report key, detail) kept with the intent record."""
        return getattr(self, "cycle", None), None, {"detail": self.detail}

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        return None

    def perform(self, ctx: Context) -> Effect:
        raise NotImplementedError

    def also_completes(self) -> list[Action]:
        """Other actions this write carries (a status change carrying the summary)."""
        return []

    # -- batching (Bitrix24 `batch`: up to 50 commands in one request) -------------------------
    batchable: ClassVar[bool] = False

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        """Read what `find` of each of these actions needs, in as few requests as possible."""

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        """Perform these actions (of this kind) in one request; by action key."""
        raise NotImplementedError


@dataclass(frozen=True)
class LocalAction(Action):
    """A change of okbx's own state only: nothing to find, nothing written remotely."""

    def apply_locally(self, ctx: Context) -> None:
        raise NotImplementedError


# -- Bitrix24 -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateTask(Action):
    issue: Issue
    cycle: int
    fields: dict[str, object] = field(hash=False, compare=False)
    adopt_only: bool = False  # the issue left the handoff status: adopt a task already made, create none
    kind = "task"
    side = "Bitrix24"

    @property
    def ref(self) -> Key:
        return keys.task(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return str(self.fields.get("TITLE", ""))

    def prepare(self, ctx: Context) -> None:
        link = ctx.store.link(self.issue_id)
        if link is None:
            ctx.store.create_link(self.issue_id, None, status=self.issue.status, origin="handoff")
        elif link.state != "active" or link.cycle != self.cycle:
            ctx.store.local_change(
                self.issue_id,
                "handoff",
                f"handed off again (cycle {self.cycle})",
                state="active",
                cycle=self.cycle,
                task_id=None,
                done_at=None,
            )

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        # Always looked for: even a lost state store cannot produce a second task.  The XML_ID
        # filter is inferred to work; the result is checked here either way.
        xml_id = str(self.fields["XML_ID"])
        looked = ctx.tasks_by_xml_id.pop(xml_id, None)
        if looked is None:
            looked = ctx.bitrix.find_tasks({"XML_ID": xml_id, "GROUP_ID": ctx.config.bitrix24.group_id})
        tasks = [t for t in looked if t.xml_id == xml_id]
        if not tasks:
            return None
        task = min(tasks, key=lambda t: t.id)
        if op is not None and (op.state == "intent" or op.ambiguous):
            # our own create whose answer was lost: the plan goes on as it was
            return Found(str(task.id), {"task_id": task.id})
        # A task okbx has no record of (a lost store, another installation): where the
        # handoffs really are comes from the markers on both sides.
        found = ctx.rebuilt(self.issue_id, task, floor_cycle=self.cycle)
        fits = found.state == "active" and found.cycle == self.cycle and found.task_cycle == self.cycle
        return Found(str(task.id), found.link_update(), replan=not fits, op_cycle=found.task_cycle)

    def op_record(self) -> tuple[int | None, str | None, dict[str, Any]]:
        cycle, report_key, detail = super().op_record()
        deadline = self.issue.deadline_at
        return cycle, report_key, {**detail, "okdesk_deadline": deadline.isoformat() if deadline else None}

    def unwritten(self, ctx: Context) -> bool:
        """Withdrawn before a task existed: nothing to create."""
        if not self.adopt_only:
            return False
        ctx.store.local_change(self.issue_id, "handoff", "withdrawn before a task existed", state="gone_task")
        return True

    def perform(self, ctx: Context) -> Effect:
        task = ctx.bitrix.add_task(dict(self.fields))
        ctx.remote.new_task(task.id)
        return str(task.id), {"task_id": task.id}

    batchable = True

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        xml_ids = [str(a.fields["XML_ID"]) for a in actions if isinstance(a, CreateTask)]
        ctx.tasks_by_xml_id.update(ctx.bitrix.tasks_by_xml_id(xml_ids, ctx.config.bitrix24.group_id))

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        creates = {a.key: a for a in actions if isinstance(a, CreateTask)}
        tasks, errors = ctx.bitrix.add_tasks({key: dict(a.fields) for key, a in creates.items()})
        for task in tasks.values():
            ctx.remote.new_task(task.id)
        return {**errors, **{key: (str(task.id), {"task_id": task.id}) for key, task in tasks.items()}}


@dataclass(frozen=True)
class RenewTask(Action):
    task_id: int
    cycle: int  # the new cycle
    closed_before: datetime | None = None  # the task's closedDate before okbx renews it
    kind = "renew"
    side = "Bitrix24"

    @property
    def ref(self) -> Key:
        return keys.renew(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"reopen task {self.task_id} (handoff #{self.cycle})"

    def op_record(self) -> tuple[int | None, str | None, dict[str, Any]]:
        cycle, report_key, detail = super().op_record()
        if self.closed_before is not None:
            detail["closed_before"] = self.closed_before.isoformat()
        return cycle, report_key, detail

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        current = ctx.bitrix.get_task(self.task_id)
        if current is None:
            return None
        reopened = current.status not in ctx.config.bitrix24.done_statuses
        # Completed again since our first attempt: a closedDate other than the one the task had
        # before that attempt (kept in the op) proves the renewal went through.
        before_text = op.detail.get("closed_before") if op else None
        before = datetime.fromisoformat(before_text) if before_text else self.closed_before
        closed_again = before is not None and current.closed_at is not None and current.closed_at != before
        if not (reopened or closed_again):
            return None
        if op is not None:  # our own renewal whose answer was lost
            return Found(str(current.id), {"state": "active", "cycle": self.cycle, "done_at": None})
        # Reopened by someone else (another installation, a programmer): the markers tell which
        # handoff the task is really in.
        found = ctx.rebuilt(self.issue_id, current, floor_cycle=self.cycle)
        fits = found.state == "active" and found.cycle == self.cycle
        return Found(str(current.id), found.link_update(), replan=not fits)

    def perform(self, ctx: Context) -> Effect:
        task = ctx.bitrix.renew_task(self.task_id)
        return str(task.id), {"state": "active", "cycle": self.cycle, "done_at": None}


@dataclass(frozen=True)
class UpdateDeadline(Action):
    """The issue's deadline changed after the handoff: the task's DEADLINE follows.

    A field set to a value is its own marker: the write is found by reading the task's deadline,
    and setting it twice gives the same task."""

    task_id: int
    deadline: datetime
    previous: datetime | None = None  # the Okdesk deadline okbx gave before: A -> B -> A is written again
    kind = "deadline"
    side = "Bitrix24"

    @property
    def ref(self) -> Key:
        return keys.deadline(
            self.issue_id, self.deadline.isoformat(), self.previous.isoformat() if self.previous else ""
        )

    @property
    def detail(self) -> str:
        return f"task {self.task_id} deadline -> {self.deadline:%d.%m.%Y %H:%M}"

    def op_record(self) -> tuple[int | None, str | None, dict[str, Any]]:
        cycle, report_key, detail = super().op_record()
        return cycle, report_key, {**detail, "okdesk_deadline": self.deadline.isoformat()}

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        current = ctx.bitrix.get_task(self.task_id)
        if current is not None and same_minute(current.deadline_at, self.deadline):
            return Found(str(current.id))
        return None

    def perform(self, ctx: Context) -> Effect:
        # an explicit offset: the portal reads a bare time in the webhook user's zone (bitrix24.md 3.1)
        task = ctx.bitrix.update_task(self.task_id, {"DEADLINE": self.deadline.isoformat()})
        return str(task.id), {}


def same_minute(a: datetime | None, b: datetime | None) -> bool:
    """Deadlines compared as moments, to the minute (the task card shows minutes)."""
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 60


@dataclass(frozen=True)
class _TaskComment(Action):
    """Any comment okbx writes into the task; found by its marker among the task's comments."""

    text: str = field(default="", compare=False)
    side = "Bitrix24"

    def _written(self, written: dict[str, str]) -> str | None:
        return written.get(self.key)

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        remote_id = self._written(ctx.remote.task(ctx.task_id(self.issue_id)))
        return Found(remote_id) if remote_id is not None else None

    def perform(self, ctx: Context) -> Effect:
        task_id = ctx.task_id(self.issue_id)
        new_id = str(ctx.bitrix.add_comment(task_id, self.text))
        ctx.remote.task(task_id)[self.key] = new_id
        return new_id, {}

    batchable = True

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        links = (ctx.store.link(a.issue_id) for a in actions)
        ctx.remote.read_tasks(link.task_id for link in links if link is not None and link.task_id is not None)

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        comments = {a.key: (ctx.task_id(a.issue_id), a.text) for a in actions if isinstance(a, _TaskComment)}
        new_ids, errors = ctx.bitrix.add_comments(comments)
        for key, new_id in new_ids.items():
            ctx.remote.task(comments[key][0])[key] = str(new_id)
        return {**errors, **{key: (str(new_id), {}) for key, new_id in new_ids.items()}}


@dataclass(frozen=True)
class ForwardComment(_TaskComment):
    comment: Comment | None = None
    task_cycle: int = 1
    kind = "comment"

    @property
    def ref(self) -> Key:
        assert self.comment is not None
        return keys.comment(self.issue_id, self.task_cycle, self.comment.id)

    @property
    def detail(self) -> str:
        assert self.comment is not None
        who = "client" if self.comment.author.kind == "contact" else "consultant"
        scope = "public" if self.comment.public else "internal"
        return f"{scope} comment #{self.comment.id} by {who} {self.comment.author.name}"

    def _written(self, written: dict[str, str]) -> str | None:
        # The same Okdesk comment in this task under any handoff number counts: a rebuilt
        # store may number the handoffs differently from the one that forwarded it.
        assert self.comment is not None
        wanted = (str(self.issue_id), str(self.comment.id))
        for text, remote_id in written.items():
            key = Key.parse(text)
            if key.kind == "comment" and len(key.parts) == 3 and (key.parts[0], key.parts[2]) == wanted:
                return remote_id
        return None


@dataclass(frozen=True)
class TaskNote(_TaskComment):
    """A comment from okbx itself into the task (handoff again, issue left handoff or was deleted)."""

    note: str = ""  # e.g. "left:12:1"
    kind = "task_note"

    @property
    def ref(self) -> Key:
        return keys.task_note(self.note)

    @property
    def detail(self) -> str:
        return self.text.splitlines()[0][:80] if self.text else self.note


# -- Okdesk -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _IssueComment(Action):
    """Any comment okbx writes into the issue; found by its marker among the bot's comments."""

    side = "Okdesk"

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        remote_id = ctx.remote.issue(self.issue_id).get(self.key)
        return Found(remote_id) if remote_id is not None else None

    def _post(self, ctx: Context, html: str, public: bool) -> Effect:
        comment = ctx.okdesk.add_comment(self.issue_id, html, public=public)
        new_id = str(comment.id)
        ctx.remote.issue(self.issue_id)[self.key] = new_id
        if comment.published_at is not None:
            ctx.own_writes[self.issue_id] = comment.published_at
        return new_id, {}


@dataclass(frozen=True)
class PostLinkComment(_IssueComment):
    task_cycle: int = 1
    kind = "link_comment"

    @property
    def ref(self) -> Key:
        return keys.link_comment(self.issue_id, self.task_cycle)

    @property
    def detail(self) -> str:
        return "internal comment with the task's URL"

    def perform(self, ctx: Context) -> Effect:
        task_id = ctx.task_id(self.issue_id)
        return self._post(ctx, render.link_comment(ctx.bitrix.task_url(task_id), task_id, self.marker), False)


@dataclass(frozen=True)
class IssueNote(_IssueComment):
    """An internal comment from okbx into the Okdesk issue (e.g. the task was deleted)."""

    note: str = ""
    html: str = field(default="", compare=False)
    kind = "issue_note"

    @property
    def ref(self) -> Key:
        return keys.issue_note(self.note)

    @property
    def detail(self) -> str:
        return self.note.split(":")[0]

    def perform(self, ctx: Context) -> Effect:
        return self._post(ctx, self.html, False)


@dataclass(frozen=True)
class PostReport(_IssueComment):
    """The summary comment at completion, or a short note about time logged after it."""

    report_key: str = ""  # "summary:<issue>:<cycle>" or "late:<issue>:<first item id>"
    html: str = field(default="", compare=False)
    public: bool = False
    total_seconds: int = 0
    item_count: int = 0
    kind = "summary"

    @property
    def ref(self) -> Key:
        return Key.parse(self.report_key)

    @property
    def detail(self) -> str:
        minutes = round(self.total_seconds / 60)
        what = "summary" if self.report_key.startswith("summary:") else "late time note"
        return f"{what}: {minutes // 60}:{minutes % 60:02d} in {self.item_count} entries"

    def perform(self, ctx: Context) -> Effect:
        return self._post(ctx, self.html, self.public)


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
    def ref(self) -> Key:
        return keys.time_entry(self.item.id)

    @property
    def detail(self) -> str:
        minutes = round(self.item.seconds / 60)
        return f"{minutes // 60}:{minutes % 60:02d} by Bitrix24 user {self.item.user_id} -> employee {self.employee_id}"

    def op_record(self) -> tuple[int | None, str | None, dict[str, Any]]:
        item = self.item
        # the item's line of the report, kept so a report written after a crash still lists it
        detail = {**self.row, "task_id": item.task_id, "user_id": item.user_id, "employee_id": self.employee_id}
        return self.cycle, self.report_key, detail

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        entry = ctx.remote.time_entries(self.issue_id).get(self.key)
        return Found(str(entry.id)) if entry is not None else None

    def perform(self, ctx: Context) -> Effect:
        item = self.item
        ctx.okdesk.add_time_entry(
            self.issue_id,
            employee_id=self.employee_id,
            seconds=item.seconds,
            logged_at=item.created_at or ctx.store.now(),
            comment=self.comment,
        )
        return None, {}


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
    def ref(self) -> Key:
        return keys.status_return(self.issue_id, self.cycle)

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
        remote_id = ctx.remote.issue(self.issue_id).get(self._carried)
        if remote_id is not None:
            return Found(remote_id)
        if op is not None and (op.state == "intent" or op.ambiguous):
            # A lost answer: the status tells whether a person moved the issue meanwhile.
            issue = ctx.okdesk.get_issue(self.issue_id)
            if issue.status != self.from_status:
                return Found(
                    f"status:{issue.status}",
                    {"issue_status": issue.status},
                    replan=self.summary is not None,  # the summary never went: post it alone next cycle
                    by_marker=False,
                )
        return None

    def perform(self, ctx: Context) -> Effect:
        # The transition's comment carries the marker: a status alone cannot tell our change
        # from a consultant's (who may hand the issue off again before we look).
        issue = ctx.okdesk.change_status(
            self.issue_id, self.to_status, comment_html=self.comment_html, public=self.public
        )
        ctx.remote.issue(self.issue_id)[self._carried] = ""
        return issue.status, {"issue_status": issue.status}

    def also_completes(self) -> list[Action]:
        return [self.summary] if self.summary is not None else []


# -- local --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CloseLink(LocalAction):
    cycle: int
    kind = "close"

    @property
    def ref(self) -> Key:
        return keys.close(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return "link done; comments no longer forwarded"

    def apply_locally(self, ctx: Context) -> None:
        ctx.store.local_change(
            self.issue_id, self.kind, self.detail, state="done", done_at=ctx.store.now(), dirty=False
        )


@dataclass(frozen=True)
class RememberDeadline(LocalAction):
    """A link made before okbx followed deadlines: the issue's deadline now is taken as the one the
    task was given, so only later moves reach the task (a programmer's own date is not overwritten)."""

    deadline: datetime
    kind = "deadline"

    @property
    def ref(self) -> Key:
        return keys.deadline_baseline(self.issue_id, self.deadline.isoformat())

    @property
    def detail(self) -> str:
        return f"deadline {self.deadline:%d.%m.%Y %H:%M} taken as the task's (link older than deadline sync)"

    def apply_locally(self, ctx: Context) -> None:
        ctx.store.begin_op(self.key, self.issue_id, self.kind, cycle=None, report_key=None, detail=self.record())
        ctx.store.finish_op(self.key, self.issue_id, self.kind, remote_id=None, outcome="done", summary=self.detail)

    def record(self) -> dict[str, Any]:
        return {"detail": self.detail, "okdesk_deadline": self.deadline.isoformat()}


@dataclass(frozen=True)
class MarkGone(LocalAction):
    """The task (or the issue) was deleted: the link stops."""

    what: str  # "task" | "issue"
    cycle: int
    kind = "gone"

    @property
    def ref(self) -> Key:
        return keys.gone(self.what, self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"{self.what} was deleted; link stopped"

    def apply_locally(self, ctx: Context) -> None:
        ctx.store.local_change(self.issue_id, self.kind, self.detail, state=f"gone_{self.what}")
