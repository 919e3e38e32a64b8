"""Failures of an issue's work, per track: counted, backed off, parked, healed.

One place for every wing: an action that fails, a read that fails, a completion billing cannot
invoice (no matching company) all count against their track here; after `sync.max_retries`
failures the track is parked and the consultant gets one note in the issue.  The planner leaves
waiting and parked work alone (`waiting`), so nothing is retried every run for ever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from ..config import SyncConfig
from ..state import lifecycle
from ..state.lifecycle import Health, Track
from ..state.store import Store
from .notes import IssueNote, stuck_note
from .plan import Plan


class Failures:
    def __init__(self, store: Store, policy: SyncConfig) -> None:
        self.store = store
        self.policy = policy

    def record(self, issue_id: int, track: Track, error: str, *, transient: bool) -> Health | None:
        """One more failure; the new health when this one parked the work, else None."""
        before = self.store.health(issue_id, track)
        if before is not None and before.parked:
            return None  # a parked track's own note failing adds nothing
        change = lifecycle.failed(
            before,
            issue_id,
            track,
            error,
            transient=transient,
            max_retries=self.policy.max_retries,
            base_seconds=self.policy.retry_base_seconds,
            now=self.store.now(),
        )
        self.store.set_health(change)
        link = self.store.link(issue_id) if track == Track.ROUTE else None
        if link is not None and not link.dirty:
            self.store.apply(lifecycle.marked_dirty(issue_id))  # read fully when it is tried again
        return change.health if change.event == "park" else None

    def heal(self, issue_id: int, track: Track) -> None:
        before = self.store.health(issue_id, track)
        if before is not None and not before.parked:
            self.store.set_health(lifecycle.healed(issue_id, track))

    def note(self, health: Health) -> IssueNote:
        link = self.store.link(health.issue_id)
        return stuck_note(health, link.cycle if link else 0)


def waiting(healths: Iterable[Health], now: datetime) -> dict[int, str]:
    """Issue id -> why its work of this track waits (parked, or backing off)."""
    why: dict[int, str] = {}
    for health in healths:
        if health.parked:
            why[health.issue_id] = "parked after repeated failures"
        elif health.next_retry_at is not None and health.next_retry_at > now:
            why[health.issue_id] = f"waiting to retry at {health.next_retry_at:%H:%M} UTC"
    return why


def without_waiting(
    plan: Plan,
    track: Track,
    healths: dict[int, Health],
    now: datetime,
    done: Callable[[str], bool],
    cycles: dict[int, int],
) -> Plan:
    """The plan without this track's actions of issues waiting for a retry or parked (with why),
    plus the note of a parking the consultant was not told of yet (a crash, a failed note)."""
    why = waiting(healths.values(), now)
    if not why:
        return plan
    kept = Plan(
        actions=[a for a in plan.actions if a.track != track or a.issue_id not in why],
        skipped=dict(plan.skipped),
        blocked=[b for b in plan.blocked if b.track != track or b.issue_id not in why],
        refused=plan.refused,
        held_back=list(plan.held_back),
    )
    for issue_id, reason in why.items():
        kept.skipped[issue_id] = f"{track}: {reason}" if track != Track.ROUTE else reason
        health = healths[issue_id]
        if health.parked and not done((note := stuck_note(health, cycles.get(issue_id, 0))).key):
            kept.actions.append(note)
    return kept
