"""Billing stories (issue 10) through the real CLI against both emulators over HTTP."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

from okbx_emulator.http import Fault, Response
from okbx_emulator.world import HANDOFF, World

STATUS = "POST /issues/{id}/statuses"

BILLING = {"default_rate": 3000, "rates": {8: 4000}, "currency": "RUB", "round_minutes": 15}


def _configure(okbx, **extra):
    okbx.reconfigure(billing=dict(BILLING), **extra)


def _complete(world: World, okbx, title: str = "Report export fails", company: int | None = None) -> int:
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = ok.create_issue(title, "<p>x</p>", company_id=company or p.company, contact_id=None)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    assert okbx.sync().exit_code == 0
    task = next(int(t["ID"]) for t in bx.tasks() if t.get("XML_ID") == f"okdesk:{issue}")
    bx.log_time(task, p.bx_ivan, 5400, "Fixed the CSV encoding")  # 1.5 h x 3000
    bx.log_time(task, p.bx_olga, 2700, "Review")  # 0.75 h x 4000
    bx.complete_task(task)
    return issue


def test_a_completion_returned_to_okdesk_gets_one_invoice_and_a_note(world, okbx):
    crm_company = world.bitrix.crm.add_company("Romashka LLC")  # matched by its exact name
    _configure(okbx)
    issue = _complete(world, okbx)
    result = okbx.sync()
    assert result.exit_code == 0, result.output
    (invoice,) = world.bitrix.crm.invoices()
    assert invoice["companyId"] == crm_company
    assert invoice["xmlId"] == f"okbx:invoice:{issue}:1"
    assert Decimal(str(invoice["opportunity"])) == Decimal("7500.00")
    assert sorted((r["quantity"], r["price"]) for r in invoice["rows"]) == [(0.75, 4000.0), (1.5, 3000.0)]
    notes = [c for c in world.okdesk.comments(issue) if "okbx:invnote:" in c["content"]]
    assert len(notes) == 1 and "7 500.00 RUB" in notes[0]["content"]
    okbx.sync()
    okbx.sync()
    assert len(world.bitrix.crm.invoices()) == 1


def test_an_unmatched_company_is_a_clear_failure_shown_in_status(world, okbx):
    _configure(okbx)
    issue = _complete(world, okbx)
    result = okbx.sync()
    assert result.exit_code == 1
    assert "Romashka LLC" in result.output and "no CRM company" in result.output
    assert world.bitrix.crm.invoices() == []
    status = okbx("status", "--json")
    assert status.exit_code == 1
    (row,) = [r for r in json.loads(status.stdout)["links"] if r["issue"] == issue]
    assert row["billing_error"].startswith("billing") and "no CRM company" in row["billing_error"]


def test_payment_and_decline_come_back_as_notes(world, okbx):
    world.bitrix.crm.add_company("Romashka LLC")
    _configure(okbx)
    first = _complete(world, okbx, "First")
    second = _complete(world, okbx, "Second")
    okbx.sync()
    paid, declined = sorted(world.bitrix.crm.invoices(), key=lambda i: i["id"])
    world.bitrix.crm.move_invoice(paid["id"], "P")
    world.bitrix.crm.move_invoice(declined["id"], "D")
    assert okbx.sync().exit_code == 0
    okbx.sync()
    first_notes = [c["content"] for c in world.okdesk.comments(first) if "okbx:paid:" in c["content"]]
    second_notes = [c["content"] for c in world.okdesk.comments(second) if "okbx:paid:" in c["content"]]
    assert len(first_notes) == 1 and "paid on" in first_notes[0]
    assert len(second_notes) == 1 and "declined on" in second_notes[0]


def test_dry_run_shows_invoices_holds_and_releases_and_writes_nothing(world, okbx):
    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    _configure(okbx, debt={"status": "debt"})
    issue = _complete(world, okbx)
    assert okbx.sync().exit_code == 1  # returned; the invoice waits: the company is not matched yet
    crm_company = crm.add_company("Romashka LLC")
    debt = crm.add_invoice(crm_company, 900, closedate=date.today() - timedelta(days=2))
    waiting = ok.create_issue("Printer", "<p>x</p>", company_id=p.company)
    comments = len(ok.comments(issue))
    assert "waiting to retry" in okbx.sync("--dry-run").stdout  # a failing invoice backs off...
    assert okbx("retry", str(issue)).exit_code == 0  # ...until the administrator fixed the cause
    result = okbx.sync("--dry-run")
    assert result.exit_code == 0, result.output
    assert "CreateInvoice" in result.stdout and "NoteInvoice" in result.stdout and "HoldIssue" in result.stdout
    assert crm.invoices() == [i for i in crm.invoices() if i["id"] == debt]  # no invoice was written
    assert ok.status_of(waiting) == "opened" and len(ok.comments(issue)) == comments
    okbx.sync()
    assert ok.status_of(waiting) == "debt" and len(crm.invoices()) == 2
    crm.move_invoice(debt, "P")
    result = okbx.sync("--dry-run")
    assert "ReleaseIssue" in result.stdout and ok.status_of(waiting) == "debt"


def test_mass_holds_are_refused_without_force(world, okbx):
    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    okbx.reconfigure(debt={"status": "debt", "max_changes": 2})
    crm.add_invoice(crm.add_company("Romashka LLC"), 900, closedate=date.today() - timedelta(days=2))
    issues = [ok.create_issue(f"Issue {n}", "<p>x</p>", company_id=p.company) for n in range(3)]
    result = okbx.sync()
    assert result.exit_code == 1 and "3 issues would be held or released" in result.output
    assert {ok.status_of(i) for i in issues} == {"opened"}
    assert okbx.sync("--force").exit_code == 0
    assert {ok.status_of(i) for i in issues} == {"debt"}


def test_a_refused_hold_of_an_unlinked_issue_is_shown_by_status(world, okbx):
    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    okbx.reconfigure(debt={"status": "debt"})
    crm.add_invoice(crm.add_company("Romashka LLC"), 900, closedate=date.today() - timedelta(days=2))
    issue = ok.create_issue("Printer", "<p>x</p>", company_id=p.company)
    refused = Response.json(422, {"errors": ["Переход из статуса «Открыта» в статус «Долг» запрещён"]})
    world.okdesk_server.inject(Fault(STATUS, when="before", response=refused))
    assert okbx.sync().exit_code == 1
    (failure,) = json.loads(okbx("status", "--json").stdout)["billing_failures"]
    assert failure["issue"] == issue and "запрещён" in failure["error"]
    assert okbx.sync().exit_code == 0 and ok.status_of(issue) == "opened"  # it backs off, like any failure
    okbx.clock.advance(minutes=10)
    assert okbx.sync().exit_code == 0 and ok.status_of(issue) == "debt"
    assert json.loads(okbx("status", "--json").stdout)["billing_failures"] == []


def test_a_debtor_s_issues_are_held_and_released(world, okbx):
    crm = world.bitrix.crm
    crm_company = crm.add_company("Romashka LLC")
    okbx.reconfigure(debt={"status": "debt", "grace_days": 3})
    ok, p = world.okdesk, world.people
    working = ok.create_issue("Printer", "<p>x</p>", company_id=p.company, status="in_progress")
    exempt = ok.create_issue("Server down", "<p>x</p>", company_id=p.company, priority="high")
    okbx.reconfigure(debt={"status": "debt", "grace_days": 3, "exempt_priorities": ["high"]})
    overdue = crm.add_invoice(crm_company, 1000, closedate=date.today() - timedelta(days=10))
    assert okbx.sync().exit_code == 0
    assert ok.status_of(working) == "debt"
    assert ok.status_of(exempt) == "opened"
    late = ok.create_issue("New one", "<p>x</p>", company_id=p.company)
    okbx.sync()
    assert ok.status_of(late) == "debt"
    ok.set_status(late, "opened", by_employee_id=p.consultant)  # a person moves it out
    okbx.sync()
    assert ok.status_of(late) == "opened"  # not held again for the same debt
    paused_by_hand = ok.create_issue("Paused by a person", "<p>x</p>", company_id=p.company)
    ok.set_status(paused_by_hand, "debt", by_employee_id=p.consultant)
    crm.move_invoice(overdue, "P")
    assert okbx.sync().exit_code == 0
    assert ok.status_of(working) == "in_progress"
    assert ok.status_of(paused_by_hand) == "debt"  # okbx never held it: not okbx's to release
    assert ok.status_of(late) == "opened"
    okbx.sync()
    holds = [c for c in ok.comments(working) if "okbx:hold:" in c["content"] or "okbx:release:" in c["content"]]
    assert len(holds) == 2


def test_doctor_checks_the_crm_scope_pipeline_debt_status_and_company_matching(world, okbx):
    okbx.reconfigure(billing=dict(BILLING), debt={"status": "debt"})
    ok, p = world.okdesk, world.people
    issue = ok.create_issue("Export", "<p>x</p>", company_id=p.company)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    okbx.sync()
    result = okbx("doctor")
    assert "Company matching" in result.output and "Romashka LLC" in result.output and result.exit_code != 0
    world.bitrix.crm.add_company("Other", originator_id="okdesk", origin_id=str(p.company))
    result = okbx("doctor")
    assert result.exit_code == 0, result.output
    for name in ("Bitrix24 crm scope", "Bitrix24 invoice pipeline", "Okdesk debt status", "Company matching"):
        assert name in result.output
    okbx.reconfigure(billing=dict(BILLING), debt={"status": "no_such_status"})
    assert "debt.status 'no_such_status' is not a status code" in okbx("doctor").output


def test_completions_returned_before_billing_was_switched_on_are_never_invoiced(world, okbx):
    world.bitrix.crm.add_company("Romashka LLC")
    _complete(world, okbx, "Old work")
    assert okbx.sync().exit_code == 0  # returned without billing
    _configure(okbx)
    assert okbx.sync().exit_code == 0
    assert world.bitrix.crm.invoices() == []
    issue = _complete(world, okbx, "New work")
    okbx.sync()
    assert [i["xmlId"] for i in world.bitrix.crm.invoices()] == [f"okbx:invoice:{issue}:1"]


def test_companies_match_by_map_then_origin_then_inn_then_name_and_never_by_guess(world, okbx):
    crm, ok = world.bitrix.crm, world.okdesk
    mapped = ok.add_company("Mapped LLC")
    by_origin = ok.add_company("Origin LLC")
    by_inn = ok.add_company("Inn LLC", parameters={"inn": "7812345678"})
    twins = ok.add_company("Twins LLC")
    crm_mapped = crm.add_company("Whatever")
    crm_origin = crm.add_company("Other title", originator_id="okdesk", origin_id=str(by_origin))
    crm_inn = crm.add_company("INN title", inn="7812345678")
    crm.add_company("Twins LLC")
    crm.add_company("Twins LLC")
    _configure(okbx)
    okbx.reconfigure(billing=BILLING | {"company_map": {mapped: crm_mapped}, "inn_parameter": "inn"})
    issues = {
        company: _complete(world, okbx, f"Work for {company}", company)
        for company in (mapped, by_origin, by_inn, twins)
    }
    result = okbx.sync()
    assert result.exit_code == 1 and "the name 'Twins LLC' matches 2 CRM companies" in result.output
    billed = {i["xmlId"]: i["companyId"] for i in crm.invoices()}
    assert billed == {
        f"okbx:invoice:{issues[mapped]}:1": crm_mapped,
        f"okbx:invoice:{issues[by_origin]}:1": crm_origin,
        f"okbx:invoice:{issues[by_inn]}:1": crm_inn,
    }


def test_doctor_says_when_the_webhook_lacks_the_crm_scope(tmp_path):
    from conftest import Okbx

    world = World.start(bitrix_scopes=("task", "user", "sonet"))
    try:
        okbx = Okbx(world, tmp_path, {"billing": dict(BILLING)})
        result = okbx("doctor")
        assert result.exit_code != 0
        assert "lacks the crm scope" in result.output and "tick CRM" in result.output
    finally:
        world.close()
