"""The programmers' route, Bitrix24 side: the task, its deadline, and what okbx writes into it.

Each kind in one place: its key, how to find it on the remote side, how to perform it (alone
or in a `batch`).  A task is found by its XML_ID, a comment by its marker trailer, a deadline
by its value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from .. import keys
from ..core.action import Action, Context, Effect, Found, OpRecord
from ..errors import ApiError
from ..model import Comment, Issue
from ..state import lifecycle
from .drift import rebuilt_for, renumbered

if TYPE_CHECKING:
    from ..state.store import Op


@dataclass(frozen=True)
class CreateTask(Action):
    issue: Issue
    cycle: int
    fields: dict[str, object] = field(hash=False, compare=False)
    adopt_only: bool = False  # the issue left the handoff status: adopt a task already made, create none
    entry: lifecycle.Entry = lifecycle.DEFAULT_ENTRY  # the route of the handoff, and where it returns
    kind: ClassVar[str] = "task"
    side: ClassVar[str] = "Bitrix24"

    @property
    def ref(self) -> keys.Key:
        return keys.TaskKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return str(self.fields.get("TITLE", ""))

    def prepare(self, ctx: Context) -> None:
        link = ctx.store.link(self.issue_id)
        if link is None or link.state != "active" or link.cycle != self.cycle:
            change = lifecycle.handed_off(self.issue_id, self.cycle, self.issue.status, existing=link, entry=self.entry)
            ctx.store.apply(change)

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        # Always looked for: even a lost state store cannot produce a second task.  The XML_ID
        # filter is inferred to work; the result is checked here either way.
        xml_id = str(self.fields["XML_ID"])
        looked = ctx.tasks_by_xml_id.pop(xml_id, None)
        if looked is None:
            looked = ctx.bitrix.find_tasks({"XML_ID": xml_id, "GROUP_ID": self.fields["GROUP_ID"]})
        tasks = [t for t in looked if t.xml_id == xml_id]
        if not tasks:
            unsure = op is not None and op.unsure  # our own create, answer lost: it was not made
            return (
                None
                if unsure or self.adopt_only
                else renumbered(ctx, self.issue_id, self.cycle, self.issue.status, self.entry)
            )
        task = min(tasks, key=lambda t: t.id)
        if op is not None and op.unsure:
            # our own create whose answer was lost: the plan goes on as it was
            return Found(str(task.id), lifecycle.target_made(self.issue_id, task.id))
        # A task okbx has no record of (a lost store, another installation): where the
        # handoffs really are comes from the markers on both sides.
        found = rebuilt_for(ctx, self.issue_id, task, floor_cycle=self.cycle, route=self.entry.route)
        fits = found.state == "active" and found.cycle == self.cycle and found.task_cycle == self.cycle
        change = found.change(f"found task {task.id}: handoff {found.cycle}, {found.state}", entry=self.entry)
        return Found(str(task.id), change, replan=not fits, op_cycle=found.task_cycle)

    def op_record(self) -> OpRecord:
        deadline = self.issue.deadline_at
        detail: dict[str, object] = {"detail": self.detail}
        detail["okdesk_deadline"] = deadline.isoformat() if deadline else None
        detail["route"] = self.entry.route  # a later handoff on this route takes the task up again
        # the issue's files: a handoff cut short (a crash, a stop, a failure) finishes them (sync/files)
        detail["files"] = [a.id for a in self.issue.attachments]
        detail["internal_files"] = [a.id for a in self.issue.attachments if not a.is_public]
        return OpRecord(self.cycle, None, detail)

    def unwritten(self, ctx: Context) -> Effect | None:
        """Withdrawn before a task existed: nothing to create."""
        return (None, lifecycle.withdrawn(self.issue_id)) if self.adopt_only else None

    def perform(self, ctx: Context) -> Effect:
        task = ctx.bitrix.add_task(dict(self.fields))
        ctx.remote.new_task(task.id)
        return str(task.id), lifecycle.target_made(self.issue_id, task.id)

    batchable: ClassVar[bool] = True

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        by_group: dict[int, list[str]] = {}
        for a in actions:
            if isinstance(a, CreateTask):
                by_group.setdefault(int(str(a.fields["GROUP_ID"])), []).append(str(a.fields["XML_ID"]))
        for group_id, xml_ids in by_group.items():
            ctx.tasks_by_xml_id.update(ctx.bitrix.tasks_by_xml_id(xml_ids, group_id))

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        creates = {a.key: a for a in actions if isinstance(a, CreateTask)}
        tasks, errors = ctx.bitrix.add_tasks({key: dict(a.fields) for key, a in creates.items()})
        done: dict[str, Effect | ApiError] = dict(errors)
        for key, task in tasks.items():
            ctx.remote.new_task(task.id)
            done[key] = (str(task.id), lifecycle.target_made(creates[key].issue_id, task.id))
        return done


@dataclass(frozen=True)
class RenewTask(Action):
    task_id: int
    cycle: int  # the new cycle
    closed_before: datetime | None = None  # the task's closedDate before okbx renews it
    entry: lifecycle.Entry | None = None  # the handoff's route and return, when the link takes the task up
    resume: bool = False  # the task of an earlier handoff on this route, left open when the issue moved on
    kind: ClassVar[str] = "renew"
    side: ClassVar[str] = "Bitrix24"

    @property
    def ref(self) -> keys.Key:
        return keys.RenewKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"reopen task {self.task_id} (handoff #{self.cycle})"

    def op_record(self) -> OpRecord:
        detail = {"detail": self.detail}
        if self.closed_before is not None:
            detail["closed_before"] = self.closed_before.isoformat()
        return OpRecord(self.cycle, None, detail)

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
        if op is not None or (self.resume and reopened):  # our own renewal whose answer was lost; a task left open
            return Found(str(current.id), self._change())
        # Reopened by someone else (another installation, a programmer): the markers tell which
        # handoff the task is really in.
        route = self.entry.route if self.entry else keys.DEFAULT_ROUTE
        found = rebuilt_for(ctx, self.issue_id, current, floor_cycle=self.cycle, route=route)
        fits = found.state == "active" and found.cycle == self.cycle
        return Found(str(current.id), found.change("renewed by someone else", entry=self.entry), replan=not fits)

    def _change(self) -> lifecycle.LinkChange:
        if self.entry is None:
            return lifecycle.renewed(self.issue_id, self.cycle)
        return lifecycle.resumed(self.issue_id, self.cycle, self.task_id, self.entry)

    def perform(self, ctx: Context) -> Effect:
        task = ctx.bitrix.renew_task(self.task_id)
        return str(task.id), self._change()


@dataclass(frozen=True)
class UpdateDeadline(Action):
    """The issue's deadline changed after the handoff: the task's DEADLINE follows.

    A field set to a value is its own marker: the write is found by reading the task's deadline,
    and setting it twice gives the same task."""

    task_id: int
    deadline: datetime
    previous: datetime | None = None  # the Okdesk deadline okbx gave before: A -> B -> A is written again
    kind: ClassVar[str] = "deadline"
    side: ClassVar[str] = "Bitrix24"

    @property
    def ref(self) -> keys.Key:
        return keys.DeadlineKey.move(self.issue_id, self.deadline, self.previous)

    @property
    def detail(self) -> str:
        return f"task {self.task_id} deadline -> {self.deadline:%d.%m.%Y %H:%M}"

    def op_record(self) -> OpRecord:
        return OpRecord(None, None, {"detail": self.detail, "okdesk_deadline": self.deadline.isoformat()})

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        current = ctx.bitrix.get_task(self.task_id)
        if current is not None and same_minute(current.deadline_at, self.deadline):
            return Found(str(current.id))
        return None

    def perform(self, ctx: Context) -> Effect:
        # an explicit offset: the portal reads a bare time in the webhook user's zone (bitrix24.md 3.1)
        task = ctx.bitrix.update_task(self.task_id, {"DEADLINE": self.deadline.isoformat()})
        return str(task.id), None


def same_minute(a: datetime | None, b: datetime | None) -> bool:
    """Deadlines compared as moments, to the minute (the task card shows minutes)."""
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 60


@dataclass(frozen=True)
class TaskComment(Action):
    """Any comment okbx writes into the task; found by its marker among the task's comments."""

    text: str = field(default="", compare=False)
    side: ClassVar[str] = "Bitrix24"

    def _written(self, written: dict[str, str]) -> str | None:
        return written.get(self.key)

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        remote_id = self._written(ctx.remote.task(ctx.task_id(self.issue_id)))
        return Found(remote_id) if remote_id is not None else None

    def perform(self, ctx: Context) -> Effect:
        task_id = ctx.task_id(self.issue_id)
        new_id = str(ctx.bitrix.add_comment(task_id, self.text))
        ctx.remote.task(task_id)[self.key] = new_id
        return new_id, None

    batchable: ClassVar[bool] = True

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        links = ctx.store.links_for(a.issue_id for a in actions)
        ctx.remote.read_tasks(link.task_id for link in links.values() if link.task_id is not None)

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        comments = {a.key: (ctx.task_id(a.issue_id), a.text) for a in actions if isinstance(a, TaskComment)}
        new_ids, errors = ctx.bitrix.add_comments(comments)
        done: dict[str, Effect | ApiError] = dict(errors)
        for key, new_id in new_ids.items():
            ctx.remote.task(comments[key][0])[key] = str(new_id)
            done[key] = (str(new_id), None)
        return done


@dataclass(frozen=True)
class ForwardComment(TaskComment):
    comment: Comment | None = None
    task_cycle: int = 1
    kind: ClassVar[str] = "comment"

    @property
    def ref(self) -> keys.Key:
        assert self.comment is not None
        return keys.CommentKey(self.issue_id, self.task_cycle, self.comment.id)

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
        for text, remote_id in written.items():
            key = keys.parse_as(keys.CommentKey, text)
            if key is not None and key.issue_id == self.issue_id and key.comment_id == self.comment.id:
                return remote_id
        return None


@dataclass(frozen=True)
class TaskNote(TaskComment):
    """A comment from okbx itself into the task (handoff again, issue left handoff or was deleted)."""

    note: keys.TaskNoteKey = field(default=keys.TaskNoteKey("note", 0, 0))
    kind: ClassVar[str] = "task_note"

    @property
    def ref(self) -> keys.Key:
        return self.note

    @property
    def detail(self) -> str:
        return self.text.splitlines()[0][:80] if self.text else self.note.text
