"""Is the store behind the accounts?  Checked before an issue's first write of a cycle.

Another installation (or a store restored from a backup) may have seen handoffs this store has
not.  Markers of a later handoff on either side prove it; then the link is rebuilt from the
markers and the issue planned again next cycle, so that a summary of this handoff is never
mistaken for one of an earlier handoff.
"""

from __future__ import annotations

import logging

from .. import keys
from ..clients.bitrix24_deals import DealsClient
from ..core.action import Context, Found
from ..core.applier import Drift
from ..model import Task
from ..state import lifecycle
from ..state.lifecycle import Entry
from . import rebuild

log = logging.getLogger(__name__)


def rebuilt_for(
    ctx: Context, issue_id: int, task: Task, *, floor_cycle: int, route: str = keys.DEFAULT_ROUTE
) -> rebuild.RebuiltLink:
    """Where the link of a task okbx has no record of really stands, from the markers on both sides."""
    return rebuild.link_from_remote(
        issue_id,
        task,
        ctx.remote.issue(issue_id),
        ctx.remote.task(task.id),
        ctx.config.bitrix24.done_statuses,
        floor_cycle=floor_cycle,
        route=route,
    )


def deal_rebuilt(
    ctx: Context, issue_id: int, deal_id: int, *, floor_cycle: int, route: str
) -> rebuild.RebuiltLink | None:
    """Where the link of a deal stands, from okbx's markers in the issue and the deal's timeline
    (None when the deal is gone: the planner notices that by itself)."""
    deal = DealsClient(ctx.bitrix).get_deal(deal_id)
    if deal is None:
        return None
    finished = deal.semantics in FINAL or deal.closed
    written = [*ctx.remote.issue(issue_id), *ctx.remote.deal(deal_id)]
    return rebuild.link_from_markers(
        issue_id,
        deal_id,
        finished,
        deal.moved_at if finished else None,
        written,
        floor_cycle=floor_cycle,
        route=route,
        target="deal",
    )


FINAL = ("S", "F")  # a deal's stage semantics when it is won or lost


def renumbered(ctx: Context, issue_id: int, cycle: int, status: str | None, entry: Entry) -> Found | None:
    """Before a new target is made for handoff `cycle`, when none was found: do okbx's markers in
    the issue already name this handoff or a later one (a lost store, another installation)?
    Then the store's numbering is behind: the link moves on to the next free handoff number and
    the issue is planned again, so no marker of an earlier handoff is taken for this one's."""
    latest = rebuild.latest_handoff(issue_id, ctx.remote.issue(issue_id))
    if latest < cycle:
        return None
    link = ctx.store.link(issue_id)
    change = lifecycle.handed_off(issue_id, latest + 1, status, existing=link, entry=entry)
    log.warning(
        "issue %s: okbx's markers are at handoff %s, the state store at %s; renumbered", issue_id, latest, cycle
    )
    return Found(None, change, replan=True, by_marker=False)


def behind_the_accounts(ctx: Context, issue_id: int) -> None:
    """A guard of the applier: raises Drift after rebuilding a link the accounts are ahead of."""
    link = ctx.store.link(issue_id)
    if link is None or link.task_id is None:
        return
    read_target = ctx.remote.task if link.on_task else ctx.remote.deal
    issue_written, target_written = rebuild.written_or_nothing(ctx.remote.issue, read_target, issue_id, link.task_id)
    later = rebuild.later_handoffs(issue_id, link.cycle, [*issue_written, *target_written])
    done = ctx.store.ops_by_keys(later)
    if all((op := done.get(text)) is not None and op.done for text in later):
        return  # none, or only what this store wrote (the note announcing a handoff, before the renewal)
    entry = Entry(link.route, link.target, link.previous_status)
    if link.on_task:
        task = ctx.bitrix.get_task(link.task_id)
        if task is None:
            return  # the planner notices a deleted task by itself
        found = rebuild.link_from_remote(
            issue_id,
            task,
            issue_written,
            target_written,
            ctx.config.bitrix24.done_statuses,
            floor_cycle=link.cycle,
            route=link.route,
        )
    else:
        rebuilt = deal_rebuilt(ctx, issue_id, link.task_id, floor_cycle=link.cycle, route=link.route)
        if rebuilt is None:
            return
        found = rebuilt
    if (found.state, found.cycle) == (link.state, link.cycle):
        return  # a later handoff announced in the task, its renewal not made yet: the store is right
    log.warning(
        "issue %s: the accounts are at handoff %s, the state store at %s; rebuilt from the markers",
        issue_id,
        found.cycle,
        link.cycle,
    )
    ctx.store.apply(found.change(f"rebuilt from the markers: handoff {found.cycle}, {found.state}", entry=entry))
    raise Drift
