"""A lost state store on the routes: the route of a handoff and the status to go back to come from
okbx's markers (the document task's XML_ID, the link comment's marker, the deal's origin), so no
second task or deal is made and the issue still returns where it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e import FAST, Okbx, TestClock, bot_markers, clean, summary

from okbx_emulator.world import DOCS_STATUS, HANDOFF, SALES_STATUS, World
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


def lose_the_store(okbx: Okbx) -> None:
    path = okbx.config().state.path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_the_document_route_recovers_its_task_and_previous_from_the_markers(world, okbx, seeded, clock):
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, "delayed", by_employee_id=p.consultant, delay_to=clock.now().replace(year=2030))
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant)
    sync(okbx)
    lose_the_store(okbx)
    ok.add_comment(issue, "the contract is attached", author_id=p.client, author_type="contact")
    sync(okbx)
    sync(okbx)
    (task,) = [t for t in bx.tasks() if t["XML_ID"] == keys.task_xml_id(issue, "documents")]
    assert sum("the contract is attached" in c["POST_MESSAGE"] for c in bx.comments(int(task["ID"]))) == 1
    rows = okbx.status_rows()
    assert rows[issue]["route"] == "documents" and rows[issue]["state"] == "active"
    store = okbx.store()
    try:
        link = store.link(issue)
        assert link is not None and link.previous_status == "in_progress"  # from the link comment's marker
    finally:
        store.close()
    clock.advance(minutes=1)
    bx.complete_task(int(task["ID"]))
    sync(okbx)
    assert ok.status_of(issue) == "in_progress"
    assert bot_markers(world, issue).count(f"okbx:linkcomment:{issue}:1:documents:in_progress") == 1


def test_a_deal_after_a_move_is_found_again_not_made_twice(world, okbx, seeded):
    ok, bx, p, issue = world.okdesk, world.bitrix, world.people, seeded["issue"]
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    sync(okbx)
    ok.set_status(issue, SALES_STATUS, by_employee_id=p.consultant)
    sync(okbx)
    lose_the_store(okbx)
    sync(okbx)
    sync(okbx)
    deals = [d for d in bx.deals.all_deals() if str(d["originId"]).startswith(f"okdesk:{issue}:")]
    assert [d["originId"] for d in deals] == [keys.deal_origin(issue, 2, "sales")]
    row = okbx.status_rows()[issue]
    assert (row["route"], row["target"], row["task"], row["cycle"]) == ("sales", "deal", deals[0]["id"], 2)
    bx.deals.move_deal(deals[0]["id"], "LOSE", by_user=p.bx_sales)
    sync(okbx)
    assert ok.status_of(issue) == "opened"
    assert len([m for m in bot_markers(world, issue) if m == f"okbx:summary:{issue}:2"]) == 1
    assert f"okbx:summary:{issue}:1" not in bot_markers(world, issue)  # the move posted no report: no time
