"""Equipment, its dictionaries and service agreements in the Okdesk emulator (the document route).

It follows /work/shared/api/routes-files.md §5 and crm-billing.md §1.8/§1.9:

* an issue shows its equipment in three shapes: `equipment_ids: [int]` in `GET /issues/{id}`,
  `equipments: [{id, serial_number, inventory_number, equipment_kind: {code, name},
  equipment_manufacturer, equipment_model}]` in `/issues/list` items (observed in one client), and
  its agreement as `agreement: {id, title}` or null in both;
* `GET /equipments/{id}`: the documented object (`maintenance_entity_id`, `parent_id`, kind /
  manufacturer / model objects or null, the company object, `parameters[]`, `agreements[]`); no
  name field;
* `GET /equipments/list`: a bare array, filters `company_ids[]`, `maintenance_entity_ids[]`,
  `agreement_ids[]` (`0`: without), `created_since/until`, `equipment_kind_codes[]`,
  `equipment_manufacturer_codes[]`, `equipment_model_codes[]`, `custom_parameters[code]`;
  cursor paging `page[size]` <= 100, `page[from_id]` exclusive, `page[direction]`;
* `GET /equipments/?serial_number=|inventory_number=|search_string=`: ONE object when exactly
  one matches, else a list (observed);
* `GET /equipments/kinds/`, `/manufacturers/`, `/models/`: `search_string` and cursor paging;
* `/issues/count` takes `equipment_ids[]` and `agreement_ids[]` (`0`: without).

Agreements have no REST endpoint (§5.4): they exist only as `{id, title}` seen from issues and
equipment.  No API changes an issue's equipment (§5.1): people do it in the UI, here
`set_issue_equipment`.  Equipment writes (POST/PATCH) are not emulated.  Everything runs under the
Okdesk emulator's lock; the seeding helpers take it themselves.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any

from okbx_emulator.http import Request

Errors = dict[str, Any]
_NOT_INT = "должно быть целым числом"
_PAGE_ROUTES = ("kinds", "manufacturers", "models")
EQUIPMENT_ROUTES = [
    ("GET", "equipments/list", "GET /equipments/list", "equipment.api_list"),
    *[("GET", f"equipments/{name}", f"GET /equipments/{name}", f"equipment.api_{name}") for name in _PAGE_ROUTES],
    ("GET", "equipments", "GET /equipments", "equipment.api_search"),
    ("GET", r"equipments/(?P<id>[^/]+)", "GET /equipments/{id}", "equipment.api_get"),
]


class EquipmentBook:
    def __init__(
        self,
        lock: threading.Lock,
        now: Callable[[], datetime],
        tz: timezone,
        error: Callable[[int, Any], Exception],  # the Okdesk emulator's error answer
        *,
        company_name: Callable[[int], str | None],
        touch_issue: Callable[[int], None],  # raises ValueError for a missing issue
    ) -> None:
        self._lock, self._now, self._tz, self._error = lock, now, tz, error
        self._company_name, self._touch_issue = company_name, touch_issue
        self._dicts: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in _PAGE_ROUTES}
        self._agreements: dict[int, dict[str, Any]] = {}
        self._items: dict[int, dict[str, Any]] = {}
        self._issues: dict[int, dict[str, Any]] = {}  # issue id -> {"equipment_ids", "agreement_id"}
        self._last = {"kinds": 0, "manufacturers": 0, "models": 0, "agreement": 0, "item": 0}

    # -- seeding and human actions ----------------------------------------------------------------
    def add_kind(self, code: str, name: str, *, parameters: Iterable[tuple[str, str]] = ()) -> int:
        """An equipment kind (`equipment_kind`); `parameters` as (name, field_type)."""
        extra = {"parameters": [{"name": n, "field_type": t} for n, t in parameters]}
        return self._add_entry("kinds", code, name, extra)

    def add_manufacturer(self, code: str, name: str) -> int:
        return self._add_entry("manufacturers", code, name, {})

    def add_model(self, code: str, name: str, *, kind: str, manufacturer: str | None = None) -> int:
        with self._lock:
            refs: dict[str, Any] = {"equipment_kind": self._short(self._by_code("kinds", kind))}
            maker = self._by_code("manufacturers", manufacturer) if manufacturer else None
            refs["equipment_manufacturer"] = self._short(maker) if maker else None
        return self._add_entry("models", code, name, refs)

    def add_agreement(self, title: str, *, company_ids: Iterable[int] = ()) -> int:
        with self._lock:
            self._last["agreement"] += 1
            new_id = self._last["agreement"]
            self._agreements[new_id] = {"id": new_id, "title": title, "company_ids": list(company_ids)}
            return new_id

    def add_equipment(
        self,
        kind: str,
        *,
        company_id: int | None = None,
        serial_number: str = "",
        inventory_number: str = "",
        manufacturer: str | None = None,
        model: str | None = None,
        agreement_ids: Iterable[int] = (),
        maintenance_entity_id: int | None = None,
        parent_id: int | None = None,
        comment: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> int:
        """A piece of equipment under service; kind/manufacturer/model by code."""
        with self._lock:
            refs = {"kinds": self._by_code("kinds", kind)["id"]}
            for name, code in (("manufacturers", manufacturer), ("models", model)):
                refs[name] = self._by_code(name, code)["id"] if code else None
            if model and self._dicts["models"][refs["models"]]["equipment_kind"]["code"] != kind:
                raise ValueError(f"model {model!r} is not of kind {kind!r}")
            if company_id is not None and self._company_name(company_id) is None:
                raise ValueError(f"unknown company_id {company_id}")
            if unknown := set(agreement_ids) - set(self._agreements):
                raise ValueError(f"unknown agreement ids {sorted(unknown)}")
            if parent_id is not None and parent_id not in self._items:
                raise ValueError(f"unknown parent equipment {parent_id}")
            self._last["item"] += 1
            new_id = self._last["item"]
            self._items[new_id] = {
                "id": new_id, "serial_number": serial_number, "inventory_number": inventory_number,
                "comment": comment, "maintenance_entity_id": maintenance_entity_id, "parent_id": parent_id,
                "company_id": company_id, "agreement_ids": list(agreement_ids), "parameters": dict(parameters or {}),
                "created_at": self._now(), **refs,
            }  # fmt: skip
            return new_id

    def set_issue_equipment(self, issue_id: int, equipment_ids: Iterable[int]) -> None:
        """A consultant picks the issue's equipment in the UI (no API can, §5.1)."""
        with self._lock:
            wanted = list(dict.fromkeys(equipment_ids))
            if unknown := set(wanted) - set(self._items):
                raise ValueError(f"unknown equipment ids {sorted(unknown)}")
            self._touch_issue(issue_id)  # inferred: an edit in the UI bumps updated_at
            self._links(issue_id)["equipment_ids"] = wanted

    def set_issue_agreement(self, issue_id: int, agreement_id: int | None) -> None:
        with self._lock:
            if agreement_id is not None and agreement_id not in self._agreements:
                raise ValueError(f"unknown agreement {agreement_id}")
            self._touch_issue(issue_id)
            self._links(issue_id)["agreement_id"] = agreement_id

    # -- the issue's side (caller holds the lock) -----------------------------------------------------
    def issue_fields(self, issue_id: int) -> dict[str, Any]:
        links = self._issues.get(issue_id, {})
        return {"equipment_ids": list(links.get("equipment_ids", [])), "agreement": self._agreement(links)}

    def summary_fields(self, issue_id: int) -> dict[str, Any]:
        links = self._issues.get(issue_id, {})
        brief = [self._brief(self._items[i]) for i in links.get("equipment_ids", [])]
        return {"equipments": brief, "agreement": self._agreement(links)}

    def count_filters(self, request: Request, errors: Errors) -> list[Callable[[Any], bool]]:
        """`/issues/count?equipment_ids[]=&agreement_ids[]=` (`0`: without); issues have `.id`."""
        predicates: list[Callable[[Any], bool]] = []
        if (wanted := self._ids(request, "equipment_ids", errors)) is not None:
            predicates.append(lambda issue: bool(set(self._equipment_of(issue.id) or [0]) & wanted))
        if (agreements := self._ids(request, "agreement_ids", errors)) is not None:
            predicates.append(lambda issue: (self._issues.get(issue.id, {}).get("agreement_id") or 0) in agreements)
        return predicates

    # -- endpoints ----------------------------------------------------------------------------------
    def api_get(self, _request: Request, ref: str | None, _body: Any) -> dict[str, Any]:
        item = self._items.get(int(ref)) if ref and ref.isdigit() else None
        if item is None:
            raise self._error(404, "Оборудование не найдено")  # inferred wording
        return self._full(item)

    def api_list(self, request: Request, _ref: str | None, _body: Any) -> list[dict[str, Any]]:
        errors: Errors = {}
        size, direction, from_id = _cursor(request, errors)
        predicates = self._list_filters(request, errors)
        if errors:
            raise self._error(400, errors)
        rows = [i for i in self._items.values() if all(p(i) for p in predicates)]
        return [self._full(i) for i in _page(rows, size, direction, from_id)]

    def api_search(self, request: Request, _ref: str | None, _body: Any) -> Any:
        """One object for exactly one match, else a list (observed: apepenkov's comment, §4)."""
        if (text := request.query_value("search_string")) is not None:  # inferred: substring, any case
            found = [i for i in self._items.values() if text.lower() in _searchable(i)]
        elif (serial := request.query_value("serial_number")) is not None:
            found = [i for i in self._items.values() if i["serial_number"] == serial]
        elif (inventory := request.query_value("inventory_number")) is not None:
            found = [i for i in self._items.values() if i["inventory_number"] == inventory]
        else:
            raise self._error(400, "Не указаны параметры поиска")  # inferred wording
        shown = [self._full(i) for i in found]
        return shown[0] if len(shown) == 1 else shown

    def api_kinds(self, request: Request, _ref: str | None, _body: Any) -> list[dict[str, Any]]:
        return self._dictionary("kinds", request)

    def api_manufacturers(self, request: Request, _ref: str | None, _body: Any) -> list[dict[str, Any]]:
        return self._dictionary("manufacturers", request)

    def api_models(self, request: Request, _ref: str | None, _body: Any) -> list[dict[str, Any]]:
        return self._dictionary("models", request)

    # -- internals ----------------------------------------------------------------------------------
    def _dictionary(self, name: str, request: Request) -> list[dict[str, Any]]:
        errors: Errors = {}
        size, direction, from_id = _cursor(request, errors)
        if errors:
            raise self._error(400, errors)
        text = (request.query_value("search_string") or "").lower()  # inferred: code or name substring
        rows = [e for e in self._dicts[name].values() if text in e["code"].lower() or text in e["name"].lower()]
        return [dict(e) for e in _page(rows, size, direction, from_id)]

    def _list_filters(self, request: Request, errors: Errors) -> list[Callable[[dict[str, Any]], bool]]:
        checks: list[Callable[[dict[str, Any]], bool]] = []
        for param, key in (("company_ids", "company_id"), ("maintenance_entity_ids", "maintenance_entity_id")):
            if (ids := self._ids(request, param, errors)) is not None:
                checks.append(partial(_value_in, key, ids))
        if (agreements := self._ids(request, "agreement_ids", errors)) is not None:
            checks.append(lambda item: bool(set(item["agreement_ids"] or [0]) & agreements))
        for name, param in (("kinds", "kind"), ("manufacturers", "manufacturer"), ("models", "model")):
            if codes := request.query_values(f"equipment_{param}_codes[]"):
                wanted = {e["id"] for e in self._dicts[name].values() if e["code"] in codes}
                checks.append(partial(_value_in, name, wanted))
        for key in ("created_since", "created_until"):
            if (raw := request.query_value(key)) is not None:
                if (window := _window(raw, self._tz)) is None:
                    errors[key] = ["Неверный формат даты"]
                else:
                    checks.append(partial(_created_within, window, key.endswith("since")))
        for key, value in request.query:  # custom_parameters[code]=value: exact text (inferred: strings only)
            if match := re.fullmatch(r"custom_parameters\[([^\]]+)\]", key):
                checks.append(partial(_parameter_is, match.group(1), value))
        return checks

    def _ids(self, request: Request, param: str, errors: Errors) -> set[int] | None:
        raw = request.query_values(f"{param}[]")
        if not raw:
            return None
        if not all(re.fullmatch(r"\d+", v.strip()) for v in raw):
            errors[param] = [_NOT_INT]
            return set()
        return {int(v) for v in raw}

    def _add_entry(self, name: str, code: str, title: str, extra: dict[str, Any]) -> int:
        with self._lock:
            if not code.strip() or any(e["code"] == code for e in self._dicts[name].values()):
                raise ValueError(f"{name}: code {code!r} is empty or taken")
            self._last[name] += 1
            new_id = self._last[name]
            entry = {"id": new_id, "code": code, "name": title, "description": "", "visible": True}
            self._dicts[name][new_id] = entry | extra
            return new_id

    def _by_code(self, name: str, code: str | None) -> dict[str, Any]:
        found = [e for e in self._dicts[name].values() if e["code"] == code]
        if not found:
            raise ValueError(f"no {name} entry with code {code!r}")
        return found[0]

    @staticmethod
    def _short(entry: dict[str, Any]) -> dict[str, Any]:
        return {"id": entry["id"], "code": entry["code"], "name": entry["name"]}

    def _ref(self, name: str, entry_id: int | None) -> dict[str, Any] | None:
        if entry_id is None:
            return None
        entry = self._dicts[name][entry_id]
        return {"id": entry["id"], "code": entry["code"], "name": entry["name"], "description": entry["description"]}

    def _full(self, item: dict[str, Any]) -> dict[str, Any]:
        company_name = self._company_name(item["company_id"]) if item["company_id"] is not None else None
        company = None
        if company_name is not None:
            unmodelled = dict.fromkeys(("additional_name", "site", "email", "phone", "address"))
            company = {"id": item["company_id"], "name": company_name, **unmodelled, "comment": "", "attachments": []}
        return {
            **{k: item[k] for k in ("id", "serial_number", "inventory_number", "comment")},
            "maintenance_entity_id": item["maintenance_entity_id"], "parent_id": item["parent_id"],
            "equipment_kind": self._ref("kinds", item["kinds"]),
            "equipment_manufacturer": self._ref("manufacturers", item["manufacturers"]),
            "equipment_model": self._ref("models", item["models"]),
            "company": company,
            "parameters": [{"code": c, "name": c, "field_type": "ftstring", "value": v}
                           for c, v in item["parameters"].items()],
            "agreements": [{"id": a, "title": self._agreements[a]["title"]} for a in item["agreement_ids"]],
        }  # fmt: skip

    def _brief(self, item: dict[str, Any]) -> dict[str, Any]:
        def named(name: str) -> dict[str, Any] | None:
            ref = self._ref(name, item[name])
            return None if ref is None else {"code": ref["code"], "name": ref["name"]}

        return {
            **{k: item[k] for k in ("id", "serial_number", "inventory_number")},
            "equipment_kind": named("kinds"), "equipment_manufacturer": named("manufacturers"),
            "equipment_model": named("models"),
        }  # fmt: skip

    def _links(self, issue_id: int) -> dict[str, Any]:
        return self._issues.setdefault(issue_id, {"equipment_ids": [], "agreement_id": None})

    def _equipment_of(self, issue_id: int) -> list[int]:
        return list(self._issues.get(issue_id, {}).get("equipment_ids", []))

    def _agreement(self, links: dict[str, Any]) -> dict[str, Any] | None:
        agreement = self._agreements.get(links.get("agreement_id") or 0)
        return None if agreement is None else {"id": agreement["id"], "title": agreement["title"]}


