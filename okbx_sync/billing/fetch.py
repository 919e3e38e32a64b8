"""Billing's reads: what the planner needs from the store and both systems.

Once per cycle (`read_globals`), in requests that do not grow with history:
  store      completions not billed yet, invoices whose note, link or payment note is missing,
             holds not released (typed queries: their cost grows with the open work only);
  Bitrix24   the invoice pipeline's stages, okbx's open invoices by id, okbx's invoices moved
             lately that the store does not know, the overdue invoices that make debtors;
  Okdesk     the open issues of debtor companies, issues in the debt status (holds the store
             lost).
Per page (`read_page`): the issues of the page's completions and holds, and company matching.
Reads that fail for one issue are kept as that issue's error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from .. import keys
from ..clients.bitrix24_crm import CrmClient, Invoice, Stage
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..core.action import WorkLine
from ..core.companies import CompanyMatcher, Unmatched
from ..errors import ApiError
from ..keys import DEFAULT_ROUTE
from ..markup import html_to_text
from ..model import Issue
from ..state.store import Link, Op, Store
from .debt_actions import status_before
from .snapshot import BilledInvoice, Completion, Debt, Hold

log = logging.getLogger(__name__)
CHUNK = 50


@dataclass
class BillingGlobals:
    today: date
    completions: list[Completion] = field(default_factory=list)  # from the store, not billed yet
    invoiced: dict[str, tuple[Decimal, str]] = field(default_factory=dict)  # invoice key -> (total, currency)
    billed: list[BilledInvoice] = field(default_factory=list)
    unknown_invoices: list[tuple[int, int, Invoice]] = field(default_factory=list)
    rowless: frozenset[int] = frozenset()
    debts: dict[int, Debt] = field(default_factory=dict)
    debtor_issues: dict[int, list[Issue]] = field(default_factory=dict)
    unmatched_debtors: dict[int, str] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)
    held_issues: dict[int, Issue] = field(default_factory=dict)  # holds found remotely, read with them

    def issue_ids(self) -> list[int]:
        """Every issue with billing or debt work this cycle, in id order."""
        ids = {c.issue_id for c in self.completions} | {b.issue_id for b in self.billed}
        ids |= {issue_id for issue_id, _, _ in self.unknown_invoices}
        ids |= {issue.id for issues in self.debtor_issues.values() for issue in issues}
        ids |= {hold.issue_id for hold in self.holds if hold.okdesk_company_id not in self.debts}
        return sorted(ids)


def billed(config: Config, route: str) -> bool:
    """Whether the completions of a route are invoiced (a route no longer configured: not any more)."""
    found = config.route(route)
    return found is not None and found.flows.bill


def completion_of(config: Config, summary: Op | None, link: Link | None, key: keys.SummaryKey) -> Completion:
    """A completion from its report's op (route and task kept there since routes) and its link."""
    detail = summary.detail if summary is not None else {}
    route = str(detail.get("route") or (link.route if link else DEFAULT_ROUTE))
    if "target_id" in detail:
        task_id = int(detail["target_id"]) if detail.get("target") == "task" else None
    else:
        task_id = link.task_id if link is not None and link.on_task else None
    return Completion(key.issue_id, key.cycle, task_id, (), route, billed(config, route))


def read_globals(
    config: Config,
    okdesk: OkdeskClient,
    crm: CrmClient,
    store: Store,
    matcher: CompanyMatcher,
    *,
    today: date,
    since: datetime,
) -> BillingGlobals:
    found = BillingGlobals(today=today)
    stages: tuple[int, dict[str, Stage]] | None = None
    if config.billing is not None:
        stages = _stages(config, crm)
        _billed(found, store, crm, stages[1])
        _unknown(found, store, crm, *stages, since=today - timedelta(days=config.time.late_window_days))
        found.rowless = frozenset(i.id for _, _, i in found.unknown_invoices if not crm.invoice_has_lines(i.id))
        # an okbx invoice cut short before its rows says billing was on for its completion, however
        # old (another installation, a lost store): the completion gives it its rows
        cut_short = [keys.SummaryKey(i, c) for i, c, made in found.unknown_invoices if made.id in found.rowless]
        _completions(found, config, store, since, also=cut_short)
    if config.debt is not None:
        stages = stages or _stages(config, crm)
        _debts(found, config, okdesk, crm, matcher, *stages)
        _holds(found, store)
        _holds_found_remotely(found, config, okdesk)
    return found


