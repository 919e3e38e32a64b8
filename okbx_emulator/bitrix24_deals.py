"""Deals, their pipelines and stages, and CRM contacts in the Bitrix24 emulator (the sales route).

It follows /work/shared/api/routes-files.md §1: `crm.item.*` with `entityTypeId: 2` (deals) and
`3` (contacts), typed answers under `result.item(s)`; pipelines from `crm.category.list/get`
(pipeline 0 "General" always exists, `isDefault: "Y"`, sorted by `sort`; pipelines the webhook
user cannot read are absent); stages from `crm.status.list` with `ENTITY_ID` `DEAL_STAGE` (bare
ids) or `DEAL_STAGE_<n>` (`C<n>:` ids, `CATEGORY_ID` a string) and `SEMANTICS` null/`S`/`F`.

Deal semantics (§1.2/§1.3): defaults on add (title "Deal #<id>", pipeline 0, its first stage, the
webhook user as assignee, base currency, first source and type, begindate today, closedate a
week later); computed `stageSemanticId`/`closed`; `movedTime`/`movedBy` on every stage change;
`closedate` reset to today on entering a final stage; `title`, `begindate` and `currencyId` cannot
be emptied; an update that changes nothing saves nothing; a stage outside the pipeline is
`CRM_FIELD_ERROR_VALUE_NOT_VALID`, except when the pipeline changes, where the server silently
takes the first stage of the new pipeline with the same semantics; portal-required fields give
`CRM_FIELD_ERROR_REQUIRED` on add, on a stage change within a pipeline, and for the changed
fields on a pipeline change.  Deals have no `xmlId`: okbx's marker is `originatorId`/`originId`.

`crm.item.*` calls for other entity types go on to the billing part (`CrmPortal`).  Inferred
facts are `# inferred:` and, where a test may want the other answer, constructor options.
Everything runs under the Bitrix24 emulator's lock; the seeding helpers take it themselves.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, time, timedelta, timezone
from typing import Any, Literal

from okbx_emulator import bitrix24_query as q
from okbx_emulator.bitrix24_crm import COMPANY, INVOICE, CrmPortal, Page
from okbx_emulator.bitrix24_items import Field, Table, empty, invalid_value, required
from okbx_emulator.bitrix24_query import ApiError

DEAL, CONTACT = 2, 3
_RO = False
DEAL_FIELDS = (
    Field("id", "int", "ID", _RO), Field("title", "str", "Name"), Field("categoryId", "int", "Category"),
    Field("stageId", "str", "Stage"), Field("stageSemanticId", "str", "Stage group", _RO),
    Field("closed", "yn", "Closed", _RO), Field("opened", "yn", "Available to everyone"),
    Field("companyId", "int", "Company"), Field("contactId", "int", "Contact"),
    Field("contactIds", "ints", "Contacts"), Field("assignedById", "int", "Responsible person"),
    Field("observers", "ints", "Observers"), Field("opportunity", "number", "Amount"),
    Field("isManualOpportunity", "yn", "Manual amount"), Field("currencyId", "str", "Currency"),
    Field("sourceId", "str", "Source"), Field("sourceDescription", "str", "Source information"),
    Field("typeId", "str", "Type"), Field("comments", "str", "Comment"),
    Field("originatorId", "str", "External source"), Field("originId", "str", "External source item ID"),
    Field("begindate", "date", "Start date"), Field("closedate", "date", "Close date"),
    Field("createdTime", "datetime", "Created on", _RO), Field("createdBy", "int", "Created by", _RO),
    Field("updatedTime", "datetime", "Modified on", _RO), Field("updatedBy", "int", "Modified by", _RO),
    Field("movedTime", "datetime", "Stage changed on", _RO), Field("movedBy", "int", "Stage changed by", _RO),
    Field("lastActivityTime", "datetime", "Last activity", _RO),
    Field("lastActivityBy", "int", "Last activity by", _RO),
)  # fmt: skip
CONTACT_FIELDS = (
    Field("id", "int", "ID", _RO), Field("name", "str", "First name"), Field("secondName", "str", "Second name"),
    Field("lastName", "str", "Last name"), Field("companyId", "int", "Company"),
    Field("assignedById", "int", "Responsible person"), Field("opened", "yn", "Available to everyone"),
    Field("comments", "str", "Comment"), Field("originatorId", "str", "External source"),
    Field("originId", "str", "External source item ID"),
    Field("createdTime", "datetime", "Created on", _RO), Field("createdBy", "int", "Created by", _RO),
    Field("updatedTime", "datetime", "Modified on", _RO), Field("updatedBy", "int", "Modified by", _RO),
    Field("fm", "fm", "Communications"),  # inferred shape: [{typeId, valueType, value}], only with select *
)  # fmt: skip
# code, name, semantics ("" in progress, "S" success, "F" failure): the documented default set
DEFAULT_STAGES = [
    ("NEW", "Новая", ""), ("PREPARATION", "Подготовка документов", ""),
    ("PREPAYMENT_INVOICE", "Счёт на предоплату", ""), ("EXECUTING", "В работе", ""),
    ("FINAL_INVOICE", "Финальный счёт", ""), ("WON", "Сделка успешна", "S"),
    ("LOSE", "Сделка провалена", "F"), ("APOLOGY", "Анализ причины провала", "F"),
]  # fmt: skip
# inferred: OTHER exists on real portals besides the documented CALL, WEB, ADVERTISING
DICTIONARIES = {
    "SOURCE": [("CALL", "Звонок"), ("EMAIL", "Электронная почта"), ("WEB", "Веб-сайт"),
               ("ADVERTISING", "Реклама"), ("OTHER", "Другое")],
    "DEAL_TYPE": [("SALE", "Продажа"), ("COMPLEX", "Комплексная продажа"), ("GOODS", "Продажа товара"),
                  ("SERVICE", "Продажа услуги")],
}  # fmt: skip
# inferred from the doc's truncated "C10:PREPAYMENT_INVOIC": ids of pipeline n are cut to 21 characters
STAGE_ID_MAX = 21
_SEMANTIC_NAME = {"": "process", "S": "success", "F": "failure"}
_COLORS = {"": "#39A8EF", "S": "#7BD500", "F": "#FF5752"}
_CURRENCIES = ("RUB", "USD", "EUR", "KZT", "BYN", "UAH")
_DEAL_METHODS = ("crm.item.add", "crm.item.get", "crm.item.update", "crm.item.list")
DEAL_METHODS = dict(zip(_DEAL_METHODS, ("item_add", "item_get", "item_update", "item_list"), strict=True))
DEAL_METHODS |= {"crm.category.list": "category_list", "crm.category.get": "category_get"}
DEAL_METHODS |= {"crm.status.list": "status_list"}
_NO_RIGHT = ApiError(400, "ACCESS_DENIED", "Access denied")


class DealPortal:
    def __init__(
        self,
        lock: threading.Lock,
        now: Callable[[], datetime],
        tz: timezone,
        crm: CrmPortal,
        webhook_user: Callable[[], int],
        *,
        origin_filter: Literal["exact", "ignored"] = "exact",  # inferred (§1.4, §9.1): filterable, exact
        add_repicks_stage: bool = True,  # inferred (§1.3, §9.6): add with categoryId re-picks a foreign stage
        reject_unknown_links: bool = True,  # inferred (§1.2): a nonexistent companyId/contact is refused
        close_date_sync: bool = True,  # source: the portal setting that moves closedate on a final stage
        assign_own_only: bool = False,  # source: "add deal" right "own only" forces the assignee
        required_fields: Mapping[str, str] | None = None,  # portal settings: field -> title
        base_currency: str = "RUB",
        field_titles: Mapping[str, str] | None = None,  # inferred: the titles quoted in error texts
        intranet_user: bool = True,  # False: an extranet webhook owner (403 allowed_only_intranet_user)
    ) -> None:
        self._lock, self._now, self._tz, self._crm, self._user = lock, now, tz, crm, webhook_user
        self.origin_filter, self.add_repicks_stage = origin_filter, add_repicks_stage
        self.reject_unknown_links, self.close_date_sync = reject_unknown_links, close_date_sync
        self.assign_own_only, self.base_currency = assign_own_only, base_currency
        self.required_fields = dict(required_fields or {})
        self.intranet_user = intranet_user
        titles = dict(field_titles or {})
        deal_fields = tuple(Field(f.name, f.kind, titles.get(f.name, f.title), f.writable) for f in DEAL_FIELDS)
        self.deals, self.contacts = Table(DEAL, deal_fields, tz), Table(CONTACT, CONTACT_FIELDS, tz)
        self._pipelines: dict[int, dict[str, Any]] = {}
        self._hidden: set[int] = set()  # pipelines the webhook user may not read
        self._stage_rows = 0
        self._add_pipeline_locked("General", 0, 300, DEFAULT_STAGES)

    # -- seeding and human actions ---------------------------------------------------------------
    def add_pipeline(
        self, name: str, *, id: int | None = None, sort: int = 200, stages: Iterable[tuple[str, str, str]] = ()
    ) -> int:
        """A sales pipeline (`C<id>:` stage ids); `stages` as (code, name, "" | "S" | "F")."""
        with self._lock:
            new_id = id if id is not None else max(self._pipelines) + 1
            if new_id <= 0 or new_id in self._pipelines:
                raise ValueError(f"pipeline id {new_id} is taken or not positive")
            self._add_pipeline_locked(name, new_id, sort, list(stages) or DEFAULT_STAGES)
            return new_id

    def hide_pipeline(self, category_id: int, hidden: bool = True) -> None:
        """Take away (or give back) the webhook user's right to read this pipeline and its deals."""
        with self._lock:
            self._pipeline(category_id)
            if category_id == 0:  # source: pipeline 0 is always available
                raise ValueError("pipeline 0 cannot be hidden")
            (self._hidden.add if hidden else self._hidden.discard)(category_id)

    def stage_id(self, category_id: int, code: str) -> str:
        """The STATUS_ID of a stage code in a pipeline (ids may be truncated: read, never build)."""
        with self._lock:
            for stage in self._pipeline(category_id)["stages"]:
                if stage["CODE"] == code or stage["STATUS_ID"] == code:
                    return str(stage["STATUS_ID"])
            raise ValueError(f"no stage {code!r} in pipeline {category_id}")

    def add_contact(
        self, name: str, last_name: str = "", *, company_id: int | None = None, email: str = "", phone: str = ""
    ) -> int:
        fm = [{"typeId": "EMAIL", "valueType": "WORK", "value": email}] if email else []
        fm += [{"typeId": "PHONE", "valueType": "WORK", "value": phone}] if phone else []
        fields = {"name": name, "lastName": last_name, "companyId": company_id, "fm": fm}
        with self._lock, _as_value_error():
            return int(self._contact_add(fields, self._user())["id"])

    def add_deal(self, title: str, *, by_user: int, **fields: Any) -> int:
        """A salesperson creates a deal in the UI; `fields` are crm.item names (categoryId, stageId ...)."""
        with self._lock, _as_value_error():
            return int(self._deal_add({"title": title, "assignedById": by_user, **fields}, by_user)["id"])

    def move_deal(self, deal_id: int, stage: str, *, by_user: int) -> None:
        """A salesperson drags the deal to a stage (a code of its pipeline or any stage id; another
        pipeline's stage moves it there).  The UI only offers what the portal allows: no checks."""
        with self._lock:
            deal = self._existing(deal_id)
            category = self._pipeline(deal["categoryId"])
            found = [s for s in category["stages"] if stage in (s["CODE"], s["STATUS_ID"])]
            found = found or [s for p in self._pipelines.values() for s in p["stages"] if s["STATUS_ID"] == stage]
            if not found:
                raise ValueError(f"no stage {stage!r}")
            changes = {"stageId": found[0]["STATUS_ID"], "categoryId": found[0]["CATEGORY"]}
            self._save(deal, {k: v for k, v in changes.items() if deal[k] != v}, by_user)

    def edit_deal(self, deal_id: int, *, by_user: int, **fields: Any) -> None:
        """A salesperson edits the deal card (title, opportunity, comments ...)."""
        with self._lock, _as_value_error():
            self._deal_update(self._existing(deal_id), fields, by_user)

    def delete_deal(self, deal_id: int) -> None:
        with self._lock:
            self._existing(deal_id)
            del self.deals.rows[deal_id]

    def deal(self, deal_id: int) -> dict[str, Any]:
        with self._lock:
            return self.deals.render(self._existing(deal_id), ["*"])

    def all_deals(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.deals.render(row, ["*"]) for _, row in sorted(self.deals.rows.items())]

    # -- for the timeline (caller holds the lock) --------------------------------------------------
    def owner(self, entity_type_id: int, owner_id: int) -> dict[str, Any] | None:
        """A deal or contact the webhook user may read and change; None if missing or hidden."""
        if entity_type_id == DEAL:
            row = self.deals.rows.get(owner_id)
            return row if row is not None and row["categoryId"] not in self._hidden else None
        if entity_type_id == CONTACT:
            return self.contacts.rows.get(owner_id)
        if entity_type_id == COMPANY and self._crm.has_company(owner_id):
            return {"id": owner_id}
        return None

    def touch_activity(self, deal_id: int, author_id: int) -> None:
        """§2.6: a timeline entry by someone other than the assignee moves `lastActivity*` and,
        through the background update operation, `updatedTime` (by the calling user, inferred)."""
        deal = self.deals.rows[deal_id]
        if author_id != deal["assignedById"]:
            now = self._now()
            deal.update(lastActivityTime=now, lastActivityBy=author_id, updatedTime=now, updatedBy=self._user())

    # -- REST methods -------------------------------------------------------------------------------
    def item_add(self, params: Any) -> Any:
        named = q.as_mapping(params)
        kind = self._entity(named)
        if kind not in (DEAL, CONTACT):
            return self._crm.item_add(params)
        fields = _fields_param(named)
        row = self._deal_add(fields, self._user()) if kind == DEAL else self._contact_add(fields, self._user())
        return {"item": self._table(kind).render(row, ["*"] if kind == DEAL else None)}

    def item_get(self, params: Any) -> Any:
        named = q.as_mapping(params)
        kind = self._entity(named)
        if kind not in (DEAL, CONTACT):
            return self._crm.item_get(params)
        row = self._readable(kind, named.get("id"), "You do not have permission to view this item")
        return {"item": self._table(kind).render(row, ["*"] if kind == DEAL else None)}

    def item_update(self, params: Any) -> Any:
        named = q.as_mapping(params)
        kind = self._entity(named)
        if kind not in (DEAL, CONTACT):
            return self._crm.item_update(params)
        row = self._readable(kind, named.get("id"), "Access denied")
        fields = _fields_param(named)
        if kind == DEAL:
            self._deal_update(row, fields, self._user())
        else:
            self._save(row, {k: v for k, v in self.contacts.clean(fields).items() if row.get(k) != v}, self._user())
        return {"item": self._table(kind).render(row, ["*"] if kind == DEAL else None)}

    def item_list(self, params: Any) -> Any:
        named = q.as_mapping(params)
        kind = self._entity(named)
        if kind not in (DEAL, CONTACT):
            return self._crm.item_list(params)
        if kind == DEAL and self.origin_filter == "ignored":
            filters = {k: v for k, v in q.as_mapping(named.get("filter")).items() if "origin" not in k}
            named = named | {"filter": filters}
        visible = (lambda row: row["categoryId"] not in self._hidden) if kind == DEAL else (lambda row: True)
        return Page(*self._table(kind).listing(named, visible))

    def category_list(self, params: Any) -> Any:
        named = q.as_mapping(params)
        if q.lax_int(named.get("entityTypeId")) != DEAL:
            return self._crm.category_list(params)
        visible = [p for i, p in self._pipelines.items() if i not in self._hidden]
        rows = [_category_json(p) for p in sorted(visible, key=lambda p: (p["sort"], p["id"]))]
        return Page({"categories": rows}, len(rows), None)

    def category_get(self, params: Any) -> Any:
        named = q.as_mapping(params)
        wanted = q.lax_int(named.get("id"))
        if q.lax_int(named.get("entityTypeId")) == DEAL:
            found = [_category_json(p) for i, p in self._pipelines.items() if i == wanted and i not in self._hidden]
        else:
            listed = self._crm.category_list(params)["categories"]
            found = [c for c in listed if c["id"] == wanted]
        if not found:
            raise ApiError(400, "NOT_FOUND", "Category not found")  # inferred wording
        return {"category": found[0]}

    def status_list(self, params: Any) -> Any:
        filters = q.as_mapping(q.as_mapping(params).get("filter"))
        entity = filters.get("ENTITY_ID")
        mine = self._status_rows()
        if entity is None:
            rows = self._crm.status_list(params) + mine
        elif str(entity) in {r["ENTITY_ID"] for r in mine} or str(entity).startswith("DEAL_STAGE"):
            rows = mine
        else:
            return self._crm.status_list(params)
        rows = [r for r in rows if all(str(r.get(k)) == str(v) for k, v in filters.items())]
        return Page(rows, len(rows), None)

    # -- deals --------------------------------------------------------------------------------------
    def _deal_add(self, raw: Mapping[str, Any], actor: int) -> dict[str, Any]:
        fields = self._clean_deal(raw)
        category_given = fields.get("categoryId") is not None
        pipeline = self._category(fields["categoryId"]) if category_given else self._pipeline(0)
        stage = fields.get("stageId") or pipeline["stages"][0]["STATUS_ID"]
        if _stage(pipeline, stage) is None:
            if not (category_given and self.add_repicks_stage):
                raise invalid_value(self.deals.fields["stageId"].title)
            stage = self._repick(pipeline, stage)
        self._check_links(fields)
        now, today = self._now(), self._today()
        deal: dict[str, Any] = {
            "title": None, "opened": "Y", "contactIds": [], "observers": [], "isManualOpportunity": "N",
            "currencyId": self.base_currency, "sourceId": DICTIONARIES["SOURCE"][0][0],
            "typeId": DICTIONARIES["DEAL_TYPE"][0][0], "begindate": today, "closedate": today + timedelta(days=7),
            **{k: v for k, v in fields.items() if not empty(v)}, "assignedById": fields.get("assignedById") or actor,
            "categoryId": pipeline["id"], "createdTime": now, "createdBy": actor, "updatedTime": now,
            "updatedBy": actor, "lastActivityTime": now, "lastActivityBy": actor,
        }  # fmt: skip
        if self.assign_own_only:
            deal["assignedById"] = actor
        deal["contactId"] = (deal["contactIds"] or [None])[0]
        deal["id"] = self.deals.last_id + 1
        deal["title"] = deal["title"] or f"Deal #{deal['id']}"  # doc: "Deal #<id>", localised
        for name, title in self.required_fields.items():
            if empty(deal.get(name)):
                raise required(title)
        self.deals.new_id()
        self._set_stage(deal, stage, actor)
        self.deals.rows[deal["id"]] = deal
        return deal

    def _deal_update(self, deal: dict[str, Any], raw: Mapping[str, Any], actor: int) -> None:
        fields = self._clean_deal(raw)
        for name in ("title", "begindate", "currencyId"):  # source: CanNotBeEmptied, the old value stays
            if name in fields and empty(fields[name]):
                del fields[name]
        moving = "categoryId" in fields and fields["categoryId"] != deal["categoryId"]
        pipeline = self._category(fields["categoryId"]) if moving else self._pipeline(deal["categoryId"])
        stage = fields.get("stageId") or deal["stageId"]
        if _stage(pipeline, stage) is None:
            if not moving:
                raise invalid_value(self.deals.fields["stageId"].title)
            stage = self._repick(pipeline, stage)
        fields |= {"categoryId": pipeline["id"], "stageId": stage}
        self._check_links(fields)
        changes = {k: v for k, v in fields.items() if deal.get(k) != v}
        if "contactIds" in changes:
            changes["contactId"] = (changes["contactIds"] or [None])[0]
        result = deal | changes
        checked = self.required_fields if "stageId" in changes and not moving else {}
        checked = {k: t for k, t in self.required_fields.items() if k in changes} if moving else checked
        for name, title in checked.items():
            if empty(result.get(name)):
                raise required(title)
        self._save(deal, changes, actor)

    def _save(self, row: dict[str, Any], changes: dict[str, Any], actor: int) -> None:
        """Nothing changed: nothing saved, `updatedTime` untouched (source: Operation::launch)."""
        if not changes:
            return
        stage = changes.pop("stageId", None)
        row.update(changes)
        if stage is not None:
            self._set_stage(row, stage, actor)
        row.update(updatedTime=self._now(), updatedBy=actor)

    def _clean_deal(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        fields = self.deals.clean(raw)
        if "contactIds" not in fields and "contactId" in fields:  # inferred: the deprecated single form
            fields["contactIds"] = [] if fields["contactId"] is None else [fields["contactId"]]
        fields.pop("contactId", None)
        if fields.get("comments"):
            fields["comments"] = bb_from_html(fields["comments"])
        for name, dictionary in (("sourceId", "SOURCE"), ("typeId", "DEAL_TYPE")):
            if not empty(fields.get(name)) and fields[name] not in dict(DICTIONARIES[dictionary]):
                raise invalid_value(self.deals.fields[name].title)  # inferred: codes are checked
        if not empty(fields.get("currencyId")) and fields["currencyId"] not in _CURRENCIES:
            raise invalid_value(self.deals.fields["currencyId"].title)
        return fields

    def _check_links(self, fields: Mapping[str, Any]) -> None:
        if not self.reject_unknown_links:
            return
        company = fields.get("companyId")
        if company is not None and not self._crm.has_company(company):
            raise invalid_value(self.deals.fields["companyId"].title)
        if any(c not in self.contacts.rows for c in fields.get("contactIds") or []):
            raise invalid_value(self.deals.fields["contactIds"].title)

    def _set_stage(self, deal: dict[str, Any], stage_id: str, actor: int) -> None:
        stage = _stage(self._pipeline(deal["categoryId"]), stage_id)
        assert stage is not None, "validated by the caller"
        semantics = stage["SEMANTICS"]
        now = self._now()
        deal.update(stageId=stage_id, stageSemanticId=semantics or "P", closed="Y" if semantics else "N")
        deal.update(movedTime=now, movedBy=actor)
        if semantics and self.close_date_sync:
            deal["closedate"] = self._today()  # source: CloseDate follows a final stage

    def _repick(self, pipeline: dict[str, Any], given: str) -> str:
        """Source: the first stage of the new pipeline with the given stage's semantics."""
        known = [s for p in self._pipelines.values() for s in p["stages"] if s["STATUS_ID"] == given]
        semantics = known[0]["SEMANTICS"] if known else ""
        for stage in pipeline["stages"]:
            if stage["SEMANTICS"] == semantics:
                return str(stage["STATUS_ID"])
        raise invalid_value(self.deals.fields["stageId"].title)  # source text: "Stage in new category is not found"

    # -- plumbing -----------------------------------------------------------------------------------
    def _entity(self, named: Mapping[str, Any]) -> int:
        kind = q.lax_int(named.get("entityTypeId"))
        if kind not in (DEAL, CONTACT, COMPANY, INVOICE, 5):  # 5, old invoices: the billing part refuses
            raise ApiError(400, "NOT_FOUND", "Smart process not found")
        if not self.intranet_user:
            raise ApiError(403, "allowed_only_intranet_user", "Action is allowed only for intranet users")
        return kind

    def _table(self, kind: int) -> Table:
        return self.deals if kind == DEAL else self.contacts

    def _readable(self, kind: int, raw_id: Any, denied: str) -> dict[str, Any]:
        item_id = q.lax_int(raw_id)
        if item_id is None:
            raise ApiError(400, "100", "Could not find value for parameter {id}")  # inferred wording
        row = self._table(kind).rows.get(item_id)
        if row is None:
            raise ApiError(400, "NOT_FOUND", "Element not found")
        if kind == DEAL and row["categoryId"] in self._hidden:
            raise ApiError(400, "ACCESS_DENIED", denied)
        return row

    def _category(self, category_id: Any) -> dict[str, Any]:
        pipeline = self._pipelines.get(category_id) if isinstance(category_id, int) else None
        if pipeline is None:
            raise invalid_value(self.deals.fields["categoryId"].title)
        if category_id in self._hidden:
            raise ApiError(400, "CRM_FIELD_ERROR_CATEGORY_NOT_AVAILABLE", "New category is not available")
        return pipeline

    def _pipeline(self, category_id: int) -> dict[str, Any]:
        if category_id not in self._pipelines:
            raise ValueError(f"no pipeline {category_id}")
        return self._pipelines[category_id]

    def _existing(self, deal_id: int) -> dict[str, Any]:
        if deal_id not in self.deals.rows:
            raise ValueError(f"no deal {deal_id}")
        return self.deals.rows[deal_id]

    def _contact_add(self, raw: Mapping[str, Any], actor: int) -> dict[str, Any]:
        fields = self.contacts.clean(raw)
        if self.reject_unknown_links and fields.get("companyId") is not None:
            if not self._crm.has_company(fields["companyId"]):
                raise invalid_value("Company")
        now = self._now()
        contact = {"opened": "Y", "fm": [], "assignedById": actor, **{k: v for k, v in fields.items() if v is not None}}
        contact |= {"id": self.contacts.new_id(), "createdTime": now, "createdBy": actor}
        contact |= {"updatedTime": now, "updatedBy": actor}
        for n, entry in enumerate(contact["fm"], start=1):
            entry.setdefault("id", contact["id"] * 100 + n)
        self.contacts.rows[contact["id"]] = contact
        return contact

    def _today(self) -> datetime:
        return datetime.combine(self._now().astimezone(self._tz).date(), time(), self._tz)

    def _add_pipeline_locked(self, name: str, category_id: int, sort: int, stages: list[tuple[str, str, str]]) -> None:
        rows = []
        for number, (code, title, semantics) in enumerate(stages, start=1):
            if semantics not in _SEMANTIC_NAME:
                raise ValueError(f"stage semantics must be '', 'S' or 'F', got {semantics!r}")
            self._stage_rows += 1
            status_id = code[:22] if category_id == 0 else f"C{category_id}:{code}"[:STAGE_ID_MAX]
            rows.append({"ID": self._stage_rows, "CODE": code, "STATUS_ID": status_id, "NAME": title})
            rows[-1] |= {"SORT": number * 10, "SEMANTICS": semantics, "CATEGORY": category_id}
        if [s["SEMANTICS"] for s in rows].count("S") != 1 or rows[0]["SEMANTICS"]:
            raise ValueError("a pipeline starts in progress and has exactly one success stage")
        self._pipelines[category_id] = {"id": category_id, "name": name, "sort": sort, "stages": rows}

    def _status_rows(self) -> list[dict[str, Any]]:
        rows = []
        # inferred: the stage dictionary is not filtered by pipeline rights (only crm.category.list is)
        for category_id, pipeline in sorted(self._pipelines.items()):
            entity = "DEAL_STAGE" if category_id == 0 else f"DEAL_STAGE_{category_id}"
            for stage in pipeline["stages"]:
                semantics, color = stage["SEMANTICS"], _COLORS[stage["SEMANTICS"]]
                rows.append(
                    {"ID": str(stage["ID"]), "ENTITY_ID": entity, "STATUS_ID": stage["STATUS_ID"],
                     "NAME": stage["NAME"], "NAME_INIT": stage["NAME"], "SORT": str(stage["SORT"]), "SYSTEM": "Y",
                     "CATEGORY_ID": str(category_id) if category_id else None, "COLOR": color,
                     "SEMANTICS": semantics or None, "EXTRA": {"SEMANTICS": _SEMANTIC_NAME[semantics], "COLOR": color}}
                )  # fmt: skip
        for base, (entity, codes) in enumerate(DICTIONARIES.items(), start=1):
            for number, (code, name) in enumerate(codes, start=1):
                rows.append({"ID": str(base * 1000 + number), "ENTITY_ID": entity, "STATUS_ID": code, "NAME": name})
                rows[-1] |= {"NAME_INIT": name, "SORT": str(number * 10), "SYSTEM": "Y", "CATEGORY_ID": None}
        return rows


def _stage(pipeline: Mapping[str, Any], stage_id: Any) -> dict[str, Any] | None:
    return next((s for s in pipeline["stages"] if s["STATUS_ID"] == stage_id), None)


def _category_json(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    default = "Y" if pipeline["id"] == 0 else "N"
    return {"id": pipeline["id"], "name": pipeline["name"], "sort": pipeline["sort"], "entityTypeId": DEAL} | {
        "isDefault": default, "originId": "", "originatorId": ""
    }  # fmt: skip


def _fields_param(named: Mapping[str, Any]) -> Mapping[str, Any]:
    fields = named.get("fields")
    if not isinstance(fields, (Mapping, list)):
        raise ApiError(400, "100", "Could not find value for parameter {fields}")  # inferred wording
    return q.as_mapping(fields)


_TAGS = {"b": "B", "strong": "B", "i": "I", "em": "I", "u": "U", "s": "S", "strike": "S", "del": "S"}
_TAG = re.compile(r"<(/?)([a-zA-Z]+)([^>]*)>")


def bb_from_html(text: str) -> str:
    """Source (§1.2): HTML in `comments` is normalised to BB-code on save (inferred output)."""
    if not _TAG.search(text):
        return text

    def tag(match: re.Match[str]) -> str:
        closing, name, attrs = match.group(1), match.group(2).lower(), match.group(3)
        if name in _TAGS:
            return f"[{closing}{_TAGS[name]}]"
        if name == "br" or (name == "p" and closing):
            return "\n"
        if name == "a":
            href = re.search(r"""href\s*=\s*["']([^"']*)["']""", attrs)
            return "[/URL]" if closing else f"[URL={href.group(1)}]" if href else ""
        return ""

    return html.unescape(_TAG.sub(tag, text)).strip()


@contextmanager
def _as_value_error() -> Iterator[None]:
    """Seeding helpers share the REST validation; a Python caller gets ValueError."""
    try:
        yield
    except ApiError as error:
        raise ValueError(error.description) from error
