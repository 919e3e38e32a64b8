"""Facts from the real APIs (issue 7, item 6), checked over the emulators with the real CLI.

- `user.get` answers 50 users a page (../shared/api/bitrix24.md section 9, confirmed): the client
  asks 50 ids at a time and follows `next`, so more than 50 users are all found.
- Bitrix24 `503 OVERLOAD_LIMIT` is a manual block by support (section 1.5 and 7: "stop, alert a
  human"): the cycle stops at the first one instead of retrying, like `429 OPERATION_TIME_LIMIT`.
- Okdesk time entries: the only public client that posts them sends `{"time_entries": [...]}`
  (okdesk.md section 6, inferred): `auto` tries that form first, the emulator takes it by default.
- An Okdesk comment without an author (okdesk.md section 5: a system author type is unknown)
  does not break the comment list; it is forwarded as an Okdesk system message, never as a person's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Okbx
from test_rate_limits import FAST, clean, query_limit, statuses, summary
from test_sync_story import hand_off, only_task

from okbx_emulator.http import Fault
from okbx_emulator.world import World
from okbx_sync.clients.bitrix24 import Bitrix24Client
from okbx_sync.clients.okdesk_parse import parse_comments
from okbx_sync.secrets import Redactor

TIME_POST = "POST /issues/{id}/time_entries"


def bitrix_client(okbx: Okbx) -> Bitrix24Client:
    return Bitrix24Client(okbx.config().bitrix24, Redactor())


# -- user.get pages by 50 -------------------------------------------------------------------------
def test_more_than_fifty_users_asked_by_id_are_all_found_fifty_to_a_request(world, okbx):
    for user_id in range(100, 230):
        world.bitrix.add_user(user_id, f"User{user_id}", "Tester")
    client = bitrix_client(okbx)
    try:
        before = len(world.bitrix_server.log)
        found = client.users(range(100, 230))
        assert sorted(int(u["ID"]) for u in found) == list(range(100, 230))
        assert statuses(world.bitrix_server, "user.get") == [200, 200, 200]  # 130 ids: 50 + 50 + 30
        assert len(world.bitrix_server.log) - before == 3
    finally:
        client.transport.close()


def test_all_users_are_read_page_by_page(world, okbx):
    for user_id in range(100, 180):
        world.bitrix.add_user(user_id, f"User{user_id}")
    client = bitrix_client(okbx)
    try:
        everyone = {int(u["ID"]) for u in client.users()}
    finally:
        client.transport.close()
    assert set(range(100, 180)) <= everyone and len(everyone) == 80 + 4  # webhook owner and 3 programmers
    assert statuses(world.bitrix_server, "user.get") == [200, 200]


def test_time_of_more_than_fifty_programmers_is_copied_with_every_name(tmp_path):
    world = World.start(bitrix_rate=None)
    try:
        okbx = Okbx(world, tmp_path, {"sync": FAST})
        issue = hand_off(world)
        okbx.sync()
        task = only_task(world)
        programmers = list(range(300, 355))  # 55 people: two pages of user.get
        for user_id in programmers:
            world.bitrix.add_user(user_id, "Programmer", f"No{user_id}")
            world.bitrix.log_time(task, user_id, 60, f"bit by {user_id}")
        world.bitrix.complete_task(task)
        assert clean(okbx("sync")).exit_code == 0
        [summary_comment] = [c for c in world.okdesk.comments(issue) if "okbx:summary:" in c["content"]]
        assert all(f"No{user_id}" in summary_comment["content"] for user_id in programmers)
        assert "Bitrix24 user #" not in summary_comment["content"]
        assert len(world.okdesk.time_entries(issue)) == len(programmers)
    finally:
        world.close()


# -- 503 OVERLOAD_LIMIT stops the cycle -----------------------------------------------------------
def test_a_portal_blocked_by_support_stops_the_cycle_at_once_and_the_next_run_finishes(world, tmp_path):
    okbx = Okbx(world, tmp_path, {"sync": FAST})
    assert clean(okbx("sync")).exit_code == 0  # a store that has run before: the block hits the apply phase
    world.bitrix_server.log.clear()
    issue = hand_off(world, comment="Please look at the export")
    world.bitrix.overloaded = True
    stopped = clean(okbx("sync"))
    assert "stopped early" in stopped.output and "OVERLOAD_LIMIT" in stopped.output
    assert [entry.status for entry in world.bitrix_server.log] == [503]  # not retried: one request
    assert summary(stopped)["left"] > 0 and world.bitrix.tasks() == []

    world.bitrix.overloaded = False
    finished = clean(okbx("sync"))
    assert finished.exit_code == 0 and summary(finished)["left"] == 0
    task = only_task(world)
    assert sum("Please look at the export" in c["POST_MESSAGE"] for c in world.bitrix.comments(task)) == 1
    assert world.okdesk.status_of(issue) == "to_programmers"


def test_an_overload_while_reading_the_tasks_stops_the_run_with_one_request_and_says_why(world, tmp_path):
    okbx = Okbx(world, tmp_path, {"sync": FAST})
    hand_off(world)
    okbx.sync()
    seen = len(world.bitrix_server.log)
    world.bitrix.overloaded = True
    stopped = okbx("sync")
    assert stopped.exit_code == 1 and "OVERLOAD_LIMIT" in stopped.stderr and "Bitrix24 support" in stopped.stderr
    assert "Traceback" not in stopped.output
    assert [e.status for e in world.bitrix_server.log[seen:]] == [503]


def test_a_query_limit_is_still_waited_out_while_an_overload_is_not(world, tmp_path):
    okbx = Okbx(world, tmp_path, {"sync": FAST})
    hand_off(world)
    world.bitrix_server.inject(Fault(op="tasks.task.list", when="before", response=query_limit(), times=2))
    result = clean(okbx("sync"))
    assert result.exit_code == 0 and summary(result)["left"] == 0
    assert statuses(world.bitrix_server, "tasks.task.list")[:3] == [503, 503, 200]


# -- Okdesk time entries: the wrapped body first --------------------------------------------------
def complete_with_time(world: World, okbx: Okbx, seconds: list[int]) -> int:
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    for n, amount in enumerate(seconds):
        world.bitrix.log_time(task, world.people.bx_ivan, amount, f"work {n}")
    world.bitrix.complete_task(task)
    assert clean(okbx("sync")).exit_code == 0
    return issue


def test_time_entries_are_posted_wrapped_first_and_once_each(world, tmp_path):
    okbx = Okbx(world, tmp_path)
    assert world.okdesk.time_entry_body == "wrapped"  # the emulator's default, as the public client
    issue = complete_with_time(world, okbx, [1800, 3600])
    assert statuses(world.okdesk_server, TIME_POST) == [200, 200]  # no refused first try
    assert sorted(round(e["spent_time"] * 60) for e in world.okdesk.time_entries(issue)) == [30, 60]


@pytest.mark.parametrize(("mode", "expected"), [("auto", [422, 200]), ("flat", [200])])
def test_an_account_that_takes_the_flat_body_gets_each_entry_once(tmp_path: Path, mode, expected):
    world = World.start(okdesk_time_entry_body="flat")
    try:
        okbx = Okbx(world, tmp_path, {"okdesk": {"time_entry_body": mode}})
        issue = complete_with_time(world, okbx, [2700])
        assert statuses(world.okdesk_server, TIME_POST) == expected  # a 422 wrote nothing
        assert [round(e["spent_time"] * 60) for e in world.okdesk.time_entries(issue)] == [45]
    finally:
        world.close()


# -- an Okdesk comment without an author ----------------------------------------------------------
@pytest.mark.parametrize("author", [None, {}, {"name": "Automation"}, {"id": None, "type": "system"}])
def test_a_comment_without_an_author_is_parsed_as_a_system_comment(author):
    raw = [
        {"id": 1, "content": "Auto-reply sent", "public": False, "author": author},
        {"id": 2, "content": "Hi", "public": True, "author": {"id": 5, "name": "Pavel", "type": "contact"}},
    ]
    system, person = parse_comments(raw, 9)
    assert system.author.kind == "system" and system.author.id == 0
    assert system.author.name == ((author or {}).get("name") or "system")
    assert person.author.kind == "contact" and person.author.id == 5


def test_a_system_comment_is_forwarded_once_as_okdesk_not_as_a_person(world, okbx):
    issue = hand_off(world, comment="The export is broken")
    world.okdesk.add_system_comment(issue, "SLA warning: reaction time exceeded")
    assert world.okdesk.comments(issue)[-1]["author"] is None  # what the emulator serves
    assert clean(okbx("sync")).exit_code == 0
    okbx.sync()
    task = only_task(world)
    texts = [c["POST_MESSAGE"] for c in world.bitrix.comments(task)]
    [system] = [t for t in texts if "SLA warning" in t]
    assert system.startswith("[B]Okdesk system message[/B]")
    assert "Consultant" not in system and "Client" not in system
    assert sum("The export is broken" in t for t in texts) == 1
