"""The state store: migrations, small transactions, the write journal."""

from __future__ import annotations

import sqlite3

import pytest
import sqlite_utils

from okbx_sync.errors import StateError
from okbx_sync.state import store as store_module
from okbx_sync.state.store import SCHEMA_VERSION, Store


def test_a_version_1_database_is_migrated_and_keeps_its_links(tmp_path):
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    store_module._migrate_1(sqlite_utils.Database(conn))
    conn.execute(
        "INSERT INTO links(issue_id, task_id, state, cycle, created_at, updated_at) "
        "VALUES(7, 70, 'active', 1, '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')"
    )
    conn.execute("PRAGMA user_version=1")
    conn.commit()
    conn.close()
    store = Store(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        link = store.link(7)
        assert link is not None and link.task_id == 70 and link.issue_updated_at is None
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
        store.create_link(1, None, status="to_programmers", origin="handoff")
        store.begin_op("comment:1:1:5", 1, "comment", cycle=1, report_key=None)
        assert store.op("comment:1:1:5").state == "intent"
        store.finish_op("comment:1:1:5", 1, "comment", remote_id="99", outcome="done", summary="forwarded")
        assert store.op("comment:1:1:5").state == "done"
        assert store.counts() == {1: {"comment": 1}}
        assert [e["kind"] for e in store.journal(1)] == ["link", "comment"]
    finally:
        store.close()


def test_a_failed_issue_waits_longer_each_time_and_is_parked(tmp_path):
    store = Store(tmp_path / "s.sqlite3")
    try:
        store.create_link(1, 10, status="to_programmers", origin="handoff")
        waits = []
        for _ in range(3):
            link = store.record_failure(1, "HTTP 422", max_retries=3, base_seconds=60)
            waits.append((link.next_retry_at - store.now()).total_seconds())
        assert waits[0] < waits[1] < waits[2]
        assert link.parked and link.fail_count == 3 and link.last_error == "HTTP 422"
    finally:
        store.close()
