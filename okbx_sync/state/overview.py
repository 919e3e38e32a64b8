"""What `okbx status` and `okbx show` read from the store: one row per link, billing failures,
and the record of the last run (written at the end of every run that was not a dry run)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from ..errors import OkbxError
from .store import Link, Store, Track

LAST_RUN = "last_run"  # meta key: when the last (non-dry) run ended and how


def link_row(link: Link | None, counts: dict[str, int] | None = None) -> dict[str, Any] | None:
    if link is None:
        return None
    counts = counts or {}
    return {
        "issue": link.issue_id,
        "task": link.task_id,  # the target's id: a task's, or a deal's on a sales route (`target`)
        "route": link.route,
        "target": link.target,
        "state": "parked" if link.parked else link.state,
        "cycle": link.cycle,
        "issue_status": link.issue_status,
        "comments_forwarded": counts.get("comment", 0),
        "time_entries_copied": counts.get("time", 0),
        "adopted": counts.get("adopted", 0),
        "failures": link.fail_count,
        "last_error": link.last_error,
        "next_retry_at": link.next_retry_at.isoformat() if link.next_retry_at else None,
        "updated_at": link.updated_at.isoformat(),
    }


def billing_failures(store: Store) -> dict[int, str]:
    """Billing and debt-hold work that is failing or parked (an unmatched company, a refused hold ...)."""
    found: dict[int, str] = {}
    for health in store.failing():
        if health.track != Track.ROUTE:
            state = "parked" if health.parked else f"{health.fail_count} failures"
            text = f"{health.track} ({state}): {health.last_error}"
            found[health.issue_id] = f"{found[health.issue_id]}; {text}" if health.issue_id in found else text
    return found


def failing_work(store: Store, issue_id: int) -> list[dict[str, Any]]:
    """Every track of one issue that is failing or parked (billing and debt too: `okbx show`)."""
    found = []
    for track in Track:
        health = store.health(issue_id, track)
        if health is not None and health.failing:
            found.append(
                {
                    "track": str(track),
                    "state": "parked" if health.parked else "failing",
                    "failures": health.fail_count,
                    "last_error": health.last_error,
                    "next_retry_at": health.next_retry_at.isoformat() if health.next_retry_at else None,
                }
            )
    return found


def status_rows(store: Store) -> list[dict[str, Any]]:
    counts = store.counts()
    for issue_id, adopted in store.adopted_counts().items():
        counts.setdefault(issue_id, {})["adopted"] = adopted
    billing_errors = billing_failures(store)
    rows = [link_row(link, counts.get(link.issue_id, {})) for link in store.links().values()]
    for row in rows:
        if row is not None and row["issue"] in billing_errors:
            row["billing_error"] = billing_errors[row["issue"]]
            row["last_error"] = row["last_error"] or row["billing_error"]
    return [r for r in rows if r is not None]


def remember_run(
    store: Store, started: datetime, ended: datetime, outcome: str, summary: str, failures: list[str] | None = None
) -> None:
    """The last run, for `okbx status`: when, how it ended, its summary and what failed in it."""
    record: dict[str, Any] = {"started": started.isoformat(), "ended": ended.isoformat(), "outcome": outcome}
    record |= {"summary": summary, "failures": failures or []}
    try:
        store.set_meta(LAST_RUN, json.dumps(record, ensure_ascii=False))
    except OkbxError:
        pass  # the store failing is reported by the error that brought us here, or by the next run


def last_run(store: Store) -> dict[str, Any] | None:
    text = store.get_meta(LAST_RUN)
    return json.loads(text) if text else None
