"""Is the store behind the accounts?  Checked before an issue's first write of a cycle.

Another installation (or a store restored from a backup) may have seen handoffs this store has
not.  Markers of a later handoff on either side prove it; then the link is rebuilt from the
markers and the issue planned again next cycle, so that a summary of this handoff is never
mistaken for one of an earlier handoff.
"""

from __future__ import annotations

import logging

from ..core.action import Context
from ..core.applier import Drift
from ..model import Task
from . import rebuild

log = logging.getLogger(__name__)


def rebuilt_for(ctx: Context, issue_id: int, task: Task, *, floor_cycle: int) -> rebuild.RebuiltLink:
    """Where the link of a task okbx has no record of really stands, from the markers on both sides."""
    return rebuild.link_from_remote(
        issue_id,
        task,
        ctx.remote.issue(issue_id),
        ctx.remote.task(task.id),
        ctx.config.bitrix24.done_statuses,
        floor_cycle=floor_cycle,
    )


def behind_the_accounts(ctx: Context, issue_id: int) -> None:
    """A guard of the applier: raises Drift after rebuilding a link the accounts are ahead of."""
    link = ctx.store.link(issue_id)
    if link is None or link.task_id is None:
        return
    issue_written, task_written = rebuild.written_or_nothing(ctx.remote.issue, ctx.remote.task, issue_id, link.task_id)
    later = rebuild.later_handoffs(issue_id, link.cycle, [*issue_written, *task_written])
    done = ctx.store.ops_by_keys(later)
    if all((op := done.get(text)) is not None and op.done for text in later):
        return  # none, or only what this store wrote (the note announcing a handoff, before the renewal)
    task = ctx.bitrix.get_task(link.task_id)
    if task is None:
        return  # the planner notices a deleted task by itself
    found = rebuild.link_from_remote(
        issue_id, task, issue_written, task_written, ctx.config.bitrix24.done_statuses, floor_cycle=link.cycle
    )
    if (found.state, found.cycle) == (link.state, link.cycle):
        return  # a later handoff announced in the task, its renewal not made yet: the store is right
    log.warning(
        "issue %s: the accounts are at handoff %s, the state store at %s; rebuilt from the markers",
        issue_id,
        found.cycle,
        link.cycle,
    )
    ctx.store.apply(found.change(f"rebuilt from the markers: handoff {found.cycle}, {found.state}"))
    raise Drift
