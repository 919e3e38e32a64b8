"""Issue 8 at small scale: what a cycle reads between the slow full listings, the hot links, the
per-run time budget, and store queries above SQLite's variable limit.

`full_listing_below: 0` makes even these few links take the path that 10,000 links take (by
default a handful of active links is listed fully every cycle: it costs the same one request).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from e2e import Okbx, TestClock, clean, hand_off, in_task, summary, task_of, tasks_of

from okbx_emulator.world import HANDOFF, World
from okbx_sync.clients.okdesk import OkdeskClient
from okbx_sync.errors import StateError
from okbx_sync.secrets import Redactor
from okbx_sync.state.store import LinkState, Store

CHANGE_ONLY = {"full_listing_below": 0, "full_listing_minutes": 60}


@pytest.fixture
def scaled(world: World, tmp_path, clock: TestClock) -> Okbx:
    return Okbx(world, tmp_path, {"sync": CHANGE_ONLY}, clock=clock)


def test_a_quiet_cycle_between_full_listings_costs_one_request_per_system(world, scaled, clock):
    issues = [hand_off(world, f"Issue {n}", comment=f"words {n}") for n in range(3)]
    first = clean(scaled.sync())
    assert summary(first)["left"] == 0 and len(world.bitrix.tasks()) == 3
    clock.advance(minutes=5)
    quiet = clean(scaled.sync())
    # okbx's own link comments moved the issues' updated_at: not taken for a change
    assert summary(quiet)["done"] == 0
    assert (summary(quiet)["okdesk"], summary(quiet)["bitrix24"]) == (1, 1)
    assert all(in_task(world, issue, f"words {n}") == 1 for n, issue in enumerate(issues))


def test_between_full_listings_comments_completions_and_new_handoffs_are_still_seen(world, scaled, clock):
    talk, finish = hand_off(world, "Talk"), hand_off(world, "Finish")
    scaled.sync()
    clock.advance(minutes=5)
    world.okdesk.add_comment(talk, "Any news?", author_id=world.people.client, author_type="contact")
    world.bitrix.complete_task(task_of(world, finish))
    newcomer = hand_off(world, "Newcomer", comment="Please look")
    clean(scaled.sync())
    assert in_task(world, talk, "Any news?") == 1
    assert world.okdesk.status_of(finish) == "opened"  # returned: the completion came through CHANGED_DATE
    assert in_task(world, newcomer, "Please look") == 1


def test_a_deleted_task_is_noticed_at_the_next_full_listing(world, scaled, clock):
    issue = hand_off(world)
    scaled.sync()
    world.bitrix.delete_task(task_of(world, issue))
    clock.advance(minutes=5)
    clean(scaled.sync())  # a deletion does not move CHANGED_DATE: nothing shows it yet
    store = scaled.store()
    try:
        link = store.link(issue)
        assert link is not None and link.state == LinkState.ACTIVE
    finally:
        store.close()
    clock.advance(minutes=61)
    clean(scaled.sync())
    store = scaled.store()
    try:
        link = store.link(issue)
        assert link is not None and link.state == LinkState.GONE_TASK
    finally:
        store.close()


def test_a_fresh_process_starts_from_the_account_offset_it_learned(world, scaled):
    hand_off(world)
    scaled.sync()
    store = scaled.store()
    try:
        offset = store.get_meta("okdesk_utc_offset")
    finally:
        store.close()
    issue_time = world.okdesk.issue(1)["updated_at"]
    assert offset is not None and issue_time.endswith(offset)
    client = OkdeskClient(scaled.config().okdesk, Redactor([]))
    try:
        assert client.account_tz() is None
        client.assume_offset(offset)
        learned = client.account_tz()
        assert learned is not None and client.learned_offset() == offset
    finally:
        client.close()


def test_a_done_link_past_the_late_window_leaves_the_hot_path_and_returns_when_handed_off_again(world, tmp_path, clock):
    okbx = Okbx(world, tmp_path, {"sync": CHANGE_ONLY, "time": {"late_window_days": 1}}, clock=clock)
    issue = hand_off(world)
    okbx.sync()
    world.bitrix.complete_task(task_of(world, issue))
    okbx.sync()
    clock.advance(minutes=3 * 24 * 60)
    okbx.sync()
    store = okbx.store()
    try:
        assert issue not in store.hot_links(clock.now() - timedelta(days=1))  # archived
    finally:
        store.close()
    world.okdesk.set_status(issue, HANDOFF, by_employee_id=world.people.consultant, comment="Broken again")
    clean(okbx.sync())
    assert world.bitrix_server.count("tasks.task.renew") == 1 and len(tasks_of(world, issue)) == 1
    store = okbx.store()
    try:
        link = store.link(issue)
        assert link is not None and link.state == LinkState.ACTIVE and link.cycle == 2
    finally:
        store.close()


def test_a_time_budget_stops_each_run_cleanly_and_the_backlog_shrinks_every_run(world, tmp_path, clock):
    # Okdesk at 4 requests per second on the test clock: each run reaches its 3 seconds quickly
    okbx = Okbx(world, tmp_path, {"sync": {"max_seconds": 3}, "okdesk": {"requests_per_second": 4}}, clock=clock)
    issues = [hand_off(world, f"Issue {n}", comment=f"words {n}") for n in range(12)]
    runs = []
    for _ in range(12):
        result = clean(okbx("sync"))
        assert result.exit_code == 0, result.output
        runs.append(summary(result))
        if runs[-1]["left"] == 0 and not result.output.count("deferred"):
            break
    assert len(runs) > 2, runs  # the budget cut the runs short...
    assert any(run["done"] for run in runs[:2])  # ...and each run still wrote
    assert sorted(t["XML_ID"] for t in world.bitrix.tasks()) == sorted(f"okdesk:{i}" for i in issues)
    assert all(in_task(world, issue, f"words {n}") == 1 for n, issue in enumerate(issues))


def test_store_queries_take_more_ids_than_sqlite_variables(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    try:
        ids = list(range(1, 2502))
        store.conn.executemany(
            "INSERT INTO links(issue_id, state, cycle, created_at, updated_at) "
            "VALUES(?, 'active', 1, '2026-11-30', '2026-11-30')",
            [(i,) for i in ids],
        )
        store.conn.executemany(
            "INSERT INTO ops(key, issue_id, kind, state) VALUES(?, ?, 'task', 'done')",
            [(f"task:{i}:1", i) for i in ids],
        )
        assert len(store.links_for(set(ids))) == len(ids)
        assert len(store.ops_for(ids)) == len(ids)
    finally:
        store.close()


def test_an_unknown_link_state_in_the_store_is_a_clear_error(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    try:
        store.conn.execute(
            "INSERT INTO links(issue_id, state, cycle, created_at, updated_at) "
            "VALUES(7, 'haunted', 1, '2026-11-30', '2026-11-30')"
        )
        with pytest.raises(StateError, match="link 7 has an unknown state 'haunted'"):
            store.links()
    finally:
        store.close()
