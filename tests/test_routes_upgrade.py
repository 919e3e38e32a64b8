"""A state store of the release before routes (schema 4) keeps working: its links are the
programmers' route's, no task is created again, and the work goes on where it was; today's
configuration means exactly that one route, and the same route declared in `routes:` too."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils
from e2e import FAST, Okbx, TestClock, bot_markers, clean, hand_off, in_task, summary, task_of

from okbx_emulator.world import World
from okbx_sync.state.schema import MIGRATIONS

V4_TABLES = ("meta", "links", "ops", "journal", "health")


def as_release_4(path: Path) -> None:
    """Rewrite a store as the release before routes wrote it: schema 4 (its migrations, unchanged
    here), the same rows without the columns and op details that came with routes."""
    source = sqlite3.connect(path)
    source.row_factory = sqlite3.Row
    rows = {table: [dict(r) for r in source.execute(f"SELECT * FROM {table}")] for table in V4_TABLES}
    app_id = source.execute("PRAGMA application_id").fetchone()[0]
    source.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    old = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(old)
    for version in (1, 2, 3, 4):
        MIGRATIONS[version](db)
    for row in rows["links"]:
        assert row.pop("target") == "task" and row.pop("previous_status") is None and row["route"] == "programmers"
    for row in rows["ops"]:
        detail = json.loads(row["detail"] or "{}")
        for key in ("route", "target", "target_id"):
            detail.pop(key, None)
        row["detail"] = json.dumps(detail, ensure_ascii=False)
    for table in V4_TABLES:
        if rows[table]:
            db.table(table).insert_all(rows[table])
    old.execute(f"PRAGMA application_id={app_id}")
    old.execute("PRAGMA user_version=4")
    old.close()


@pytest.fixture
def okbx(world: World, tmp_path: Path, clock: TestClock) -> Okbx:
    return Okbx(world, tmp_path, {"sync": FAST}, clock=clock)


def sync(okbx: Okbx) -> dict[str, int]:
    result = clean(okbx("sync"))
    assert result.exit_code == 0, result.output
    return summary(result)


@pytest.mark.parametrize("declared", [False, True], ids=["todays-config", "routes-config"])
def test_a_store_of_the_release_before_routes_goes_on_without_a_second_task(world, okbx, declared):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world, comment="Please look")
    sync(okbx)
    task = task_of(world, issue)
    path = okbx.config().state.path
    as_release_4(path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 4
    if declared:  # the administrator moves the one route into routes:, under its name
        routes: list[dict[str, Any]] = [world.routes()[0]]
        routes[0]["flows"] = {"bill": True}
        okbx.reconfigure(sync=FAST, routes=routes)

    ok.add_comment(issue, "Any news?", author_id=p.client, author_type="contact")
    counts = sync(okbx)
    assert counts["done"] == 1 and counts["adopted"] == 0  # the new comment only
    assert task_of(world, issue) == task and in_task(world, issue, "Any news?") == 1
    assert in_task(world, issue, "Please look") == 1
    rows = okbx.status_rows()
    assert rows[issue]["route"] == "programmers" and rows[issue]["target"] == "task"

    bx.log_time(task, p.bx_ivan, 3600, "fixed")
    bx.complete_task(task)
    sync(okbx)
    assert ok.status_of(issue) == "opened"
    assert sorted(bot_markers(world, issue)) == sorted([f"okbx:linkcomment:{issue}:1", f"okbx:summary:{issue}:1"])
    assert sync(okbx)["done"] == 0
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 5
