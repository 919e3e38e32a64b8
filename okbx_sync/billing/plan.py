"""The billing planner: a pure function from a BillingSnapshot to actions (tested with literals).

Decision table, per completion / invoice / debtor issue / hold:
  completion, issue not billable             -> SkipInvoice (decided once)
  completion, company not matched            -> blocked (a failure of that issue, never a guess)
  completion, billable                       -> CreateInvoice, then NoteInvoice and LinkInvoiceToTask
  invoice created, note or task link missing -> NoteInvoice / LinkInvoiceToTask
  okbx invoice in a final stage, no note yet -> NoteInvoicePaid (paid or declined)
  okbx invoice unknown to the store (lately)  -> AdoptInvoice, then NoteInvoice (each looked for first)
  debtor's open issue, not exempt, not held  -> HoldIssue (unless a hold of it is still open)
  hold open, company no longer a debtor      -> ReleaseIssue, or LeaveAlone if a person moved it out
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

from ..clients.bitrix24_crm import InvoiceLine
from ..config import BillingConfig, Config, DebtConfig
from ..markup import MAX_TITLE, one_line
from ..model import Issue
from .actions import (
    AdoptInvoice,
    BillingAction,
    CreateInvoice,
    HoldIssue,
    LeaveAlone,
    LinkInvoiceToTask,
    NoteInvoice,
    NoteInvoicePaid,
    ReleaseIssue,
    SkipInvoice,
    money,
)
from .snapshot import BillingSnapshot, Completion, Debt


@dataclass
class BillingPlan:
    actions: list[BillingAction] = field(default_factory=list)
    blocked: dict[str, tuple[int, str]] = field(default_factory=dict)  # op key -> (issue, why)

    def by_issue(self) -> dict[int, list[BillingAction]]:
        grouped: dict[int, list[BillingAction]] = {}
        for action in self.actions:
            grouped.setdefault(action.issue_id, []).append(action)
        return grouped

    def unusual(self, config: Config) -> str | None:
        """Mass holds or releases look like an outage or a wrong setting: refused unless forced."""
        moves = [a for a in self.actions if isinstance(a, HoldIssue | ReleaseIssue)]
        limit = config.debt.max_changes if config.debt else 0
        if config.debt and len(moves) > limit:
            return (
                f"{len(moves)} issues would be held or released at once (debt.max_changes is {limit}); "
                "check the debts in Bitrix24 and the debt settings"
            )
        return None


def build_billing_plan(snap: BillingSnapshot, config: Config) -> BillingPlan:
    plan = BillingPlan()
    if config.billing is not None:
        for completion in snap.completions:
            _bill(plan, completion, snap, config.billing)
        billed_now = {a.key for a in plan.actions}
        for issue_id, cycle, made in snap.unknown_invoices:
            adopt = AdoptInvoice(issue_id, cycle, made.id, made.opportunity, made.currency)
            if adopt.key in billed_now:  # its completion is planned above: CreateInvoice finds it first
                continue
            if made.id in snap.rowless:  # never a guess: a person completes it, and okbx goes on then
                why = f"invoice No. {made.account_number} was made by okbx but has no rows (its run was cut short)"
                plan.blocked[adopt.key] = (issue_id, f"{why}: add its rows in Bitrix24")
                continue
            plan.actions.append(adopt)
            if f"invnote:{issue_id}:{cycle}" not in snap.done:
                note_public = config.billing.note_public
                plan.actions.append(
                    NoteInvoice(issue_id, cycle, adopt.key, made.opportunity, made.currency, note_public)
                )
            if f"tasklink:{issue_id}:{cycle}" not in snap.done and issue_id in snap.task_of:
                plan.actions.append(LinkInvoiceToTask(issue_id, cycle, snap.task_of[issue_id], adopt.key))
        for invoice in snap.billed:
            key = f"paid:{invoice.issue_id}:{invoice.invoice_id}"
            if invoice.stage_semantics in ("S", "F") and key not in snap.done:
                outcome = "paid" if invoice.stage_semantics == "S" else "declined"
                on = invoice.moved_on or snap.today
                plan.actions.append(
                    NoteInvoicePaid(
                        invoice.issue_id,
                        invoice_id=invoice.invoice_id,
                        account_number=invoice.account_number,
                        outcome=outcome,
                        on=on,
                        public=config.billing.note_public,
                    )
                )
    if config.debt is not None:
        _debts(plan, snap, config.debt, config)
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


def _bill(plan: BillingPlan, completion: Completion, snap: BillingSnapshot, billing: BillingConfig) -> None:
    issue_id, cycle = completion.issue_id, completion.cycle
    invoice_key = f"invoice:{issue_id}:{cycle}"
    note_key = f"invnote:{issue_id}:{cycle}"
    issue = snap.issues.get(issue_id)
    link_key = f"tasklink:{issue_id}:{cycle}"
    if invoice_key in snap.done:
        if invoice_key in snap.invoiced and note_key not in snap.done:  # the note failed or was cut off
            total, currency = snap.invoiced[invoice_key]
            plan.actions.append(NoteInvoice(issue_id, cycle, invoice_key, total, currency, billing.note_public))
        if invoice_key in snap.invoiced and link_key not in snap.done and completion.task_id is not None:
            plan.actions.append(LinkInvoiceToTask(issue_id, cycle, completion.task_id, invoice_key))
        return
    if issue is None:
        plan.blocked[invoice_key] = (issue_id, snap.errors.get(issue_id, "the issue could not be read"))
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
        plan.blocked[invoice_key] = (issue_id, f"Okdesk company {issue.company_id} ({issue.company}): {why}")
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
    if note_key not in snap.done:
        note = NoteInvoice(issue_id, cycle, invoice_key, invoice.total, billing.currency, billing.note_public)
        plan.actions.append(note)
    if link_key not in snap.done and completion.task_id is not None:
        plan.actions.append(LinkInvoiceToTask(issue_id, cycle, completion.task_id, invoice_key))


def _debts(plan: BillingPlan, snap: BillingSnapshot, debt: DebtConfig, config: Config) -> None:
    open_holds = {hold.issue_id for hold in snap.holds}
    for company_id, issues in sorted(snap.debtor_issues.items()):
        owed = snap.debts[company_id]
        for issue in issues:
            key = f"hold:{issue.id}:{owed.oldest_invoice_id}"
            if issue.id in open_holds or key in snap.done:
                continue  # held, or a person moved it out during this debt: not held again
            if (issue.status == debt.status and key not in snap.unsure) or issue.status in debt.skip_statuses:
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
                )
            )
    for hold in snap.holds:
        if hold.okdesk_company_id in snap.debts:
            continue
        if snap.unmatched_debtors:  # the company of this hold may be the one that cannot be matched now
            why = "; ".join(snap.unmatched_debtors.values())
            plan.blocked[f"release:{hold.issue_id}:{hold.debt_ref}"] = (
                hold.issue_id,
                f"not released: {why} (billing.company_map, or the CRM company's originId/INN/name)",
            )
            continue
        held = snap.issues.get(hold.issue_id)
        if held is None:
            continue  # not readable now (or deleted): tried again next cycle
        if held.status != debt.status and f"release:{hold.issue_id}:{hold.debt_ref}" not in snap.unsure:
            plan.actions.append(LeaveAlone(hold.issue_id, debt_ref=hold.debt_ref, status=held.status))
            continue
        to_status, why = hold.previous_status, ""
        if to_status == config.okdesk.handoff_status and hold.issue_id in snap.completed_links:
            # the programmers completed the task during the hold: back in the handoff status the
            # issue would read as handed off again and reopen finished work; it returns instead
            to_status, why = config.okdesk.return_status, "the programmers completed the task meanwhile"
        plan.actions.append(
            ReleaseIssue(
                hold.issue_id,
                debt_ref=hold.debt_ref,
                debt_status=debt.status,
                to_status=to_status,
                public=debt.note_public,
                why=why,
            )
        )


def _reason(owed: Debt) -> str:
    due = f" due {owed.pay_by:%d.%m.%Y}" if owed.pay_by else ""
    return f"invoice No. {owed.account_number} ({money(owed.amount, owed.currency)}){due} is not paid"
