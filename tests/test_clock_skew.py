"""A server whose clock is off (issue 16 item 4): sync says so and widens its change windows, so a
change-only cycle misses nothing; a dry run and doctor stay read-only about it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from e2e import Okbx, TestClock, hand_off, in_task, start_world

from okbx_emulator.world import World

CHANGE_ONLY = {"full_listing_below": 0, "full_listing_minutes": 60}


@pytest.fixture
def behind(clock: TestClock) -> Iterator[World]:
    """An Okdesk account whose server clock is three hours behind this machine's."""
    world = start_world(clock, okdesk_clock=lambda: clock.now() - timedelta(hours=3))
    yield world
    world.close()


def test_a_server_three_hours_behind_is_reported_and_its_changes_are_not_missed(
    behind: World, clock: TestClock, tmp_path: Path
) -> None:
    okbx = Okbx(behind, tmp_path, {"sync": CHANGE_ONLY}, clock=clock)
    issue = hand_off(behind, comment="please look")
    first = okbx.sync()  # the first cycle lists everything and measures the clocks
    assert first.exit_code == 0, first.output
    # the Date header counts whole seconds: three hours, give or take one
    assert re.search(r"the Okdesk server's clock is 1080[01] s behind", first.stderr), first.stderr
    assert in_task(behind, issue, "please look") == 1
    clock.advance(minutes=5)
    behind.okdesk.add_comment(issue, "one more detail", author_id=behind.people.client, author_type="contact")
    second = okbx.sync()  # change-only: a comment stamped three hours "ago" is still in the window
    assert second.exit_code == 0, second.output
    assert "widened" in second.stderr
    assert in_task(behind, issue, "one more detail") == 1
    clock.advance(minutes=5)
    behind.okdesk.add_comment(issue, "and another", author_id=behind.people.client, author_type="contact")
    assert okbx.sync().exit_code == 0
    assert in_task(behind, issue, "and another") == 1


def test_clocks_within_a_minute_say_nothing(world: World, clock: TestClock, tmp_path: Path) -> None:
    okbx = Okbx(world, tmp_path, {"sync": CHANGE_ONLY}, clock=clock)
    hand_off(world)
    result = okbx.sync()
    assert result.exit_code == 0 and "clock" not in result.stderr, result.stderr
