"""The state store's schema, as numbered migrations: a store of any earlier release is upgraded in
place, one transaction per step, and a store from a newer okbx is refused (store.py)."""

from __future__ import annotations

import sqlite_utils

SCHEMA_VERSION = 5


def _migrate_1(db: sqlite_utils.Database) -> None:
    db.table("meta").create({"key": str, "value": str}, pk="key")
    db.table("links").create(
        {
            "issue_id": int,
            "task_id": int,
            "state": str,
            "cycle": int,
            "issue_status": str,
            "dirty": int,
            "fail_count": int,
            "last_error": str,
            "next_retry_at": str,
            "parked": int,
            "created_at": str,
            "updated_at": str,
            "done_at": str,
        },
        pk="issue_id",
        not_null={"state", "cycle", "created_at", "updated_at"},
        defaults={"dirty": 0, "fail_count": 0, "parked": 0},
    )
    db.table("links").create_index(["task_id"])
    db.table("ops").create(
        {
            "key": str,
            "issue_id": int,
            "kind": str,
            "state": str,
            "remote_id": str,
            "cycle": int,
            "report_key": str,
            "ambiguous": int,
            "error": str,
            "attempts": int,
            "detail": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="key",
        not_null={"issue_id", "kind", "state"},
        defaults={"ambiguous": 0, "attempts": 0},
    )
    db.table("ops").create_index(["issue_id"])
    db.table("ops").create_index(["report_key"])
    db.table("journal").create(
        {"id": int, "at": str, "issue_id": int, "key": str, "kind": str, "outcome": str, "detail": str},
        pk="id",
    )
    db.table("journal").create_index(["issue_id"])


def _migrate_2(db: sqlite_utils.Database) -> None:
    # updated_at of the issue when its comments were last read: skips re-reading unchanged issues
    db.table("links").add_column("issue_updated_at", str)


def _migrate_3(db: sqlite_utils.Database) -> None:
    # a cycle loads the hot links (not done, or done within the late-time window) by this index
    db.table("links").create_index(["state", "done_at"])


def _migrate_4(db: sqlite_utils.Database) -> None:
    """Health per issue and track (route, billing, debt) instead of failure columns on links;
    the route of a link; ops found by kind and state (billing reads its open work this way)."""
    db.table("health").create(
        {
            "issue_id": int,
            "track": str,
            "fail_count": int,
            "last_error": str,
            "next_retry_at": str,
            "parked": int,
            "updated_at": str,
        },
        pk=("issue_id", "track"),
        not_null={"fail_count", "parked"},
        defaults={"fail_count": 0, "parked": 0},
    )
    db.execute(
        "INSERT INTO health(issue_id, track, fail_count, last_error, next_retry_at, parked, updated_at) "
        "SELECT issue_id, 'route', fail_count, last_error, next_retry_at, parked, updated_at FROM links "
        "WHERE fail_count > 0 OR parked != 0"
    )
    db.table("links").transform(drop={"fail_count", "last_error", "next_retry_at", "parked"})
    db.table("links").add_column("route", str, not_null_default="programmers")
    db.table("ops").create_index(["kind", "state"])


def _migrate_5(db: sqlite_utils.Database) -> None:
    """Routes (issue 14): what a link's target is (a task or a deal; `task_id` holds its id) and
    the status the issue goes back to when its route returns to `previous`.  Every earlier link
    is the programmers' route's, with a task."""
    db.table("links").add_column("target", str, not_null_default="task")
    db.table("links").add_column("previous_status", str)


MIGRATIONS = {1: _migrate_1, 2: _migrate_2, 3: _migrate_3, 4: _migrate_4, 5: _migrate_5}
