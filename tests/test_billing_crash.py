"""Crash and lost-answer safety of every billing write (issue 10 item 5).

A real `okbx sync` process is killed after the server committed the write and before the answer
arrived; or the answer is lost (an HTML 502 page, a dropped connection).  The following syncs
must find the write by its marker and adopt it: one invoice (with its rows), one note of each
kind, one hold and one release, whatever happened.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta

import pytest
from e2e import SYNC, Okbx, kill_during, sync_ok

from okbx_emulator.http import Fault
from okbx_emulator.world import HANDOFF, World
from okbx_sync.core.action import Action

COMMENTS, STATUS = "POST /issues/{id}/comments", "POST /issues/{id}/statuses"
BILLING = {"default_rate": 3000, "round_minutes": 15}
DEBT = {"status": "debt", "grace_days": 0}


@dataclass
class Case:
    issue: int
    holds: int = 0  # status changes okbx must have made for the debt
    releases: int = 0


def _configure(okbx) -> None:
    okbx.reconfigure(sync=dict(SYNC), billing=dict(BILLING), debt=dict(DEBT))


def _completed(world: World, okbx) -> Case:
    world.bitrix.crm.add_company("Romashka LLC")
    _configure(okbx)
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = ok.create_issue("Export fails", "<p>x</p>", company_id=p.company)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    sync_ok(okbx)
    task = next(int(t["ID"]) for t in bx.tasks() if t.get("XML_ID") == f"okdesk:{issue}")
    bx.log_time(task, p.bx_ivan, 5400, "Fixed")
    bx.log_time(task, p.bx_olga, 1800, "Review")
    bx.complete_task(task)
    return Case(issue)


def _invoiced(world: World, okbx) -> Case:
    case = _completed(world, okbx)
    sync_ok(okbx)
    (invoice,) = world.bitrix.crm.invoices()
    world.bitrix.crm.move_invoice(invoice["id"], "P")
    return case


def _debtor(world: World, okbx) -> Case:
    crm_company = world.bitrix.crm.add_company("Romashka LLC")
    _configure(okbx)
    issue = world.okdesk.create_issue("Printer", "<p>x</p>", company_id=world.people.company, status="in_progress")
    world.bitrix.crm.add_invoice(crm_company, 500, closedate=date.today() - timedelta(days=5))
    return Case(issue, holds=1)


def _held(world: World, okbx) -> Case:
    case = _debtor(world, okbx)
    sync_ok(okbx)
    (debt,) = world.bitrix.crm.invoices()
    world.bitrix.crm.move_invoice(debt["id"], "P")
    case.releases = 1
    return case


@dataclass(frozen=True)
class Scenario:
    name: str
    action: str
    system: str
    op: str
    prepare: Callable[[World, object], Case]
    key: str

    def __str__(self) -> str:
        return self.name


SCENARIOS = [
    Scenario("invoice", "CreateInvoice", "bitrix", "crm.item.add", _completed, "invoice:"),
    Scenario("invoice_rows", "CreateInvoice", "bitrix", "crm.item.productrow.set", _completed, "invoice:"),
    Scenario("invoice_note", "NoteInvoice", "okdesk", COMMENTS, _completed, "invnote:"),
    Scenario("task_link", "LinkInvoiceToTask", "bitrix", "tasks.task.update", _completed, "tasklink:"),
    Scenario("payment_note", "NoteInvoicePaid", "okdesk", COMMENTS, _invoiced, "paid:"),
    Scenario("hold", "HoldIssue", "okdesk", STATUS, _debtor, "hold:"),
    Scenario("release", "ReleaseIssue", "okdesk", STATUS, _held, "release:"),
]


def _subclasses(base: type) -> set[type]:
    return set(base.__subclasses__()).union(*(_subclasses(c) for c in base.__subclasses__()))


def test_every_billing_write_kind_has_a_crash_scenario():
    importlib.import_module("okbx_sync.cycle")  # every wing's kinds, whatever ran before this test
    writes = {
        c.__name__
        for c in _subclasses(Action)
        if c.side and "kind" in vars(c) and c.__module__.startswith("okbx_sync.billing")
    }
    assert writes == {s.action for s in SCENARIOS}


def _markers(world: World, issue: int) -> Counter[str]:
    found: Counter[str] = Counter()
    for comment in world.okdesk.comments(issue):
        text = re.sub(r"<[^>]*>", "", comment["content"])
        if m := re.search(r"(okbx:(?:invnote|paid|hold|release):[\w:]+)\s*$", text):
            found[m.group(1)] += 1
    return found


def _check_converged(world: World, okbx, case: Case, scenario: Scenario) -> None:
    invoices = [i for i in world.bitrix.crm.invoices() if (i["xmlId"] or "").startswith("okbx:invoice:")]
    markers = _markers(world, case.issue)
    assert all(n == 1 for n in markers.values()), markers
    if scenario.action in ("CreateInvoice", "NoteInvoice", "NoteInvoicePaid", "LinkInvoiceToTask"):
        assert len(invoices) == 1, invoices
        assert len(invoices[0]["rows"]) == 2 and invoices[0]["opportunity"] == 6000.0
        assert markers[f"okbx:invnote:{case.issue}:1"] == 1
        task = next(t for t in world.bitrix.tasks() if t.get("XML_ID") == f"okdesk:{case.issue}")
        assert task.get("UF_CRM_TASK") == [f"SI_{invoices[0]['id']}"]  # linked once
    if scenario.action == "NoteInvoicePaid":
        assert markers[f"okbx:paid:{case.issue}:{invoices[0]['id']}"] == 1
    if scenario.action in ("HoldIssue", "ReleaseIssue"):
        # one hold (and one release) by okbx: each status change carries exactly one marker
        holds = sum(n for m, n in markers.items() if m.startswith("okbx:hold:"))
        releases = sum(n for m, n in markers.items() if m.startswith("okbx:release:"))
        assert (holds, releases) == (case.holds, case.releases)
        assert world.okdesk.status_of(case.issue) == ("debt" if not case.releases else "in_progress")
    store = okbx.store()
    try:
        adopted = [row["key"] for row in store.journal() if row["outcome"] == "adopted"]
        unfinished = {k: op.state for k, op in store.ops_for().items() if op.state != "done"}
    finally:
        store.close()
    assert any(key.startswith(scenario.key) for key in adopted), adopted
    assert not unfinished, unfinished


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_killed_after_the_server_committed_a_billing_write(world, okbx, scenario: Scenario):
    case = scenario.prepare(world, okbx)
    server = world.okdesk_server if scenario.system == "okdesk" else world.bitrix_server
    kill_during(okbx, server, scenario.op)
    for _ in range(3):
        sync_ok(okbx)
    _check_converged(world, okbx, case, scenario)


@pytest.mark.parametrize("lost", ["html502", "drop"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_a_lost_answer_to_a_billing_write_is_adopted_not_repeated(world, okbx, scenario: Scenario, lost: str):
    case = scenario.prepare(world, okbx)
    server = world.okdesk_server if scenario.system == "okdesk" else world.bitrix_server
    server.inject(Fault(scenario.op, when="after", kind="response" if lost == "html502" else "drop"))
    assert okbx.sync().exit_code == 1
    for _ in range(3):
        sync_ok(okbx)
    _check_converged(world, okbx, case, scenario)


def test_a_lost_state_store_makes_no_second_invoice_and_no_second_hold(world, okbx):
    case = _completed(world, okbx)
    crm_company = world.bitrix.crm.invoices() or None
    sync_ok(okbx)
    assert crm_company is None and len(world.bitrix.crm.invoices()) == 1
    debt = world.bitrix.crm.add_invoice(1, 100, closedate=date.today() - timedelta(days=3))
    other = world.okdesk.create_issue("Printer", "<p>x</p>", company_id=world.people.company)
    sync_ok(okbx)
    assert world.okdesk.status_of(other) == "debt"
    world.okdesk.set_status(other, "in_progress", by_employee_id=world.people.consultant)  # a person moves it out
    okbx.config().state.path.unlink()
    for suffix in ("-wal", "-shm"):
        okbx.config().state.path.with_name(okbx.config().state.path.name + suffix).unlink(missing_ok=True)
    sync_ok(okbx)
    sync_ok(okbx)
    assert len([i for i in world.bitrix.crm.invoices() if i["id"] != debt]) == 1
    assert world.okdesk.status_of(other) == "in_progress"  # the hold note was found: not held again
    assert sum(n for m, n in _markers(world, other).items() if m.startswith("okbx:hold:")) == 1
    assert case.issue


def test_after_a_lost_state_store_a_held_issue_is_still_released_to_its_status(world, okbx):
    case = _held(world, okbx)  # held from in_progress; the debt is paid meanwhile
    path = okbx.config().state.path
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    sync_ok(okbx)
    sync_ok(okbx)
    assert world.okdesk.status_of(case.issue) == "in_progress"
    marks = _markers(world, case.issue)
    assert sum(n for m, n in marks.items() if m.startswith("okbx:release:")) == 1, marks


def test_an_invoice_made_just_before_the_store_was_lost_gets_its_note_once_and_is_followed(world, okbx):
    case = _completed(world, okbx)
    kill_during(okbx, world.bitrix_server, "crm.item.productrow.set")  # invoice made; its note not yet
    path = okbx.config().state.path
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    for _ in range(3):
        sync_ok(okbx)
    invoices = [i for i in world.bitrix.crm.invoices() if (i["xmlId"] or "").startswith("okbx:invoice:")]
    assert len(invoices) == 1, invoices
    assert _markers(world, case.issue)[f"okbx:invnote:{case.issue}:1"] == 1
    task = next(t for t in world.bitrix.tasks() if t.get("XML_ID") == f"okdesk:{case.issue}")
    assert task.get("UF_CRM_TASK") == [f"SI_{invoices[0]['id']}"]  # linked to its task too, once
    world.bitrix.crm.move_invoice(invoices[0]["id"], "P")  # and its payment is still followed
    sync_ok(okbx)
    sync_ok(okbx)
    assert _markers(world, case.issue)[f"okbx:paid:{case.issue}:{invoices[0]['id']}"] == 1


def test_an_invoice_left_without_rows_by_another_installation_gets_the_rows_of_its_completion(
    world, okbx, tmp_path, clock
):
    """The second installation's new store rebuilds the completion from the markers (the copied time
    entries and the task's elapsed items), so the invoice gets the real time, never a guess."""
    case = _completed(world, okbx)
    kill_during(okbx, world.bitrix_server, "crm.item.add")  # the invoice exists; its rows were never set
    (tmp_path / "second").mkdir()
    second = Okbx(world, tmp_path / "second", clock=clock)
    _configure(second)
    for _ in range(2):
        sync_ok(second)
    (invoice,) = world.bitrix.crm.invoices()  # not a second invoice
    rows = sorted((r["productName"], r["quantity"]) for r in invoice["rows"])
    issue = case.issue
    assert rows == [(f"Okdesk #{issue}: work of Ivan Petrov", 1.5), (f"Okdesk #{issue}: work of Olga Sidorova", 0.5)]
    assert _markers(world, case.issue)[f"okbx:invnote:{case.issue}:1"] == 1
