"""Billing (issue 10 under issue 7's rule): the accounts are the truth for
billing notes too, so a second installation or a restored backup writes no note twice."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import date, timedelta

import requests
from e2e import Okbx, hand_off, sync_ok, task_of

from okbx_emulator.world import HANDOFF, World
from okbx_sync.billing.report import LedgerRow, summarize, to_csv

BILLING = {"default_rate": 3000, "currency": "RUB", "round_minutes": 15}


def _notes(world: World, issue: int, marker: str) -> int:
    return sum(1 for c in world.okdesk.comments(issue) if marker in c["content"])


def _completed(world: World, okbx: Okbx) -> int:
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = ok.create_issue("Report export fails", "<p>x</p>", company_id=p.company, contact_id=None)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    sync_ok(okbx)
    task = next(int(t["ID"]) for t in bx.tasks() if t.get("XML_ID") == f"okdesk:{issue}")
    bx.log_time(task, p.bx_ivan, 5400, "Fixed the CSV encoding")
    bx.complete_task(task)
    return issue


def test_a_second_installation_writes_no_second_invoice_note(world, tmp_path):
    world.bitrix.crm.add_company("Romashka LLC")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Okbx(world, tmp_path / "a"), Okbx(world, tmp_path / "b")
    for okbx in (first, second):
        okbx.reconfigure(billing=dict(BILLING))
    issue = _completed(world, first)
    second.sync()  # the second installation knows the link too
    first.sync()  # returns the issue, invoices it, notes the invoice
    assert _notes(world, issue, "okbx:invnote:") == 1
    second.sync()
    second.sync()
    (invoice,) = world.bitrix.crm.invoices()
    world.bitrix.crm.move_invoice(invoice["id"], "P")
    for _ in range(2):
        first.sync()
        second.sync()
    assert len(world.bitrix.crm.invoices()) == 1
    assert _notes(world, issue, "okbx:invnote:") == 1
    assert _notes(world, issue, "okbx:paid:") == 1


def test_a_store_restored_from_a_backup_writes_no_second_payment_note(world, okbx, tmp_path):
    world.bitrix.crm.add_company("Romashka LLC")
    okbx.reconfigure(billing=dict(BILLING))
    issue = _completed(world, okbx)
    sync_ok(okbx)
    (invoice,) = world.bitrix.crm.invoices()
    path = okbx.config().state.path
    backup = tmp_path / "backup.sqlite3"
    with sqlite3.connect(path) as source, sqlite3.connect(backup) as target:
        source.backup(target)
    world.bitrix.crm.move_invoice(invoice["id"], "P")
    sync_ok(okbx)
    assert _notes(world, issue, "okbx:paid:") == 1
    with sqlite3.connect(backup) as source, sqlite3.connect(path) as target:
        source.backup(target)  # the operator restores yesterday's backup
    sync_ok(okbx)
    sync_ok(okbx)
    assert _notes(world, issue, "okbx:paid:") == 1


def test_text_from_okdesk_is_neutralised_in_the_invoice(world, okbx):
    """Issue 9 item 5 for the billing writes: the invoice is a document the client receives."""
    world.bitrix.crm.add_company("Romashka LLC")
    okbx.reconfigure(billing=dict(BILLING))
    ok, bx, p = world.okdesk, world.bitrix, world.people
    title = "Invoice \u202egpj.exe\u202c and\nmore\x1b[31m " + "x" * 5000
    issue = ok.create_issue(title, "<p>x</p>", company_id=p.company, contact_id=None)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    sync_ok(okbx)
    task = next(int(t["ID"]) for t in bx.tasks() if t.get("XML_ID") == f"okdesk:{issue}")
    bx.log_time(task, p.bx_ivan, 3600, "work")
    bx.complete_task(task)
    sync_ok(okbx)
    (invoice,) = world.bitrix.crm.invoices()
    for text in (invoice["title"], invoice["comments"]):
        assert not any(c in text for c in "\u202e\u202c\x1b\n"), text
        assert len(text) < 1000


def test_a_handed_off_issue_whose_task_was_completed_during_the_hold_is_not_handed_off_again(world, okbx):
    """Held while with the programmers, who finish the task anyway: the release must not put the
    issue back into the handoff status, which reopened the completed task as handoff #2."""
    crm, ok, bx, p = world.bitrix.crm, world.okdesk, world.bitrix, world.people
    okbx.reconfigure(debt={"status": "debt"})
    crm_company = crm.add_company("Romashka LLC")
    issue = hand_off(world)
    sync_ok(okbx)
    task = task_of(world, issue)
    debt = crm.add_invoice(crm_company, 900, closedate=date.today() - timedelta(days=2))
    sync_ok(okbx)
    assert ok.status_of(issue) == "debt"
    bx.log_time(task, p.bx_ivan, 600, "finished anyway")
    bx.complete_task(task)
    sync_ok(okbx)
    crm.move_invoice(debt, "P")
    for _ in range(3):
        sync_ok(okbx)
    assert ok.status_of(issue) == "opened"
    assert bx.task(task)["STATUS"] == 5  # still completed: nobody handed the issue off again
    assert not any("okbx:note:renew:" in c["POST_MESSAGE"] for c in bx.comments(task))


