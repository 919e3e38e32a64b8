"""Routes (issue 14) through the real CLI against the emulators: the document department and the
sales department on the same bridge as the programmers, each a block of configuration."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from e2e import FAST, Okbx, TestClock, bot_comments, clean, summary
from files_support import copies_of, files_in_task_comments

from okbx_emulator.world import DOCS_GROUP_ID, DOCS_STATUS, HANDOFF, SALES_PIPELINE, SALES_STATUS, World
from okbx_sync import keys


@pytest.fixture
def seeded(world: World) -> dict[str, int]:
    return world.routes_story()


@pytest.fixture
def okbx(world: World, tmp_path: Path, clock: TestClock, seeded: dict[str, int]) -> Okbx:
    return Okbx(world, tmp_path, {"sync": FAST, "routes": world.routes()}, clock=clock)


def sync(okbx: Okbx) -> dict[str, int]:
    result = clean(okbx("sync"))
    assert result.exit_code == 0, result.output
    return summary(result)


def docs_task(world: World, issue: int) -> dict[str, Any]:
    (task,) = [t for t in world.bitrix.tasks() if t.get("XML_ID") == keys.task_xml_id(issue, "documents")]
    return task


def deals_of(world: World, issue: int) -> list[dict[str, Any]]:
    return [d for d in world.bitrix.deals.all_deals() if str(d.get("originId", "")).startswith(f"okdesk:{issue}:")]


def test_the_document_route_lists_the_equipment_and_returns_the_issue_where_it_was(world, okbx, seeded, clock):
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant, comment="Please check the contract list")
    sync(okbx)
    task = docs_task(world, issue)
    assert int(task["GROUP_ID"]) == DOCS_GROUP_ID and int(task["RESPONSIBLE_ID"]) == p.bx_olga
    description = task["DESCRIPTION"]
    assert "CNB1R12345" in description and "LaserJet M404" in description  # the issue's printer
    assert "INV-0042" in description  # the laptop under the agreement
    assert "CNB1R99999" not in description  # the spare printer is outside the agreement
    assert "Договор 12/24" in description
    comments = [c["POST_MESSAGE"] for c in bx.comments(int(task["ID"]))]
    assert any("Please check the contract list" in c for c in comments)

    bx.add_comment(int(task["ID"]), p.bx_olga, "The laptop is missing from appendix 2; added it.")
    bx.log_time(int(task["ID"]), p.bx_olga, 1800, "paperwork")
    clock.advance(minutes=2)
    bx.complete_task(int(task["ID"]))
    sync(okbx)
    assert ok.status_of(issue) == "in_progress"  # back where it was before the route
    (report,) = bot_comments(world, issue, f"okbx:summary:{issue}:1")
    assert "missing from appendix 2" in report  # the department's result
    assert ok.time_entries(issue) == []  # the route copies no time
    assert sync(okbx)["done"] == 0


def test_the_sales_route_makes_one_deal_forwards_comments_and_reports_the_win(world, okbx, seeded, clock):
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, SALES_STATUS, by_employee_id=p.consultant, comment="Client wants a quote for 3 printers")
    sync(okbx)
    (deal,) = deals_of(world, issue)
    assert deal["categoryId"] == SALES_PIPELINE and deal["stageId"] == "C10:NEW"
    assert deal["companyId"] == seeded["crm_company"] and deal["contactIds"] == [seeded["crm_contact"]]
    assert deal["assignedById"] == p.bx_sales and deal["originatorId"] == keys.DEAL_ORIGINATOR
    timeline = [c["COMMENT"] for c in bx.timeline.comments("deal", deal["id"])]
    assert any("quote for 3 printers" in c for c in timeline)
    ok.add_comment(issue, "And toner, please", author_id=p.client, author_type="contact")
    sync(okbx)
    assert sum("And toner" in c["COMMENT"] for c in bx.timeline.comments("deal", deal["id"])) == 1

    bx.deals.edit_deal(deal["id"], by_user=p.bx_sales, opportunity=120000)
    bx.deals.move_deal(deal["id"], "WON", by_user=p.bx_sales)
    sync(okbx)
    assert ok.status_of(issue) == "opened"
    (note,) = bot_comments(world, issue, f"okbx:summary:{issue}:1")
    assert "Deal won: 120 000 RUB" in note
    assert len(deals_of(world, issue)) == 1 and sync(okbx)["done"] == 0
    assert Decimal(str(bx.deals.deal(deal["id"])["opportunity"])) == 120000


def test_a_move_between_routes_ends_the_first_cleanly(world, okbx, seeded):
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    sync(okbx)
    (task,) = [t for t in bx.tasks() if t.get("XML_ID") == keys.task_xml_id(issue)]
    bx.log_time(int(task["ID"]), p.bx_ivan, 3600, "first look")
    ok.set_status(issue, SALES_STATUS, by_employee_id=p.consultant)
    sync(okbx)
    notes = [c["POST_MESSAGE"] for c in bx.comments(int(task["ID"])) if "okbx:note:moved" in c["POST_MESSAGE"]]
    assert len(notes) == 1 and "route sales" in notes[0]
    assert len(ok.time_entries(issue)) == 1  # the hour so far is reported once
    (deal,) = deals_of(world, issue)
    assert deal["originId"] == keys.deal_origin(issue, 2, "sales")
    rows = okbx.status_rows()
    assert rows[issue]["route"] == "sales"
    assert sync(okbx)["done"] == 0


def test_files_travel_on_the_document_route_to_its_own_group_drive(world, okbx, seeded, clock):
    """Files work on every task route (issue 15 on issue 14): the client's file reaches the document
    department's task, copied to that group's drive, once."""
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant, comment="Please check the contract list")
    comment = ok.add_comment(issue, "Here is the scan", author_id=p.client, author_type="contact")
    ok.files.add(issue, "contract.pdf", b"%PDF-1.4 contract scan", comment_id=comment, is_public=True)
    sync(okbx)
    sync(okbx)
    task = int(docs_task(world, issue)["ID"])
    assert files_in_task_comments(world, task) == [f"contract [okbx-file-{issue}-1].pdf"]
    (copy,) = copies_of(world, "contract.pdf")
    docs_drive = bx.drive.storage_of("group", DOCS_GROUP_ID)["id"]
    assert str(copy["STORAGE_ID"]) == str(docs_drive), copy  # the document department's drive
    assert sync(okbx)["done"] == 0


@pytest.mark.parametrize("via_sales", [False, True], ids=["again", "via-sales"])
def test_a_document_task_taken_up_again_waits_for_its_new_completion(world, okbx, seeded, clock, via_sales):
    """Handed to the document department a second time (straight, or after a stop on the sales
    route), the completed task is reopened and the issue stays there until the department
    completes it again: the first completion is no report of the second handoff."""
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant)
    sync(okbx)
    task = int(docs_task(world, issue)["ID"])
    bx.add_comment(task, p.bx_olga, "The contract is fine.")
    clock.advance(minutes=2)
    bx.complete_task(task)
    sync(okbx)
    assert ok.status_of(issue) == "in_progress"
    if via_sales:
        ok.set_status(issue, SALES_STATUS, by_employee_id=p.consultant)
        sync(okbx)
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant, comment="One more paper, please")
    sync(okbx)
    sync(okbx)
    assert ok.status_of(issue) == DOCS_STATUS  # still with the department
    assert int(docs_task(world, issue)["STATUS"]) != 5  # reopened
    assert len(bot_comments(world, issue, "okbx:summary:")) == 1  # only the first completion's report
    assert okbx.status_rows()[issue]["state"] == "active"
    bx.add_comment(task, p.bx_olga, "Appendix 3 signed.")
    clock.advance(minutes=2)
    bx.complete_task(task)
    sync(okbx)
    assert ok.status_of(issue) == ("opened" if via_sales else "in_progress")
    reports = bot_comments(world, issue, "okbx:summary:")
    assert len(reports) == 2 and "Appendix 3 signed" in reports[1]


def test_a_route_removed_while_a_link_is_on_it_is_a_problem_at_the_next_run(world, okbx, seeded):
    """A route taken out of okbx.yaml while an issue is on it: the next run says so (exit 1, and
    `okbx status` names it), rather than showing the link as active on a route that is gone."""
    ok, p, issue = world.okdesk, world.people, seeded["issue"]
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant)
    sync(okbx)
    okbx.reconfigure(sync=FAST, routes=[r for r in world.routes() if r["name"] != "documents"])
    result = clean(okbx("sync"))
    assert result.exit_code == 1 and "route documents is no longer in the configuration" in result.output
    status = okbx("status")
    assert status.exit_code == 1 and "no longer in the configuration" in status.output


def test_an_issue_postponed_before_the_document_route_comes_back_to_the_fallback(world, okbx, seeded, clock):
    """`previous` is `delayed`: Okdesk refuses that status without a date (delay_to), so the
    return would fail and park for ever; the issue goes to the fallback status, and the note says why."""
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, "delayed", by_employee_id=p.consultant, delay_to=clock.now().replace(year=2030))
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant)
    sync(okbx)
    clock.advance(minutes=2)
    bx.complete_task(int(docs_task(world, issue)["ID"]))
    assert sync(okbx)["failed"] == 0
    assert ok.status_of(issue) == "opened"
    (report,) = bot_comments(world, issue, f"okbx:summary:{issue}:1")
    assert "postponed" in report


def test_a_deal_route_whose_first_stage_is_final_makes_no_deal(world, seeded, tmp_path, clock):
    """stage_id names a won stage: a deal made there would be over at once, telling the issue
    "Deal won: 0 RUB"; it is a failure of the issue instead, and no deal is made."""
    ok, p, issue = world.okdesk, world.people, seeded["issue"]
    routes = world.routes()
    routes[2]["target"]["stage_id"] = f"C{SALES_PIPELINE}:WON"
    okbx = Okbx(world, tmp_path, {"sync": FAST, "routes": routes}, clock=clock)
    ok.set_status(issue, SALES_STATUS, by_employee_id=p.consultant)
    result = clean(okbx("sync"))
    assert result.exit_code == 1 and "final stage" in result.output
    assert deals_of(world, issue) == [] and ok.status_of(issue) == SALES_STATUS
    assert bot_comments(world, issue, "okbx:summary:") == []
