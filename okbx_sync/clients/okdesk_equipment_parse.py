"""Pure parsers from Okdesk equipment JSON (../shared/api/routes-files.md §5) to our model.

One parser reads the three shapes in which equipment appears: `GET /equipments/{id}` and
`/equipments/list` items (`equipment_kind`, `equipment_manufacturer`, `equipment_model` objects
with ids, a `company` object, `agreements[]`), the brief items of `/issues/list` (the same names
without ids), and the webhook's issue block (`type`, `manufacturer`, `model`).  The maintenance
entity may come as `maintenance_entity_id` (apidoc sample) or as an object (one client expects
that; inferred: accept both).  Equipment has no name field; `display_name` builds one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import Agreement
from .okdesk_parse import parse_agreement, parse_parameters
from .parse import ParseError, integer, items, obj, opt_integer, text


@dataclass(frozen=True)
class EquipmentRef:
    """A kind, manufacturer or model: `{id, code, name}` (no id in list items and webhooks)."""

    code: str
    name: str
    id: int | None = None


@dataclass(frozen=True)
class Equipment:
    id: int
    serial_number: str = ""
    inventory_number: str = ""
    kind: EquipmentRef | None = None
    manufacturer: EquipmentRef | None = None
    model: EquipmentRef | None = None
    company_id: int | None = None
    company_name: str = ""
    maintenance_entity_id: int | None = None
    parent_id: int | None = None
    agreements: tuple[Agreement, ...] = ()
    comment: str = ""
    parameters: tuple[tuple[str, object], ...] = ()

    @property
    def agreement_ids(self) -> tuple[int, ...]:
        return tuple(a.id for a in self.agreements)

    @property
    def display_name(self) -> str:
        """Kind, manufacturer and model, as people read it ("Принтер HP LaserJet"); `#id` if none."""
        parts = [ref.name for ref in (self.kind, self.manufacturer, self.model) if ref is not None and ref.name]
        return " ".join(dict.fromkeys(parts)) or f"#{self.id}"


@dataclass(frozen=True)
class IssueEquipment:
    """An issue's equipment with details, and its service agreement."""

    issue_id: int
    agreement: Agreement | None
    equipment: tuple[Equipment, ...]


def parse_equipment(raw: Any) -> Equipment:
    data = obj(raw, "equipment")
    what = f"equipment {data.get('id', '?')}"
    company = data.get("company")
    company_data = obj(company, f"{what}.company") if company not in (None, [], {}) else {}
    return Equipment(
        id=integer(data, "id", what),
        serial_number=text(data, "serial_number", what, default=""),
        inventory_number=text(data, "inventory_number", what, default=""),
        kind=_ref(data, ("equipment_kind", "type"), what),
        manufacturer=_ref(data, ("equipment_manufacturer", "manufacturer"), what),
        model=_ref(data, ("equipment_model", "model"), what),
        company_id=opt_integer(data, "company_id", what) or opt_integer(company_data, "id", f"{what}.company"),
        company_name=text(company_data, "name", f"{what}.company", default=""),
        maintenance_entity_id=_maintenance_entity(data, what),
        parent_id=opt_integer(data, "parent_id", what),
        agreements=tuple(
            a
            for a in (parse_agreement(raw, f"{what}.agreements[]") for raw in _list(data, "agreements", what))
            if a is not None
        ),
        comment=text(data, "comment", what, default=""),
        parameters=parse_parameters(data.get("parameters"), what),
    )


def parse_equipment_list(raw: Any) -> list[Equipment]:
    if not isinstance(raw, list):  # a bare array, like every Okdesk list
        raise ParseError(f"equipment list: expected a list, got {type(raw).__name__}")
    return [parse_equipment(item) for item in raw]


def parse_equipment_search(raw: Any) -> list[Equipment]:
    """`GET /equipments/?...` answers one object for exactly one match, else a list (observed)."""
    return [parse_equipment(raw)] if isinstance(raw, dict) else parse_equipment_list(raw)


def _ref(data: dict[str, Any], keys: tuple[str, str], what: str) -> EquipmentRef | None:
    key = keys[0] if keys[0] in data else keys[1]
    raw = data.get(key)
    if raw in (None, [], {}):
        return None
    ref = obj(raw, f"{what}.{key}")
    return EquipmentRef(
        code=text(ref, "code", f"{what}.{key}", default=""),
        name=text(ref, "name", f"{what}.{key}", default=""),
        id=opt_integer(ref, "id", f"{what}.{key}"),
    )


def _maintenance_entity(data: dict[str, Any], what: str) -> int | None:
    if data.get("maintenance_entity_id") is not None:
        return opt_integer(data, "maintenance_entity_id", what)
    entity = data.get("maintenance_entity")
    if entity in (None, [], {}):
        return None
    return opt_integer(obj(entity, f"{what}.maintenance_entity"), "id", f"{what}.maintenance_entity")


def _list(data: dict[str, Any], key: str, what: str) -> list[Any]:
    return [] if data.get(key) is None else items(data[key], f"{what}.{key}")