def test_a_held_issue_still_with_the_programmers_returns_to_the_handoff_status(world, okbx):
    crm, ok = world.bitrix.crm, world.okdesk
    okbx.reconfigure(debt={"status": "debt"})
    debt = crm.add_invoice(crm.add_company("Romashka LLC"), 900, closedate=date.today() - timedelta(days=2))
    issue = hand_off(world)
    sync_ok(okbx)
    assert ok.status_of(issue) == "debt"
    crm.move_invoice(debt, "P")
    sync_ok(okbx)
    assert ok.status_of(issue) == HANDOFF


def test_adopting_an_invoice_leaves_its_rows_as_a_manager_edited_them(world, tmp_path):
    """A second installation (or a restored store) finds the invoice by its xmlId: it must not
    replace the rows a manager edited since (crm.item.productrow.set replaces all rows)."""
    world.bitrix.crm.add_company("Romashka LLC")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Okbx(world, tmp_path / "a"), Okbx(world, tmp_path / "b")
    for okbx in (first, second):
        okbx.reconfigure(billing=dict(BILLING))
    _completed(world, first)  # the first installation hands off; the task is completed
    second.sync()  # the second one returns the completion and invoices it
    (invoice,) = world.bitrix.crm.invoices()
    discount = {"ownerType": "SI", "ownerId": invoice["id"], "productRows": [{"productName": "Agreed", "price": 1000}]}
    answer = requests.post(world.webhook_url + "crm.item.productrow.set", json=discount, timeout=5)
    assert answer.status_code == 200, answer.text  # a manager agrees a discount with the client
    first.sync()  # finds the completion returned and the invoice made
    first.sync()
    (invoice,) = world.bitrix.crm.invoices()
    assert [(r["productName"], r["price"]) for r in invoice["rows"]] == [("Agreed", 1000.0)]
    assert float(invoice["opportunity"]) == 1000.0


def test_an_invoice_paid_after_the_store_was_lost_still_gets_its_note(world, okbx):
    """The store is a cache: okbx finds the invoices it made by their xmlId when they are paid."""
    world.bitrix.crm.add_company("Romashka LLC")
    okbx.reconfigure(billing=dict(BILLING))
    issue = _completed(world, okbx)
    sync_ok(okbx)
    (invoice,) = world.bitrix.crm.invoices()
    path = okbx.config().state.path
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    sync_ok(okbx)
    world.bitrix.crm.move_invoice(invoice["id"], "P")
    sync_ok(okbx)
    sync_ok(okbx)
    assert _notes(world, issue, f"okbx:paid:{issue}:{invoice['id']}") == 1


def test_doctor_with_billing_creates_no_state_store(world, okbx):
    """`sudo okbx doctor` must not leave a root-owned store behind for cron's user to trip over."""
    world.bitrix.crm.add_company("Romashka LLC")
    okbx.reconfigure(billing=dict(BILLING))
    path = okbx.config().state.path
    result = okbx("doctor")
    assert "Company matching" in result.output, result.output
    assert not path.exists()


def test_a_debtor_that_no_longer_matches_keeps_its_issues_held(world, okbx):
    """Matched by its exact name when held; a manager renames the CRM company while the invoice is
    still overdue.  Not being able to tell which Okdesk company owes is not "the debt is paid"."""
    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    okbx.reconfigure(debt={"status": "debt"})
    crm_company = crm.add_company("Romashka LLC")
    crm.add_invoice(crm_company, 900, closedate=date.today() - timedelta(days=5))
    issue = ok.create_issue("Printer", "<p>x</p>", company_id=p.company, status="in_progress")
    sync_ok(okbx)
    assert ok.status_of(issue) == "debt"
    rename = {"entityTypeId": 4, "id": crm_company, "fields": {"title": "Romashka, LLC"}}
    answer = requests.post(world.webhook_url + "crm.item.update", json=rename, timeout=5)
    assert answer.status_code == 200, answer.text
    okbx.sync()
    okbx.sync()
    assert ok.status_of(issue) == "debt"
    assert _notes(world, issue, "okbx:release:") == 0
    status = okbx("status", "--json")
    assert status.exit_code == 1 and "matches no Okdesk company" in status.stdout


def test_the_ledger_csv_keeps_formula_like_names_as_text():
    rows = [LedgerRow('=HYPERLINK("http://x","pay")', "@Ivan", "2026-11", 1, 3600)]
    (line,) = list(csv.DictReader(io.StringIO(to_csv(summarize(rows)))))
    assert line["company"] == '\'=HYPERLINK("http://x","pay")' and line["programmer"] == "'@Ivan"
    assert line["hours"] == "1.0"


def test_report_creates_no_state_store(world, okbx):
    path = okbx.config().state.path
    result = okbx("report", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ledger"] == []
    assert not path.exists()
