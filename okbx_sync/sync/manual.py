"""What a person does to the links by hand (`okbx link`, `okbx retry`), as store changes.

The CLI checks the remote side and prints; these functions are the whole effect on the store,
so a link made by hand looks exactly like one a cycle made (its task op, its journal line).
"""

from __future__ import annotations

from ..errors import OkbxError, UsageError
from ..state.store import Store
from . import keys


class NothingToRetry(OkbxError):
    """`okbx retry` of a link that is neither failing nor parked (exit code 1: nothing was changed)."""


LINK_CYCLE = 1  # a link made by hand starts at the first handoff, like a new one


def ensure_unlinked(store: Store, issue_id: int, task_id: int) -> None:
    """Neither side may already be linked: a second link would sync one task from two issues."""
    if (existing := store.link(issue_id)) is not None:
        raise UsageError(f"issue {issue_id} is already linked to task {existing.task_id} ({existing.state})")
    if (existing := store.link_for_task(task_id)) is not None:
        raise UsageError(f"task {task_id} is already linked to issue {existing.issue_id} ({existing.state})")


def link_pair(store: Store, issue_id: int, task_id: int, *, issue_status: str | None) -> None:
    """Link an existing issue and task, with the task op a cycle would have recorded on creating it."""
    summary = f"linked by hand to task {task_id}"
    store.create_link(issue_id, task_id, status=issue_status, origin=summary)
    key = str(keys.task(issue_id, LINK_CYCLE))
    store.begin_op(key, issue_id, "task", cycle=LINK_CYCLE, report_key=None, detail={"detail": "linked by hand"})
    store.finish_op(key, issue_id, "task", remote_id=str(task_id), outcome="linked", summary=summary)


def retry_issue(store: Store, issue_id: int) -> None:
    """Forget an issue's failures and parking, so the next cycle tries it at once."""
    link = store.link(issue_id)
    if link is None:
        raise UsageError(f"issue {issue_id} is not linked")
    if not (link.fail_count or link.parked or link.next_retry_at):
        raise NothingToRetry(
            f"issue {issue_id} is neither failing nor parked (its link is {link.state}): nothing to retry"
        )
    store.update_link(issue_id, fail_count=0, next_retry_at=None, parked=False, dirty=True)
