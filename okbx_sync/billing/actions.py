"""Billing's actions: invoices, their notes and task links, payment notes — on the core protocol.

Each kind is complete in one place: its typed key (keys.py), the marker its remote write carries
(an invoice's xmlId, a note's last line, the task's CRM link itself), how to `find` it on the
remote side and how to `perform` it.  The core applier runs them like every other action: looked
for before every write, intent first, one log line each, failures counted on the billing track
(backoff, parking with a note), a stop between two writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar

from .. import keys
from ..clients.bitrix24_crm import InvoiceLine
from ..core.action import Action, Context, Effect, Found, LocalAction, OpRecord
from ..core.notes import IssueComment, note_html
from ..errors import ApiError
from ..state.lifecycle import Track

if TYPE_CHECKING:
    from ..state.store import Op


def money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}".replace(",", " ")


def line_sum(line: InvoiceLine) -> Decimal:
    return (line.price * line.quantity).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class BillingNote(IssueComment):
    """A note of billing's in the Okdesk issue, internal unless `billing.note_public`."""

    public: bool = False
    TRACK: ClassVar[Track] = Track.BILLING

    def text(self, ctx: Context) -> str:
        raise NotImplementedError

    def perform(self, ctx: Context) -> Effect:
        return self.post(ctx, note_html(self.text(ctx), self.marker), self.public)


@dataclass(frozen=True)
class CreateInvoice(Action):
    """One smart invoice for one completion: a line per programmer, hours x rate."""

    cycle: int
    company_id: int  # Bitrix24 CRM company
    okdesk_company_id: int
    title: str
    lines: tuple[InvoiceLine, ...]
    currency: str
    pay_by: date
    comments: str = field(default="", compare=False)
    mycompany_id: int | None = None
    kind: ClassVar[str] = "invoice"
    side: ClassVar[str] = "Bitrix24"
    TRACK: ClassVar[Track] = Track.BILLING

    @property
    def ref(self) -> keys.Key:
        return keys.InvoiceKey(self.issue_id, self.cycle)

    @property
    def total(self) -> Decimal:
        return sum((line_sum(line) for line in self.lines), Decimal(0))

    @property
    def needs(self) -> tuple[str, ...]:
        return (keys.SummaryKey(self.issue_id, self.cycle).text,)  # the report it bills is posted

    @property
    def detail(self) -> str:
        return f"invoice to CRM company {self.company_id}: {money(self.total, self.currency)} ({len(self.lines)} lines)"

    def op_record(self) -> OpRecord:
        detail = {
            "detail": self.detail,
            "company_id": self.company_id,
            "okdesk_company_id": self.okdesk_company_id,
            "total": str(self.total),
            "currency": self.currency,
        }
        return OpRecord(self.cycle, None, detail)

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "title": self.title,
            "xmlId": self.marker,
            "companyId": self.company_id,
            "opportunity": float(self.total),
            "currencyId": self.currency,
            "closedate": self.pay_by.isoformat(),
            "comments": self.comments,
        }
        if self.mycompany_id is not None:
            fields["mycompanyId"] = self.mycompany_id
        return fields

    def perform(self, ctx: Context) -> Effect:
        invoice = ctx.crm.add_invoice(self.fields())
        ctx.crm.set_invoice_lines(invoice.id, list(self.lines))
        return str(invoice.id), None

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        invoice = ctx.crm.invoice_by_xml_id(self.marker)
        if invoice is None:
            return None
        # Our own attempt that did not finish (a crash, a lost answer, a failed rows call) may have
        # left the invoice without its rows: set them (crm.item.productrow.set replaces all rows).
        # An invoice this store never began to write (another installation's, or a lost or restored
        # store) keeps the rows it has, as a manager may have edited them; one without any rows
        # is okbx's unfinished work all the same, and gets them.
        if op is not None or not ctx.crm.invoice_has_lines(invoice.id):
            ctx.crm.set_invoice_lines(invoice.id, list(self.lines))
        return Found(str(invoice.id))


