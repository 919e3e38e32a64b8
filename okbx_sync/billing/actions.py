"""Billing actions: small frozen values named as verbs, each kind complete in one place.

An action knows its stable `key` (its op in the state store's write journal), its `marker`
(carried by the remote write so it can be found again), how to `perform` itself and how to
`find` itself on the remote side.  The applier looks before every write, so even a lost,
restored or second state store cannot produce a second invoice, note or hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..clients.bitrix24_crm import InvoiceLine
from ..errors import ApiError
from ..markup import escape_html, has_html_marker, html_marker_line, marker

if TYPE_CHECKING:
    from .apply import Context

Found = tuple[str | None, dict[str, Any]]  # (remote id, facts to keep in the op)


def money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}".replace(",", " ")


def _note_html(text: str, token: str) -> str:
    return f"<p>{escape_html(text)}</p>{html_marker_line(token)}"


STATUS_BEFORE = re.compile(r"\(status before: ([\w.-]+)\)")


def _find_note(ctx: Context, issue_id: int, token: str) -> Found | None:
    for comment in ctx.okdesk.list_comments(issue_id):
        if comment.author.id == ctx.config.okdesk.bot_employee_id and has_html_marker(comment.content_html, token):
            return str(comment.id), {}
    return None


@dataclass(frozen=True)
class BillingAction:
    issue_id: int
    kind = "billing"
    side = ""  # "Bitrix24", "Okdesk", or "" for a decision kept in the state store only

    @property
    def key(self) -> str:
        raise NotImplementedError

    @property
    def marker(self) -> str:
        return marker(*self.key.split(":"))

    @property
    def detail(self) -> str:
        return ""

    def record(self) -> dict[str, Any]:
        """What the op keeps about this action (for notes, releases and the ledger)."""
        return {"detail": self.detail}

    def perform(self, ctx: Context) -> Found:
        return None, {}

    def find(self, ctx: Context) -> Found | None:
        return None

    def local_remote_id(self) -> str | None:
        """For a decision kept in the store only: the remote record it names, if any."""
        return None


@dataclass(frozen=True)
class CreateInvoice(BillingAction):
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
    kind = "invoice"
    side = "Bitrix24"

    @property
    def key(self) -> str:
        return f"invoice:{self.issue_id}:{self.cycle}"

    @property
    def total(self) -> Decimal:
        return sum((line_sum(line) for line in self.lines), Decimal(0))

    @property
    def detail(self) -> str:
        return f"invoice to CRM company {self.company_id}: {money(self.total, self.currency)} ({len(self.lines)} lines)"

    def record(self) -> dict[str, Any]:
        return {
            "detail": self.detail,
            "company_id": self.company_id,
            "okdesk_company_id": self.okdesk_company_id,
            "total": str(self.total),
            "currency": self.currency,
        }

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

    def perform(self, ctx: Context) -> Found:
        invoice = ctx.crm.add_invoice(self.fields())
        ctx.crm.set_invoice_lines(invoice.id, list(self.lines))
        return str(invoice.id), {}

    def find(self, ctx: Context) -> Found | None:
        invoice = ctx.crm.invoice_by_xml_id(self.marker)
        if invoice is None:
            return None
        # Our own attempt that did not finish (a crash, a lost answer, a failed rows call) may have
        # left the invoice without its rows: set them (crm.item.productrow.set replaces all rows).
        # An invoice this store never began to write (another installation's, or a lost or restored
        # store) keeps the rows it has, as a manager may have edited them; one without any rows
        # is okbx's unfinished work all the same, and gets them.
        if ctx.store.op(self.key) is not None or not ctx.crm.invoice_has_lines(invoice.id):
            ctx.crm.set_invoice_lines(invoice.id, list(self.lines))
        return str(invoice.id), {}


def line_sum(line: InvoiceLine) -> Decimal:
    return (line.price * line.quantity).quantize(Decimal("0.01"))


@dataclass(frozen=True)
class SkipInvoice(BillingAction):
    """A completion that is not billed (not billable by configuration): decided once, kept."""

    cycle: int
    reason: str
    kind = "invoice"

    @property
    def key(self) -> str:
        return f"invoice:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return f"not invoiced: {self.reason}"


@dataclass(frozen=True)
class AdoptInvoice(BillingAction):
    """An okbx invoice this store does not know (it was lost or restored, or another installation
    made it): recorded as this completion's invoice, so its note, task link and payment follow."""

    cycle: int
    invoice_id: int
    total: Decimal
    currency: str
    kind = "invoice"

    @property
    def key(self) -> str:
        return f"invoice:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return f"found invoice {self.invoice_id} ({money(self.total, self.currency)}) made before"

    def record(self) -> dict[str, Any]:
        return {"detail": self.detail, "total": str(self.total), "currency": self.currency, "adopted": True}

    def local_remote_id(self) -> str | None:
        return str(self.invoice_id)


@dataclass(frozen=True)
class NoteInvoice(BillingAction):
    """The internal note in the Okdesk issue naming the invoice and its sum."""

    cycle: int
    invoice_key: str
    total: Decimal
    currency: str
    public: bool = False
    kind = "invoice_note"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"invnote:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return f"note: invoice for {money(self.total, self.currency)}"

    def perform(self, ctx: Context) -> Found:
        op = ctx.store.op(self.invoice_key)
        if op is None or op.state != "done" or not op.remote_id:
            raise ApiError("okbx", "state", f"{self.invoice_key} was not written")
        found = ctx.crm.invoices({"=id": int(op.remote_id)})
        number = found[0].account_number if found else op.remote_id
        text = f"Bitrix24 invoice No. {number} issued for this work: {money(self.total, self.currency)}."
        comment = ctx.okdesk.add_comment(self.issue_id, _note_html(text, self.marker), public=self.public)
        return str(comment.id), {}

    def find(self, ctx: Context) -> Found | None:
        return _find_note(ctx, self.issue_id, self.marker)


