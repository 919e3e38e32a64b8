"""The end of a page and of a cycle, as pure steps: (snapshot, plan, results) -> store changes.

What a page leaves behind for the next cycle:
  link flags   deferred or not reached -> dirty (read fully next time); every planned action
               through, or read cleanly with nothing to do -> healthy (failures forgotten)
  statuses     the status seen for each linked issue (to notice a return to the handoff status)
  read marks   the issue's updated_at when its comments were read, raised past okbx's own
               comments (so they are not taken for a change next cycle)
What a cycle leaves behind (`cycle_meta`): the watermarks of the change filters (only when every
page was done: a run cut short lists the same window again), the late elapsed item, the comment
scan cursor and the full listing schedule, the account's UTC offset.
The engine reads the inputs from the store and writes the result back; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..core.applier import ApplyReport
from ..core.plan import Plan
from ..state import lifecycle
from ..state.lifecycle import LinkChange
from ..state.store import Link, LinkState, Track
from .snapshot import Snapshot


@dataclass
class PageChanges:
    links: list[LinkChange] = field(default_factory=list)
    healthy: set[int] = field(default_factory=set)  # issues whose route work is whole again
    statuses: dict[int, str] = field(default_factory=dict)  # issue id -> status code seen
    read_at: dict[int, datetime] = field(default_factory=dict)  # issue id -> updated_at when read


def settle_page(
    snapshot: Snapshot, plan: Plan, applied: ApplyReport, before: dict[int, Link], after: dict[int, Link]
) -> PageChanges:
    """`before`: the links as the page planned with them; `after`: as they are now."""
    changes = PageChanges()
    dirty: set[int] = set()
    # A deferred issue was not looked at: keep it marked for a full read, and do not record its
    # status (its departure from the handoff status must still be noticed when it is read).
    dirty |= snapshot.deferred & set(before)
    # Not reached (a stopped cycle, a replan): read fully next time, its comments were not all forwarded.
    for action in applied.not_reached:
        link = after.get(action.issue_id)
        if link is not None and link.state not in (LinkState.GONE_ISSUE, LinkState.GONE_TASK):
            dirty.add(action.issue_id)
    route_actions = [a for a in plan.actions if a.track == Track.ROUTE]
    unfinished = {a.issue_id for a in applied.not_reached} | {a.issue_id for a, _ in applied.failed}
    unfinished |= {b.issue_id for b in plan.blocked if b.track == Track.ROUTE}
    for issue_id in {a.issue_id for a in route_actions} - unfinished:  # every planned action went through
        link = after.get(issue_id)
        if link is not None and not link.parked and (link.fail_count or link.dirty):
            changes.healthy.add(issue_id)

    statuses = {i: s for i, s in snapshot.seen_status.items() if i not in snapshot.deferred}
    statuses.update({i: issue.status for i, issue in snapshot.issues.items() if issue is not None})
    # An issue skipped this cycle (waiting to retry, parked) was read but not acted on: it keeps
    # its dirty flag and its old updated_at, so it is read again when it is tried.
    # So does one whose actions failed or were not reached (a stopped cycle).
    acted = {i for i in snapshot.comments if i not in plan.skipped and i not in unfinished}
    read_at = {i: snapshot.seen_updated[i] for i in acted if i in snapshot.seen_updated}
    for i in acted:
        issue = snapshot.issues.get(i)
        if i not in read_at and issue is not None and issue.updated_at is not None:
            read_at[i] = issue.updated_at
        # okbx's own comment moved updated_at: the next listing shows that value, not a change.
        # Inferred (the emulator does it): Okdesk stamps updated_at with the comment's time.  A
        # client comment between our read and our write waits for the periodic full scan.
        if (own := applied.own_writes.get(i)) is not None and (i not in read_at or own > read_at[i]):
            read_at[i] = own
    changes.statuses = {i: s for i, s in statuses.items() if i in after}
    changes.read_at = {i: at for i, at in read_at.items() if i in after}

    planned = {a.issue_id for a in route_actions}
    for issue_id, link in before.items():
        if issue_id in planned or issue_id in snapshot.errors or issue_id not in acted:
            continue
        if link.dirty or link.fail_count:
            # read cleanly with nothing left to do: healthy again (transient read errors must
            # not add up to parking a link)
            changes.healthy.add(issue_id)
    changes.healthy -= dirty
    for issue_id in sorted(dirty):
        changes.links.append(lifecycle.marked_dirty(issue_id))
    for issue_id in sorted(changes.healthy):
        if (link := after.get(issue_id)) is not None and link.dirty:
            changes.links.append(lifecycle.marked_clean(issue_id))
    return changes


@dataclass(frozen=True)
class CycleFacts:
    """What the end of a cycle needs, read by the engine."""

    started: datetime
    complete: bool  # every page was done: the change filters may move on
    full_scan: bool
    full_listing: bool
    scanned: frozenset[int]
    scan_deferred: frozenset[int]
    late_items: tuple[int, ...]  # late elapsed items the cycle saw, by id
    copied_items: frozenset[int]  # of those, the ones whose copy is done
    elapsed_watermark: int
    learned_offset: str | None = None  # the account's UTC offset, when this run learned it


def cycle_meta(facts: CycleFacts) -> dict[str, str]:
    started = facts.started.isoformat()
    meta: dict[str, str] = {}
    if facts.complete:
        meta |= {"okdesk_watermark": started, "bitrix_watermark": started}
        if facts.full_listing:
            meta["last_full_listing"] = started
    if facts.full_scan and facts.complete and not facts.scan_deferred:
        meta |= {"last_full_scan": started, "full_scan_cursor": "0"}
    elif facts.full_scan and facts.scanned:  # cut short: the next cycle goes on from here
        meta["full_scan_cursor"] = str(max(facts.scanned))
    # The elapsed watermark only passes items that were copied: one whose copy failed is read again.
    watermark = facts.elapsed_watermark
    for item_id in sorted(facts.late_items):
        if item_id not in facts.copied_items:
            break
        watermark = max(watermark, item_id)
    meta["elapsed_watermark"] = str(watermark)
    if facts.learned_offset:
        meta["okdesk_utc_offset"] = facts.learned_offset
    return meta
