"""The routes on a portal with the new task card (bitrix24.md 4.2): the task's comments are the
messages of its chat, and `task.commentitem.getlist` does not work there."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import FAST, Okbx, TestClock, bot_comments, clean, start_world

from okbx_emulator.world import DOCS_STATUS, World
from okbx_sync import keys


@pytest.fixture
def new_card(clock: TestClock) -> Iterator[World]:
    world = start_world(clock, bitrix_new_task_card=True)
    yield world
    world.close()


def test_the_document_department_s_result_is_quoted_from_the_task_chat(new_card, tmp_path: Path, clock):
    world = new_card
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = world.routes_story()["issue"]
    okbx = Okbx(world, tmp_path, {"sync": FAST, "routes": world.routes()}, clock=clock)
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    ok.set_status(issue, DOCS_STATUS, by_employee_id=p.consultant)
    assert clean(okbx("sync")).exit_code == 0
    (task,) = [int(t["ID"]) for t in bx.tasks() if t.get("XML_ID") == keys.task_xml_id(issue, "documents")]
    bx.add_comment(task, p.bx_olga, "The laptop is missing from appendix 2; added it.")
    clock.advance(minutes=2)
    bx.complete_task(task)
    assert clean(okbx("sync")).exit_code == 0
    assert ok.status_of(issue) == "in_progress"
    (report,) = bot_comments(world, issue, f"okbx:summary:{issue}:1")
    assert "missing from appendix 2" in report
