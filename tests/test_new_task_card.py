"""on a portal with the new task card (tasks.task.get has a chatId), the task's
comments cannot be listed with task.commentitem.getlist, so looking for okbx's markers there must
not stop the sync of the issue (bitrix24.md 4.2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e import Okbx, TestClock, hand_off, in_task, start_world, task_of

from okbx_emulator.world import World


@pytest.fixture
def new_card(clock: TestClock) -> Iterator[World]:
    world = start_world(clock, bitrix_new_task_card=True)
    yield world
    world.close()


def test_comments_keep_flowing_on_a_new_task_card_portal(new_card, tmp_path, clock):
    world = new_card
    okbx = Okbx(world, tmp_path, clock=clock)
    issue = hand_off(world, comment="Handed over")
    assert okbx.sync().exit_code == 0
    world.okdesk.add_comment(
        issue, "The client adds a screenshot", author_id=world.people.client, author_type="contact"
    )
    result = okbx.sync()
    assert result.exit_code == 0, result.output
    assert in_task(world, issue, "The client adds a screenshot") == 1
    okbx.sync()
    assert in_task(world, issue, "The client adds a screenshot") == 1
    assert task_of(world, issue)


def test_a_lost_store_forwards_nothing_twice_on_a_new_task_card_portal(new_card, tmp_path, clock):
    """The look for okbx's markers reads the task chat, all of it (more than one page of 50)."""
    world, p = new_card, new_card.people
    okbx = Okbx(world, tmp_path, clock=clock)
    issue = hand_off(world, comment="Handed over")
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    for n in range(60):  # the programmers chat in the task: okbx's comments are on an older page
        world.bitrix.add_comment(task, p.bx_ivan, f"Working on it, step {n}")
    world.okdesk.add_comment(issue, "Any news?", author_id=p.client, author_type="contact")
    assert okbx.sync().exit_code == 0
    path = okbx.config().state.path
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    assert okbx.sync().exit_code == 0
    okbx.sync()
    assert in_task(world, issue, "Handed over") == 1
    assert in_task(world, issue, "Any news?") == 1
    assert task_of(world, issue) == task
