"""The local SQLite state store: links, the write journal (intents and results), history.

Every remote write goes through three small transactions: `begin_op` records the intent
(and the action's marker) before the request, `finish_op` records the result together with
its effect on the link, `fail_op` records a failure.  A crash between them leaves an op in
state "intent", which tells the next run to look for the write's marker before repeating it.
WAL mode and one transaction per step keep the file consistent under kill -9.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from ..errors import StateError
from . import opening

SCHEMA_VERSION = 3
CHUNK = 500  # ids per IN list: far below SQLite's variable limit (999 in older builds)


class LinkState(StrEnum):
    """Where a link stands.  A StrEnum: equal to its text, so code comparing strings still works."""

    ACTIVE = "active"  # handed off: the task is being worked on
    DONE = "done"  # completed and returned; late time is still copied within the window
    GONE_TASK = "gone_task"  # the task was deleted (or withdrawn before it existed)
    GONE_ISSUE = "gone_issue"  # the Okdesk issue was deleted


class OpState(StrEnum):
    """A remote write's record: intent before the request, then done or failed."""

    INTENT = "intent"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Link:
    issue_id: int
    task_id: int | None
    state: LinkState
    cycle: int
    issue_status: str | None
    dirty: bool
    fail_count: int
    last_error: str | None
    next_retry_at: datetime | None
    parked: bool
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None
    issue_updated_at: datetime | None = None


