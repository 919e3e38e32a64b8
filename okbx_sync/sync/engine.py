"""One sync cycle: fetch both systems, plan, and (unless a dry run) apply.

Dry run means "stop after planning": the flag is checked here once; the applier never sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .. import billing
from ..clients.bitrix24 import Bitrix24Client
from ..clients.http import BudgetExhausted, RateLimited, RequestBudget
from ..clients.okdesk import OkdeskClient
from ..clock import REAL_CLOCK, Clock
from ..config import Config
from ..errors import ApiError, OkbxError
from ..secrets import Redactor
from ..state.store import Link, LinkState, OpState, Store
from . import keys
from .actions import Action
from .adopt import adopt_recent_tasks
from .apply import Applier, ApplyReport
from .fetch import fetch_snapshot
from .plan import Plan, build_plan
from .settle import CycleFacts, StoreChanges, settle
from .snapshot import Snapshot, StateView

log = logging.getLogger(__name__)


class UnsafePlan(OkbxError):
    """The plan touches an unusual share of links at once; refused unless forced."""


@dataclass
class Clients:
    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    budget: RequestBudget

    @classmethod
    def build(cls, config: Config, redactor: Redactor, clock: Clock = REAL_CLOCK) -> Clients:
        budget = RequestBudget(
            config.sync.max_requests_per_cycle, seconds=config.sync.max_seconds, monotonic=clock.monotonic
        )
        backoff_seconds = config.sync.backoff_seconds
        return cls(
            OkdeskClient(config.okdesk, redactor, budget=budget, backoff_seconds=backoff_seconds, clock=clock),
            Bitrix24Client(config.bitrix24, redactor, budget=budget, backoff_seconds=backoff_seconds, clock=clock),
            budget,
        )

    def requests_sent(self) -> dict[str, int]:
        return {"okdesk": self.okdesk.requests_sent, "bitrix24": self.bitrix.requests_sent}

    def close(self) -> None:
        self.okdesk.close()
        self.bitrix.close()


@contextmanager
def opened(
    config: Config,
    redactor: Redactor,
    crash_after: str | None = None,
    clock: Clock = REAL_CLOCK,
    *,
    read_only: bool = False,
) -> Iterator[tuple[Clients, Store]]:
    """The clients and the state store for one cycle, closed afterwards whatever happens.
    `read_only` (a dry run): the store is an in-memory copy, and nothing is written to disk."""
    store = Store(config.state.path, clock=clock.now, crash_after=crash_after, read_only=read_only)
    try:
        clients = Clients.build(config, redactor, clock)
        try:
            yield clients, store
        finally:
            clients.close()
    finally:
        store.close()


@dataclass
class CycleResult:
    plan: Plan
    snapshot: Snapshot
    applied: ApplyReport | None = None
    read_errors: dict[int, str] = field(default_factory=dict)
    billing: billing.BillingResult | None = None  # issue 10; None when billing and debt are off
    billing_error: str | None = None

    @property
    def ok(self) -> bool:
        billed = self.billing is None or self.billing.ok
        return (
            not self.read_errors
            and not self.billing_error
            and billed
            and (self.applied is None or not self.applied.failed)
        )


def run_cycle(
    config: Config,
    clients: Clients,
    store: Store,
    *,
    dry_run: bool = False,
    force: bool = False,
    now: datetime | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_action: Callable[[Action, str], None] = lambda a, o: None,
    on_plan: Callable[[Plan], None] = lambda plan: None,
) -> CycleResult:
    started = now or store.now()
    if not dry_run:
        try:
            adopt_recent_tasks(clients.okdesk, clients.bitrix, store, config, started)
        except (RateLimited, BudgetExhausted):
            raise
        except ApiError as problem:  # tried again next run; the rest of the cycle does not depend on it
            log.warning("could not look for recently completed tasks yet: %s", problem)
    links = store.hot_links(started - timedelta(days=config.time.late_window_days))
    watermark = _meta_time(store, "okdesk_watermark")
    last_full = _meta_time(store, "last_full_scan")
    full_scan = (
        config.okdesk.comment_detection == "full"
        or last_full is None
        or (started - last_full).total_seconds() >= config.okdesk.full_scan_minutes * 60
    )
    last_listing = _meta_time(store, "last_full_listing")
    full_listing = (
        last_listing is None
        or (started - last_listing).total_seconds() >= config.sync.full_listing_minutes * 60
        or sum(1 for link in links.values() if link.state == LinkState.ACTIVE) < config.sync.full_listing_below
    )
    if offset := store.get_meta("okdesk_utc_offset"):
        clients.okdesk.assume_offset(offset)
    elapsed_after = int(store.get_meta("elapsed_watermark") or 0)

    snapshot = fetch_snapshot(
        clients.okdesk,
        clients.bitrix,
        config,
        links,
        watermark=watermark,
        elapsed_after=elapsed_after,
        full_scan=full_scan,
        now=started,
        budget=clients.budget,
        scan_after=int(store.get_meta("full_scan_cursor") or 0),
        full_listing=full_listing,
        tasks_changed_since=_meta_time(store, "bitrix_watermark"),
        load_links=store.links_for,
        scan_quota=None if config.okdesk.comment_detection == "full" else config.okdesk.scan_per_cycle,
    )
    state = StateView(links=links, ops=store.ops_for(sorted(_planning_scope(store, links, snapshot))))
    plan = build_plan(snapshot, state, config, started)
    result = CycleResult(plan=plan, snapshot=snapshot, read_errors=dict(snapshot.errors))
    if dry_run:
        _run_billing(result, config, clients, store, started, dry_run=True, force=force)
        return result
    if not force and (why := plan.unusual(state, config)):
        raise UnsafePlan(
            f"refused: {why}. Nothing was written. Check both systems; if the change is real, run `okbx sync --force`."
        )

    on_plan(plan)
    applier = Applier(
        clients.okdesk,
        clients.bitrix,
        store,
        config,
        should_stop=should_stop,
        on_action=on_action,
        issue_comments=snapshot.comments,
    )
    for issue_id in snapshot.errors:  # a read that failed: tried again at the next run, then later
        if issue_id in links:
            applier.record_failure(issue_id, snapshot.errors[issue_id], transient=True)
    result.applied = applier.apply(plan.by_issue())

    learned = clients.okdesk.learned_offset()
    touched = set(snapshot.seen_status) | set(snapshot.issues) | set(snapshot.comments) | set(plan.by_issue())
    facts = CycleFacts(
        started=started,
        links=links,
        after=store.links_for(touched),
        full_scan=full_scan,
        full_listing=full_listing,
        copied_items=frozenset(
            item.id
            for item in snapshot.late_elapsed
            if (op := store.op(keys.time_entry(item.id).text)) is not None and op.state == OpState.DONE
        ),
        elapsed_watermark=int(store.get_meta("elapsed_watermark") or 0),
        learned_offset=learned if learned != offset else None,
    )
    _save(store, settle(snapshot, plan, result.applied, facts))
    if result.applied.stopped_because is None:  # a rate-limited, spent or stopped cycle sends nothing more
        _run_billing(result, config, clients, store, started, dry_run=False, force=force)
    return result


def _save(store: Store, changes: StoreChanges) -> None:
    for issue_id, fields in changes.link_updates.items():
        store.update_link(issue_id, **fields)
    store.observe_statuses(changes.statuses, changes.read_at)
    for key, value in changes.meta.items():
        store.set_meta(key, value)


def _meta_time(store: Store, key: str) -> datetime | None:
    text = store.get_meta(key)
    return datetime.fromisoformat(text) if text else None


def _planning_scope(store: Store, links: dict[int, Link], snapshot: Snapshot) -> set[int]:
    """The links whose ops the planner reads: a done link with nothing new (the bulk of the
    store) plans nothing, so its ops are not loaded."""
    late_tasks = {item.task_id for item in snapshot.late_elapsed}
    scope = {
        issue_id
        for issue_id, link in links.items()
        if link.state != LinkState.DONE or link.parked or link.fail_count or link.dirty or link.task_id in late_tasks
    }
    return scope | set(snapshot.handoff) | store.issues_with_unposted_reports()


def _run_billing(
    result: CycleResult, config: Config, clients: Clients, store: Store, now: datetime, *, dry_run: bool, force: bool
) -> None:
    """Issue 10: billing runs after the sync's own apply, on the same clients and store."""
    if not billing.enabled(config):
        return
    try:
        result.billing = billing.run(config, clients.okdesk, clients.bitrix, store, now, dry_run=dry_run, force=force)
    except OkbxError as error:
        result.billing_error = f"billing: {error}"
