"""A new state store next to accounts where okbx already worked: bring in what it did.

Issues in the handoff status are adopted by the ordinary path (their task is found by its
`XML_ID` before any create).  Tasks completed recently are not in any listing okbx reads, yet
time logged on them late must still be copied and a completion not yet reported must still
be: so once, when the store is new, the tasks of the group closed within the late-time window
are read and their links rebuilt from the markers on both sides (`rebuild.py`), with:
  the task itself;
  each time entry okbx copied (found by its marker), listed under the report that lists it, with
  its line (who, how long) from the task's elapsed item, so a report or an invoice made after
  this carries the real time;
  each elapsed item a report of okbx lists although its time entry is gone (a person deleted
  it): copied once, so it is not copied again as "late";
  the completion's report, when it is there, so billing and the return follow from it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from .. import keys
from ..core.action import Context
from ..errors import ApiError, NotFound
from ..model import ElapsedItem, Task
from ..state import lifecycle
from ..state.store import LinkState, Store
from . import rebuild
from .completion import item_row

log = logging.getLogger(__name__)
META = "recent_tasks_adopted_at"


def adopt_recent_tasks(ctx: Context, now: datetime) -> list[int]:
    """Rebuild the links of recently completed tasks, once per new store; the issue ids adopted."""
    store, config = ctx.store, ctx.config
    if store.get_meta(META) is not None:
        return []
    if store.has_any_link():  # a store that already worked knows its links
        store.set_meta(META, now.isoformat())
        return []
    since = now - timedelta(days=config.time.late_window_days)
    adopted: list[int] = []
    for route in config.routes:  # the task routes whose time comes back: late time must not be lost
        if route.kind != "task" or not route.flows.copy_time:
            continue
        tasks = ctx.bitrix.find_tasks({"GROUP_ID": route.target.group_id, ">=CLOSED_DATE": since.isoformat()})
        if not _adopt_tasks(ctx, tasks, route.name, adopted):
            return adopted
    store.set_meta(META, now.isoformat())
    if adopted:
        log.info("new state store: adopted %s recently completed task(s) from the markers", len(adopted))
    return adopted


def _adopt_tasks(ctx: Context, tasks: list[Task], route: str, adopted: list[int]) -> bool:
    """False when a read failed: not marked as done, the next run of a new store tries again."""
    for task in sorted(tasks, key=lambda t: t.id):
        issue_id = keys.issue_of_xml_id(task.xml_id, route)
        if issue_id is None or ctx.store.link(issue_id) is not None:
            continue
        try:
            _adopt(ctx, issue_id, task, route)
        except NotFound:
            continue  # the issue was deleted: nothing to copy time into
        except ApiError as error:
            # not adopted now, and not marked as done: the next run of a new store tries again
            log.warning("could not rebuild the link of task %s: %s", task.id, error)
            return False
        adopted.append(issue_id)
    return True


def _adopt(ctx: Context, issue_id: int, task: Task, route: str) -> None:
    store, remote = ctx.store, ctx.remote
    found = rebuild.link_from_remote(
        issue_id, task, remote.issue(issue_id), remote.task(task.id), ctx.config.bitrix24.done_statuses, route=route
    )
    copied = remote.time_entries(issue_id)
    reports = remote.reports(issue_id)
    items = ctx.bitrix.elapsed_for_tasks([task.id]).get(task.id, [])
    names = _names(ctx, items)
    on = lifecycle.Entry(route, "task")
    store.apply(found.change(f"rebuilt from the markers: handoff {found.cycle}, {found.state}", new=True, entry=on))
    task_key = keys.TaskKey(issue_id, found.task_cycle)
    _record(store, issue_id, task_key, "task", str(task.id), found.task_cycle, None, {"route": route})
    listed_in = {item: report for report, listed in reports.items() for item in listed}
    current = keys.SummaryKey(issue_id, found.cycle)
    for item in items:
        key = keys.TimeKey(item.id)
        entry = copied.get(key.text)
        if entry is None and item.id not in listed_in:
            continue  # never copied: planned as usual
        report = listed_in.get(item.id) or (current.text if found.state == LinkState.ACTIVE else None)
        if report is None:  # copied after the completion, its note not posted: the late path posts it
            report = keys.LateKey(issue_id, item.id).text
        row = {**item_row(item, names), "task_id": task.id, "adopted": True}
        row["employee_id"] = entry.employee_id if entry else None
        if entry is None:
            row["entry_gone"] = True  # listed in a report, deleted in Okdesk by a person since
        _record(store, issue_id, key, "time", str(entry.id) if entry else None, found.cycle, report, row)
    for report_text, comment_id in remote.issue(issue_id).items():
        summary = keys.parse_as(keys.SummaryKey, report_text)
        if summary is not None and summary.pending is None and summary.issue_id == issue_id:
            # dated as Okdesk dates it: billing of a new store starts now and must not invoice a
            # completion reported before (billing may have been off then)
            at = remote.posted_at(issue_id, report_text)
            found_it: dict[str, object] = {"detail": "report found"}
            _record(store, issue_id, summary, "summary", comment_id, summary.cycle, None, found_it, at)


def _names(ctx: Context, items: list[ElapsedItem]) -> dict[int, str]:
    try:
        users = ctx.bitrix.users({i.user_id for i in items}) if items else []
    except ApiError:
        return {}
    found: dict[int, str] = {}
    for user in users:
        name = " ".join(filter(None, [str(user.get("NAME") or ""), str(user.get("LAST_NAME") or "")])).strip()
        if "ID" in user:
            found[int(user["ID"])] = name or f"Bitrix24 user #{user['ID']}"
    return found


def _record(
    store: Store,
    issue_id: int,
    key: keys.Key,
    kind: str,
    remote_id: str | None,
    cycle: int | None,
    report: str | None,
    detail: dict[str, object],
    at: datetime | None = None,
) -> None:
    store.begin_op(key.text, issue_id, kind, cycle=cycle, report_key=report, detail=detail)
    store.finish_op(
        key.text, issue_id, kind, remote_id=remote_id, outcome="adopted", summary=f"{kind} found: {key}", at=at
    )