def _value_in(key: str, wanted: set[int], item: dict[str, Any]) -> bool:
    return (item[key] or 0) in wanted  # 0 stands for "without"


def _created_within(window: tuple[datetime, datetime], since: bool, item: dict[str, Any]) -> bool:
    return bool(item["created_at"] >= window[0]) if since else bool(item["created_at"] < window[1])


def _parameter_is(code: str, value: str, item: dict[str, Any]) -> bool:
    return str(item["parameters"].get(code, "")) == value


def _searchable(item: dict[str, Any]) -> str:
    return " ".join(str(item[k]) for k in ("serial_number", "inventory_number", "comment")).lower()


def _cursor(request: Request, errors: Errors) -> tuple[int, str, int]:
    """`page[size]` (<= 100; inferred default 50), `page[direction]` (default reverse), `page[from_id]`."""
    size, from_id = 50, 0
    for name, maximum in (("size", 100), ("from_id", None)):
        raw = request.query_value(f"page[{name}]")
        if raw is None:
            continue
        value = int(raw) if re.fullmatch(r"-?\d+", raw.strip()) else None
        if value is None:
            errors.setdefault("page", {})[name] = [_NOT_INT]
        elif value < 1:
            errors.setdefault("page", {})[name] = ["должно быть больше 0"]
        elif maximum is not None and value > maximum:
            errors.setdefault("page", {})[name] = [f"должно быть меньше или равно {maximum}"]
        elif name == "size":
            size = value
        else:
            from_id = value
    direction = request.query_value("page[direction]") or "reverse"
    if direction not in ("reverse", "forward"):
        errors.setdefault("page", {})["direction"] = ["должен быть одним из: reverse, forward"]
    return size, direction, from_id


def _page(rows: list[dict[str, Any]], size: int, direction: str, from_id: int) -> list[dict[str, Any]]:
    """Documented: `from_id` is exclusive; forward from the lowest id, reverse from the highest."""
    ordered = sorted(rows, key=lambda r: r["id"], reverse=direction == "reverse")
    if from_id:
        ordered = [r for r in ordered if (r["id"] > from_id if direction == "forward" else r["id"] < from_id)]
    return ordered[:size]


def _window(text: str, tz: timezone) -> tuple[datetime, datetime] | None:
    """A `dd-mm-yyyy[ HH:MM]` filter value as the span it names, in the account offset."""
    found = re.fullmatch(r"(\d{2})-(\d{2})-(\d{4})(?: (\d{2}):(\d{2}))?", text.strip())
    if not found:
        return None
    day, month, year, hour, minute = found.groups()
    try:
        start = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), tzinfo=tz)
    except ValueError:
        return None
    return start, start + (timedelta(minutes=1) if hour else timedelta(days=1))