@dataclass(frozen=True)
class LinkInvoiceToTask(BillingAction):
    """The programmers' task names the invoice among its CRM links (`UF_CRM_TASK`: `SI_<id>`).

    The link itself is the marker: found when the task already carries it.  The field is
    replaced whole on update, so the task's other links are kept."""

    cycle: int
    task_id: int
    invoice_key: str
    kind = "invoice_task_link"
    side = "Bitrix24"
    always_look = True  # the read is the merge base anyway

    @property
    def key(self) -> str:
        return f"tasklink:{self.issue_id}:{self.cycle}"

    @property
    def detail(self) -> str:
        return f"link the invoice to task {self.task_id}"

    def _invoice_ref(self, ctx: Context) -> str:
        op = ctx.store.op(self.invoice_key)
        if op is None or op.state != "done" or not op.remote_id:
            raise ApiError("okbx", "state", f"{self.invoice_key} was not written")
        return f"SI_{int(op.remote_id)}"

    def _links(self, ctx: Context) -> list[str]:
        links = ctx.crm.bitrix.crm_links(self.task_id)
        if links is None:  # deleted, or out of the webhook user's reach: a failure, never a guess
            raise ApiError("Bitrix24", "tasks.task.get", f"task {self.task_id} cannot be read to link the invoice")
        return links

    def perform(self, ctx: Context) -> Found:
        ref = self._invoice_ref(ctx)
        links = self._links(ctx)
        ctx.crm.bitrix.update_task(self.task_id, {"UF_CRM_TASK": [*links, ref]})
        return ref, {}

    def find(self, ctx: Context) -> Found | None:
        ref = self._invoice_ref(ctx)
        return (ref, {}) if ref in self._links(ctx) else None


@dataclass(frozen=True)
class NoteInvoicePaid(BillingAction):
    """The invoice reached a final stage: paid (semantics S) or declined (F)."""

    invoice_id: int
    account_number: str
    outcome: str  # "paid" | "declined"
    on: date
    public: bool = False
    kind = "payment_note"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"paid:{self.issue_id}:{self.invoice_id}"

    @property
    def detail(self) -> str:
        return f"note: invoice {self.account_number} {self.outcome} on {self.on:%d.%m.%Y}"

    def perform(self, ctx: Context) -> Found:
        text = f"Bitrix24 invoice No. {self.account_number} {self.outcome} on {self.on:%d.%m.%Y}."
        comment = ctx.okdesk.add_comment(self.issue_id, _note_html(text, self.marker), public=self.public)
        return str(comment.id), {}

    def find(self, ctx: Context) -> Found | None:
        return _find_note(ctx, self.issue_id, self.marker)


@dataclass(frozen=True)
class HoldIssue(BillingAction):
    """Move an issue of a debtor company to the debt status, with a note saying why."""

    debt_ref: int  # the oldest overdue invoice when the hold began: names this debt
    okdesk_company_id: int
    from_status: str
    to_status: str
    reason: str = field(compare=False)
    public: bool = False
    kind = "hold"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"hold:{self.issue_id}:{self.debt_ref}"

    @property
    def detail(self) -> str:
        return f"hold: {self.from_status} -> {self.to_status} ({self.reason})"

    def record(self) -> dict[str, Any]:
        return {"detail": self.detail, "previous_status": self.from_status, "okdesk_company_id": self.okdesk_company_id}

    def perform(self, ctx: Context) -> Found:
        # the status before is in the note too: after a lost state store the release reads it back
        text = (
            f"Work is paused: {self.reason}. The issue returns to its status when the debt is paid "
            f"(status before: {self.from_status})."
        )
        issue = ctx.okdesk.change_status(
            self.issue_id, self.to_status, comment_html=_note_html(text, self.marker), public=self.public
        )
        return issue.status, {}

    def find(self, ctx: Context) -> Found | None:
        return _find_note(ctx, self.issue_id, self.marker)


@dataclass(frozen=True)
class ReleaseIssue(BillingAction):
    """The debt cleared: the held issue returns to the status it had, with a note."""

    debt_ref: int
    debt_status: str
    to_status: str
    public: bool = False
    why: str = field(default="", compare=False)  # why not the status before the hold, if so
    kind = "release"
    side = "Okdesk"

    @property
    def key(self) -> str:
        return f"release:{self.issue_id}:{self.debt_ref}"

    @property
    def detail(self) -> str:
        return f"release: {self.debt_status} -> {self.to_status}"

    def perform(self, ctx: Context) -> Found:
        text = f"The debt is paid: work resumes (status '{self.to_status}'{': ' + self.why if self.why else ''})."
        issue = ctx.okdesk.change_status(
            self.issue_id, self.to_status, comment_html=_note_html(text, self.marker), public=self.public
        )
        return issue.status, {}

    def find(self, ctx: Context) -> Found | None:
        found = _find_note(ctx, self.issue_id, self.marker)
        if found is not None:
            return found
        issue = ctx.okdesk.get_issue(self.issue_id)
        if issue.status != self.debt_status:  # a person moved it out meanwhile: leave it alone
            return f"status:{issue.status}", {}
        return None


@dataclass(frozen=True)
class LeaveAlone(BillingAction):
    """A held issue a person moved out of the debt status: the hold ends without a write."""

    debt_ref: int
    status: str
    kind = "release"

    @property
    def key(self) -> str:
        return f"release:{self.issue_id}:{self.debt_ref}"

    @property
    def detail(self) -> str:
        return f"moved out of the debt status by a person (now '{self.status}'): left alone"
