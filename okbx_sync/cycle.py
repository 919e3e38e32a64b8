"""One sync cycle of the whole bridge: the wings the configuration switches on, on the core.

The programmers' route always runs; billing and the debt hold when their sections are there.
This module only composes (`core/engine.py` runs the cycle): the clients, the store, the
failures, the safety policy and the wings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from .billing.wing import BillingWing
from .clients.bundle import Clients
from .clock import REAL_CLOCK, Clock
from .config import Config
from .core.action import Action, Context
from .core.engine import PAGE, CycleResult, Wing, run_cycle
from .core.health import Failures
from .core.plan import Plan, Safety
from .core.remote import RemoteMarkers
from .secrets import Redactor
from .state import lifecycle
from .state.lifecycle import Track
from .state.store import LinkState, Store
from .sync.wing import RouteWing

__all__ = ["Clients", "CycleResult", "opened", "sync_cycle"]


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


def billing_enabled(config: Config) -> bool:
    return config.billing is not None or config.debt is not None


def sync_cycle(
    config: Config,
    clients: Clients,
    store: Store,
    *,
    dry_run: bool = False,
    force: bool = False,
    now: datetime | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_action: Callable[[Action, str], None] = lambda a, o: None,
    on_page: Callable[[Plan], None] = lambda plan: None,
) -> CycleResult:
    started = now or store.now()
    ctx = Context(
        clients.okdesk,
        clients.bitrix,
        clients.crm,
        store,
        config,
        RemoteMarkers(
            clients.okdesk, clients.bitrix, config.okdesk.bot_employee_id, max_file_bytes=config.files.max_file_bytes
        ),
    )
    failures = Failures(store, config.sync)
    wings: list[Wing] = [RouteWing(ctx, failures, clients.budget, started, dry_run=dry_run)]
    if billing_enabled(config):
        wings.append(BillingWing(ctx, started, dry_run=dry_run))
    if not dry_run:
        _end_switched_off(config, store)
    active = store.count_links(LinkState.ACTIVE)
    # a page is about ten seconds of reading at the Okdesk rate (two reads per new issue), so a run
    # cut short at any moment loses at most that much reading: 15 issues at the default 3 requests/s
    page_size = max(10, min(PAGE, round(config.okdesk.requests_per_second * 10 / 2)))
    return run_cycle(
        ctx,
        wings,
        failures=failures,
        safety=Safety(config, active, force=force),
        dry_run=dry_run,
        should_stop=should_stop,
        on_action=on_action,
        on_page=on_page,
        page_size=page_size,
    )


def _end_switched_off(config: Config, store: Store) -> None:
    """Billing or debt work failing (even parked) when its section was removed: nothing is tried
    any more, so nothing is failing; `okbx status` would otherwise stay at 1 until `okbx retry`."""
    off = {Track.BILLING} if config.billing is None else set()
    off |= {Track.DEBT} if config.debt is None else set()
    for health in store.failing() if off else []:
        if health.track in off:
            store.set_health(lifecycle.healed(health.issue_id, health.track))
