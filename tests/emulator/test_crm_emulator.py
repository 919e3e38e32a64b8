"""Contract tests of the billing surface (issue 10): the Bitrix24 CRM emulator and the Okdesk
companies, read through the real clients over HTTP, to the facts in crm-billing.md."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from okbx_emulator.bitrix24 import Bitrix24Emulator
from okbx_emulator.http import EmulatorServer
from okbx_sync.clients.bitrix24_crm import CrmClient, InvoiceLine
from okbx_sync.clients.bundle import Clients
from okbx_sync.errors import ApiError
from okbx_sync.secrets import Redactor


@pytest.fixture
def clients(okbx):
    config = okbx.config()
    built = Clients.build(config, Redactor(config.secrets()))
    yield built
    built.close()


@pytest.fixture
def crm(clients):
    return CrmClient(clients.bitrix)


def test_a_new_invoice_starts_new_with_a_pay_by_date_a_week_later(world, crm):
    company = world.bitrix.crm.add_company("Romashka LLC")
    invoice = crm.add_invoice({"title": "Work", "companyId": company, "xmlId": "okbx:invoice:1:1", "opportunity": 10})
    assert invoice.stage_id == "DT31_1:N" and invoice.xml_id == "okbx:invoice:1:1"
    assert invoice.closedate is not None and invoice.moved_at is not None
    assert (invoice.closedate.date() - invoice.moved_at.date()).days == 7
    crm.set_invoice_lines(invoice.id, [InvoiceLine("a", Decimal("3000"), Decimal("1.5"))])
    crm.set_invoice_lines(invoice.id, [InvoiceLine("a", Decimal("3000"), Decimal("1.5"))])  # set replaces
    (stored,) = world.bitrix.crm.invoices()
    assert len(stored["rows"]) == 1 and stored["opportunity"] == 4500.0
    assert crm.invoice_by_xml_id("okbx:invoice:1:1") == crm.invoices({"=id": invoice.id})[0]
    assert crm.invoice_by_xml_id("okbx:invoice:1:2") is None


def test_old_invoices_and_unknown_companies_are_refused(world, clients, crm):
    with pytest.raises(ApiError) as refused:
        clients.bitrix.call("crm.item.add", {"entityTypeId": 5, "fields": {"title": "x"}}, write=True)
    assert refused.value.code == "ENTITY_TYPE_NOT_SUPPORTED"
    with pytest.raises(ApiError):
        crm.add_invoice({"title": "x", "companyId": 999})
    with pytest.raises(ApiError):
        crm.invoices({"noSuchField": 1})


def test_stage_semantics_come_from_the_stage_dictionary(crm):
    category = crm.default_category()
    stages = {s.id: s.semantics for s in crm.stages(category)}
    assert stages[f"DT31_{category}:P"] == "S" and stages[f"DT31_{category}:D"] == "F"
    assert stages[f"DT31_{category}:N"] == "" and stages[f"DT31_{category}:UC_OVERDUE"] == ""
    assert crm.stages(category + 1) == []


def test_overdue_open_invoices_are_found_by_pay_by_date_and_stage(world, crm):
    portal = world.bitrix.crm
    company = portal.add_company("Romashka LLC")
    overdue = portal.add_invoice(company, 100, closedate=date.today() - timedelta(days=3))
    paid = portal.add_invoice(company, 200, closedate=date.today() - timedelta(days=3), stage="P")
    portal.add_invoice(company, 300, closedate=date.today() + timedelta(days=3))
    found = crm.invoices({"<closedate": date.today().isoformat(), "!@stageId": ["DT31_1:P", "DT31_1:D"]})
    assert [i.id for i in found] == [overdue]
    assert {i.id for i in crm.invoices({"@id": [overdue, paid]})} == {overdue, paid}


def test_lists_page_by_50(world, crm):
    for n in range(53):
        world.bitrix.crm.add_company(f"Company {n}")
    assert len(crm.companies({})) == 53


def test_companies_are_found_by_origin_inn_and_exact_title(world, crm):
    portal = world.bitrix.crm
    by_origin = portal.add_company("A", originator_id="okdesk", origin_id="17")
    by_inn = portal.add_company("B", inn="7701234567")
    assert [c.id for c in crm.companies({"=originatorId": "okdesk", "=originId": "17"})] == [by_origin]
    assert crm.companies_by_inn("7701234567") == [by_inn] and crm.inns(by_inn) == ["7701234567"]
    assert [c.id for c in crm.companies({"=title": "B"})] == [by_inn]
    assert crm.companies({"=title": "b "}) == []


def test_a_webhook_without_the_crm_scope_is_refused(tmp_path):
    emulator = Bitrix24Emulator(secret="s", rate_per_second=None)  # default scopes: no crm
    server = EmulatorServer(emulator).start()
    try:
        import requests

        answer = requests.post(f"{server.url}/rest/1/s/crm.item.list", json={"entityTypeId": 31}, timeout=5)
        assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"
    finally:
        server.stop()


def test_okdesk_companies_list_by_cursor_and_search_by_exact_name(world, clients):
    ok = world.okdesk
    for n in range(120):
        ok.add_company(f"Client {n}", parameters={"inn": f"77{n:08d}"})
    companies = clients.okdesk.list_companies()
    assert len(companies) == 121 and len({c.id for c in companies}) == 121
    found = clients.okdesk.find_company(name="Client 7")
    assert found is not None and found.parameter("inn") == "7700000007"
    assert clients.okdesk.find_company(name="Client") is None  # exact, not a substring


def test_okdesk_issue_list_filters_by_company(world, clients):
    ok, p = world.okdesk, world.people
    other = ok.add_company("Other LLC")
    mine = ok.create_issue("Mine", company_id=p.company, type="incident", parameters={"billable": True})
    ok.create_issue("Theirs", company_id=other)
    (issue,) = clients.okdesk.list_issues(company_ids=[p.company])
    assert issue.id == mine and issue.company_id == p.company and issue.type_code == "incident"
    full = clients.okdesk.get_issue(mine)
    assert full.company_id == p.company and dict(full.parameters) == {"billable": True}
