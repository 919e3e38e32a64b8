"""Where a link really stands, read from the markers on both sides: a lost store is rebuilt, not guessed.

When okbx meets a task it has no record of (its state store was lost, restored from an old
backup, or another installation did the work), the handoff number and whether that handoff
was completed come from what okbx wrote:

  the largest handoff number in any marker of the issue or the task   -> the current handoff
  a summary or status-return marker of that handoff in the issue      -> it was completed
  the handoff numbers of comments forwarded into this task (else the
  newest link comment)                                                 -> the handoff it was made in

A completed handoff whose task is done is a done link (the issue being in the handoff status
again means a new handoff: the task is renewed); a completed handoff whose task was reopened is
the next handoff, active; anything else is the current handoff, active.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..model import Task
from .keys import Key


@dataclass(frozen=True)
class RebuiltLink:
    task_id: int
    state: str
    cycle: int
    task_cycle: int
    done_at: datetime | None

    def link_update(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "state": self.state, "cycle": self.cycle, "done_at": self.done_at}


def _cycles(issue_id: int, written: Iterable[str]) -> tuple[list[int], list[int], list[int], set[int]]:
    """(handoff numbers seen, of forwarded comments, of link comments; completed handoffs)."""
    seen: list[int] = []
    forwarded: list[int] = []
    linked: list[int] = []
    completed: set[int] = set()
    mine = str(issue_id)
    for text in written:
        key = Key.parse(text)
        if key.kind in ("linkcomment", "summary", "return", "renew", "task") and key.parts[:1] == (mine,):
            cycle = key.int_part(1)
        elif key.kind == "comment" and key.parts[:1] == (mine,):
            cycle = key.int_part(1)
            if cycle is not None:
                forwarded.append(cycle)
        elif key.kind in ("note", "inote") and key.parts[1:2] == (mine,):
            cycle = key.int_part(2)
        else:
            continue
        if cycle is None:
            continue
        seen.append(cycle)
        if key.kind in ("summary", "return"):
            completed.add(cycle)
        if key.kind == "linkcomment":
            linked.append(cycle)
    return seen, forwarded, linked, completed


def latest_handoff(issue_id: int, written: Iterable[str]) -> int:
    """The largest handoff number in okbx's markers (0 when there are none)."""
    return max(_cycles(issue_id, written)[0], default=0)


def link_from_remote(
    issue_id: int,
    task: Task,
    issue_written: dict[str, str],
    task_written: dict[str, str],
    done_statuses: Iterable[int],
    *,
    floor_cycle: int = 1,
) -> RebuiltLink:
    seen, forwarded, linked, completed = _cycles(issue_id, [*issue_written, *task_written])
    cycle = max([floor_cycle, *seen])
    # comments forwarded into this very task carry the handoff it was made in; else the newest
    # link comment (the one announcing the current task) does
    task_cycle = min(forwarded) if forwarded else max(linked) if linked else cycle
    task_done = task.status in set(done_statuses)
    if cycle in completed and task_done:
        return RebuiltLink(task.id, "done", cycle, task_cycle, task.closed_at)
    if cycle in completed:  # reopened after that completion: the next handoff is under way
        return RebuiltLink(task.id, "active", cycle + 1, task_cycle, None)
    return RebuiltLink(task.id, "active", cycle, task_cycle, None)
