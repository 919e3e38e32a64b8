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

  the route and `previous` in the link comment's marker of a handoff  -> the route it was on
                                                                         (none: the programmers')
                                                                         and where it returns

A completed handoff whose task is done is a done link (the issue being in the handoff status
again means a new handoff: the task is renewed); a completed handoff whose task was reopened is
the next handoff, active; a handoff announced in the task (the renew note, written before the
renewal) whose task is still done with the closedDate the note names was not renewed yet: the
previous handoff, done (it is renewed next); a handoff whose return is owed stays active (the
return is tried again; nothing is reopened); anything else is the current handoff, active (a
renewed task completed again is that handoff's completion, still to be reported).  A target of a route whose
latest handoff was on another route belongs to an earlier handoff: done if it is finished (the
next handoff takes it up again), else the handoff now, active.  A deal is one handoff's (its origin
marker names it), so the same rules read it with "finished" for "done".
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
    entry: lifecycle.Entry | None = None  # the route and `previous` its markers say, when they say it

    def change(self, why: str, *, new: bool = False, entry: lifecycle.Entry | None = None) -> LinkChange:
        """`entry`: the route the caller knows the target is on (its markers may not say it)."""
        said = self.entry if self.entry is not None and (entry is None or self.entry.route == entry.route) else entry
        return lifecycle.rebuilt(
            self.issue_id, self.task_id, self.state, self.cycle, self.done_at, why=why, new=new, entry=said
        )


@dataclass
class _Handoffs:
    seen: list[int] = field(default_factory=list)
    forwarded: list[int] = field(default_factory=list)
    linked: list[int] = field(default_factory=list)
    completed: set[int] = field(default_factory=set)
    pending: set[int] = field(default_factory=set)
    said: dict[int, keys.LinkCommentKey] = field(default_factory=dict)  # handoff -> its link comment's marker


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
            if key.route is not None or cycle not in found.said:
                found.said[cycle] = key
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
    route: str = keys.DEFAULT_ROUTE,
) -> RebuiltLink:
    finished = task.status in set(done_statuses)
    task_written = list(task_written)
    return link_from_markers(
        issue_id,
        task.id,
        finished,
        task.closed_at,
        [*issue_written, *task_written],
        floor_cycle=floor_cycle,
        route=route,
        target_written=task_written,
    )


def link_from_markers(
    issue_id: int,
    target_id: int,
    finished: bool,
    closed_at: datetime | None,
    written: Iterable[str],
    *,
    floor_cycle: int = 1,
    route: str = keys.DEFAULT_ROUTE,
    target: str = "task",
    target_written: Iterable[str] = (),  # the target's own markers (a renewal announced in the task)
) -> RebuiltLink:
    found = _handoffs(issue_id, written)
    latest = max(found.seen, default=0)
    cycle = max([floor_cycle, *found.seen])
    # comments forwarded into this very target carry the handoff it was made in; else the newest
    # link comment (the one announcing the current target) does
    task_cycle = min(found.forwarded) if found.forwarded else max(found.linked) if found.linked else cycle

    def rebuilt(state: LinkState, at: int, done_at: datetime | None, said: keys.LinkCommentKey | None) -> RebuiltLink:
        entry = lifecycle.Entry(route, target, previous_of(said))
        return RebuiltLink(issue_id, target_id, state, at, task_cycle, done_at, entry)

    said = found.said.get(cycle)
    if latest and (other := found.said.get(latest)) is not None and (other.route or keys.DEFAULT_ROUTE) != route:
        # the latest handoff was on another route: this target is an earlier handoff's
        if finished:
            return rebuilt(LinkState.DONE, latest, closed_at, None)
        return rebuilt(LinkState.ACTIVE, max(floor_cycle, latest + 1), None, None)
    if cycle in found.completed and finished:
        return rebuilt(LinkState.DONE, cycle, closed_at, said)
    if cycle in found.completed:  # reopened after that completion: the next handoff is under way
        return rebuilt(LinkState.ACTIVE, cycle + 1, None, None)
    if finished and _announced_only(issue_id, cycle, closed_at, target_written):
        return rebuilt(LinkState.DONE, cycle - 1, closed_at, found.said.get(cycle - 1))
    return rebuilt(LinkState.ACTIVE, cycle, None, said)


def _announced_only(issue_id: int, cycle: int, closed_at: datetime | None, task_written: Iterable[str]) -> bool:
    """Handoff `cycle` was announced in the task, which was not renewed for it yet: it is still
    completed with the closedDate the note names.  (A task completed after the renewal has another
    closedDate: that completion is the handoff's, and is reported.)"""
    if closed_at is None:
        return False
    wanted = keys.TaskNoteKey.renew(issue_id, cycle, closed_at)
    return any(keys.parse(text) == wanted for text in task_written)


def latest_handoff(issue_id: int, written: Iterable[str]) -> int:
    """The largest handoff number in okbx's markers (0 when there are none)."""
    return max(_handoffs(issue_id, written).seen, default=0)


def previous_of(said: keys.LinkCommentKey | None) -> str | None:
    """The status a link comment's marker says the issue returns to (its `previous` token)."""
    token = said.previous if said is not None else None
    try:
        return (bytes.fromhex(token[2:]).decode("utf-8") if token.startswith("x-") else token) if token else None
    except ValueError:
        return None


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
