"""The billing planner: a pure function from a BillingSnapshot to the core's Plan (tested with literals).

Decision table, per completion / invoice / debtor issue / hold:
  completion, issue not billable             -> SkipInvoice (decided once)
  completion, company not matched            -> blocked (a failure of that issue, never a guess)
  completion, billable                       -> CreateInvoice, then NoteInvoice and LinkInvoiceToTask
  invoice created, note or task link missing -> NoteInvoice / LinkInvoiceToTask
  okbx invoice in a final stage, no note yet -> NoteInvoicePaid (paid or declined)
  okbx invoice unknown to the store (lately) -> AdoptInvoice, then NoteInvoice (each looked for first)
  debtor's open issue, not exempt, not held  -> HoldIssue (unless a hold of it is still open)
  hold open, company no longer a debtor      -> ReleaseIssue (to `delayed` with its date, or, when
                                                that date passed, to debt.expired_delay_status),
                                                or LeaveAlone if a person moved it out, or
                                                EndHold if it was deleted (a failure if unreadable)
A completion reported in this same cycle is billed in this cycle (its summary comes first in
the issue's actions: if the summary fails, the invoice waits), so a dry run shows it too.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from .. import keys
from ..clients.bitrix24_crm import InvoiceLine
from ..config import BillingConfig, Config, DebtConfig
from ..core.action import Action
from ..core.plan import Blocked, Plan
from ..markup import MAX_TITLE, one_line
from ..model import Issue
from ..state.lifecycle import Track
from .actions import (
    AdoptInvoice,
    CreateInvoice,
    LinkInvoiceToTask,
    NoteInvoice,
    NoteInvoicePaid,
    SkipInvoice,
    money,
)
from .debt_actions import DELAYED, EndHold, HoldIssue, LeaveAlone, ReleaseIssue
from .snapshot import BillingSnapshot, Completion, Debt, Hold


def build_billing_plan(snap: BillingSnapshot, config: Config, now: datetime) -> Plan:
    plan = Plan()
    if config.billing is not None:
        for completion in snap.completions:
            _bill(plan, completion, snap, config.billing)
        _adopt_unknown(plan, snap, config.billing)
        _payments(plan, snap, config.billing)
    if config.debt is not None:
        _holds(plan, snap, config.debt)
        _releases(plan, snap, config.debt, config, now)
    return plan


def billable(issue: Issue, billing: BillingConfig) -> str | None:
    """Why an issue is NOT billable, or None when it is."""
    if billing.billable_types and issue.type_code not in billing.billable_types:
        return f"issue type '{issue.type_code}' is not in billing.billable_types"
    if billing.billable_parameter:
        value = dict(issue.parameters).get(billing.billable_parameter)
        if value in (None, False, "", [], "false", "0"):
            return f"issue parameter '{billing.billable_parameter}' is not set"
    return None


def invoice_lines(completion: Completion, billing: BillingConfig) -> tuple[InvoiceLine, ...]:
    """One line per programmer: hours (rounded up to round_minutes, then to 0.01 h) x rate."""
    seconds: dict[tuple[int, str], int] = {}
    for row in completion.work:
        seconds[(row.user_id, row.user_name)] = seconds.get((row.user_id, row.user_name), 0) + row.seconds
    lines = []
    for (user_id, name), total in sorted(seconds.items()):
        minutes = math.ceil(total / 60 / billing.round_minutes) * billing.round_minutes
        hours = (Decimal(minutes) / 60).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
        rate = Decimal(str(billing.rates.get(user_id, billing.default_rate)))
        lines.append(InvoiceLine(f"Okdesk #{completion.issue_id}: work of {name}", rate, hours))
    return tuple(lines)


def _follow_ups(
    plan: Plan,
    snap: BillingSnapshot,
    issue_id: int,
    cycle: int,
    total: Decimal,
    currency: str,
    task_id: int | None,
    public: bool,
) -> None:
    """The invoice's note in the issue and its link in the task, each unless done."""
    if keys.InvoiceNoteKey(issue_id, cycle).text not in snap.done:
        plan.actions.append(NoteInvoice(issue_id, cycle=cycle, total=total, currency=currency, public=public))
    if keys.TaskLinkKey(issue_id, cycle).text not in snap.done and task_id is not None:
        plan.actions.append(LinkInvoiceToTask(issue_id, cycle=cycle, task_id=task_id))


