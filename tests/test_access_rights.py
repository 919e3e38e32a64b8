"""Invisible is not deleted (issue 7, item 4), over the emulators with the real CLI.

The Bitrix24 emulator has access rights: administrators see every task; any other webhook user
only the tasks it takes part in (creator, responsible, accomplice, auditor) or that sit in a
workgroup it belongs to.  For the others `tasks.task.get` answers `[]` exactly as for a deleted
task, lists skip them and `task.*` methods refuse.  okbx says "deleted" only when `user.admin`
says the webhook user sees everything; otherwise the link fails with a plain reason, is retried
and parked like any failure, and resumes when the task is visible again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Okbx
from e2e import TestClock, start_world
from test_sync_story import hand_off, only_task

from okbx_emulator.world import GROUP_ID, World
from okbx_sync.clients.bitrix24 import Bitrix24Client
from okbx_sync.secrets import Redactor

REASON = "task not visible to the webhook user: check its rights"
OTHER_GROUP = 43
WEBHOOK_USER = 1


@pytest.fixture
def plain_world(clock: TestClock) -> Iterator[World]:
    """A portal whose webhook user is not an administrator but a member of the okbx workgroup."""
    world = start_world(clock, bitrix_admins=())
    world.bitrix.set_group_members(GROUP_ID, {WEBHOOK_USER, world.people.bx_ivan, world.people.bx_olga})
    world.bitrix.add_group(OTHER_GROUP, "Management", members={world.people.bx_olga})
    yield world
    world.close()


@pytest.fixture
def okbx(plain_world: World, tmp_path: Path, clock: TestClock) -> Okbx:
    # the task's creator is a programmer, not the webhook user: only the workgroup makes it visible
    creator = {"created_by": plain_world.people.bx_olga}
    settings = {"bitrix24": creator, "sync": {"max_retries": 3, "retry_base_seconds": 60}}
    return Okbx(plain_world, tmp_path, settings, clock=clock)


def rows(okbx: Okbx) -> dict[int, dict[str, Any]]:
    result = okbx("status", "--json")
    found = {row["issue"]: row for row in json.loads(result.stdout)["links"]}
    unhealthy = any(row["failures"] or row["state"] == "parked" for row in found.values())
    assert result.exit_code == (1 if unhealthy else 0), result.output  # status exits 1 while a link fails
    return found


def the_retry_delay_passes(okbx: Okbx, issue: int) -> None:
    """Time passes until the link's retry is due (the test clock moves; nothing sleeps)."""
    store = okbx.store()
    try:
        link = store.link(issue)
        assert link is not None and okbx.clock is not None
        due = link.next_retry_at
    finally:
        store.close()
    if due is not None:
        okbx.clock.advance(max(0.0, (due - okbx.clock.now()).total_seconds()) + 1)


def task_texts(world: World, task: int) -> list[str]:
    return [c["POST_MESSAGE"] for c in world.bitrix.comments(task)]


def deleted_notes(world: World, issue: int) -> list[str]:
    return [c["content"] for c in world.okdesk.comments(issue) if "deleted" in c["content"]]


# -- the emulator --------------------------------------------------------------------------------
def call(world: World, method: str, params: dict[str, Any]) -> requests.Response:
    return requests.post(world.webhook_url + method, json=params, timeout=5)


