"""Okdesk equipment verbs for the document route, over the Okdesk client's transport.

Facts used (../shared/api/routes-files.md §5, crm-billing.md §1.8/§1.9): `GET /issues/{id}` lists
only `equipment_ids`, so an issue's equipment with details is one `GET /equipments/{id}` per
piece; `GET /equipments/list` filters by `company_ids[]`, `agreement_ids[]`,
`maintenance_entity_ids[]` and kind codes and pages by cursor (`page[size]` <= 100,
`page[from_id]` exclusive, `page[direction]=forward`); the search answers an object or a list.
Agreements have no endpoint of their own: they come from the issue and the equipment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import MalformedResponse
from .okdesk import SYSTEM, OkdeskClient
from .okdesk_equipment_parse import (
    Equipment,
    IssueEquipment,
    parse_equipment,
    parse_equipment_list,
    parse_equipment_search,
)
from .parse import ParseError

PAGE = 100  # the documented maximum of cursor-paged lists
MAX_PAGES = 10_000


class EquipmentClient:
    def __init__(self, okdesk: OkdeskClient) -> None:
        self.okdesk = okdesk

    def _parse(self, op: str, parser: Callable[[Any], Any], raw: Any) -> Any:
        try:
            return parser(raw)
        except ParseError as exc:
            raise MalformedResponse(SYSTEM, op, str(exc)) from None

    def get(self, equipment_id: int) -> Equipment:
        op = "GET /equipments/{id}"
        raw = self.okdesk.read(f"/equipments/{int(equipment_id)}", op)
        equipment: Equipment = self._parse(op, parse_equipment, raw)
        if equipment.id != int(equipment_id):
            raise MalformedResponse(SYSTEM, op, f"asked for equipment {equipment_id}, got {equipment.id}")
        return equipment

    def many(self, equipment_ids: Iterable[int]) -> list[Equipment]:
        """Each piece by id, in the given order (the API has no filter by id)."""
        return [self.get(equipment_id) for equipment_id in dict.fromkeys(int(i) for i in equipment_ids)]

    def for_issue(self, issue_id: int) -> IssueEquipment:
        """The issue's equipment with details and its agreement: 1 + (pieces) requests."""
        issue = self.okdesk.get_issue(issue_id)
        if issue.equipment_ids is None:
            raise MalformedResponse(SYSTEM, "GET /issues/{id}", f"issue {issue_id} has no equipment_ids")
        return IssueEquipment(issue.id, issue.agreement, tuple(self.many(issue.equipment_ids)))

    def listing(
        self,
        *,
        company_ids: Iterable[int] = (),
        agreement_ids: Iterable[int] = (),
        maintenance_entity_ids: Iterable[int] = (),
        kind_codes: Iterable[str] = (),
    ) -> list[Equipment]:
        """Every piece matching all the filters (0 in an id filter: "without"), oldest first."""
        op = "GET /equipments/list"
        filters: list[tuple[str, Any]] = [("company_ids[]", int(i)) for i in company_ids]
        filters += [("agreement_ids[]", int(i)) for i in agreement_ids]
        filters += [("maintenance_entity_ids[]", int(i)) for i in maintenance_entity_ids]
        filters += [("equipment_kind_codes[]", str(code)) for code in kind_codes]
        result: list[Equipment] = []
        from_id: int | None = None
        for _ in range(MAX_PAGES):
            params = [*filters, ("page[size]", PAGE), ("page[direction]", "forward")]
            if from_id is not None:  # the first page has no cursor (from_id must be > 0)
                params.append(("page[from_id]", from_id))
            raw = self.okdesk.read("/equipments/list", op, params)
            page: list[Equipment] = self._parse(op, parse_equipment_list, raw)
            result.extend(page)
            if len(page) < PAGE:
                return result
            following = max(e.id for e in page)
            if from_id is not None and following <= from_id:
                raise MalformedResponse(SYSTEM, op, "the cursor does not move forward")
            from_id = following
        raise MalformedResponse(SYSTEM, op, "paging does not end")

    def find(
        self, *, serial_number: str | None = None, inventory_number: str | None = None, text: str | None = None
    ) -> list[Equipment]:
        """Exact serial or inventory number, or a free-text search; one of them."""
        given = [(k, v) for k, v in (("serial_number", serial_number), ("inventory_number", inventory_number))]
        given += [("search_string", text)]
        params = [(k, v) for k, v in given if v is not None]
        if len(params) != 1:
            raise ValueError("find() takes exactly one of serial_number, inventory_number, text")
        op = "GET /equipments"
        found: list[Equipment] = self._parse(op, parse_equipment_search, self.okdesk.read("/equipments/", op, params))
        return found
