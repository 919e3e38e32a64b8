"""Bitrix24 CRM verbs for billing (issue 10): companies, smart invoices, stages, requisites.

Facts used (../shared/api/crm-billing.md §2.2-2.4): `crm.item.*` with `entityTypeId` 4 and 31
in every call, camelCase fields, 50 rows a page with `start`; stages from `crm.status.list`
(`SMART_INVOICE_STAGE_<category>`) whose `SEMANTICS` is `S` (paid) or `F` (declined); the
default pipeline from `crm.category.list`; INN from `crm.requisite.list`; product rows by
`crm.item.productrow.set` with `ownerType: "SI"` (a "set" replaces all rows, so it is safe to
repeat).  Inferred: that `xmlId` is filterable and kept as given (the idempotency marker), and
that `=title` is an exact match; both answers are re-checked here, never trusted blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from ..errors import MalformedResponse
from .bitrix24 import SYSTEM, Bitrix24Client
from .parse import ParseError, integer, items, obj, opt_integer, text, timestamp

COMPANY, INVOICE = 4, 31
PAGE = 50
INVOICE_SELECT = ["id", "title", "xmlId", "accountNumber", "companyId", "stageId", "opportunity", "currencyId"]
INVOICE_SELECT += ["closedate", "movedTime", "categoryId"]


@dataclass(frozen=True)
class CrmCompany:
    id: int
    title: str
    originator_id: str | None = None
    origin_id: str | None = None
    assigned_by_id: int | None = None  # the company's responsible person (crm-billing.md 2.2, documented)


@dataclass(frozen=True)
class Invoice:
    id: int
    title: str
    xml_id: str | None
    account_number: str
    company_id: int | None
    stage_id: str
    opportunity: Decimal
    currency: str
    closedate: datetime | None
    moved_at: datetime | None


@dataclass(frozen=True)
class Stage:
    id: str
    name: str
    semantics: str  # "S" success (paid), "F" failure (declined), "" in process


@dataclass(frozen=True)
class InvoiceLine:
    name: str
    price: Decimal
    quantity: Decimal


# -- pure parsers ------------------------------------------------------------------------------
def parse_invoice(raw: Any) -> Invoice:
    data = obj(raw, "invoice")
    what = f"invoice {data.get('id', '?')}"
    try:
        amount = Decimal(str(data.get("opportunity") or 0))
    except ArithmeticError:
        raise ParseError(f"{what}.opportunity: not a number") from None
    return Invoice(
        id=integer(data, "id", what),
        title=text(data, "title", what, default=""),
        xml_id=text(data, "xmlId", what, default="") or None,
        account_number=text(data, "accountNumber", what, default="") or str(data.get("id")),
        company_id=opt_integer(data, "companyId", what),
        stage_id=text(data, "stageId", what),
        opportunity=amount,
        currency=text(data, "currencyId", what, default=""),
        closedate=timestamp(data, "closedate", what),
        moved_at=timestamp(data, "movedTime", what),
    )


def parse_company(raw: Any) -> CrmCompany:
    data = obj(raw, "company")
    what = f"company {data.get('id', '?')}"
    return CrmCompany(
        id=integer(data, "id", what),
        title=text(data, "title", what, default=""),
        originator_id=text(data, "originatorId", what, default="") or None,
        origin_id=text(data, "originId", what, default="") or None,
        assigned_by_id=opt_integer(data, "assignedById", what) or None,
    )


def parse_stages(raw: Any) -> list[Stage]:
    result = []
    for row in items(raw, "crm.status.list"):
        data = obj(row, "status")
        semantics = text(data, "SEMANTICS", "status", default="")
        if semantics not in ("", "S", "F"):
            raise ParseError(f"status {data.get('STATUS_ID')}.SEMANTICS: unexpected {semantics!r}")
        result.append(Stage(text(data, "STATUS_ID", "status"), text(data, "NAME", "status", default=""), semantics))
    return result


def _item_list(raw: Any, what: str) -> list[Any]:
    return items(obj(raw, what).get("items"), f"{what}.items")


class CrmClient:
    """The CRM verbs, over the same transport (and request budget) as the task client."""

    def __init__(self, bitrix: Bitrix24Client) -> None:
        self.bitrix = bitrix

    def _parse(self, method: str, parser: Any, *args: Any) -> Any:
        try:
            return parser(*args)
        except ParseError as exc:
            raise MalformedResponse(SYSTEM, method, str(exc)) from None

    def _list(self, entity: int, filter_: dict[str, Any], select: list[str]) -> list[Any]:
        method = "crm.item.list"
        rows: list[Any] = []
        start = 0
        while True:
            params = {"entityTypeId": entity, "select": select, "filter": filter_, "order": {"id": "ASC"}}
            raw = self.bitrix.call(method, params | {"start": start})
            page = self._parse(method, _item_list, raw, method)
            rows.extend(page)
            if len(page) < PAGE:
                return rows
            start += PAGE

    # -- companies -------------------------------------------------------------------------
    def companies(self, filter_: dict[str, Any]) -> list[CrmCompany]:
        select = ["id", "title", "originatorId", "originId", "assignedById"]
        return [self._parse("crm.item.list", parse_company, r) for r in self._list(COMPANY, filter_, select)]

    def company(self, company_id: int) -> CrmCompany | None:
        found = self.companies({"=id": int(company_id)})
        return found[0] if found else None

    def companies_by_inn(self, inn: str) -> list[int]:
        method = "crm.requisite.list"
        raw = self.bitrix.call(
            method, {"filter": {"ENTITY_TYPE_ID": COMPANY, "RQ_INN": inn}, "select": ["ID", "ENTITY_ID", "RQ_INN"]}
        )

        def ids(value: Any) -> list[int]:
            rows = [obj(r, "requisite") for r in items(value, method)]
            return sorted({integer(r, "ENTITY_ID", "requisite") for r in rows if str(r.get("RQ_INN")) == inn})

        result: list[int] = self._parse(method, ids, raw)
        return result

    def inns(self, company_id: int) -> list[str]:
        method = "crm.requisite.list"
        raw = self.bitrix.call(
            method,
            {"filter": {"ENTITY_TYPE_ID": COMPANY, "ENTITY_ID": int(company_id)}, "select": ["ID", "RQ_INN"]},
        )

        def inns(value: Any) -> list[str]:
            return [str(obj(r, "requisite").get("RQ_INN") or "") for r in items(value, method)]

        return [i for i in self._parse(method, inns, raw) if i]

    def currencies(self) -> list[str]:
        """The portal's currency codes (crm.currency.list: inferred, not in our API notes; the
        caller treats a failure as "unknown", never as "no currencies")."""
        method = "crm.currency.list"
        raw = self.bitrix.call(method, {})

        def codes(value: Any) -> list[str]:
            return [str(obj(c, "currency").get("CURRENCY") or "") for c in items(value, method)]

        found: list[str] = self._parse(method, codes, raw)
        return [code for code in found if code]

    # -- invoices --------------------------------------------------------------------------
    def default_category(self) -> int:
        method = "crm.category.list"
        raw = self.bitrix.call(method, {"entityTypeId": INVOICE})

        def pick(value: Any) -> int:
            categories = [obj(c, "category") for c in items(obj(value, method).get("categories"), method)]
            default = [c for c in categories if c.get("isDefault") in ("Y", True)] or categories
            if not default:
                raise ParseError("crm.category.list: no invoice pipeline")
            return integer(default[0], "id", "category")

        category: int = self._parse(method, pick, raw)
        return category

    def stages(self, category_id: int) -> list[Stage]:
        method = "crm.status.list"
        raw = self.bitrix.call(method, {"filter": {"ENTITY_ID": f"SMART_INVOICE_STAGE_{int(category_id)}"}})
        stages: list[Stage] = self._parse(method, parse_stages, raw)
        return stages

    def invoices(self, filter_: dict[str, Any]) -> list[Invoice]:
        return [self._parse("crm.item.list", parse_invoice, r) for r in self._list(INVOICE, filter_, INVOICE_SELECT)]

    def invoice_by_xml_id(self, xml_id: str) -> Invoice | None:
        found = [i for i in self.invoices({"=xmlId": xml_id}) if i.xml_id == xml_id]
        return min(found, key=lambda i: i.id) if found else None

    def add_invoice(self, fields: dict[str, Any]) -> Invoice:
        method = "crm.item.add"
        raw = self.bitrix.call(method, {"entityTypeId": INVOICE, "fields": fields}, write=True)
        invoice: Invoice = self._parse(method, lambda r: parse_invoice(obj(r, method).get("item")), raw)
        return invoice

    def invoice_has_lines(self, invoice_id: int) -> bool:
        method = "crm.item.productrow.list"
        raw = self.bitrix.call(method, {"filter": {"=ownerType": "SI", "=ownerId": int(invoice_id)}, "start": -1})
        rows = self._parse(method, lambda r: items(obj(r, method).get("productRows", []), "productRows"), raw)
        return bool(rows)

    def set_invoice_lines(self, invoice_id: int, lines: list[InvoiceLine]) -> None:
        rows = [
            {"productName": line.name, "price": float(line.price), "quantity": float(line.quantity)} for line in lines
        ]
        self.bitrix.call(
            "crm.item.productrow.set", {"ownerType": "SI", "ownerId": int(invoice_id), "productRows": rows}, write=True
        )


def date_param(value: date) -> str:
    """A plain `YYYY-MM-DD` (crm-billing.md open question 8: inferred to be accepted by filters)."""
    return value.isoformat()
