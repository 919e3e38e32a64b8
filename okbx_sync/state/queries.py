"""Read-only questions the wings and the commands ask the state store, as a part of `Store`.

The cost of each grows with the open work it asks about (unbilled completions, open invoices,
holds not released...), never with the length of history: each goes through an index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .records import Op, op_from, ts, ts_exact

CHUNK = 500  # ids per IN list: far below SQLite's variable limit (999 in older builds)


def marks(values: list[Any]) -> str:
    return ",".join("?" * len(values))


class OpenWork:
    conn: sqlite3.Connection

    def unposted_late_reports(self) -> set[int]:
        """Issues with items copied for a late-time note that was not posted yet (a crash
        between the two): the planner finishes the note.  Read by the report_key index."""
        rows = self.conn.execute(
            "SELECT DISTINCT issue_id FROM ops AS item WHERE report_key >= 'late:' AND report_key < 'late;' "
            "AND state = 'done' AND NOT EXISTS "
            "(SELECT 1 FROM ops AS note WHERE note.key = item.report_key AND note.state = 'done')"
        )
        return {row["issue_id"] for row in rows}

    def unbilled_completions(self, since: datetime) -> list[Op]:
        """Completion reports (summary ops) done since `since` whose invoice is not decided yet.
        An invoice key has its summary key's parts (keys.py): 'summary:12:1' -> 'invoice:12:1'."""
        rows = self.conn.execute(
            "SELECT * FROM ops AS s WHERE s.kind = 'summary' AND s.state = 'done' "
            "AND s.key >= 'summary:' AND s.key < 'summary;' AND s.updated_at >= ? AND NOT EXISTS "
            "(SELECT 1 FROM ops AS i WHERE i.key = 'invoice' || substr(s.key, 8) AND i.state = 'done') "
            "ORDER BY s.issue_id",
            (ts_exact(since),),
        )
        return [op_from(row) for row in rows]

    def ops_reported_in(self, report_keys: Iterable[str]) -> dict[str, list[Op]]:
        """The time ops each report lists, by report key (the report_key index)."""
        wanted = sorted(set(report_keys))
        found: dict[str, list[Op]] = {}
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            for row in self.conn.execute(f"SELECT * FROM ops WHERE report_key IN ({marks(chunk)})", chunk):
                found.setdefault(row["report_key"], []).append(op_from(row))
        return found

    def open_invoices(self) -> list[Op]:
        """okbx's invoices whose payment note is not written yet ('paid:<issue>:<invoice id>')."""
        rows = self.conn.execute(
            "SELECT * FROM ops AS i WHERE i.kind = 'invoice' AND i.state = 'done' AND i.remote_id GLOB '[0-9]*' "
            "AND NOT EXISTS (SELECT 1 FROM ops AS p WHERE p.key = 'paid:' || i.issue_id || ':' || i.remote_id "
            "AND p.state = 'done') ORDER BY i.issue_id"
        )
        return [op_from(row) for row in rows]

    def invoices_missing_follow_ups(self) -> list[Op]:
        """okbx's invoices whose note in the issue or link in the task is not done yet
        ('invoice:12:1' -> 'invnote:12:1', 'tasklink:12:1')."""
        rows = self.conn.execute(
            "SELECT * FROM ops AS i WHERE i.kind = 'invoice' AND i.state = 'done' AND i.remote_id GLOB '[0-9]*' "
            "AND (NOT EXISTS (SELECT 1 FROM ops AS n WHERE n.key = 'invnote' || substr(i.key, 8) AND n.state = 'done') "
            "OR NOT EXISTS (SELECT 1 FROM ops AS t WHERE t.key = 'tasklink' || substr(i.key, 8) AND t.state = 'done')) "
            "ORDER BY i.issue_id"
        )
        return [op_from(row) for row in rows]

    def open_holds(self) -> list[Op]:
        """Holds okbx made and has not released ('hold:12:7' -> 'release:12:7')."""
        rows = self.conn.execute(
            "SELECT * FROM ops AS h WHERE h.kind = 'hold' AND h.state = 'done' AND NOT EXISTS "
            "(SELECT 1 FROM ops AS r WHERE r.key = 'release' || substr(h.key, 5) AND r.state = 'done') "
            "ORDER BY h.issue_id"
        )
        return [op_from(row) for row in rows]


class History:
    conn: sqlite3.Connection

    def now(self) -> datetime:
        raise NotImplementedError

    def _journal(
        self, conn: sqlite3.Connection, issue_id: int, key: str | None, kind: str, outcome: str, detail: str
    ) -> None:
        conn.execute(
            "INSERT INTO journal(at, issue_id, key, kind, outcome, detail) VALUES(?, ?, ?, ?, ?, ?)",
            (ts(self.now()), issue_id, key, kind, outcome, detail),
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