def test_the_emulator_hides_tasks_outside_a_plain_user_s_reach(plain_world):
    bx, p = plain_world.bitrix, plain_world.people
    mine = bx.create_task("In our group", responsible_id=p.bx_ivan, group_id=GROUP_ID)
    hidden = bx.create_task("Management only", responsible_id=p.bx_olga, group_id=OTHER_GROUP)
    audited = bx.create_task("Audited", responsible_id=p.bx_olga, group_id=OTHER_GROUP)
    bx.set_task_people(audited, auditors=[WEBHOOK_USER])

    assert call(plain_world, "user.admin", {}).json()["result"] is False
    assert call(plain_world, "tasks.task.get", {"taskId": hidden}).json()["result"] == []
    assert call(plain_world, "tasks.task.get", {"taskId": mine}).json()["result"]["task"]["id"] == str(mine)
    listed = call(plain_world, "tasks.task.list", {"filter": {"ID": [mine, hidden, audited]}}).json()
    assert sorted(int(t["id"]) for t in listed["result"]["tasks"]) == [mine, audited]
    refused = call(plain_world, "task.commentitem.add", {"TASKID": hidden, "FIELDS": {"POST_MESSAGE": "x"}})
    assert refused.status_code == 400 and refused.json()["error"] == "ERROR_CORE"
    assert "Insufficient permissions" in refused.json()["error_description"]
    getlist = call(plain_world, "task.commentitem.getlist", {"TASKID": hidden})
    assert "ACTION_FAILED_TO_BE_PROCESSED" in getlist.json()["error_description"]
    renew = call(plain_world, "tasks.task.renew", {"taskId": hidden})
    assert renew.status_code == 400 and bx.comments(hidden) == []

    bx.admins.add(WEBHOOK_USER)
    assert call(plain_world, "user.admin", {}).json()["result"] is True
    assert call(plain_world, "tasks.task.get", {"taskId": hidden}).json()["result"]["task"]["id"] == str(hidden)


def test_accomplices_given_at_creation_see_the_task_and_time_of_hidden_tasks_is_not_listed(plain_world):
    bx, p = plain_world.bitrix, plain_world.people
    fields = {"TITLE": "Help wanted", "RESPONSIBLE_ID": p.bx_olga, "GROUP_ID": OTHER_GROUP}
    added = call(plain_world, "tasks.task.add", {"fields": {**fields, "ACCOMPLICES": [WEBHOOK_USER]}}).json()
    shared = int(added["result"]["task"]["id"])
    got = call(plain_world, "tasks.task.get", {"taskId": shared, "select": ["ID", "ACCOMPLICES"]}).json()
    assert got["result"]["task"]["accomplices"] == [str(WEBHOOK_USER)]
    hidden = bx.create_task("Management only", responsible_id=p.bx_olga, group_id=OTHER_GROUP)
    bx.log_time(shared, p.bx_olga, 600)
    bx.log_time(hidden, p.bx_olga, 900)
    rows = call(plain_world, "task.elapseditem.getlist", {"ORDER": {"ID": "asc"}, "FILTER": {">ID": 0}}).json()
    assert [int(r["TASK_ID"]) for r in rows["result"]] == [shared]
    refused = call(plain_world, "task.elapseditem.add", {"TASKID": hidden, "ARFIELDS": {"SECONDS": 60}})
    assert refused.status_code == 400 and "TASK_NOT_FOUND_OR_NOT_ACCESSIBLE" in refused.json()["error_description"]


def test_the_client_asks_user_admin_once_per_process(plain_world, okbx):
    for _ in range(2):
        client = Bitrix24Client(okbx.config().bitrix24, Redactor())
        try:
            assert client.is_admin() is False and client.webhook_user() == WEBHOOK_USER
        finally:
            client.transport.close()
    assert [e.op for e in plain_world.bitrix_server.log].count("user.admin") == 1


