"""What a person does to links by hand (`okbx link`, `okbx retry`), as domain operations.

The CLI checks the accounts and asks; these record the result through the link's lifecycle and
the journal, like any cycle would.
"""

from __future__ import annotations

from .. import keys
from ..errors import UsageError
from ..state import lifecycle
from ..state.lifecycle import Track
from ..state.store import Store


def link_pair(store: Store, issue_id: int, task_id: int, status: str | None) -> None:
    """An existing issue and task, linked as handoff 1 (the task counts as made for it)."""
    store.apply(lifecycle.linked_by_hand(issue_id, task_id, status))
    key = keys.TaskKey(issue_id, 1)
    store.begin_op(key.text, issue_id, "task", cycle=1, report_key=None, detail={"detail": "linked by hand"})
    store.finish_op(
        key.text,
        issue_id,
        "task",
        remote_id=str(task_id),
        outcome="linked",
        summary=f"linked by hand to task {task_id}",
    )


def retry_issue(store: Store, issue_id: int) -> list[Track]:
    """Clear the backoff or parking of every failing track of the issue; the tracks cleared.
    Nothing to retry is a usage error (the caller says so and exits non-zero)."""
    failing = [h for h in store.failing() if h.issue_id == issue_id]
    if not failing:
        raise UsageError(f"issue {issue_id} has nothing to retry: no work of it is failing or parked")
    for health in failing:
        store.set_health(lifecycle.retried(issue_id, health.track))
    if store.link(issue_id) is not None:
        store.apply(lifecycle.marked_dirty(issue_id))  # read fully at the next sync
    return [h.track for h in failing]