@dataclass(frozen=True)
class Op:
    key: str
    issue_id: int
    kind: str
    state: OpState
    remote_id: str | None
    cycle: int | None
    report_key: str | None
    ambiguous: bool
    error: str | None
    attempts: int
    detail: dict[str, Any]
    updated_at: datetime | None = None


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def _ts_exact(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()  # keeps milliseconds: compared with the API's value


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


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


MIGRATIONS = {1: _migrate_1, 2: _migrate_2, 3: _migrate_3}


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


class Store:
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
                opening.check_ours(
                    self.conn, path, SCHEMA_VERSION
                )  # before the first write: another program's file stays as it is
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
        return {row["issue_id"]: _link(row) for row in self.conn.execute("SELECT * FROM links ORDER BY issue_id")}

    def hot_links(self, done_since: datetime) -> dict[int, Link]:
        """The links a cycle works on: all but those done before `done_since` (the late-time
        window), which stay archived out of the hot path until their issue shows up again."""
        rows = self.conn.execute(
            "SELECT * FROM links WHERE state != 'done' OR done_at IS NULL OR done_at >= ? ORDER BY issue_id",
            (_ts(done_since),),
        )
        return {row["issue_id"]: _link(row) for row in rows}

    def links_for(self, issue_ids: set[int]) -> dict[int, Link]:
        found: dict[int, Link] = {}
        for chunk in _chunks(sorted(issue_ids)):
            rows = self.conn.execute(f"SELECT * FROM links WHERE issue_id IN ({','.join('?' * len(chunk))})", chunk)
            found.update({row["issue_id"]: _link(row) for row in rows})
        return found

    def link(self, issue_id: int) -> Link | None:
        row = self.conn.execute("SELECT * FROM links WHERE issue_id=?", (issue_id,)).fetchone()
        return _link(row) if row else None

    def has_linked_task(self) -> bool:
        """Does the store hold any link to a task (work done in the accounts it serves)?"""
        return self.conn.execute("SELECT 1 FROM links WHERE task_id IS NOT NULL LIMIT 1").fetchone() is not None

    def link_for_task(self, task_id: int) -> Link | None:
        row = self.conn.execute("SELECT * FROM links WHERE task_id=?", (task_id,)).fetchone()
        return _link(row) if row else None

    def create_link(self, issue_id: int, task_id: int | None, *, status: str | None, origin: str) -> None:
        now = _ts(self.now())
        with self.tx("create_link") as conn:
            conn.execute(
                "INSERT INTO links(issue_id, task_id, state, cycle, issue_status, created_at, updated_at) "
                "VALUES(?, ?, 'active', 1, ?, ?, ?)",
                (issue_id, task_id, status, now, now),
            )
            self._journal(conn, issue_id, None, "link", "done", origin)

    def update_link(self, issue_id: int, conn: sqlite3.Connection | None = None, **fields: Any) -> None:
        fields["updated_at"] = self.now()
        values = [
            _ts(v) if isinstance(v, datetime) else (int(v) if isinstance(v, bool) else v) for v in fields.values()
        ]
        sql = "UPDATE links SET " + ", ".join(f"{k}=?" for k in fields) + " WHERE issue_id=?"
        if conn is not None:
            conn.execute(sql, (*values, issue_id))
        else:
            with self.tx("update_link") as c:
                c.execute(sql, (*values, issue_id))

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
                conn.execute("UPDATE links SET issue_updated_at=? WHERE issue_id=?", (_ts_exact(at), issue_id))

    def record_failure(
        self, issue_id: int, error: str, *, max_retries: int, base_seconds: int, transient: bool = False
    ) -> Link | None:
        """One more failure of the link.  A first transient failure (a lost answer, a 5xx, a read
        that failed) is tried again at the very next run; repeated failures wait longer each time,
        and after `max_retries` the link is parked."""
        link = self.link(issue_id)
        if link is None:
            return None
        count = link.fail_count + 1
        if transient and count == 1:
            retry_at = None
        else:
            retry_at = self.now() + timedelta(seconds=base_seconds * 2 ** (count - (2 if transient else 1)))
        self.update_link(
            issue_id,
            fail_count=count,
            last_error=error[:500],
            dirty=True,
            next_retry_at=retry_at,
            parked=count >= max_retries,
        )
        return self.link(issue_id)

    def clear_failure(self, issue_id: int) -> None:
        self.update_link(issue_id, fail_count=0, last_error=None, next_retry_at=None, parked=False)

    # -- ops (the write journal) -------------------------------------------------------------
    def ops_for(self, issue_ids: list[int] | None = None) -> dict[str, Op]:
        if issue_ids is None:
            return {row["key"]: _op(row) for row in self.conn.execute("SELECT * FROM ops")}
        found: dict[str, Op] = {}
        for chunk in _chunks(sorted(set(issue_ids))):
            rows = self.conn.execute(f"SELECT * FROM ops WHERE issue_id IN ({','.join('?' * len(chunk))})", chunk)
            found.update({row["key"]: _op(row) for row in rows})
        return found

    def issues_with_unposted_reports(self) -> set[int]:
        """Issues with items copied for a late-time note that was not posted yet (a crash
        between the two): the planner finishes the note.  Read by the report_key index."""
        rows = self.conn.execute(
            "SELECT DISTINCT issue_id FROM ops AS item WHERE report_key >= 'late:' AND report_key < 'late;' "
            "AND state = 'done' AND NOT EXISTS "
            "(SELECT 1 FROM ops AS note WHERE note.key = item.report_key AND note.state = 'done')"
        )
        return {row["issue_id"] for row in rows}

    def ops_of_kind(self, *kinds: str) -> dict[str, Op]:
        rows = self.conn.execute(f"SELECT * FROM ops WHERE kind IN ({','.join('?' * len(kinds))})", kinds)
        return {row["key"]: _op(row) for row in rows}

    def op(self, key: str) -> Op | None:
        row = self.conn.execute("SELECT * FROM ops WHERE key=?", (key,)).fetchone()
        return _op(row) if row else None

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
        now = _ts(self.now())
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
        link_update: dict[str, Any] | None = None,
    ) -> None:
        with self.tx("finish_op") as conn:
            conn.execute(
                "UPDATE ops SET state='done', remote_id=?, ambiguous=0, error=NULL, updated_at=? WHERE key=?",
                (remote_id, _ts_exact(self.now()), key),  # exact: billing tells completions before it apart
            )
            if link_update:
                self.update_link(issue_id, conn, **link_update)
            self._journal(conn, issue_id, key, kind, outcome, summary)

    def fail_op(self, key: str, issue_id: int, kind: str, *, error: str, ambiguous: bool) -> None:
        with self.tx("fail_op") as conn:
            conn.execute(
                "UPDATE ops SET state='failed', ambiguous=?, error=?, updated_at=? WHERE key=?",
                (int(ambiguous), error[:500], _ts(self.now()), key),
            )
            self._journal(conn, issue_id, key, kind, "failed", error[:500])

    def local_change(self, issue_id: int, kind: str, summary: str, **link_update: Any) -> None:
        """A state-only step (no remote write): one transaction, journaled."""
        with self.tx("local_change") as conn:
            self.update_link(issue_id, conn, **link_update)
            self._journal(conn, issue_id, None, kind, "done", summary)

    def _journal(
        self, conn: sqlite3.Connection, issue_id: int, key: str | None, kind: str, outcome: str, detail: str
    ) -> None:
        conn.execute(
            "INSERT INTO journal(at, issue_id, key, kind, outcome, detail) VALUES(?, ?, ?, ?, ?, ?)",
            (_ts(self.now()), issue_id, key, kind, outcome, detail),
        )

    def journal(self, issue_id: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM journal" + (" WHERE issue_id=?" if issue_id is not None else "") + " ORDER BY id"
        params: tuple[Any, ...] = (issue_id,) if issue_id is not None else ()
        rows = [dict(r) for r in self.conn.execute(sql, params)]
        return rows[-limit:] if limit else rows

    def adopted_counts(self) -> dict[int, int]:
        """Per issue: writes found already made on the remote side (a crash, a lost store, another
        installation) and adopted instead of written again."""
        rows = self.conn.execute("SELECT issue_id, COUNT(*) AS n FROM journal WHERE outcome='adopted' GROUP BY 1")
        return {row["issue_id"]: row["n"] for row in rows}

    def counts(self) -> dict[int, dict[str, int]]:
        """Per issue: comments forwarded and time entries copied (done ops by kind)."""
        result: dict[int, dict[str, int]] = {}
        for row in self.conn.execute("SELECT issue_id, kind, COUNT(*) AS n FROM ops WHERE state='done' GROUP BY 1, 2"):
            result.setdefault(row["issue_id"], {})[row["kind"]] = row["n"]
        return result


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


_State = TypeVar("_State", LinkState, OpState)


def _known(enum: type[_State], value: str, what: str) -> _State:
    try:
        return enum(value)
    except ValueError:
        raise StateError(f"state store: {what} has an unknown state {value!r}") from None


def _link(row: sqlite3.Row) -> Link:
    return Link(
        issue_id=row["issue_id"],
        task_id=row["task_id"],
        state=_known(LinkState, row["state"], f"link {row['issue_id']}"),
        cycle=row["cycle"],
        issue_status=row["issue_status"],
        dirty=bool(row["dirty"]),
        fail_count=row["fail_count"] or 0,
        last_error=row["last_error"],
        next_retry_at=_dt(row["next_retry_at"]),
        parked=bool(row["parked"]),
        created_at=_dt(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
        updated_at=_dt(row["updated_at"]) or datetime.min.replace(tzinfo=UTC),
        done_at=_dt(row["done_at"]),
        issue_updated_at=_dt(row["issue_updated_at"]),
    )


def _op(row: sqlite3.Row) -> Op:
    return Op(
        key=row["key"],
        issue_id=row["issue_id"],
        kind=row["kind"],
        state=_known(OpState, row["state"], f"op {row['key']}"),
        remote_id=row["remote_id"],
        cycle=row["cycle"],
        report_key=row["report_key"],
        ambiguous=bool(row["ambiguous"]),
        error=row["error"],
        attempts=row["attempts"] or 0,
        detail=json.loads(row["detail"] or "{}"),
        updated_at=_dt(row["updated_at"]),
    )
