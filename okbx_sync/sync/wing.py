"""The programmers' route as a wing of the core: its reads, its planner and its bookkeeping.

prepare   a new store adopts what okbx already did (adopt.py); the listings (listing.py); the
          pure selection of what each issue needs read (select.py)
plan_page reads the page (reader.py) and plans it (plan.py), purely
settle    dirty flags, statuses, read marks, healthy links (settle.py); at the end of the cycle
          the watermarks, which move on only when every page was done
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from .. import keys
from ..clients.http import RateLimited
from ..clients.limits import BudgetExhausted, RequestBudget
from ..core.action import Context
from ..core.applier import ApplyReport, Guard
from ..core.health import Failures
from ..core.plan import Blocked, Plan
from ..errors import ApiError
from ..state.store import Link, LinkState, Store, Track
from .adopt import adopt_recent_tasks
from .drift import behind_the_accounts
from .files.route import cycle_files
from .files.wing import RouteFiles
from .listing import OVERLAP, Listing, Window, read_listing
from .plan import build_plan
from .reader import Reader
from .route_reads import RouteReads
from .select import Flags, Seen, Selection, select
from .settle import CycleFacts, cycle_meta, settle_page
from .snapshot import Snapshot, StateView

log = logging.getLogger(__name__)


class RouteWing:
    """Every configured route (the programmers', documents, sales...): one wing, one set of reads."""

    name = "routes"
    guards: tuple[Guard, ...] = (behind_the_accounts,)

    def __init__(
        self,
        ctx: Context,
        failures: Failures,
        budget: RequestBudget | None,
        started: datetime,
        *,
        dry_run: bool,
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.config = ctx.config
        self.failures = failures
        self.budget = budget
        self.started = started
        self.dry_run = dry_run
        self.links: dict[int, Link] = {}
        self.listing = Listing(full=True)
        self.selection = Selection()
        self.flags: Flags | None = None
        self.window: Window | None = None
        self.reader: Reader | None = None
        self._deferred: set[int] = set()
        self._scanned: set[int] = set()
        self._pages: dict[int, Snapshot] = {}
        self.files = RouteFiles(ctx, cycle_files(self.config), started, budget)  # issue 15

    # -- once per cycle -------------------------------------------------------------------------
    def prepare(self) -> None:
        config, store, started = self.config, self.store, self.started
        if not self.dry_run:
            try:
                adopt_recent_tasks(self.ctx, started)
            except (RateLimited, BudgetExhausted):
                raise
            except ApiError as problem:  # tried again next run; the rest of the cycle does not depend on it
                log.warning("could not look for recently completed tasks yet: %s", problem)
        self.links = store.hot_links(started - timedelta(days=config.time.late_window_days))
        if offset := store.get_meta("okdesk_utc_offset"):
            self.ctx.okdesk.assume_offset(offset)
        self.window = self._window()
        self.listing = read_listing(
            self.ctx.okdesk, self.ctx.bitrix, config, self.links, self.window, now=started, load_links=store.links_for
        )
        last_full = _meta_time(store, "last_full_scan")
        full_scan = (
            config.okdesk.comment_detection == "full"
            or last_full is None
            or (started - last_full).total_seconds() >= config.okdesk.full_scan_minutes * 60
        )
        self.flags = Flags(
            handoff_status=config.routes[0].status,
            done_statuses=frozenset(config.bitrix24.done_statuses),
            full_listing=self.listing.full,
            full_scan=full_scan,
            first_cycle=self.window.okdesk_since is None,
            scan_after=int(store.get_meta("full_scan_cursor") or 0),
            scan_quota=None if config.okdesk.comment_detection == "full" else config.okdesk.scan_per_cycle,
            route_status={route.name: route.status for route in config.routes},
        )
        listing = self.listing
        late_files = self.files.prepare(self.links, set(listing.handoff))
        seen = Seen(
            handoff=frozenset(listing.handoff),
            seen_status=listing.seen_status,
            seen_updated=listing.seen_updated,
            tasks=listing.tasks,
            task_errors=frozenset(listing.errors),
            late_tasks=frozenset(item.task_id for item in listing.late_elapsed) | late_files,
            unposted_late=frozenset(store.unposted_late_reports()),
            now=started,
            deals=listing.deals,
        )
        self.selection = select(self.links, seen, self.flags)
        extras = RouteReads.of(self.ctx.okdesk, self.ctx.bitrix, config)
        self.reader = Reader(self.ctx.okdesk, self.ctx.bitrix, config, listing, self.budget, extras=extras)

    def _window(self) -> Window:
        store, config, started = self.store, self.config, self.started
        last_listing = _meta_time(store, "last_full_listing")
        active = sum(1 for link in self.links.values() if link.state == LinkState.ACTIVE)
        full_listing = (
            last_listing is None
            or (started - last_listing).total_seconds() >= config.sync.full_listing_minutes * 60
            or active < config.sync.full_listing_below
        )
        return Window(
            okdesk_since=_meta_time(store, "okdesk_watermark"),
            tasks_since=_meta_time(store, "bitrix_watermark"),
            elapsed_after=int(store.get_meta("elapsed_watermark") or 0),
            full_listing=full_listing,
            # a server clock that is off (measured by the last cycles) widens every change window
            overlap=OVERLAP + timedelta(seconds=float(store.get_meta(SKEW) or 0)),
        )

    def work(self) -> list[int]:
        return self.selection.ids()

    def foreseen(self) -> tuple[set[int], set[int]]:
        """Links whose task was found deleted: the safety policy counts them before any page."""
        gone = {
            issue_id
            for issue_id, link in self.links.items()
            if link.state == LinkState.ACTIVE
            and link.task_id is not None
            and (self.listing.tasks if link.on_task else self.listing.deals).get(link.task_id, 0) is None
        }
        return gone, set()

    # -- per page -------------------------------------------------------------------------------
    def plan_page(self, page: list[int], so_far: Plan) -> Plan:
        assert self.reader is not None
        mine = set(page)
        work = self.files.reads([w for w in self.selection.work if w.issue_id in mine], self.links)
        links = {i: self.links[i] for i in page if i in self.links}
        snapshot = self.reader.read_page(work, self.links)
        self.files.read_page(snapshot, work, self.links)
        for issue_id, comments in snapshot.comments.items():  # a write looks for its marker among them
            self.ctx.remote.read_issue(issue_id, comments)
        self._pages[page[0]] = snapshot
        self._scanned |= snapshot.scanned
        state = StateView(links=links, ops=self.store.ops_for(mine))
        plan = self.files.fit(build_plan(snapshot, state, self.config, self.started), snapshot)
        self._deferred |= snapshot.deferred
        for issue_id, why in snapshot.errors.items():  # a read that failed: tried again at the next run
            plan.blocked.append(Blocked(issue_id, Track.ROUTE, "read", why, transient=True, recorded=issue_id in links))
        return plan

    def settle_page(self, page: list[int], plan: Plan, applied: ApplyReport) -> None:
        snapshot = self._pages.pop(page[0], Snapshot())
        before = {i: self.links[i] for i in page if i in self.links}
        touched = set(snapshot.seen_status) | set(snapshot.issues) | set(snapshot.comments) | set(page)
        after = self.store.links_for(touched)
        changes = settle_page(snapshot, plan, applied, before, after)
        for change in changes.links:
            self.store.apply(change)
        for issue_id in changes.healthy:
            self.failures.heal(issue_id, Track.ROUTE)
        self.store.observe_statuses(changes.statuses, changes.read_at)
        if snapshot.scanned:  # the comment scan goes on from here even if this run is cut short now
            self.store.set_meta("full_scan_cursor", str(max(snapshot.scanned)))

    def deferred(self) -> set[int]:
        return set(self._deferred)

    def finish(self, complete: bool) -> None:
        assert self.window is not None and self.flags is not None
        complete = self._clocks(complete)
        # statuses of listed linked issues with no work this cycle (a gone link's issue leaving the
        # handoff status is how a later return to it is recognised as a new handoff)
        quiet = set(self.listing.seen_status) - set(self.selection.ids()) - self.selection.scan_deferred
        seen = {i: self.listing.seen_status[i] for i in quiet if i in self.links}
        if seen:
            self.store.observe_statuses(seen, {})
        learned = self.ctx.okdesk.learned_offset()
        late = self.listing.late_elapsed
        copied = self.store.ops_by_keys(keys.TimeKey(item.id).text for item in late)
        facts = CycleFacts(
            started=self.started,
            complete=complete,
            full_scan=self.flags.full_scan,
            full_listing=self.listing.full,
            scanned=frozenset(self._scanned),
            scan_deferred=frozenset(self.selection.scan_deferred | self._deferred),
            late_items=tuple(item.id for item in late),
            copied_items=frozenset(
                item.id for item in late if (op := copied.get(keys.TimeKey(item.id).text)) is not None and op.done
            ),
            elapsed_watermark=self.window.elapsed_after,
            learned_offset=learned if learned != self.store.get_meta("okdesk_utc_offset") else None,
        )
        for key, value in cycle_meta(facts).items():
            self.store.set_meta(key, value)
        self.files.finish()

    def _clocks(self, complete: bool) -> bool:
        """Compare each server's clock (the Date of its last answer) with ours.  Off by more than a
        minute: say so, and widen the change windows by that much from now on; and when this
        cycle's window was narrower than the skew, keep the watermarks where they were, so the
        next cycle lists the same window again, widened, and misses nothing."""
        now = self.ctx.store.now()
        skews = {
            "Okdesk": self.ctx.okdesk.server_skew(now),
            "Bitrix24": self.ctx.bitrix.server_skew(now),
        }
        worst = max((abs(s) for s in skews.values() if s is not None), default=0.0)
        assumed = float(self.store.get_meta(SKEW) or 0)
        if worst > MAX_SKEW:
            words = "; ".join(
                f"the {name} server's clock is {abs(s):.0f} s {'ahead of' if s > 0 else 'behind'} this machine's"
                for name, s in skews.items()
                if s is not None and abs(s) > MAX_SKEW
            )
            log.warning(
                "%s: change windows are widened by %.0f s so nothing is missed; fix the clocks (NTP)", words, worst
            )
        if (worst > MAX_SKEW) != (assumed > 0) or worst > assumed + MAX_SKEW:
            self.store.set_meta(SKEW, f"{worst:.0f}" if worst > MAX_SKEW else "0")
        return complete and worst <= assumed + MAX_SKEW


SKEW = "clock_skew_seconds"  # the largest skew a server's clock showed lately (meta)
MAX_SKEW = 60.0  # seconds: less is normal drift, covered by the change windows' overlap


def _meta_time(store: Store, key: str) -> datetime | None:
    text = store.get_meta(key)
    return datetime.fromisoformat(text) if text else None
