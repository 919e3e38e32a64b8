"""What the billing planner sees: plain values read from both systems and the state store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from ..clients.bitrix24_crm import Invoice
from ..core.action import WorkLine
from ..keys import DEFAULT_ROUTE
from ..model import Issue


@dataclass(frozen=True)
class Completion:
    """A completion okbx reported to Okdesk (its summary op is done, or planned in this same cycle)
    whose invoice is not decided yet."""

    issue_id: int
    cycle: int
    task_id: int | None
    work: tuple[WorkLine, ...]
    route: str = DEFAULT_ROUTE
    billed: bool = True  # the route's completions are invoiced (routes: flows.bill)


@dataclass(frozen=True)
class BilledInvoice:
    """An invoice okbx created, as it is now in Bitrix24."""

    issue_id: int
    invoice_id: int
    account_number: str
    stage_semantics: str  # "S" paid, "F" declined, "" still open
    moved_on: date | None


@dataclass(frozen=True)
class Debt:
    """A company that owes money: its oldest overdue open invoice names the debt."""

    okdesk_company_id: int
    oldest_invoice_id: int
    account_number: str
    amount: Decimal
    currency: str
    pay_by: date | None


@dataclass(frozen=True)
class Hold:
    """An issue okbx moved to the debt status and has not released yet (from the store)."""

    issue_id: int
    debt_ref: int
    okdesk_company_id: int
    previous_status: str
    delayed_to: datetime | None = None  # the issue was `delayed` until then when it was held


@dataclass
class BillingSnapshot:
    today: date
    completions: list[Completion] = field(default_factory=list)
    issues: dict[int, Issue] = field(default_factory=dict)  # completions' and held issues, read now
    crm_company: dict[int, int] = field(default_factory=dict)  # Okdesk company id -> CRM company id
    unmatched: dict[int, str] = field(default_factory=dict)  # Okdesk company id -> why it is not matched
    invoiced: dict[str, tuple[Decimal, str]] = field(default_factory=dict)  # invoice op key -> (total, currency)
    billed: list[BilledInvoice] = field(default_factory=list)
    # okbx invoices of recent completions this store does not know: (issue, handoff, invoice)
    unknown_invoices: list[tuple[int, int, Invoice]] = field(default_factory=list)
    task_of: dict[int, int] = field(default_factory=dict)  # their issues' tasks, where the store knows them
    rowless: frozenset[int] = frozenset()  # of those invoices, the ones without any product row
    debts: dict[int, Debt] = field(default_factory=dict)  # by Okdesk company id
    debtor_issues: dict[int, list[Issue]] = field(default_factory=dict)  # by Okdesk company id
    holds: list[Hold] = field(default_factory=list)
    completed_links: frozenset[int] = frozenset()  # issues whose task was completed (link done, or reported now)
    unmatched_debtors: dict[int, str] = field(default_factory=dict)  # CRM company that owes -> why no Okdesk one
    done: frozenset[str] = frozenset()  # keys of done ops
    unsure: frozenset[str] = frozenset()  # keys of ops begun but not done: maybe written, look first
    errors: dict[int, str] = field(default_factory=dict)  # issue id -> why it could not be read
    gone: set[int] = field(default_factory=set)  # issues a direct read found deleted