def work_of(ops: list[Op]) -> tuple[WorkLine, ...]:
    """A report's lines, from the time ops it lists (their detail keeps each line)."""
    lines = []
    for op in sorted(ops, key=lambda o: o.key):
        if op.kind == "time" and op.done:
            user_id = int(op.detail.get("user_id") or 0)
            name = str(op.detail.get("user") or f"Bitrix24 user #{user_id}")
            lines.append(WorkLine(user_id, name, int(op.detail.get("seconds") or 0)))
    return tuple(lines)


def _completions(
    found: BillingGlobals, config: Config, store: Store, since: datetime, *, also: list[keys.SummaryKey]
) -> None:
    """Completions reported since billing was switched on whose invoice is not decided (and `also`
    those, when known), and invoices made whose note or task link is missing (a failure, a run cut short)."""
    reports = [op for op in store.unbilled_completions(since)]
    known = set(op.key for op in reports)
    reports += [op for op in store.ops_by_keys([k.text for k in also]).values() if op.done and op.key not in known]
    by_key = {op.key: op for op in reports}
    follow_ups = store.invoices_missing_follow_ups()
    for op in follow_ups:
        found.invoiced[op.key] = (Decimal(str(op.detail.get("total", "0"))), str(op.detail.get("currency", "")))
    summaries = {keys.parse_as(keys.SummaryKey, op.key) for op in reports}
    for op in follow_ups:
        invoice = keys.parse_as(keys.InvoiceKey, op.key)
        if invoice is not None:
            summaries.add(keys.SummaryKey(invoice.issue_id, invoice.cycle))
    wanted = sorted((k for k in summaries if k is not None), key=lambda k: (k.issue_id, k.cycle))
    lines = store.ops_reported_in(k.text for k in wanted)
    links = store.links_for(k.issue_id for k in wanted)
    for key in wanted:
        made = completion_of(config, by_key.get(key.text) or store.op(key.text), links.get(key.issue_id), key)
        found.completions.append(replace(made, work=work_of(lines.get(key.text, []))))


def _stages(config: Config, crm: CrmClient) -> tuple[int, dict[str, Stage]]:
    """The invoice pipeline (configured, else the default one) and its stages by id."""
    category = config.billing.category_id if config.billing and config.billing.category_id is not None else None
    if category is None:
        category = crm.default_category()
    return category, {stage.id: stage for stage in crm.stages(category)}


def _billed(found: BillingGlobals, store: Store, crm: CrmClient, stages: dict[str, Stage]) -> None:
    """okbx's invoices whose payment note is not written yet, as they are now."""
    waiting = {int(op.remote_id or 0): op.issue_id for op in store.open_invoices()}
    ids = sorted(waiting)
    for start in range(0, len(ids), CHUNK):
        for invoice in crm.invoices({"@id": ids[start : start + CHUNK]}):
            if invoice.id not in waiting:
                continue
            stage = stages.get(invoice.stage_id)
            moved = invoice.moved_at.date() if invoice.moved_at else None
            found.billed.append(
                BilledInvoice(
                    waiting[invoice.id], invoice.id, invoice.account_number, stage.semantics if stage else "", moved
                )
            )


def _unknown(
    found: BillingGlobals, store: Store, crm: CrmClient, category: int, stages: dict[str, Stage], *, since: date
) -> None:
    """okbx's invoices the store does not know (it was lost or restored, or another installation
    made them), moved lately: adopted with their note, and when they reached a final stage their
    payment note is due all the same.  Found by their `xmlId` (`>=movedTime` with a plain date:
    crm-billing.md 2.4, the date form is inferred); one request per cycle, within the late window."""
    finals = {s.id for s in stages.values() if s.semantics in ("S", "F")}
    moved = crm.invoices({"=categoryId": category, ">=movedTime": since.isoformat()})
    ours = {
        inv.id: key
        for inv in moved
        if (key := keys.parse_as(keys.InvoiceKey, (inv.xml_id or "").removeprefix(keys.PREFIX)))
    }
    known = store.ops_by_keys(
        [k.text for k in ours.values()] + [keys.PaidKey(k.issue_id, i).text for i, k in ours.items()]
    )
    billed = {b.invoice_id for b in found.billed}
    for invoice in moved:
        key = ours.get(invoice.id)
        if key is None or invoice.id in billed:
            continue
        op = known.get(key.text)
        if op is not None and op.done and op.remote_id == str(invoice.id):
            continue  # the store knows it (its payment is followed by _billed)
        if op is None or not op.done:  # its note and payment follow once adopted
            found.unknown_invoices.append((key.issue_id, key.cycle, invoice))
        paid = known.get(keys.PaidKey(key.issue_id, invoice.id).text)
        if invoice.stage_id in finals and not (paid and paid.done):
            moved_on = invoice.moved_at.date() if invoice.moved_at else None
            found.billed.append(
                BilledInvoice(
                    key.issue_id, invoice.id, invoice.account_number, stages[invoice.stage_id].semantics, moved_on
                )
            )


