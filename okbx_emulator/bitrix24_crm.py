"""The CRM part of the Bitrix24 emulator: companies, smart invoices, stages, requisites (issue 10).

It follows /work/shared/api/crm-billing.md §2.2-2.4: `crm.item.*` with `entityTypeId` 4
(companies) and 31 (smart invoices; 5, the old invoices, answers ENTITY_TYPE_NOT_SUPPORTED),
camelCase fields, `begindate` = today and `closedate` = today + 7 days by default, stage ids
`DT31_<category>:N|S|P|D` plus a custom "overdue" stage, read through `crm.status.list` with
`SEMANTICS` (`S` success, `F` failure), `crm.category.list`, `crm.requisite.list` (RQ_INN ...),
`crm.item.productrow.set` with `ownerType: "SI"`, and the `crm.item.list` filter prefixes.
Paging is fixed at 50 rows with `start`.  Facts the reference only infers are tagged `# inferred:`.

Everything here runs under the Bitrix24 emulator's lock (its `handle`), and the seeding helpers
take that same lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import partial
from typing import Any

from okbx_emulator import bitrix24_query as q
from okbx_emulator.bitrix24_query import ApiError

COMPANY, INVOICE = 4, 31
_FILTER_PREFIXES = ("!=", ">=", "<=", "!@", "=%", "!%", "!", ">", "<", "=", "@", "%")
_INVOICE_FIELDS = (
    "id", "title", "xmlId", "accountNumber", "categoryId", "stageId", "previousStageId", "movedTime", "movedBy",
    "companyId", "contactId", "opportunity", "isManualOpportunity", "currencyId", "mycompanyId", "comments",
    "assignedById", "begindate", "closedate", "createdTime", "updatedTime", "parentId2",
)  # fmt: skip
_COMPANY_FIELDS = (
    "id",
    "title",
    "originatorId",
    "originId",
    "isMyCompany",
    "assignedById",
    "createdTime",
    "updatedTime",
)
_DATES = ("movedTime", "begindate", "closedate", "createdTime", "updatedTime")
_INTS = ("id", "categoryId", "companyId", "contactId", "mycompanyId", "assignedById", "movedBy", "parentId2")
_WRITABLE = {
    INVOICE: set(_INVOICE_FIELDS) - {"id", "accountNumber", "previousStageId", "movedTime", "movedBy", "createdTime"},
    COMPANY: set(_COMPANY_FIELDS) - {"id", "createdTime", "updatedTime"},
}
# Stage code, name, sort, semantics ("" = in process); DT31_<cat>:P paid, :D declined (doc §2.4)
STAGES = [("N", "Новый", 10, ""), ("S", "Отправлен клиенту", 20, ""), ("UC_OVERDUE", "Просрочен", 30, "")]
STAGES += [("P", "Оплачен", 40, "S"), ("D", "Отклонён", 50, "F")]


CRM_METHODS = {  # method -> CrmPortal handler, registered in the Bitrix24 emulator's method table
    "crm.item.add": "item_add",
    "crm.item.get": "item_get",
    "crm.item.update": "item_update",
    "crm.item.list": "item_list",
    "crm.item.productrow.set": "productrow_set",
    "crm.item.productrow.list": "productrow_list",
    "crm.status.list": "status_list",
    "crm.currency.list": "currency_list",
    "crm.category.list": "category_list",
    "crm.requisite.list": "requisite_list",
}


@dataclass(frozen=True)
class Page:
    """A list answer: the result plus the `total` and `next` keys of the envelope."""

    result: Any
    total: int | None
    next: int | None


def _not_supported(value: Any) -> ApiError:
    return ApiError(400, "ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {value} is not supported")  # inferred wording


class CrmPortal:
    def __init__(
        self,
        lock: threading.Lock,
        now: Callable[[], datetime],
        tz: timezone,
        *,
        invoice_category_id: int = 1,  # inferred: the default invoice pipeline's id varies per portal
    ) -> None:
        self._lock, self._now, self._tz = lock, now, tz
        self.invoice_category_id = invoice_category_id
        self._items: dict[int, dict[int, dict[str, Any]]] = {COMPANY: {}, INVOICE: {}}
        self._rows: dict[int, list[dict[str, Any]]] = {}  # invoice id -> product rows
        self._requisites: list[dict[str, Any]] = []
        self._ids = {COMPANY: 0, INVOICE: 0, "row": 0, "requisite": 0}

    # -- seeding and human actions ----------------------------------------------------------
    def add_company(
        self,
        title: str,
        *,
        origin_id: str | None = None,
        originator_id: str | None = None,
        inn: str | None = None,
        assigned_by_id: int | None = None,
    ) -> int:
        with self._lock:
            fields = {"title": title, "originatorId": originator_id, "originId": origin_id}
            company = self._insert(COMPANY, fields | {"assignedById": assigned_by_id})
            if inn is not None:
                self._ids["requisite"] += 1
                self._requisites.append(
                    {"ID": self._ids["requisite"], "ENTITY_TYPE_ID": COMPANY, "ENTITY_ID": company["id"]}
                    | {"RQ_INN": inn, "RQ_KPP": "", "RQ_COMPANY_NAME": title, "RQ_COMPANY_FULL_NAME": title}
                )
            return int(company["id"])

    def add_invoice(self, company_id: int, opportunity: float, *, closedate: date, stage: str = "N") -> int:
        """An invoice someone made by hand (not okbx): for debts."""
        with self._lock:
            fields = {"title": "Счёт", "companyId": company_id, "opportunity": opportunity, "currencyId": "RUB"}
            invoice = self._insert(INVOICE, fields | {"closedate": closedate.isoformat()})
            self._move(invoice, self.stage_id(stage))
            return int(invoice["id"])

    def move_invoice(self, invoice_id: int, stage: str) -> None:
        """A manager moves the invoice in the pipeline ("P" paid, "D" declined, ...)."""
        with self._lock:
            self._move(self._existing(INVOICE, invoice_id), self.stage_id(stage))

    def set_rows(self, invoice_id: int, rows: list[tuple[str, float, float]]) -> None:
        """A manager edits the invoice's product rows (name, price, quantity) in the UI."""
        payload = [{"productName": name, "price": price, "quantity": quantity} for name, price, quantity in rows]
        with self._lock:
            self.productrow_set({"ownerType": "SI", "ownerId": invoice_id, "productRows": payload})

    def stage_id(self, code: str) -> str:
        return f"DT31_{self.invoice_category_id}:{code}"

    def invoices(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render(INVOICE, i, None) | {"rows": list(self._rows.get(i["id"], []))} for i in self._all()]

    def _all(self) -> list[dict[str, Any]]:
        return list(self._items[INVOICE].values())

    def has_company(self, company_id: int) -> bool:
        """For the other CRM parts (deals, timeline): does this company exist?  Caller holds the lock."""
        return company_id in self._items[COMPANY]

    # -- methods ------------------------------------------------------------------------------
    def item_add(self, params: Any) -> Any:
        named = q.as_mapping(params)
        kind = self._entity_type(named)
        fields = named.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ApiError(400, "ERROR_ARGUMENT", "Required parameter fields is not specified")  # inferred wording
        item = self._insert(kind, {k: v for k, v in fields.items() if k in _WRITABLE[kind]})
        return {"item": self._render(kind, item, None)}

    def item_get(self, params: Any) -> Any:
        named = q.as_mapping(params)
        kind = self._entity_type(named)
        item_id = q.lax_int(named.get("id"))
        if item_id is None:
            raise ApiError(400, "ERROR_ARGUMENT", "Required parameter id is not specified")  # inferred wording
        return {"item": self._render(kind, self._existing(kind, item_id), None)}

    def item_update(self, params: Any) -> Any:
        named = q.as_mapping(params)
        kind = self._entity_type(named)
        item = self._existing(kind, q.lax_int(named.get("id")) or 0)
        fields = q.as_mapping(named.get("fields"))
        stage = fields.pop("stageId", None)
        item.update(self._clean(kind, {k: v for k, v in fields.items() if k in _WRITABLE[kind]}))
        if stage is not None and kind == INVOICE:
            self._move(item, self._valid_stage(str(stage)))
        item["updatedTime"] = self._now()
        return {"item": self._render(kind, item, None)}

    def item_list(self, params: Any) -> Page:
        named = q.as_mapping(params)
        kind = self._entity_type(named)
        select = [str(v) for v in q.as_mapping(named.get("select")).values()] or None
        filters = q.as_mapping(named.get("filter"))
        for key in filters:
            self._field(kind, q.split_prefix(key, _FILTER_PREFIXES)[1])
        rows = [row for _, row in sorted(self._items[kind].items()) if self._matches(kind, row, filters)]
        order = q.as_mapping(named.get("order"))
        for field, direction in reversed(list(order.items())):
            rows.sort(key=partial(_sort_value, self._field(kind, field)), reverse=str(direction).lower() == "desc")
        chunk, total, following = q.page(rows, named.get("start", 0))
        return Page({"items": [self._render(kind, row, select) for row in chunk]}, total, following)

    def productrow_set(self, params: Any) -> Any:
        named = q.as_mapping(params)
        if named.get("ownerType") != "SI":
            raise ApiError(400, "ERROR_ARGUMENT", "Owner type is not supported")  # inferred: only SI emulated
        invoice = self._existing(INVOICE, q.lax_int(named.get("ownerId")) or 0)
        rows = []
        for raw in q.as_mapping(named.get("productRows")).values():
            row = q.as_mapping(raw)
            if not str(row.get("productName", "")).strip():
                raise ApiError(400, "ERROR_ARGUMENT", "productName is required")  # inferred
            self._ids["row"] += 1
            price, quantity = float(row.get("price", 0)), float(row.get("quantity", 1))
            rows.append({"id": self._ids["row"], "ownerId": invoice["id"], "ownerType": "SI"} | row)
            rows[-1] |= {"price": price, "quantity": quantity}
        # doc: "set" replaces every row; inferred: the sum follows the rows unless set by hand
        self._rows[invoice["id"]] = rows
        if not invoice.get("isManualOpportunity"):
            invoice["opportunity"] = round(sum(r["price"] * r["quantity"] for r in rows), 2)
        return {"productRows": rows}

    def productrow_list(self, params: Any) -> Any:
        """Doc: `=ownerType` and `=ownerId` are required (REQUIRED_ARG_MISSING otherwise); one page
        of at most 50 rows; other conditions are ignored."""
        filters = q.as_mapping(q.as_mapping(params).get("filter"))
        if "=ownerType" not in filters or "=ownerId" not in filters:
            raise ApiError(400, "REQUIRED_ARG_MISSING", "Required argument missing: =ownerType, =ownerId")
        if filters["=ownerType"] != "SI":
            return {"productRows": []}  # only invoices are emulated
        rows = self._rows.get(q.lax_int(filters["=ownerId"]) or 0, [])
        start = q.lax_int(q.as_mapping(params).get("start")) or 0
        return {"productRows": [dict(r) for r in rows[max(start, 0) : max(start, 0) + 50]]}

    def currency_list(self, params: Any) -> list[dict[str, Any]]:
        """Inferred shape (not in our API notes): the portal's currencies, the base one first."""
        return [
            {"CURRENCY": code, "BASE": "Y" if code == "RUB" else "N", "SORT": sort}
            for sort, code in ((100, "RUB"), (200, "USD"), (300, "EUR"))
        ]

    def status_list(self, params: Any) -> list[dict[str, Any]]:
        entity = q.as_mapping(q.as_mapping(params).get("filter")).get("ENTITY_ID")
        prefix = f"SMART_INVOICE_STAGE_{self.invoice_category_id}"
        if entity not in (None, prefix):
            return []  # other dictionaries are not emulated: an empty list, as for an unknown one
        result = []
        for number, (code, name, sort, semantics) in enumerate(STAGES, start=1):
            extra = {"success": "S", "failure": "F"}
            result.append(
                {
                    "ID": str(number),
                    "ENTITY_ID": prefix,
                    "STATUS_ID": self.stage_id(code),
                    "NAME": name,
                    "NAME_INIT": name,
                    "SORT": str(sort),
                    "SYSTEM": "N" if code.startswith("UC_") else "Y",
                    "CATEGORY_ID": str(self.invoice_category_id),
                    "SEMANTICS": semantics or None,
                    "EXTRA": {"SEMANTICS": {v: k for k, v in extra.items()}.get(semantics, "process")},
                }
            )
        return result

    def category_list(self, params: Any) -> Any:
        named = q.as_mapping(params)
        if q.lax_int(named.get("entityTypeId")) != INVOICE:
            raise _not_supported(named.get("entityTypeId"))
        category = {"id": self.invoice_category_id, "name": "Счета", "sort": 500, "entityTypeId": INVOICE}
        return {"categories": [category | {"isDefault": "Y"}]}

    def requisite_list(self, params: Any) -> list[dict[str, Any]]:
        named = q.as_mapping(params)
        filters = q.as_mapping(named.get("filter"))
        select = [str(v) for v in q.as_mapping(named.get("select")).values()]
        result = []
        for row in self._requisites:
            if all(str(row.get(key.lstrip("="), "")) == str(value) for key, value in filters.items()):
                shown = {k: v for k, v in row.items() if not select or k in select}
                result.append({k: str(v) for k, v in shown.items()})  # classic methods print strings
        return result

    # -- internals ----------------------------------------------------------------------------
    def _entity_type(self, named: dict[str, Any]) -> int:
        kind = q.lax_int(named.get("entityTypeId"))
        if kind not in (COMPANY, INVOICE):
            raise _not_supported(named.get("entityTypeId"))  # 5 (old invoices) included, as documented
        return kind

    def _existing(self, kind: int, item_id: int) -> dict[str, Any]:
        item = self._items[kind].get(item_id)
        if item is None:
            raise ApiError(400, "NOT_FOUND", "Элемент не найден")  # inferred code and wording
        return item

    def _insert(self, kind: int, fields: dict[str, Any]) -> dict[str, Any]:
        self._ids[kind] += 1
        now = self._now()
        item: dict[str, Any] = {"id": self._ids[kind], "createdTime": now, "updatedTime": now}
        item |= self._clean(kind, fields)
        if kind == INVOICE:
            if not str(item.get("title") or "").strip():
                item["title"] = f"Счёт #{item['id']}"
            item.setdefault("categoryId", self.invoice_category_id)
            if item["categoryId"] != self.invoice_category_id:
                raise ApiError(400, "ERROR_ARGUMENT", "Направление не найдено")  # inferred wording
            item["accountNumber"] = f"{item['id']}"
            today = datetime.combine(now.astimezone(self._tz).date(), time(), self._tz)
            item.setdefault("begindate", today)  # doc: defaults to the creation date
            item.setdefault("closedate", today + timedelta(days=7))  # doc: creation date + 7 days
            item.setdefault("opportunity", 0.0)
            item.setdefault("currencyId", "RUB")
            self._move(item, self._valid_stage(str(item.pop("stageId", self.stage_id("N")))))
        self._items[kind][item["id"]] = item
        return item

    def _clean(self, kind: int, fields: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in fields.items():
            if key in _DATES and value not in (None, ""):
                result[key] = self._date(value, key)
            elif key in _INTS and value not in (None, ""):
                if (number := q.lax_int(value)) is None:
                    raise ApiError(400, "ERROR_ARGUMENT", f"Incorrect value of field {key}")  # inferred
                result[key] = number
            elif key == "opportunity":
                try:
                    result[key] = float(value)
                except (TypeError, ValueError):
                    raise ApiError(400, "ERROR_ARGUMENT", "Incorrect value of field opportunity") from None
            else:
                result[key] = value
        if kind == INVOICE and "companyId" in result and result["companyId"] not in self._items[COMPANY]:
            raise ApiError(400, "ERROR_ARGUMENT", f"Company {result['companyId']} not found")  # inferred
        return result

    def _date(self, value: Any, key: str) -> datetime:
        try:
            return q.parse_datetime(value, self._tz)
        except ValueError:
            raise ApiError(400, "ERROR_ARGUMENT", f"Incorrect value of field {key}") from None  # inferred

    def _valid_stage(self, stage: str) -> str:
        if stage not in {self.stage_id(code) for code, *_ in STAGES}:
            raise ApiError(400, "ERROR_ARGUMENT", f"Stage {stage} not found")  # inferred wording
        return stage

    def _move(self, item: dict[str, Any], stage: str) -> None:
        if item.get("stageId") != stage:
            item["previousStageId"], item["stageId"] = item.get("stageId"), stage
            item["movedTime"] = item["updatedTime"] = self._now()

    def _field(self, kind: int, field: str) -> str:
        known = _INVOICE_FIELDS if kind == INVOICE else _COMPANY_FIELDS
        if field not in known:
            raise ApiError(400, "ERROR_ARGUMENT", f"Unknown field {field}")  # inferred: strict on purpose
        return field

    def _matches(self, kind: int, row: dict[str, Any], filters: dict[str, Any]) -> bool:
        for key, expected in filters.items():
            op, field = q.split_prefix(key, _FILTER_PREFIXES)
            self._field(kind, field)
            actual = row.get(field)
            if field in _DATES:
                coerce: Callable[[Any], Any] = partial(self._date, key=field)
            elif field in _INTS:
                coerce = q.php_intval
            else:
                coerce = str
                actual = None if actual is None else str(actual)
            if op in ("=%", "!%", "%"):
                pattern = str(expected) if op == "=%" else f"%{expected}%"
                hit = actual is not None and q.like(pattern, str(actual))
                if hit == (op == "!%"):
                    return False
            elif not q.match(op, actual, expected, coerce):
                return False
        return True

    def _render(self, kind: int, item: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
        fields: tuple[str, ...] = _INVOICE_FIELDS if kind == INVOICE else _COMPANY_FIELDS
        if select and "*" not in select:
            fields = tuple(f for f in fields if f in select or f == "id")
        return {f: q.format_datetime(item.get(f), self._tz) if f in _DATES else item.get(f) for f in fields}


def _sort_value(field: str, row: dict[str, Any]) -> tuple[bool, Any]:
    return row.get(field) is None, row.get(field)