# -- okbx ------------------------------------------------------------------------------------------
def test_a_hidden_task_fails_its_link_and_the_link_resumes_when_it_is_visible_again(plain_world, okbx):
    ok, bx, p = plain_world.okdesk, plain_world.bitrix, plain_world.people
    issue = hand_off(plain_world, comment="first words")
    assert okbx.sync().exit_code == 0
    task = only_task(plain_world)
    assert bx.task(task)["CREATED_BY"] == p.bx_olga  # visible only through the workgroup

    bx.move_task(task, OTHER_GROUP)  # someone moved it where the webhook user cannot look
    ok.add_comment(issue, "while hidden", author_id=p.client, author_type="contact")
    hidden = okbx("sync")
    assert hidden.exit_code == 1 and REASON in hidden.stderr
    row = rows(okbx)[issue]
    assert row["state"] == "active" and row["failures"] == 1 and REASON in row["last_error"]
    assert deleted_notes(plain_world, issue) == []
    the_retry_delay_passes(okbx, issue)
    assert okbx("sync").exit_code == 1 and rows(okbx)[issue]["failures"] == 2

    bx.move_task(task, GROUP_ID)  # visible again
    the_retry_delay_passes(okbx, issue)
    assert okbx.sync().exit_code == 0
    okbx.sync()
    texts = task_texts(plain_world, task)
    assert sum("first words" in t for t in texts) == 1 and sum("while hidden" in t for t in texts) == 1
    row = rows(okbx)[issue]
    assert row["state"] == "active" and row["failures"] == 0 and not row["last_error"]
    assert deleted_notes(plain_world, issue) == [] and only_task(plain_world) == task

    bx.log_time(task, p.bx_ivan, 1800, "done")
    bx.complete_task(task)
    okbx.sync()
    assert ok.status_of(issue) == "opened" and len(ok.time_entries(issue)) == 1


def test_a_hidden_task_is_parked_and_a_retry_resumes_it_once_visible(plain_world, okbx):
    ok, bx, p = plain_world.okdesk, plain_world.bitrix, plain_world.people
    issue = hand_off(plain_world)
    okbx.sync()
    task = only_task(plain_world)
    bx.set_task_people(task, responsible_id=p.bx_olga)
    bx.move_task(task, OTHER_GROUP)
    ok.add_comment(issue, "are you there?", author_id=p.client, author_type="contact")
    for _ in range(3):  # sync.max_retries
        assert okbx("sync").exit_code == 1
        the_retry_delay_passes(okbx, issue)
    parked = rows(okbx)[issue]
    assert parked["state"] == "parked" and REASON in parked["last_error"]
    assert "parked" in okbx("sync", "--dry-run").stdout  # skipped while parked
    assert deleted_notes(plain_world, issue) == [] and bx.tasks()[0]["ID"] == task

    bx.set_task_people(task, accomplices=[WEBHOOK_USER])  # access given back another way
    assert okbx("retry", str(issue)).exit_code == 0
    assert okbx.sync().exit_code == 0
    assert sum("are you there?" in t for t in task_texts(plain_world, task)) == 1
    assert rows(okbx)[issue]["state"] == "active" and len(bx.tasks()) == 1


def test_a_deleted_task_is_not_called_deleted_by_a_plain_webhook(plain_world, okbx):
    issue = hand_off(plain_world)
    okbx.sync()
    plain_world.bitrix.delete_task(only_task(plain_world))
    result = okbx("sync")
    assert result.exit_code == 1 and REASON in result.stderr
    assert deleted_notes(plain_world, issue) == [] and rows(okbx)[issue]["state"] == "active"
    assert plain_world.bitrix.tasks() == []  # and no new task either


def test_an_administrator_s_webhook_still_reports_a_deleted_task(world, tmp_path):
    okbx = Okbx(world, tmp_path)
    issue = hand_off(world)
    okbx.sync()
    world.bitrix.delete_task(only_task(world))
    assert okbx.sync().exit_code == 0
    assert len([c for c in world.okdesk.comments(issue) if "okbx:inote:taskdeleted" in c["content"]]) == 1
    assert [e.op for e in world.bitrix_server.log].count("user.admin") == 1
    assert rows(okbx)[issue]["state"] == "gone_task"


def test_no_change_cycles_never_ask_user_admin(plain_world, okbx):
    hand_off(plain_world)
    for _ in range(3):
        okbx.sync()
    assert "user.admin" not in [e.op for e in plain_world.bitrix_server.log]
