"""Billing runs on the same core as the route (issue 13 item 3): its failures count in the summary
and the exit code and show in `okbx status`; its dry run shows exactly what the real run writes,
including the invoice of a completion returned in that same cycle; its writes stop on SIGTERM
like any other; a debtor's issue postponed in `delayed` comes back to `delayed` with its date."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from e2e import Okbx, TestClock, start_world

from okbx_emulator.world import HANDOFF, World

BILLING = {"default_rate": 3000, "currency": "RUB", "round_minutes": 15}
SUMMARY = re.compile(r"okbx sync: (\d+) done, (\d+) adopted, (\d+) failed")
WRITES = ("POST /issues/{id}/comments", "POST /issues/{id}/statuses", "POST /issues/{id}/time_entries")


def _complete(world: World, okbx: Okbx, *, handoff_exit: int = 0) -> int:
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = ok.create_issue("Report export fails", "<p>x</p>", company_id=p.company)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    assert okbx.sync().exit_code == handoff_exit
    task = next(int(t["ID"]) for t in bx.tasks() if t.get("XML_ID") == f"okdesk:{issue}")
    bx.log_time(task, p.bx_ivan, 5400, "Fixed")
    bx.complete_task(task)
    return issue


@pytest.fixture
def no_crm(clock: TestClock) -> Iterator[World]:
    """A webhook created without the `crm` scope."""
    world = start_world(clock, bitrix_scopes=("task", "tasks", "user", "sonet", "im"))
    yield world
    world.close()


def test_a_webhook_without_the_crm_scope_is_a_counted_failure_and_status_says_so(
    no_crm: World, clock: TestClock, tmp_path: Path
) -> None:
    okbx = Okbx(no_crm, tmp_path, {"billing": dict(BILLING)}, clock=clock)
    issue = _complete(no_crm, okbx, handoff_exit=1)  # billing cannot run from the first cycle on
    result = okbx.sync()
    assert result.exit_code == 1, result.output
    summary = SUMMARY.search(result.stdout)
    assert summary is not None and int(summary.group(3)) >= 1, result.stdout  # the summary counts it
    assert "billing" in result.stderr and "crm" in result.stderr, result.stderr
    assert "billing: billing:" not in result.output + okbx("status").output  # the wing is named once
    dry = okbx.sync("--dry-run")
    assert "could not run: billing:" in dry.stdout.splitlines()[0], dry.stdout  # the plan's header says so
    assert no_crm.okdesk.status_of(issue) == "opened"  # the route went on
    status = okbx("status")
    assert status.exit_code == 1, status.output  # a monitoring check sees it
    assert "crm" in status.output


def test_the_dry_run_shows_the_invoice_of_a_completion_returned_in_the_same_cycle(world: World, okbx: Okbx) -> None:
    world.bitrix.crm.add_company("Romashka LLC")
    okbx.reconfigure(billing=dict(BILLING))
    _complete(world, okbx)
    dry = okbx.sync("--dry-run")
    assert dry.exit_code == 0, dry.output
    planned = {line.split("\t")[2] for line in dry.stdout.splitlines()[2:] if line.count("\t") == 3}
    assert {"ReturnIssue", "CreateInvoice", "NoteInvoice", "LinkInvoiceToTask", "CloseLink"} <= planned, dry.stdout
    real = okbx.sync("-v")
    done = set(re.findall(r"okbx\.action: issue \d+: (\w+) done", real.stderr))
    assert done == planned, (planned, real.stderr)
    again = okbx.sync("--dry-run")
    assert again.stdout.startswith("okbx sync --dry-run: 0 actions"), again.stdout  # nothing left, none shown
    assert len(world.bitrix.crm.invoices()) == 1


def test_a_debtor_s_delayed_issue_is_released_to_delayed_with_its_date(world: World, okbx: Okbx) -> None:
    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    okbx.reconfigure(debt={"status": "debt"})
    debt = crm.add_invoice(crm.add_company("Romashka LLC"), 900, closedate=date.today() - timedelta(days=2))
    until = (datetime.now(UTC) + timedelta(days=20)).replace(microsecond=0)
    waiting = ok.create_issue("Printer", "<p>x</p>", company_id=p.company)
    ok.set_status(waiting, "delayed", by_employee_id=p.consultant, comment="spare part", delay_to=until)
    assert okbx.sync().exit_code == 0 and ok.status_of(waiting) == "debt"
    crm.move_invoice(debt, "P")
    released = okbx.sync()
    assert released.exit_code == 0, released.output  # Okdesk took the date: no 422 for `delayed`
    assert ok.status_of(waiting) == "delayed"
    assert datetime.fromisoformat(ok.issue(waiting)["delayed_to"]) == until  # the same moment (Okdesk shows +03:00)


def test_a_debtor_s_issue_whose_postponement_passed_during_the_hold_is_released_to_the_configured_status(
    world: World, okbx: Okbx, clock: TestClock
) -> None:
    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    okbx.reconfigure(debt={"status": "debt", "expired_delay_status": "in_progress"})
    debt = crm.add_invoice(crm.add_company("Romashka LLC"), 900, closedate=date.today() - timedelta(days=2))
    waiting = ok.create_issue("Printer", "<p>x</p>", company_id=p.company)
    until = datetime.now(UTC) + timedelta(days=1)
    ok.set_status(waiting, "delayed", by_employee_id=p.consultant, comment="spare part", delay_to=until)
    assert okbx.sync().exit_code == 0 and ok.status_of(waiting) == "debt"
    clock.advance(timedelta(days=3).total_seconds())
    crm.move_invoice(debt, "P")
    assert okbx.sync().exit_code == 0
    assert ok.status_of(waiting) == "in_progress"
    note = [c["content"] for c in ok.comments(waiting) if "okbx:release:" in c["content"]]
    assert len(note) == 1 and "passed during the hold" in note[0], note


def test_status_json_names_the_failing_billing_work_of_a_linked_issue(world: World, okbx: Okbx) -> None:
    okbx.reconfigure(billing=dict(BILLING))  # no CRM company matches the client: never a guess
    issue = _complete(world, okbx)
    assert okbx.sync().exit_code == 1
    status = okbx("status", "--json")
    assert status.exit_code == 1
    (row,) = [r for r in json.loads(status.stdout)["links"] if r["issue"] == issue]
    assert row["state"] == "done" and "billing" in row["billing_error"] and "no CRM company" in row["billing_error"]


def test_status_and_show_name_the_failing_billing_of_a_linked_issue_after_a_quiet_run(world: World, okbx: Okbx) -> None:
    """Once a later run was quiet (the invoice waits for its retry), `okbx status` still says which
    issue's billing fails and why, and `okbx show` tells it in the issue's history."""
    okbx.reconfigure(billing=dict(BILLING))  # no CRM company matches the client
    issue = _complete(world, okbx)
    assert okbx.sync().exit_code == 1
    assert okbx.sync().exit_code == 0  # waiting for its retry: nothing failed in this run
    status = okbx("status")
    assert status.exit_code == 1, status.output
    (row,) = [line for line in status.stdout.splitlines() if line.split()[:1] == [str(issue)]]
    assert "billing (1 failures)" in row, status.stdout  # the problem column of the link
    assert f"billing step failing (issue {issue})" in status.stdout, status.stdout
    assert "1 links, 1 failing or parked" in status.stdout.splitlines()[0], status.stdout  # the title agrees
    show = okbx("show", str(issue))
    assert show.exit_code == 0 and "billing: failing after 1 failures" in show.stdout, show.stdout
    assert "no CRM company" in show.stdout, show.stdout
    (failing,) = json.loads(okbx("show", str(issue), "--json").stdout)["failing"]
    assert failing["track"] == "billing" and "no CRM company" in failing["last_error"]


def test_failing_debt_work_ends_when_nothing_is_left_to_do(world: World, okbx: Okbx, clock: TestClock) -> None:
    """A hold Okdesk keeps refusing is parked (status says so); once the debt is paid there is no
    hold to make, and the parking is over without `okbx retry`: status is quiet again."""
    from okbx_emulator.http import Fault, Response

    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    okbx.reconfigure(debt={"status": "debt"}, sync={"max_retries": 2, "retry_base_seconds": 60})
    debt = crm.add_invoice(crm.add_company("Romashka LLC"), 900, closedate=date.today() - timedelta(days=2))
    issue = ok.create_issue("Printer", "<p>x</p>", company_id=p.company)
    refused = Response.json(422, {"errors": ["Переход в статус «Долг» запрещён"]})
    world.okdesk_server.inject(Fault("POST /issues/{id}/statuses", when="before", response=refused, times=100))
    for _ in range(3):
        okbx.sync()
        clock.advance(minutes=5)
    status = json.loads(okbx("status", "--json").stdout)
    assert [f["issue"] for f in status["billing_failures"]] == [issue] and "parked" in status["billing_failures"][0][
        "error"
    ]
    stuck = [c for c in ok.comments(issue) if "okbx:inote:stuck-debt:" in c["content"]]
    assert len(stuck) == 1  # the consultant was told once
    crm.move_invoice(debt, "P")
    world.okdesk_server.clear_faults()
    assert okbx.sync().exit_code == 0
    assert okbx("status").exit_code == 0
    assert ok.status_of(issue) == "opened"  # never held, nothing to release


def test_billing_switched_off_ends_its_parked_failures_and_status_is_quiet_again(
    world: World, okbx: Okbx, clock: TestClock
) -> None:
    # no CRM company matches the client: the invoice fails every run until it is parked
    okbx.reconfigure(billing=dict(BILLING), sync={"max_retries": 1, "retry_base_seconds": 60})
    _complete(world, okbx)
    for _ in range(3):
        okbx.sync()
        clock.advance(minutes=10)
    assert okbx("status").exit_code == 1
    okbx.reconfigure(sync={"max_retries": 1, "retry_base_seconds": 60})  # billing taken out
    assert okbx.sync().exit_code == 0
    status = okbx("status")
    assert status.exit_code == 0, status.output  # nothing is tried any more, so nothing is failing
    okbx.reconfigure(billing=dict(BILLING), sync={"max_retries": 1, "retry_base_seconds": 60})
    assert okbx.sync().exit_code == 1  # switched on again: the same failure, seen again