@dataclass(frozen=True)
class SkipInvoice(LocalAction):
    """A completion that is not billed (not billable by configuration): decided once, kept."""

    cycle: int
    reason: str
    kind: ClassVar[str] = "invoice"
    TRACK: ClassVar[Track] = Track.BILLING

    @property
    def ref(self) -> keys.Key:
        return keys.InvoiceKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"not invoiced: {self.reason}"

    @property
    def needs(self) -> tuple[str, ...]:
        return (keys.SummaryKey(self.issue_id, self.cycle).text,)


@dataclass(frozen=True)
class AdoptInvoice(LocalAction):
    """An okbx invoice this store does not know (it was lost or restored, or another installation
    made it): recorded as this completion's invoice, so its note, task link and payment follow."""

    cycle: int
    invoice_id: int
    total: Decimal
    currency: str
    kind: ClassVar[str] = "invoice"
    TRACK: ClassVar[Track] = Track.BILLING

    @property
    def ref(self) -> keys.Key:
        return keys.InvoiceKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"found invoice {self.invoice_id} ({money(self.total, self.currency)}) made before"

    def op_record(self) -> OpRecord:
        detail = {"detail": self.detail, "total": str(self.total), "currency": self.currency, "adopted": True}
        return OpRecord(self.cycle, None, detail)

    def apply_locally(self, ctx: Context) -> Effect:
        return str(self.invoice_id), None


@dataclass(frozen=True)
class NoteInvoice(BillingNote):
    """The internal note in the Okdesk issue naming the invoice and its sum."""

    cycle: int = 0
    total: Decimal = Decimal(0)
    currency: str = ""
    kind: ClassVar[str] = "invoice_note"

    @property
    def ref(self) -> keys.Key:
        return keys.InvoiceNoteKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"note: invoice for {money(self.total, self.currency)}"

    def text(self, ctx: Context) -> str:
        invoice_id = ctx.remote_id_of(keys.InvoiceKey(self.issue_id, self.cycle))
        found = ctx.crm.invoices({"=id": int(invoice_id)})
        number = found[0].account_number if found else invoice_id
        return f"Bitrix24 invoice No. {number} issued for this work: {money(self.total, self.currency)}."


@dataclass(frozen=True)
class LinkInvoiceToTask(Action):
    """The programmers' task names the invoice among its CRM links (`UF_CRM_TASK`: `SI_<id>`).

    The link itself is the marker: found when the task already carries it.  The field is
    replaced whole on update, so the task's other links are kept."""

    cycle: int
    task_id: int
    kind: ClassVar[str] = "invoice_task_link"
    side: ClassVar[str] = "Bitrix24"
    TRACK: ClassVar[Track] = Track.BILLING

    @property
    def ref(self) -> keys.Key:
        return keys.TaskLinkKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"link the invoice to task {self.task_id}"

    def _invoice_ref(self, ctx: Context) -> str:
        return f"SI_{int(ctx.remote_id_of(keys.InvoiceKey(self.issue_id, self.cycle)))}"

    def _links(self, ctx: Context) -> list[str]:
        links = ctx.bitrix.crm_links(self.task_id)
        if links is None:  # deleted, or out of the webhook user's reach: a failure, never a guess
            raise ApiError("Bitrix24", "tasks.task.get", f"task {self.task_id} cannot be read to link the invoice")
        return links

    def perform(self, ctx: Context) -> Effect:
        ref = self._invoice_ref(ctx)
        ctx.bitrix.update_task(self.task_id, {"UF_CRM_TASK": [*self._links(ctx), ref]})
        return ref, None

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        ref = self._invoice_ref(ctx)
        return Found(ref) if ref in self._links(ctx) else None


@dataclass(frozen=True)
class NoteInvoicePaid(BillingNote):
    """The invoice reached a final stage: paid (semantics S) or declined (F)."""

    invoice_id: int = 0
    account_number: str = ""
    outcome: str = "paid"  # "paid" | "declined"
    on: date = date.min
    kind: ClassVar[str] = "payment_note"

    @property
    def ref(self) -> keys.Key:
        return keys.PaidKey(self.issue_id, self.invoice_id)

    @property
    def detail(self) -> str:
        return f"note: invoice {self.account_number} {self.outcome} on {self.on:%d.%m.%Y}"

    def text(self, ctx: Context) -> str:
        return f"Bitrix24 invoice No. {self.account_number} {self.outcome} on {self.on:%d.%m.%Y}."
