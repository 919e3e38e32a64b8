"""Where a link really stands, read from the markers on both sides: a lost store is rebuilt, not guessed.

When okbx meets a task it has no record of (its state store was lost, restored from an old
backup, or another installation did the work), the handoff number and whether that handoff
was completed come from what okbx wrote:

  the largest handoff number in any marker of the issue or the task   -> the current handoff
  a summary or status-return marker of that handoff in the issue      -> it was completed
  a summary marked `pending` and no return marker of that handoff     -> completed and reported,
                                                                         but the return is owed
  the handoff numbers of comments forwarded into this task (else the
  newest link comment)                                                 -> the handoff it was made in

A completed handoff whose task is done is a done link (the issue being in the handoff status
again means a new handoff: the task is renewed); a completed handoff whose task was reopened is
the next handoff, active; a handoff announced in the task (the renew note, written before the
renewal) whose task is still done with the closedDate the note names was not renewed yet: the
previous handoff, done (it is renewed next); a handoff whose return is owed stays active (the
return is tried again; nothing is reopened); anything else is the current handoff, active (a
renewed task completed again is that handoff's completion, still to be reported).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .. import keys
from ..errors import ApiError
from ..model import Task
from ..state import lifecycle
from ..state.lifecycle import LinkChange, LinkState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RebuiltLink:
    issue_id: int
    task_id: int
    state: LinkState
    cycle: int
    task_cycle: int
    done_at: datetime | None

    def change(self, why: str, *, new: bool = False) -> LinkChange:
        return lifecycle.rebuilt(self.issue_id, self.task_id, self.state, self.cycle, self.done_at, why=why, new=new)


@dataclass
class _Handoffs:
    seen: list[int] = field(default_factory=list)
    forwarded: list[int] = field(default_factory=list)
    linked: list[int] = field(default_factory=list)
    completed: set[int] = field(default_factory=set)
    pending: set[int] = field(default_factory=set)


_HANDOFF_KINDS = (
    keys.TaskKey,
    keys.LinkCommentKey,
    keys.CommentKey,
    keys.SummaryKey,
    keys.ReturnKey,
    keys.RenewKey,
    keys.TaskNoteKey,
    keys.IssueNoteKey,
)


def _handoffs(issue_id: int, written: Iterable[str]) -> _Handoffs:
    found = _Handoffs()
    returned: set[int] = set()
    for text in written:
        key = keys.parse(text)
        if not isinstance(key, _HANDOFF_KINDS) or key.issue != issue_id or key.handoff is None:
            continue
        cycle = key.handoff
        found.seen.append(cycle)
        if isinstance(key, keys.CommentKey):
            found.forwarded.append(cycle)
        elif isinstance(key, keys.LinkCommentKey):
            found.linked.append(cycle)
        elif isinstance(key, keys.ReturnKey):
            returned.add(cycle)
        elif isinstance(key, keys.SummaryKey):
            (found.pending if key.pending else found.completed).add(cycle)
    found.pending -= returned
    # a report posted while the return is owed is listed under its own key too (remote.py)
    found.completed = (found.completed - found.pending) | returned
    return found


def link_from_remote(
    issue_id: int,
    task: Task,
    issue_written: Iterable[str],
    task_written: Iterable[str],
    done_statuses: Iterable[int],
    *,
    floor_cycle: int = 1,
) -> RebuiltLink:
    found = _handoffs(issue_id, [*issue_written, *task_written])
    cycle = max([floor_cycle, *found.seen])
    # comments forwarded into this very task carry the handoff it was made in; else the newest
    # link comment (the one announcing the current task) does
    task_cycle = min(found.forwarded) if found.forwarded else max(found.linked) if found.linked else cycle
    task_done = task.status in set(done_statuses)
    if cycle in found.completed and task_done:
        return RebuiltLink(issue_id, task.id, LinkState.DONE, cycle, task_cycle, task.closed_at)
    if cycle in found.completed:  # reopened after that completion: the next handoff is under way
        return RebuiltLink(issue_id, task.id, LinkState.ACTIVE, cycle + 1, task_cycle, None)
    if task_done and _announced_only(issue_id, cycle, task, task_written):
        return RebuiltLink(issue_id, task.id, LinkState.DONE, cycle - 1, task_cycle, task.closed_at)
    return RebuiltLink(issue_id, task.id, LinkState.ACTIVE, cycle, task_cycle, None)


def _announced_only(issue_id: int, cycle: int, task: Task, task_written: Iterable[str]) -> bool:
    """Handoff `cycle` was announced in the task, which was not renewed for it yet: it is still
    completed with the closedDate the note names.  (A task completed after the renewal has another
    closedDate: that completion is the handoff's, and is reported.)"""
    if task.closed_at is None:
        return False
    wanted = keys.TaskNoteKey.renew(issue_id, cycle, task.closed_at)
    return any(keys.parse(text) == wanted for text in task_written)


def later_handoffs(issue_id: int, cycle: int, written: Iterable[str]) -> list[str]:
    """okbx's markers of the issue that name a handoff after `cycle`."""
    later = []
    for text in written:
        key = keys.parse(text)
        if isinstance(key, _HANDOFF_KINDS) and key.issue == issue_id and (key.handoff or 0) > cycle:
            later.append(text)
    return later


Read = Callable[[int], dict[str, str]]


def written_or_nothing(
    read_issue: Read, read_task: Read, issue_id: int, task_id: int
) -> tuple[dict[str, str], dict[str, str]]:
    """What okbx wrote on each side; a side that cannot be read (deleted) counts as nothing here:
    the planner notices deletions by itself, and each write still looks for its own marker."""
    found: list[dict[str, str]] = []
    for read, what in ((read_issue, issue_id), (read_task, task_id)):
        try:
            found.append(read(what))
        except ApiError:
            found.append({})
    return found[0], found[1]
