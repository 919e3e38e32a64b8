"""`okbx report` (issue 10 item 1): the time ledger and its verification against both systems."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

from okbx_emulator.world import HANDOFF
from okbx_sync.billing.report import LedgerRow, summarize


def _completed(world, okbx, title: str, logged: list[tuple[int, int, datetime]]) -> tuple[int, int]:
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = ok.create_issue(title, "<p>x</p>", company_id=p.company)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    okbx.sync()
    task = next(int(t["ID"]) for t in bx.tasks() if t.get("XML_ID") == f"okdesk:{issue}")
    for user, seconds, when in logged:
        bx.log_time(task, user, seconds, "work", created_date=when)
    bx.complete_task(task)
    assert okbx.sync().exit_code == 0
    return issue, task


def test_summary_groups_by_company_programmer_and_month():
    rows = [
        LedgerRow("A", "Ivan", "2026-10", 1, 3600),
        LedgerRow("A", "Ivan", "2026-10", 2, 1800),
        LedgerRow("A", "Ivan", "2026-11", 2, 900),
        LedgerRow("B", "Olga", "2026-11", 3, 7200),
    ]
    assert summarize(rows) == [
        {"company": "A", "programmer": "Ivan", "month": "2026-10", "hours": 1.5},
        {"company": "A", "programmer": "Ivan", "month": "2026-11", "hours": 0.25},
        {"company": "B", "programmer": "Olga", "month": "2026-11", "hours": 2.0},
    ]
    assert len(summarize(rows, by_issue=True)) == 4


def test_report_lists_hours_per_company_programmer_and_month_as_csv_and_json(world, okbx):
    p = world.people
    october, november = datetime(2026, 10, 20, 9, tzinfo=UTC), datetime(2026, 11, 3, 9, tzinfo=UTC)
    _completed(world, okbx, "One", [(p.bx_ivan, 3600, october), (p.bx_ivan, 1800, november)])
    _completed(world, okbx, "Two", [(p.bx_olga, 5400, november)])
    result = okbx("report", "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["company"], r["programmer"], r["month"], r["hours"]) for r in lines] == [
        ("Romashka LLC", "Ivan Petrov", "2026-10", "1.0"),
        ("Romashka LLC", "Ivan Petrov", "2026-11", "0.5"),
        ("Romashka LLC", "Olga Sidorova", "2026-11", "1.5"),
    ]
    data = json.loads(okbx("report", "--format", "json", "--by-issue").stdout)
    assert {row["issue"] for row in data["ledger"]} == {1, 2}
    table = okbx("report")
    assert table.exit_code == 0 and "█" in table.stdout


def test_verify_lists_every_drift(world, okbx):
    p = world.people
    now = datetime.now(UTC)
    issue, task = _completed(
        world, okbx, "One", [(p.bx_ivan, 3600, now), (p.bx_olga, 1800, now), (p.bx_ivan, 600, now)]
    )
    assert json.loads(okbx("report", "--format", "json", "--verify").stdout)["drifts"] == []
    first, second, third = (int(e["ID"]) for e in world.bitrix.elapsed(task))
    world.bitrix.edit_time(first, 4000)
    world.bitrix.edit_time(second, None)
    entry = next(e for e in world.okdesk.time_entries(issue) if f"okbx:time:{third}" in (e["comment"] or ""))
    world.okdesk.delete_time_entry(entry["id"])
    result = okbx("report", "--format", "json", "--verify")
    assert result.exit_code == 1
    drifts = {(d["item_id"], d["what"].split(":")[0]) for d in json.loads(result.stdout)["drifts"]}
    assert drifts == {
        (first, "edited in Bitrix24"),
        (second, "deleted in Bitrix24 after it was copied"),
        (third, "time entry deleted in Okdesk"),
    }