def _bill(plan: Plan, completion: Completion, snap: BillingSnapshot, billing: BillingConfig) -> None:
    issue_id, cycle = completion.issue_id, completion.cycle
    invoice_key = keys.InvoiceKey(issue_id, cycle)
    if invoice_key.text in snap.done:
        if invoice_key.text in snap.invoiced:  # its note or task link failed or was cut off
            total, currency = snap.invoiced[invoice_key.text]
            _follow_ups(plan, snap, issue_id, cycle, total, currency, completion.task_id, billing.note_public)
        return
    if not completion.billed:  # a route that says so (routes: flows.bill false), decided once
        plan.actions.append(SkipInvoice(issue_id, cycle=cycle, reason=f"route {completion.route} is not billed"))
        return
    issue = snap.issues.get(issue_id)
    if issue is None:
        unread = snap.errors.get(issue_id, "the issue could not be read")
        plan.blocked.append(Blocked(issue_id, Track.BILLING, "invoice", unread, transient=True))
        return
    if why := billable(issue, billing):
        plan.actions.append(SkipInvoice(issue_id, cycle=cycle, reason=why))
        return
    if issue.company_id is None:
        plan.actions.append(SkipInvoice(issue_id, cycle=cycle, reason="the issue has no client company"))
        return
    crm_company = snap.crm_company.get(issue.company_id)
    if crm_company is None:
        why = snap.unmatched.get(issue.company_id, "not matched")
        company = f"Okdesk company {issue.company_id}"
        if company not in why:  # the matcher's own words may name it already
            why = f"{company} ({issue.company}): {why}" if issue.company else f"{company}: {why}"
        plan.blocked.append(Blocked(issue_id, Track.BILLING, "invoice", why))
        return
    lines = invoice_lines(completion, billing)
    if not lines:
        plan.actions.append(SkipInvoice(issue_id, cycle=cycle, reason="no time was logged"))
        return
    title = one_line(issue.title, MAX_TITLE)  # a document the client receives: no controls, no bidi tricks
    invoice = CreateInvoice(
        issue_id,
        cycle=cycle,
        company_id=crm_company,
        okdesk_company_id=issue.company_id,
        title=f"Okdesk #{issue_id}: {title}",
        lines=lines,
        currency=billing.currency,
        pay_by=snap.today + timedelta(days=billing.pay_days),
        comments=f"Okdesk issue #{issue_id} «{title}»; Bitrix24 task #{completion.task_id}",
        mycompany_id=billing.mycompany_id,
    )
    plan.actions.append(invoice)
    _follow_ups(plan, snap, issue_id, cycle, invoice.total, billing.currency, completion.task_id, billing.note_public)


def _adopt_unknown(plan: Plan, snap: BillingSnapshot, billing: BillingConfig) -> None:
    billed_now = {a.key for a in plan.actions}
    for issue_id, cycle, made in snap.unknown_invoices:
        adopt = AdoptInvoice(issue_id, cycle=cycle, invoice_id=made.id, total=made.opportunity, currency=made.currency)
        if adopt.key in billed_now:  # its completion is planned above: CreateInvoice finds it first
            continue
        if made.id in snap.rowless:  # never a guess: a person completes it, and okbx goes on then
            why = f"invoice No. {made.account_number} was made by okbx but has no rows (its run was cut short)"
            plan.blocked.append(Blocked(issue_id, Track.BILLING, "invoice", f"{why}: add its rows in Bitrix24"))
            continue
        plan.actions.append(adopt)
        task_id = snap.task_of.get(issue_id)
        _follow_ups(plan, snap, issue_id, cycle, made.opportunity, made.currency, task_id, billing.note_public)


def _payments(plan: Plan, snap: BillingSnapshot, billing: BillingConfig) -> None:
    for invoice in snap.billed:
        key = keys.PaidKey(invoice.issue_id, invoice.invoice_id)
        if invoice.stage_semantics in ("S", "F") and key.text not in snap.done:
            plan.actions.append(
                NoteInvoicePaid(
                    invoice.issue_id,
                    invoice_id=invoice.invoice_id,
                    account_number=invoice.account_number,
                    outcome="paid" if invoice.stage_semantics == "S" else "declined",
                    on=invoice.moved_on or snap.today,
                    public=billing.note_public,
                )
            )


