"""What a person does to the links by hand (`okbx link`, `okbx retry`), as domain operations.

The CLI checks the remote side and prints; these functions are the whole effect on the store,
through the link's lifecycle and the health records, so a link made by hand looks exactly like
one a cycle made (its task op, its journal line).
"""

from __future__ import annotations

from .. import keys
from ..errors import OkbxError, UsageError
from ..state import lifecycle
from ..state.lifecycle import Track
from ..state.store import Store


class NothingToRetry(OkbxError):
    """`okbx retry` of an issue none of whose work is failing or parked (exit code 1: nothing changed)."""


LINK_CYCLE = 1  # a link made by hand starts at the first handoff, like a new one


def ensure_unlinked(store: Store, issue_id: int, task_id: int) -> None:
    """Neither side may already be linked: a second link would sync one task from two issues."""
    if (existing := store.link(issue_id)) is not None:
        raise UsageError(f"issue {issue_id} is already linked to task {existing.task_id} ({existing.state})")
    if (existing := store.link_for_task(task_id)) is not None:
        raise UsageError(f"task {task_id} is already linked to issue {existing.issue_id} ({existing.state})")


def link_pair(
    store: Store, issue_id: int, task_id: int, *, issue_status: str | None, route: str = keys.DEFAULT_ROUTE
) -> None:
    """Link an existing issue and task, with the task op a cycle would have recorded on creating it."""
    store.apply(lifecycle.linked_by_hand(issue_id, task_id, issue_status, route=route))
    key = keys.TaskKey(issue_id, LINK_CYCLE)
    detail = {"detail": "linked by hand", "route": route}
    store.begin_op(key.text, issue_id, "task", cycle=LINK_CYCLE, report_key=None, detail=detail)
    summary = f"linked by hand to task {task_id}"
    store.finish_op(key.text, issue_id, "task", remote_id=str(task_id), outcome="linked", summary=summary)


def retry_issue(store: Store, issue_id: int) -> list[Track]:
    """Forget the failures and parking of every failing track of the issue (its route, billing,
    the debt hold), so the next cycle tries them at once; the tracks cleared."""
    failing = [h for h in store.failing() if h.issue_id == issue_id]
    link = store.link(issue_id)
    if not failing:
        state = f"its link is {link.state}" if link is not None else "okbx has no link for it"
        raise NothingToRetry(f"issue {issue_id} is neither failing nor parked ({state}): nothing to retry")
    for health in failing:
        store.set_health(lifecycle.retried(issue_id, health.track))
    if link is not None:
        store.apply(lifecycle.marked_dirty(issue_id))  # read fully at the next sync
    return [h.track for h in failing]
