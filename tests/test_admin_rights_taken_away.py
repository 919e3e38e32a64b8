"""`okbx run` lives for months, and a webhook user's administrator rights can be
taken away meanwhile.  A "yes" from `user.admin` remembered for the whole process then turned a
task that was merely hidden into "task #N was deleted" (issue 7, item 4)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import Okbx, hand_off, task_of

from okbx_emulator.world import GROUP_ID, World

OTHER_GROUP = 43
WEBHOOK_USER = 1


@pytest.fixture
def admin_world() -> Iterator[World]:
    world = World.start()  # the webhook user starts as an administrator
    world.bitrix.set_group_members(GROUP_ID, {WEBHOOK_USER, world.people.bx_ivan, world.people.bx_olga})
    world.bitrix.add_group(OTHER_GROUP, "Management", members={world.people.bx_olga})
    yield world
    world.close()


def test_rights_taken_away_during_a_long_run_never_make_a_hidden_task_deleted(admin_world, tmp_path: Path):
    world, bx = admin_world, admin_world.bitrix
    # one process for every cycle, as `okbx run` is
    okbx = Okbx(world, tmp_path, {"bitrix24": {"created_by": world.people.bx_olga}})
    kept = hand_off(world, "Printer")
    gone = hand_off(world, "Scanner")
    assert okbx.sync().exit_code == 0
    bx.delete_task(task_of(world, gone))  # really deleted, told by an administrator's webhook
    okbx.sync()
    assert any("was deleted" in c["content"] for c in world.okdesk.comments(gone))

    bx.admins.discard(WEBHOOK_USER)  # the webhook's user is no administrator any more
    bx.move_task(task_of(world, kept), OTHER_GROUP)  # and a task moves out of its reach
    okbx.sync()
    assert not any("was deleted" in c["content"] for c in world.okdesk.comments(kept))
    assert okbx.store().link(kept).state == "active"