def _holds(plan: Plan, snap: BillingSnapshot, debt: DebtConfig) -> None:
    open_holds = {hold.issue_id for hold in snap.holds}
    for company_id, issues in sorted(snap.debtor_issues.items()):
        owed = snap.debts[company_id]
        for issue in issues:
            key = keys.HoldKey(issue.id, owed.oldest_invoice_id)
            if issue.id in open_holds or key.text in snap.done:
                continue  # held, or a person moved it out during this debt: not held again
            if (issue.status == debt.status and key.text not in snap.unsure) or issue.status in debt.skip_statuses:
                continue  # already paused (by a person), unless okbx's own change may have done it
            if issue.type_code in debt.exempt_types or issue.priority_code in debt.exempt_priorities:
                continue
            plan.actions.append(
                HoldIssue(
                    issue.id,
                    debt_ref=owed.oldest_invoice_id,
                    okdesk_company_id=company_id,
                    from_status=issue.status,
                    to_status=debt.status,
                    reason=_reason(owed),
                    public=debt.note_public,
                    delayed_to=issue.delayed_to if issue.status == DELAYED else None,
                )
            )


def _releases(plan: Plan, snap: BillingSnapshot, debt: DebtConfig, config: Config, now: datetime) -> None:
    for hold in snap.holds:
        if hold.okdesk_company_id in snap.debts:
            continue
        release = keys.ReleaseKey(hold.issue_id, hold.debt_ref)
        if snap.unmatched_debtors:  # the company of this hold may be the one that cannot be matched now
            why = "; ".join(snap.unmatched_debtors.values())
            plan.blocked.append(
                Blocked(
                    hold.issue_id,
                    Track.DEBT,
                    "release",
                    f"not released: {why} (billing.company_map, or the CRM company's originId/INN/name)",
                )
            )
            continue
        held = snap.issues.get(hold.issue_id)
        if held is None:  # deleted: the hold ends; unreadable now: a failure, tried again
            if hold.issue_id in snap.gone:
                plan.actions.append(EndHold(hold.issue_id, debt_ref=hold.debt_ref))
            else:
                why = snap.errors.get(hold.issue_id, "the issue could not be read")
                plan.blocked.append(Blocked(hold.issue_id, Track.DEBT, "release", why, transient=True))
            continue
        if held.status != debt.status and release.text not in snap.unsure:
            plan.actions.append(LeaveAlone(hold.issue_id, debt_ref=hold.debt_ref, status=held.status))
            continue
        plan.actions.append(_release(hold, debt, config, snap, now))


def _release(hold: Hold, debt: DebtConfig, config: Config, snap: BillingSnapshot, now: datetime) -> Action:
    to_status, why, delay_to = hold.previous_status, "", None
    route = next((r for r in config.routes if r.status == to_status), None)
    if route is not None and hold.issue_id in snap.completed_links:
        # the route's target was finished during the hold: back in the route's status the issue
        # would read as handed off again and reopen finished work; it returns as the route would
        to_status = route.finish.fallback_status if route.returns_previous else route.finish.return_status
        why = "the programmers completed the task meanwhile" if route.kind == "task" else "its deal closed meanwhile"
    elif to_status == DELAYED:
        # Okdesk demands a date for `delayed` (crm-billing.md 1.7): the one it had, while it is ahead
        if hold.delayed_to is not None and hold.delayed_to > now:
            delay_to = hold.delayed_to
        else:
            when = f" on {hold.delayed_to:%d.%m.%Y}" if hold.delayed_to else " (its date is unknown)"
            to_status = debt.expired_delay_status
            why = f"it was postponed until a date that passed during the hold{when}"
    return ReleaseIssue(
        hold.issue_id,
        debt_ref=hold.debt_ref,
        debt_status=debt.status,
        to_status=to_status,
        public=debt.note_public,
        why=why,
        delay_to=delay_to,
    )


def _reason(owed: Debt) -> str:
    due = f" due {owed.pay_by:%d.%m.%Y}" if owed.pay_by else ""
    return f"invoice No. {owed.account_number} ({money(owed.amount, owed.currency)}){due} is not paid"
