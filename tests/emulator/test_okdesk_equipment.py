"""Contract tests of the document route's API layer: Okdesk equipment, its dictionaries and the
issue's agreement, read by the real clients (and raw requests) over HTTP, to routes-files.md §5
and crm-billing.md §1.8/§1.9."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from e2e import TestClock

from okbx_emulator.world import OKDESK_TOKEN, World
from okbx_sync.clients.bundle import Clients
from okbx_sync.clients.okdesk_equipment import EquipmentClient
from okbx_sync.errors import ApiError, NotFound
from okbx_sync.model import Agreement
from okbx_sync.secrets import Redactor


@pytest.fixture
def seeded(world: World) -> dict[str, int]:
    return world.routes_story()


@pytest.fixture
def clients(okbx: Any) -> Any:
    config = okbx.config()
    built = Clients.build(config, Redactor(config.secrets()))
    yield built
    built.close()


@pytest.fixture
def equipment(clients: Clients) -> EquipmentClient:
    return EquipmentClient(clients.okdesk)


def _get(world: World, path: str, **params: Any) -> requests.Response:
    url = f"{world.okdesk_server.url}/api/v1{path}"
    return requests.get(url, params=[("api_token", OKDESK_TOKEN), *params.items()], timeout=5)


def test_an_issue_lists_its_equipment_ids_and_the_details_come_one_by_one(world, seeded, equipment, clients):
    found = equipment.for_issue(seeded["issue"])
    assert found.agreement == Agreement(seeded["agreement"], "Договор 12/24")
    (printer,) = found.equipment
    assert (printer.id, printer.serial_number, printer.display_name) == (
        seeded["printer"],
        "CNB1R12345",
        "Принтер HP LaserJet M404",
    )
    assert printer.kind is not None and printer.kind.code == "printer" and printer.kind.id is not None
    assert printer.company_id == world.people.company and printer.company_name == "Romashka LLC"
    assert printer.agreement_ids == (seeded["agreement"],)
    raw = _get(world, f"/issues/{seeded['issue']}").json()
    assert raw["equipment_ids"] == [seeded["printer"]] and raw["agreement"] == {"id": 1, "title": "Договор 12/24"}
    issue = clients.okdesk.get_issue(seeded["issue"])
    assert issue.equipment_ids == (seeded["printer"],) and issue.contact_id == world.people.client


def test_the_issue_list_shows_equipment_as_brief_objects(world, seeded, clients):
    bare = world.okdesk.create_issue("Без оборудования", company_id=world.people.company)
    by_id = {i.id: i for i in clients.okdesk.list_issues()}
    assert by_id[seeded["issue"]].equipment_ids == (seeded["printer"],) and by_id[bare].equipment_ids == ()
    assert by_id[bare].agreement is None
    (item,) = [i for i in _get(world, "/issues/list").json() if i["id"] == seeded["issue"]]
    assert item["equipments"][0] == {
        "id": seeded["printer"], "serial_number": "CNB1R12345", "inventory_number": "",
        "equipment_kind": {"code": "printer", "name": "Принтер"},
        "equipment_manufacturer": {"code": "hp", "name": "HP"},
        "equipment_model": {"code": "lj_m404", "name": "LaserJet M404"},
    }  # fmt: skip


def test_a_consultant_changing_the_issue_equipment_moves_its_updated_at(world, seeded, clients, clock: TestClock):
    before = clients.okdesk.get_issue(seeded["issue"]).updated_at
    clock.advance(minutes=2)
    world.okdesk.equipment.set_issue_equipment(seeded["issue"], [seeded["printer"], seeded["laptop"]])
    after = clients.okdesk.get_issue(seeded["issue"])
    assert after.equipment_ids == (seeded["printer"], seeded["laptop"])
    assert before is not None and after.updated_at is not None and after.updated_at > before


def test_agreement_and_company_equipment_are_listed_by_cursor(world, seeded, equipment):
    kit, company = world.okdesk.equipment, world.people.company
    assert [e.id for e in equipment.listing(agreement_ids=[seeded["agreement"]])] == [
        seeded["printer"],
        seeded["laptop"],
    ]
    assert [e.id for e in equipment.listing(company_ids=[company], agreement_ids=[0])] == [seeded["spare"]]
    other = world.okdesk.add_company("Other LLC")
    many = [kit.add_equipment("laptop", company_id=other, inventory_number=f"L{n}") for n in range(230)]
    listed = equipment.listing(company_ids=[other])
    assert [e.id for e in listed] == many  # three pages of 100, oldest first, none twice
    assert len(equipment.listing(kind_codes=["printer"])) == 2
    assert world.okdesk_server.count("GET /equipments/list") == 6


def test_list_paging_rules_are_those_of_the_docs(world, seeded):
    newest_first = [e["id"] for e in _get(world, "/equipments/list").json()]
    assert newest_first == sorted(newest_first, reverse=True)  # default direction: reverse
    forward = _get(world, "/equipments/list", **{"page[direction]": "forward", "page[from_id]": seeded["printer"]})
    assert [e["id"] for e in forward.json()] == [seeded["laptop"], seeded["spare"]]  # from_id is exclusive
    too_big = _get(world, "/equipments/list", **{"page[size]": 101})
    assert too_big.status_code == 400 and too_big.json() == {
        "errors": {"page": {"size": ["должно быть меньше или равно 100"]}}
    }
    bad = _get(world, "/equipments/list", **{"company_ids[]": "x"})
    assert bad.status_code == 400 and "company_ids" in bad.json()["errors"]


def test_search_answers_one_object_or_a_list(world, seeded, equipment):
    one = _get(world, "/equipments/", serial_number="CNB1R12345").json()
    assert isinstance(one, dict) and one["id"] == seeded["printer"]
    assert [e.id for e in equipment.find(serial_number="CNB1R12345")] == [seeded["printer"]]
    assert [e.id for e in equipment.find(text="cnb1r")] == [seeded["printer"], seeded["spare"]]
    assert equipment.find(inventory_number="nothing") == []
    with pytest.raises(ValueError):
        equipment.find()


def test_unknown_equipment_is_not_found(seeded, equipment):
    with pytest.raises(NotFound):
        equipment.get(999)


def test_issue_count_filters_by_equipment_and_agreement(world, seeded):
    bare = world.okdesk.create_issue("Без оборудования", company_id=world.people.company)
    assert _get(world, "/issues/count", **{"equipment_ids[]": seeded["printer"]}).json() == [seeded["issue"]]
    assert _get(world, "/issues/count", **{"equipment_ids[]": 0}).json() == [bare]  # 0: without
    assert _get(world, "/issues/count", **{"agreement_ids[]": seeded["agreement"]}).json() == [seeded["issue"]]
    assert _get(world, "/issues/count", **{"equipment_ids[]": "x"}).status_code == 400


def test_dictionaries_have_the_documented_shapes(world, seeded):
    (kind,) = _get(world, "/equipments/kinds/", search_string="принт").json()
    assert set(kind) == {"id", "code", "name", "description", "visible", "parameters"}
    (model,) = _get(world, "/equipments/models/").json()
    assert model["equipment_kind"]["code"] == "printer" and model["equipment_manufacturer"]["code"] == "hp"
    assert [m["code"] for m in _get(world, "/equipments/manufacturers").json()] == ["hp"]


def test_a_refused_filter_is_an_error_naming_it(seeded, equipment):
    with pytest.raises(ApiError) as refused:
        equipment.listing(company_ids=[-1])
    assert refused.value.status == 400 and "company_ids" in refused.value.message
