"""Billing and the debt hold as a wing of the core: the same pages, plan, applier and failures.

prepare    the cycle's reads (fetch.read_globals); the first run with billing on records when
           billing began, so earlier completions are never invoiced
plan_page  the page's issues and company matches, then the pure planner (plan.py), with the
           completions the route reports in this same page; work of a track that waits for a
           retry or is parked is left out (and a parking's note is planned when it is missing)
Failures are the core's: counted per issue on the billing or debt track, backed off, parked.
"""

from __future__ import annotations

import logging
from datetime import datetime

from .. import keys
from ..core.action import Context
from ..core.applier import ApplyReport, Guard
from ..core.companies import CompanyMatcher
from ..core.health import without_waiting
from ..core.plan import Plan
from ..errors import ApiError, NotFound
from ..model import Issue
from ..state import lifecycle
from ..state.lifecycle import Track
from .fetch import BillingGlobals, billed, match_companies, read_globals
from .plan import build_billing_plan
from .snapshot import BillingSnapshot, Completion

log = logging.getLogger(__name__)
SINCE = "billing_since"


class BillingWing:
    name = "billing"
    guards: tuple[Guard, ...] = ()

    def __init__(self, ctx: Context, started: datetime, *, dry_run: bool) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.config = ctx.config
        self.started = started
        self.dry_run = dry_run
        self.matcher = CompanyMatcher(ctx.okdesk, ctx.crm, ctx.config.billing)
        self.globals: BillingGlobals | None = None
        self._idle: set[tuple[int, Track]] = set()  # failing work the planner found nothing left of

    def prepare(self) -> None:
        since_text = self.store.get_meta(SINCE)
        since = datetime.fromisoformat(since_text) if since_text else self.started
        self.globals = read_globals(
            self.config, self.ctx.okdesk, self.ctx.crm, self.store, self.matcher, today=self.started.date(), since=since
        )
        if since_text is None and not self.dry_run:
            self.store.set_meta(SINCE, self.started.isoformat())  # earlier completions are never billed

    def work(self) -> list[int]:
        """Issues with billing or debt work, and those whose billing or debt work is failing: if
        the planner finds nothing left to do for them, their failures are over (settle_page)."""
        if self.globals is None:
            return []
        failing = {h.issue_id for h in self.store.failing() if h.track in (Track.BILLING, Track.DEBT)}
        return sorted(set(self.globals.issue_ids()) | failing)

    def foreseen(self) -> tuple[set[int], set[int]]:
        """Issues the debt hold would move this cycle, counted before any page for the safety policy:
        the holds exactly as the planner decides them, the releases of every hold whose company no
        longer owes (a person may have moved one out meanwhile: then it is counted and left alone)."""
        if self.globals is None or self.config.debt is None:
            return set(), set()
        found, debt = self.globals, self.config.debt
        held = {hold.issue_id for hold in found.holds}
        candidates = {
            issue.id: keys.HoldKey(issue.id, found.debts[company].oldest_invoice_id)
            for company, issues in found.debtor_issues.items()
            for issue in issues
            if issue.id not in held
            and issue.status not in debt.skip_statuses
            and issue.type_code not in debt.exempt_types
            and issue.priority_code not in debt.exempt_priorities
        }
        ops = self.store.ops_by_keys(k.text for k in candidates.values())
        status = {issue.id: issue.status for issues in found.debtor_issues.values() for issue in issues}
        moving = {
            issue_id
            for issue_id, key in candidates.items()
            if not (op := ops.get(key.text)) or not op.done
            if status[issue_id] != debt.status or (op is not None and op.unsure)
        }
        moving |= {hold.issue_id for hold in found.holds if hold.okdesk_company_id not in found.debts}
        return set(), moving

    def plan_page(self, page: list[int], so_far: Plan) -> Plan:
        found = self.globals
        assert found is not None
        mine = set(page)
        snap = self._snapshot(found, mine, so_far)
        plan = build_billing_plan(snap, self.config, self.started)
        busy = {(a.issue_id, a.track) for a in plan.actions} | {(b.issue_id, b.track) for b in plan.blocked}
        for track in (Track.BILLING, Track.DEBT):
            healths = self.store.health_of(track, mine)
            # failing (even parked) work the planner finds nothing left of: the cause went away
            self._idle |= {(i, track) for i in healths if (i, track) not in busy}
            cycles = {i: link.cycle for i, link in self.store.links_for(healths).items()}
            plan = without_waiting(plan, track, healths, self.started, self._done, cycles)
        return plan

    def _done(self, key: str) -> bool:
        op = self.store.op(key)
        return op is not None and op.done

    def _snapshot(self, found: BillingGlobals, mine: set[int], so_far: Plan) -> BillingSnapshot:
        completions = [c for c in found.completions if c.issue_id in mine]
        known = {(c.issue_id, c.cycle) for c in completions}
        links = self.store.links_for(mine)
        completed = {i for i, link in links.items() if link.state == "done"}
        for action in so_far.actions:  # reported in this very page: billed now too
            done = action.completes()
            if done is not None and done.issue_id in mine:
                completed.add(done.issue_id)  # its task is done: a release must not hand it off again
            if done is not None and done.issue_id in mine and (done.issue_id, done.cycle) not in known:
                link = links.get(done.issue_id)
                task_id = done.task_id if done.task_id is not None or link is None or not link.on_task else link.task_id
                route = done.route
                completions.append(
                    Completion(done.issue_id, done.cycle, task_id, done.work, route, billed(self.config, route))
                )
        snap = BillingSnapshot(
            today=found.today,
            completions=completions,
            invoiced={k: v for k, v in found.invoiced.items() if _issue_of(k) in mine},
            billed=[b for b in found.billed if b.issue_id in mine],
            unknown_invoices=[u for u in found.unknown_invoices if u[0] in mine],
            rowless=found.rowless,
            debts=found.debts,
            debtor_issues={c: [i for i in issues if i.id in mine] for c, issues in found.debtor_issues.items()},
            holds=[h for h in found.holds if h.issue_id in mine],
            unmatched_debtors=found.unmatched_debtors,
            task_of={i: link.task_id for i, link in links.items() if link.task_id is not None},
            completed_links=frozenset(completed),
        )
        self._read_issues(snap, found, completions)
        matched, unmatched = match_companies(
            self.matcher, {i.company_id for i in snap.issues.values() if i.company_id is not None}
        )
        snap.crm_company, snap.unmatched = matched, unmatched
        ops = self.store.ops_by_keys(_candidate_keys(snap))
        snap.done = frozenset(k for k, op in ops.items() if op.done)
        snap.unsure = frozenset(k for k, op in ops.items() if op.unsure)
        return snap

    def _read_issues(self, snap: BillingSnapshot, found: BillingGlobals, completions: list[Completion]) -> None:
        """The issues of completions not invoiced yet (billable? whose company?) and of holds."""
        wanted = [
            c.issue_id
            for c in completions
            if c.billed and keys.InvoiceKey(c.issue_id, c.cycle).text not in snap.invoiced
        ]
        wanted += [h.issue_id for h in snap.holds if h.okdesk_company_id not in snap.debts]
        for issue_id in sorted(set(wanted)):
            known: Issue | None = found.held_issues.get(issue_id)
            if known is not None:
                snap.issues[issue_id] = known
                continue
            try:
                snap.issues[issue_id] = self.ctx.okdesk.get_issue(issue_id)
            except ApiError as error:
                snap.errors[issue_id] = str(error)
                if isinstance(error, NotFound):
                    snap.gone.add(issue_id)

    def settle_page(self, page: list[int], plan: Plan, applied: ApplyReport) -> None:
        """Failures of billing or debt work with nothing left to do end here; the engine heals and
        counts the rest, for every track alike."""
        for issue_id, track in sorted(self._idle):
            if issue_id in page:
                self.store.set_health(lifecycle.healed(issue_id, track))
        self._idle = {(i, t) for i, t in self._idle if i not in page}

    def deferred(self) -> set[int]:
        return set()

    def finish(self, complete: bool) -> None:
        """Billing keeps no watermark: its open work is read from the store each cycle."""


def _issue_of(key_text: str) -> int | None:
    key = keys.parse(key_text)
    return key.issue if key is not None else None


def _candidate_keys(snap: BillingSnapshot) -> list[str]:
    """The op keys the planner asks about for this page: read in one query."""
    wanted: list[keys.Key] = []
    for c in snap.completions:
        wanted += [keys.InvoiceKey(c.issue_id, c.cycle), keys.InvoiceNoteKey(c.issue_id, c.cycle)]
        wanted.append(keys.TaskLinkKey(c.issue_id, c.cycle))
    for issue_id, cycle, _ in snap.unknown_invoices:
        wanted += [keys.InvoiceNoteKey(issue_id, cycle), keys.TaskLinkKey(issue_id, cycle)]
    wanted += [keys.PaidKey(b.issue_id, b.invoice_id) for b in snap.billed]
    for company_id, issues in snap.debtor_issues.items():
        if company_id in snap.debts:
            wanted += [keys.HoldKey(i.id, snap.debts[company_id].oldest_invoice_id) for i in issues]
    wanted += [keys.ReleaseKey(h.issue_id, h.debt_ref) for h in snap.holds]
    return [k.text for k in wanted]
