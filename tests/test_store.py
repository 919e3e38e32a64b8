"""The state store: migrations, small transactions, the write journal, links and health."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
import sqlite_utils

from okbx_sync.config import SyncConfig
from okbx_sync.core.health import Failures
from okbx_sync.errors import StateError
from okbx_sync.state import lifecycle, schema
from okbx_sync.state.lifecycle import MAX_WAIT, Track, retry_at
from okbx_sync.state.store import SCHEMA_VERSION, Store

WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _old_store(path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    db = sqlite_utils.Database(conn)
    for step in range(1, version + 1):
        schema.MIGRATIONS[step](db)
    conn.execute(f"PRAGMA user_version={version}")
    return conn


def test_a_version_1_database_is_migrated_and_keeps_its_links(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = _old_store(path, 1)
    conn.execute(
        "INSERT INTO links(issue_id, task_id, state, cycle, created_at, updated_at) "
        "VALUES(7, 70, 'active', 1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        link = store.link(7)
        assert link is not None and link.task_id == 70 and link.issue_updated_at is None
        assert link.route == "programmers" and link.health is None
    finally:
        store.close()


def test_a_store_of_the_previous_release_keeps_its_failures_as_the_route_health(tmp_path):
    path = tmp_path / "v3.sqlite3"
    conn = _old_store(path, 3)
    conn.execute(
        "INSERT INTO links(issue_id, task_id, state, cycle, issue_status, dirty, fail_count, last_error, "
        "next_retry_at, parked, created_at, updated_at) VALUES(7, 70, 'active', 2, 'to_programmers', 1, 5, "
        "'HTTP 422', '2026-12-01T10:00:00+00:00', 1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute(
        "INSERT INTO links(issue_id, task_id, state, cycle, created_at, updated_at) "
        "VALUES(8, 80, 'done', 1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
    )
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        failing = store.link(7)
        assert failing is not None and failing.cycle == 2 and failing.dirty and failing.task_id == 70
        assert failing.parked and failing.fail_count == 5 and failing.last_error == "HTTP 422"
        assert failing.next_retry_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
        healthy = store.link(8)
        assert healthy is not None and healthy.health is None and healthy.state == "done"
        assert [(h.issue_id, h.track) for h in store.failing()] == [(7, Track.ROUTE)]
        columns = {row[1] for row in store.conn.execute("PRAGMA table_info(links)")}
        assert "fail_count" not in columns and "route" in columns
    finally:
        store.close()


def test_a_database_from_a_newer_okbx_is_refused(tmp_path):
    path = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StateError, match="newer okbx"):
        Store(path)


def test_intent_then_result_is_journaled_and_counted(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    try:
        store.apply(lifecycle.handed_off(1, 1, "to_programmers", existing=None))
        store.begin_op("comment:1:1:5", 1, "comment", cycle=1, report_key=None)
        op = store.op("comment:1:1:5")
        assert op is not None and op.state == "intent" and op.unsure
        store.finish_op("comment:1:1:5", 1, "comment", remote_id="99", outcome="done", summary="forwarded")
        op = store.op("comment:1:1:5")
        assert op is not None and op.done and op.remote_id == "99"
        assert store.counts() == {1: {"comment": 1}}
        assert [e["kind"] for e in store.journal(1)] == ["link", "comment"]
    finally:
        store.close()


def test_a_link_changes_only_through_named_transitions():
    with pytest.raises(ValueError, match="not a link field: fail_count"):
        lifecycle.LinkChange(1, "oops", "", {"fail_count": 3})
    change = lifecycle.completed(1, WHEN)
    assert change.fields == {"state": "done", "done_at": WHEN, "dirty": False} and change.event == "close"


def test_a_failing_track_waits_longer_each_time_and_is_parked_with_its_own_record(tmp_path):
    clock = [WHEN]
    store = Store(tmp_path / "s.sqlite3", clock=lambda: clock[0])
    failures = Failures(store, SyncConfig(max_retries=3, retry_base_seconds=60))
    try:
        store.apply(lifecycle.handed_off(1, 1, "to_programmers", existing=None))
        waits, parked = [], []
        for _ in range(3):
            parked.append(failures.record(1, Track.BILLING, "HTTP 422", transient=False))
            health = store.health(1, Track.BILLING)
            assert health is not None and health.next_retry_at is not None
            waits.append((health.next_retry_at - WHEN).total_seconds())
        assert waits == [60, 120, 240]
        assert parked[:2] == [None, None] and parked[2] is not None and parked[2].parked
        link = store.link(1)
        assert link is not None and link.health is None  # the route of the same issue is untouched
        failures.heal(1, Track.BILLING)
        assert store.health(1, Track.BILLING) is not None  # a parked track waits for a person
        store.set_health(lifecycle.retried(1, Track.BILLING))
        assert store.health(1, Track.BILLING) is None
    finally:
        store.close()


def test_backoff_is_a_pure_function_capped_at_a_week():
    assert retry_at(1, transient=True, base_seconds=300, now=WHEN) is None  # a lost answer: the next run
    assert retry_at(2, transient=True, base_seconds=300, now=WHEN) == WHEN + timedelta(seconds=300)
    assert retry_at(1, transient=False, base_seconds=300, now=WHEN) == WHEN + timedelta(seconds=300)
    assert retry_at(3, transient=False, base_seconds=300, now=WHEN) == WHEN + timedelta(seconds=1200)
    assert retry_at(1, transient=False, base_seconds=10**20, now=WHEN) == WHEN + MAX_WAIT
    assert retry_at(500, transient=False, base_seconds=300, now=WHEN) == WHEN + MAX_WAIT
