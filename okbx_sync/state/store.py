"""The local SQLite state store: links, health, the write journal (intents and results), history.

Every remote write goes through three small transactions: `begin_op` records the intent
(and the action's marker) before the request, `finish_op` records the result together with
its effect on the link, `fail_op` records a failure.  A crash between them leaves an op in
state "intent", which tells the next run to look for the write's marker before repeating it.
Links change only through `apply(LinkChange)` (see lifecycle.py), health through
`set_health(HealthChange)`.  WAL mode and one transaction per step keep the file consistent
under kill -9.  The store is a cache: the accounts are the truth (sync/rebuild.py).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from ..errors import StateError
from . import opening
from .lifecycle import Health, HealthChange, Link, LinkChange, LinkState, Track
from .queries import CHUNK, History, OpenWork, marks
from .records import Op, OpState, health_from, link_from, op_from, ts, ts_exact
from .schema import MIGRATIONS, SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "Health", "Link", "LinkState", "Op", "OpState", "Store", "Track"]

_LINKS = (
    "SELECT l.*, h.track AS h_track, h.fail_count AS h_fail_count, h.last_error AS h_last_error, "
    "h.next_retry_at AS h_next_retry_at, h.parked AS h_parked "
    "FROM links AS l LEFT JOIN health AS h ON h.issue_id = l.issue_id AND h.track = 'route'"
)


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    ordered = sorted(set(ids))
    for start in range(0, len(ordered), CHUNK):
        yield ordered[start : start + CHUNK]


class Store(OpenWork, History):
    """`read_only=True` (a dry run) works on an in-memory copy: the file, its directory, WAL and
    lock stay untouched, and a missing store reads as an empty one instead of being created."""

    def __init__(
        self, path: Path, *, clock: Any = None, crash_after: str | None = None, read_only: bool = False
    ) -> None:
        self.path = path
        self._clock = clock or (lambda: datetime.now(UTC))
        # Fault injection for the crash tests ("finish_op:2" = SIGKILL ourselves right after the
        # 2nd finish_op commits); the CLI takes it from $OKBX_CRASH_AFTER, nothing else sets it.
        self._crash_point, _, count = (crash_after or "").partition(":")
        self._crash_countdown = int(count or 1) if self._crash_point else 0
        try:
            opening.check_file(path)  # a regular file of bounded size (see opening.py)
            if read_only:
                self.conn = _memory_copy(path)
                opening.check_ours(self.conn, path, SCHEMA_VERSION)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                if not path.exists():  # it holds client names and comment titles: owner only
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
                self.conn = sqlite3.connect(str(path), timeout=10, isolation_level=None)
                # before the first write: another program's file stays as it is
                opening.check_ours(self.conn, path, SCHEMA_VERSION)
                self.conn.execute("PRAGMA journal_mode=WAL")  # its -wal/-shm files copy the 0600 mode
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
            if not read_only:
                opening.stamp(self.conn)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state store {path} cannot be used: {exc}{opening.explain(path)}") from None
        except OSError as exc:
            raise StateError(
                f"state store {path} cannot be opened: {exc.strerror or exc}{opening.explain(path)}"
            ) from None

    def close(self) -> None:
        self.conn.close()

    def _written(self, point: str) -> None:
        if point == self._crash_point:
            self._crash_countdown -= 1
            if self._crash_countdown == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    def now(self) -> datetime:
        now: datetime = self._clock()
        return now

    @contextmanager
    def tx(self, point: str = "write") -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state store {self.path}: write failed: {exc}") from None
        self._written(point)

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state store {self.path} was written by a newer okbx (schema {version}, this okbx knows "
                f"{SCHEMA_VERSION}); upgrade okbx or point state.path elsewhere"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.tx():
                MIGRATIONS[target](sqlite_utils.Database(self.conn))
                self.conn.execute(f"PRAGMA user_version={target}")

    # -- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.tx("set_meta") as conn:
            conn.execute(
                "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (key, value),
            )

    # -- links -----------------------------------------------------------------------------
    def links(self) -> dict[int, Link]:
        return {row["issue_id"]: link_from(row) for row in self.conn.execute(_LINKS + " ORDER BY l.issue_id")}

    def hot_links(self, done_since: datetime) -> dict[int, Link]:
        """The links a cycle works on: all but those done before `done_since` (the late-time
        window), which stay archived out of the hot path until their issue shows up again."""
        rows = self.conn.execute(
            _LINKS + " WHERE l.state != 'done' OR l.done_at IS NULL OR l.done_at >= ? ORDER BY l.issue_id",
            (ts(done_since),),
        )
        return {row["issue_id"]: link_from(row) for row in rows}

    def links_for(self, issue_ids: Iterable[int]) -> dict[int, Link]:
        found: dict[int, Link] = {}
        for chunk in _chunks(issue_ids):
            rows = self.conn.execute(_LINKS + f" WHERE l.issue_id IN ({marks(chunk)})", chunk)
            found.update({row["issue_id"]: link_from(row) for row in rows})
        return found

    def link(self, issue_id: int) -> Link | None:
        row = self.conn.execute(_LINKS + " WHERE l.issue_id=?", (issue_id,)).fetchone()
        return link_from(row) if row else None

    def count_links(self, state: LinkState) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM links WHERE state=?", (state.value,)).fetchone()[0])

    def has_any_link(self) -> bool:
        return self.conn.execute("SELECT 1 FROM links LIMIT 1").fetchone() is not None

    def has_linked_task(self) -> bool:
        """Does the store hold any link to a task (work done in the accounts it serves)?"""
        return self.conn.execute("SELECT 1 FROM links WHERE task_id IS NOT NULL LIMIT 1").fetchone() is not None

    def link_for_task(self, task_id: int) -> Link | None:
        row = self.conn.execute(_LINKS + " WHERE l.task_id=?", (task_id,)).fetchone()
        return link_from(row) if row else None

    def apply(self, change: LinkChange, conn: sqlite3.Connection | None = None, *, key: str | None = None) -> None:
        """A transition of the link (lifecycle.py), journaled unless it is only bookkeeping."""
        if conn is None:  # each kind of step is its own crash point (tests/test_crash_safety.py)
            if change.create:
                step = self.tx("create_link")
            elif change.summary:
                step = self.tx("local_change")
            else:
                step = self.tx("update_link")
            with step as own:
                self.apply(change, own, key=key)
            return
        now = ts(self.now())
        values = {k: _column(v) for k, v in change.fields.items()}
        if change.create:
            values.setdefault("cycle", 1)
            values.setdefault("state", LinkState.ACTIVE.value)
            columns = ["issue_id", *values, "created_at", "updated_at"]
            conn.execute(
                f"INSERT INTO links({','.join(columns)}) VALUES({marks(columns)})",
                (change.issue_id, *values.values(), now, now),
            )
        elif values:
            assignments = ", ".join(f"{k}=?" for k in values)
            conn.execute(
                f"UPDATE links SET {assignments}, updated_at=? WHERE issue_id=?",
                (*values.values(), now, change.issue_id),
            )
        if change.summary:
            self._journal(conn, change.issue_id, key, change.event, "done", change.summary)

    def observe_statuses(self, statuses: dict[int, str], comments_read_at: dict[int, datetime]) -> None:
        """Remember the last status seen for linked issues (to notice when one re-enters handoff),
        and the issue's updated_at when its comments were read (to skip unchanged issues)."""
        with self.tx("observe_statuses") as conn:
            for issue_id, status in statuses.items():
                conn.execute(
                    "UPDATE links SET issue_status=? WHERE issue_id=? AND (issue_status IS NOT ?)",
                    (status, issue_id, status),
                )
            for issue_id, at in comments_read_at.items():
                conn.execute("UPDATE links SET issue_updated_at=? WHERE issue_id=?", (ts_exact(at), issue_id))

    # -- health ----------------------------------------------------------------------------
    def health(self, issue_id: int, track: Track) -> Health | None:
        row = self.conn.execute("SELECT * FROM health WHERE issue_id=? AND track=?", (issue_id, track.value)).fetchone()
        return health_from(row) if row else None

    def health_of(self, track: Track, issue_ids: Iterable[int]) -> dict[int, Health]:
        found: dict[int, Health] = {}
        for chunk in _chunks(issue_ids):
            rows = self.conn.execute(
                f"SELECT * FROM health WHERE track=? AND issue_id IN ({marks(chunk)})", (track.value, *chunk)
            )
            found.update({row["issue_id"]: h for row in rows if (h := health_from(row)) is not None})
        return found

    def failing(self) -> list[Health]:
        """Every track of every issue that is failing or parked (status, monitoring)."""
        rows = self.conn.execute("SELECT * FROM health ORDER BY issue_id, track")
        return [h for row in rows if (h := health_from(row)) is not None and h.failing]

    def set_health(self, change: HealthChange) -> None:
        health = change.health
        with self.tx("set_health") as conn:
            if change.healthy:
                conn.execute("DELETE FROM health WHERE issue_id=? AND track=?", (health.issue_id, health.track.value))
            else:
                conn.execute(
                    "INSERT INTO health(issue_id, track, fail_count, last_error, next_retry_at, parked, updated_at) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(issue_id, track) DO UPDATE SET "
                    "fail_count=excluded.fail_count, last_error=excluded.last_error, "
                    "next_retry_at=excluded.next_retry_at, parked=excluded.parked, updated_at=excluded.updated_at",
                    (
                        health.issue_id,
                        health.track.value,
                        health.fail_count,
                        health.last_error,
                        ts(health.next_retry_at),
                        int(health.parked),
                        ts(self.now()),
                    ),
                )
            if change.event in ("park", "retry"):
                what = "parked" if change.event == "park" else "to be tried again"
                self._journal(conn, health.issue_id, None, change.event, "done", f"{health.track} {what}")

    # -- ops (the write journal) -------------------------------------------------------------
    def ops_for(self, issue_ids: Iterable[int] | None = None) -> dict[str, Op]:
        if issue_ids is None:
            return {row["key"]: op_from(row) for row in self.conn.execute("SELECT * FROM ops")}
        found: dict[str, Op] = {}
        for chunk in _chunks(issue_ids):
            rows = self.conn.execute(f"SELECT * FROM ops WHERE issue_id IN ({marks(chunk)})", chunk)
            found.update({row["key"]: op_from(row) for row in rows})
        return found

    def ops_of_kind(self, *kinds: str) -> dict[str, Op]:
        rows = self.conn.execute(f"SELECT * FROM ops WHERE kind IN ({marks(list(kinds))})", kinds)
        return {row["key"]: op_from(row) for row in rows}

    def op(self, key: str) -> Op | None:
        row = self.conn.execute("SELECT * FROM ops WHERE key=?", (key,)).fetchone()
        return op_from(row) if row else None

    def ops_by_keys(self, keys: Iterable[str]) -> dict[str, Op]:
        wanted = sorted(set(keys))
        found: dict[str, Op] = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            rows = self.conn.execute(f"SELECT * FROM ops WHERE key IN ({marks(chunk)})", chunk)
            found.update({row["key"]: op_from(row) for row in rows})
        return found

    def begin_op(
        self,
        key: str,
        issue_id: int,
        kind: str,
        *,
        cycle: int | None,
        report_key: str | None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        now = ts(self.now())
        with self.tx("begin_op") as conn:
            conn.execute(
                "INSERT INTO ops(key, issue_id, kind, state, cycle, report_key, attempts, detail, created_at, "
                "updated_at) "
                "VALUES(?, ?, ?, 'intent', ?, ?, 1, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET state='intent', "
                "attempts=attempts+1, error=NULL, updated_at=excluded.updated_at",
                (key, issue_id, kind, cycle, report_key, json.dumps(detail or {}, ensure_ascii=False), now, now),
            )

    def finish_op(
        self,
        key: str,
        issue_id: int,
        kind: str,
        *,
        remote_id: str | None,
        outcome: str,
        summary: str,
        change: LinkChange | None = None,
        at: datetime | None = None,
    ) -> None:
        """`at`: when the write happened, if not now (an adopted write, dated by the remote side)."""
        with self.tx("finish_op") as conn:
            conn.execute(
                "UPDATE ops SET state='done', remote_id=?, ambiguous=0, error=NULL, updated_at=? WHERE key=?",
                (remote_id, ts_exact(at or self.now()), key),  # exact: billing tells completions before it apart
            )
            if change is not None and change.event == kind:  # one journal line for the write and its change
                if change.summary and change.summary != summary:
                    summary = f"{summary}; {change.summary}"
                self.apply(replace(change, summary=""), conn)
            elif change is not None:
                self.apply(change, conn)
            self._journal(conn, issue_id, key, kind, outcome, summary)

    def fail_op(self, key: str, issue_id: int, kind: str, *, error: str, ambiguous: bool) -> None:
        with self.tx("fail_op") as conn:
            conn.execute(
                "UPDATE ops SET state='failed', ambiguous=?, error=?, updated_at=? WHERE key=?",
                (int(ambiguous), error[:500], ts(self.now()), key),
            )
            self._journal(conn, issue_id, key, kind, "failed", error[:500])


def _column(value: Any) -> Any:
    if isinstance(value, datetime):
        return ts(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _memory_copy(path: Path) -> sqlite3.Connection:
    if not path.exists():  # read as empty, but say now what the first real run would run into
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise StateError(f"state store {path} cannot be created: {ancestor} is not a directory")
    memory = sqlite3.connect(":memory:", isolation_level=None)
    if path.exists():
        # A WAL file means a run has the store open: read through it (its files exist already).
        # Otherwise "immutable" reads the file alone and creates no -shm/-wal beside it.
        live = path.with_name(path.name + "-wal").exists()
        try:
            _copy_into(memory, path, "mode=ro" if live else "mode=ro&immutable=1")
        except sqlite3.OperationalError:
            if not live:
                raise
            # a read-only directory (or -shm) cannot serve a reader of a live WAL: read the file alone
            _copy_into(memory, path, "mode=ro&immutable=1")
    return memory


def _copy_into(memory: sqlite3.Connection, path: Path, mode: str) -> None:
    source = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True, timeout=10)
    try:
        source.backup(memory)
    finally:
        source.close()
