"""The end of a cycle, as one pure step: (snapshot, plan, results) -> the changes to the store.

What a cycle leaves behind for the next one:
  link flags   deferred or not reached -> dirty (read fully next time); every planned action
               through, or read cleanly with nothing to do -> healthy (failures forgotten)
  statuses     the status seen for each linked issue (to notice a return to the handoff status)
  read marks   the issue's updated_at when its comments were read, raised past okbx's own
               comments (so they are not taken for a change next cycle)
  meta         the watermarks: Okdesk updated_since, Bitrix24 CHANGED_DATE, the late elapsed
               item, the comment scan and the full listing schedule, the account's UTC offset

The engine reads the inputs from the store and writes the result back; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..state.store import Link, LinkState
from .apply import ApplyReport
from .plan import Plan
from .snapshot import Snapshot

HEALTHY: dict[str, Any] = {"dirty": False, "fail_count": 0, "last_error": None, "next_retry_at": None}


@dataclass
class StoreChanges:
    link_updates: dict[int, dict[str, Any]] = field(default_factory=dict)  # issue id -> fields
    statuses: dict[int, str] = field(default_factory=dict)  # issue id -> status code seen
    read_at: dict[int, datetime] = field(default_factory=dict)  # issue id -> updated_at when read
    meta: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CycleFacts:
    """What the step needs besides (snapshot, plan, results), read by the engine."""

    started: datetime
    links: dict[int, Link]  # as the cycle planned with them
    after: dict[int, Link]  # the links of the issues the cycle read or planned, as they are now
    full_scan: bool
    full_listing: bool
    copied_items: frozenset[int]  # late elapsed items whose copy is done
    elapsed_watermark: int
    learned_offset: str | None = None  # the account's UTC offset, when this run learned it


def settle(snapshot: Snapshot, plan: Plan, applied: ApplyReport, facts: CycleFacts) -> StoreChanges:
    changes = StoreChanges()
    updates = changes.link_updates
    # A deferred issue was not looked at: keep it marked for a full read, and do not record its
    # status (its departure from the handoff status must still be noticed when it is read).
    for issue_id in snapshot.deferred & set(facts.links):
        updates[issue_id] = {"dirty": True}
    # Not reached (a stopped cycle, a replan): read fully next time, its comments were not all forwarded.
    for action in applied.not_reached:
        link = facts.after.get(action.issue_id)
        if link is not None and link.state not in (LinkState.GONE_ISSUE, LinkState.GONE_TASK):
            updates[action.issue_id] = {"dirty": True}
    unfinished = {a.issue_id for a in applied.not_reached} | {a.issue_id for a, _ in applied.failed}
    for issue_id in {a.issue_id for a in plan.actions} - unfinished:  # every planned action went through
        link = facts.after.get(issue_id)
        if link is not None and not link.parked and (link.fail_count or link.dirty or link.last_error):
            updates[issue_id] = {**HEALTHY, "parked": False}

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
    changes.statuses = {i: s for i, s in statuses.items() if i in facts.after}
    changes.read_at = {i: at for i, at in read_at.items() if i in facts.after}

    planned = {a.issue_id for a in plan.actions}
    for issue_id, link in facts.links.items():
        if issue_id in planned or issue_id in snapshot.errors or issue_id not in acted:
            continue
        if link.dirty or link.fail_count or link.last_error:
            # read cleanly with nothing left to do: healthy again (transient read errors must
            # not add up to parking a link)
            updates[issue_id] = dict(HEALTHY)

    changes.meta = _meta(snapshot, facts)
    return changes


def _meta(snapshot: Snapshot, facts: CycleFacts) -> dict[str, str]:
    started = facts.started.isoformat()
    meta = {"okdesk_watermark": started, "bitrix_watermark": started}
    if facts.full_scan and not snapshot.scan_deferred:
        meta |= {"last_full_scan": started, "full_scan_cursor": "0"}
    elif facts.full_scan and snapshot.scanned:  # cut short by the budget: the next cycle goes on from here
        meta["full_scan_cursor"] = str(max(snapshot.scanned))
    if facts.full_listing:
        meta["last_full_listing"] = started
    # The elapsed watermark only passes items that were copied: one whose copy failed is read again.
    watermark = facts.elapsed_watermark
    for item in sorted(snapshot.late_elapsed, key=lambda i: i.id):
        if item.id not in facts.copied_items:
            break
        watermark = max(watermark, item.id)
    meta["elapsed_watermark"] = str(watermark)
    if facts.learned_offset:
        meta["okdesk_utc_offset"] = facts.learned_offset
    return meta
