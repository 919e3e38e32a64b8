"""The time ledger (`okbx report`): hours per client company (and route), programmer and month, from what
okbx copied (the store's done ops of kind "time"), and `--verify` against both systems.

Company names come from Okdesk (`/companies/list`); an issue's company from its invoice op when
billing recorded it, else from the issue itself (one read per issue, cached for the run).
Verification lists every drift: an elapsed item edited or deleted in Bitrix24 after it was copied,
a copied time entry deleted or changed in Okdesk, time on a linked task that never arrived.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime

from .. import keys
from ..clients.bitrix24 import Bitrix24Client
from ..clients.okdesk import OkdeskClient
from ..errors import ApiError
from ..keys import DEFAULT_ROUTE
from ..state.store import Op, Store


@dataclass(frozen=True)
class LedgerRow:
    company: str
    user: str
    month: str  # YYYY-MM
    issue_id: int
    seconds: int
    route: str = DEFAULT_ROUTE  # the route whose target the time was logged on (older copies: the programmers')


@dataclass(frozen=True)
class Drift:
    issue_id: int
    item_id: int | None
    what: str


def _month(text: str) -> str:
    try:
        return datetime.strptime(text, "%d.%m.%Y").strftime("%Y-%m")
    except ValueError:
        return "unknown"


def time_ops(store: Store) -> list[Op]:
    return sorted((op for op in store.ops_of_kind("time").values() if op.state == "done"), key=lambda o: o.key)


def ledger_rows(ops: Iterable[Op], company_of: dict[int, str]) -> list[LedgerRow]:
    """Pure: one row per copied item (its line of the report was kept in the op)."""
    rows = []
    for op in ops:
        detail = op.detail
        user = str(detail.get("user") or f"Bitrix24 user #{detail.get('user_id')}")
        month = _month(str(detail.get("date") or ""))
        company = company_of.get(op.issue_id, "(no company)")
        route = str(detail.get("route") or DEFAULT_ROUTE)
        rows.append(LedgerRow(company, user, month, op.issue_id, int(detail.get("seconds") or 0), route))
    return rows


def summarize(rows: Iterable[LedgerRow], *, by_issue: bool = False, by_route: bool = False) -> list[dict[str, object]]:
    """Hours per (company[, route], programmer, month[, issue]), sorted, with two decimals."""
    totals: dict[tuple[object, ...], int] = {}
    for row in rows:
        key: tuple[object, ...] = (row.company, *((row.route,) if by_route else ()), row.user, row.month)
        key += (row.issue_id,) if by_issue else ()
        totals[key] = totals.get(key, 0) + row.seconds
    names = ["company", *(["route"] if by_route else []), "programmer", "month"] + (["issue"] if by_issue else [])
    return [
        dict(zip(names, key, strict=True)) | {"hours": round(seconds / 3600, 2)}
        for key, seconds in sorted(totals.items(), key=lambda kv: tuple(str(k) for k in kv[0]))
    ]


def _cell(value: object) -> object:
    """Names come from both systems; one starting like a formula (`=HYPERLINK(...)`) must not run
    in the spreadsheet the CSV is opened in (OWASP "CSV injection"): it is kept as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(summary: list[dict[str, object]]) -> str:
    out = io.StringIO()
    if summary:
        writer = csv.DictWriter(out, fieldnames=list(summary[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in summary)
    return out.getvalue()


def to_json(summary: list[dict[str, object]], drifts: list[Drift] | None = None) -> str:
    data: dict[str, object] = {"ledger": summary}
    if drifts is not None:
        data["drifts"] = [asdict(d) for d in drifts]
    return json.dumps(data, ensure_ascii=False, indent=2)


def companies_of_issues(store: Store, okdesk: OkdeskClient, issue_ids: Iterable[int]) -> dict[int, str]:
    names = {c.id: c.name for c in okdesk.list_companies()}
    known = {
        op.issue_id: int(op.detail["okdesk_company_id"])
        for op in store.ops_of_kind("invoice").values()
        if op.detail.get("okdesk_company_id")
    }
    result: dict[int, str] = {}
    for issue_id in sorted(set(issue_ids)):
        company_id = known.get(issue_id)
        if company_id is None:
            try:
                company_id = okdesk.get_issue(issue_id).company_id
            except ApiError:
                result[issue_id] = "(issue not readable)"
                continue
        result[issue_id] = names.get(company_id, f"company #{company_id}") if company_id else "(no company)"
    return result


def verify(store: Store, okdesk: OkdeskClient, bitrix: Bitrix24Client) -> list[Drift]:
    """Compare the copied time with both systems; every difference is one Drift."""
    drifts: list[Drift] = []
    copied = {k.item_id: op for op in time_ops(store) if (k := keys.parse_as(keys.TimeKey, op.key)) is not None}
    all_links = store.links().values()
    links = {link.issue_id: link.task_id for link in all_links if link.task_id}
    finished = {link.issue_id for link in all_links if link.state == "done"}
    elapsed = bitrix.elapsed_for_tasks(sorted(set(links.values())))
    items = {item.id: item for task_items in elapsed.values() for item in task_items}
    for item_id, op in sorted(copied.items()):
        seconds = int(op.detail.get("seconds") or 0)
        item = items.get(item_id)
        if item is None:
            drifts.append(Drift(op.issue_id, item_id, "deleted in Bitrix24 after it was copied"))
        elif item.seconds != seconds:
            drifts.append(Drift(op.issue_id, item_id, f"edited in Bitrix24: {item.seconds}s now, {seconds}s copied"))
    for issue_id, task_id in sorted(links.items()):
        if issue_id not in finished:
            continue  # an open task's time is copied at completion: not a drift yet
        for item in elapsed.get(task_id, []):
            if item.id not in copied:
                drifts.append(Drift(issue_id, item.id, f"logged on task {task_id}, never arrived in Okdesk"))
    for issue_id in sorted({op.issue_id for op in copied.values()}):
        try:
            entries = okdesk.list_time_entries(issue_id)
        except ApiError as error:
            drifts.append(Drift(issue_id, None, f"time entries not readable: {error}"))
            continue
        marked = ((keys.in_text(e.comment or ""), e) for e in entries)
        found = {key.item_id: e for key, e in marked if isinstance(key, keys.TimeKey)}
        for item_id, op in sorted(copied.items()):
            if op.issue_id != issue_id:
                continue
            entry = found.get(item_id)
            minutes = round(int(op.detail.get("seconds") or 0) / 60)
            if entry is None:
                drifts.append(Drift(issue_id, item_id, "time entry deleted in Okdesk"))
            elif abs(entry.spent_hours * 60 - minutes) > 1:  # Okdesk keeps minutes, shown as 2-decimal hours
                drifts.append(Drift(issue_id, item_id, f"time entry changed in Okdesk: {entry.spent_hours} h"))
    return drifts