def _debts(
    found: BillingGlobals,
    config: Config,
    okdesk: OkdeskClient,
    crm: CrmClient,
    matcher: CompanyMatcher,
    category: int,
    stages: dict[str, Stage],
) -> None:
    assert config.debt is not None
    cutoff = found.today - timedelta(days=config.debt.grace_days)
    finals = sorted(s.id for s in stages.values() if s.semantics in ("S", "F"))
    overdue = crm.invoices({"=categoryId": category, "<closedate": cutoff.isoformat(), "!@stageId": finals})
    oldest: dict[int, Invoice] = {}
    for invoice in overdue:
        # the filter's date form is inferred (open question 8): checked here again
        if invoice.company_id is None or invoice.stage_id not in stages or invoice.stage_id in finals:
            continue
        if invoice.closedate is None or invoice.closedate.date() >= cutoff:
            continue
        known = oldest.get(invoice.company_id)
        if known is None or invoice.id < known.id:
            oldest[invoice.company_id] = invoice
    for crm_company, invoice in sorted(oldest.items()):
        owing = matcher.okdesk_companies_for(crm_company)
        if not owing:  # who owes is unknown now, which is not "nobody owes": no hold is released
            found.unmatched_debtors[crm_company] = (
                f"overdue invoice No. {invoice.account_number} of CRM company {crm_company} matches no Okdesk company"
            )
        for company_id in owing:
            pay_by = invoice.closedate.date() if invoice.closedate else None
            found.debts[company_id] = Debt(
                company_id, invoice.id, invoice.account_number, invoice.opportunity, invoice.currency, pay_by
            )
    for company_id in sorted(found.debts):
        try:
            found.debtor_issues[company_id] = okdesk.list_issues(company_ids=[company_id])
        except ApiError as error:
            log.warning("issues of debtor company %s could not be read: %s", company_id, error)


def _holds(found: BillingGlobals, store: Store) -> None:
    for op in store.open_holds():
        key = keys.parse_as(keys.HoldKey, op.key)
        if key is None:
            continue
        company = int(op.detail.get("okdesk_company_id") or 0)
        until = op.detail.get("delayed_to")
        delayed_to = datetime.fromisoformat(until) if isinstance(until, str) and until else None
        previous = str(op.detail.get("previous_status") or "")
        found.holds.append(Hold(key.issue_id, key.debt_ref, company, previous, delayed_to))


def _holds_found_remotely(found: BillingGlobals, config: Config, okdesk: OkdeskClient) -> None:
    """Holds okbx made that the store does not know (it was lost): the remote side is the truth.

    An issue in the debt status of a company that no longer owes, whose comments carry okbx's
    hold note and no release note for it, is released like any other hold; the note names the
    status it had.  Issues a person put in the debt status carry no such note and stay as they are.
    """
    assert config.debt is not None
    known = {hold.issue_id for hold in found.holds}
    bot = config.okdesk.bot_employee_id
    for issue in okdesk.list_issues(status_codes=[config.debt.status]):
        if issue.id in known or issue.company_id is None or issue.company_id in found.debts:
            continue
        notes = [c for c in okdesk.list_comments(issue.id) if c.author.kind == "employee" and c.author.id == bot]
        written = {k.text for c in notes if (k := keys.in_html(c.content_html)) is not None}
        for comment in reversed(notes):
            hold = keys.in_html(comment.content_html)
            before = status_before(html_to_text(comment.content_html))
            if not isinstance(hold, keys.HoldKey) or hold.issue_id != issue.id or before is None:
                continue
            if hold.release.text not in written:
                found.holds.append(Hold(issue.id, hold.debt_ref, issue.company_id, before[0], before[1]))
                found.held_issues[issue.id] = issue
            break


def match_companies(matcher: CompanyMatcher, company_ids: set[int]) -> tuple[dict[int, int], dict[int, str]]:
    """Okdesk company id -> CRM company id, and why the others are not matched."""
    matched: dict[int, int] = {}
    unmatched: dict[int, str] = {}
    for company_id in sorted(company_ids):
        try:
            matched[company_id] = matcher.crm_company(company_id)
        except Unmatched as why:
            unmatched[company_id] = str(why)
        except ApiError as error:
            unmatched[company_id] = f"company matching failed: {error}"
    return matched, unmatched
