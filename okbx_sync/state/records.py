"""Rows of the state store as typed values: the write journal's ops, links with their health."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from ..errors import StateError
from .lifecycle import Health, Link, LinkState, Track


class OpState(StrEnum):
    """A remote write's record: intent before the request, then done or failed."""

    INTENT = "intent"
    DONE = "done"
    FAILED = "failed"


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

    @property
    def done(self) -> bool:
        return self.state == OpState.DONE

    @property
    def unsure(self) -> bool:
        """Begun but not known to be done: the write may have happened, look for it first."""
        return self.state == OpState.INTENT or self.ambiguous


def ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def ts_exact(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()  # keeps milliseconds: compared with the API's value


def dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_State = TypeVar("_State", LinkState, OpState, Track)


def known(enum: type[_State], value: str, what: str) -> _State:
    try:
        return enum(value)
    except ValueError:
        raise StateError(f"state store: {what} has an unknown state {value!r}") from None


def health_from(row: sqlite3.Row, prefix: str = "") -> Health | None:
    if row[prefix + "track"] is None:
        return None
    issue_id = row["issue_id"]
    return Health(
        issue_id=issue_id,
        track=known(Track, row[prefix + "track"], f"health of issue {issue_id}"),
        fail_count=row[prefix + "fail_count"] or 0,
        last_error=row[prefix + "last_error"],
        next_retry_at=dt(row[prefix + "next_retry_at"]),
        parked=bool(row[prefix + "parked"]),
    )


def link_from(row: sqlite3.Row) -> Link:
    return Link(
        issue_id=row["issue_id"],
        task_id=row["task_id"],
        state=known(LinkState, row["state"], f"link {row['issue_id']}"),
        cycle=row["cycle"],
        issue_status=row["issue_status"],
        dirty=bool(row["dirty"]),
        created_at=dt(row["created_at"]) or datetime.min.replace(tzinfo=UTC),
        updated_at=dt(row["updated_at"]) or datetime.min.replace(tzinfo=UTC),
        done_at=dt(row["done_at"]),
        issue_updated_at=dt(row["issue_updated_at"]),
        route=row["route"],
        target=row["target"],
        previous_status=row["previous_status"],
        health=health_from(row, "h_"),
    )


def op_from(row: sqlite3.Row) -> Op:
    return Op(
        key=row["key"],
        issue_id=row["issue_id"],
        kind=row["kind"],
        state=known(OpState, row["state"], f"op {row['key']}"),
        remote_id=row["remote_id"],
        cycle=row["cycle"],
        report_key=row["report_key"],
        ambiguous=bool(row["ambiguous"]),
        error=row["error"],
        attempts=row["attempts"] or 0,
        detail=json.loads(row["detail"] or "{}"),
        updated_at=dt(row["updated_at"]),
    )
