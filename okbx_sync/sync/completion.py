"""Planning what a completed task brings back: time entries, one report, the status return.

Pure: from the link, the issue, the task's elapsed items and what the store knows is done.

  every elapsed item not copied yet              -> CopyTimeEntry (marker [okbx:time:<item>])
  issue still in the handoff status, no return   -> ReturnIssue carrying the summary (one write)
  Okdesk refused that change before              -> the summary alone (its marker says the return is
                                                    owed), then the return with a short note
  someone moved the issue meanwhile              -> the summary alone, status left as it is
  then                                           -> CloseLink
  time logged after the completion (late)        -> copy it, with a short note
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from .. import keys
from ..config import Config, RouteConfig
from ..core.action import Action
from ..core.notes import note_html
from ..keys import DEFAULT_ROUTE
from ..model import ElapsedItem, Issue
from ..state.store import Link
from ..timeutil import human_duration
from . import render, render_routes, routing
from .files.plan import task_files_back
from .files.route import file_route
from .issue_writes import CloseLink, CopyTimeEntry, PostReport, ReturnIssue
from .snapshot import Snapshot, StateView

Row = dict[str, object]


def item_row(item: ElapsedItem, names: dict[int, str]) -> Row:
    """An elapsed item's line in a report (and in the op of its copy, for the ledger and billing)."""
    return {
        "id": item.id,
        "date": item.created_at.strftime("%d.%m.%Y") if item.created_at else "—",
        "user": names.get(item.user_id, f"Bitrix24 user #{item.user_id}"),
        "user_id": item.user_id,
        "seconds": item.seconds,
        "comment": item.comment,
    }


def copy_actions(
    issue_id: int,
    cycle: int,
    items: list[ElapsedItem],
    report: keys.SummaryKey | keys.LateKey,
    snap: Snapshot,
    state: StateView,
    config: Config,
    route: str = DEFAULT_ROUTE,
) -> tuple[list[Action], list[Row]]:
    """Copy each item not copied yet; return the actions and all rows the report lists.  Each
    copy keeps its line with the route it was logged on (the ledger counts hours per route)."""
    actions: list[Action] = []
    rows = [dict(op.detail) for op in state.reported_in(report) if op.state == "done" and op.detail]
    for item in sorted(items, key=lambda i: i.id):
        key = keys.TimeKey(item.id)
        if state.done(key):
            continue
        employee = config.time.users.get(item.user_id, config.time.default_employee_id)
        actions.append(
            CopyTimeEntry(
                issue_id,
                item=item,
                employee_id=employee,
                comment=render.time_entry_comment(item.comment or "Bitrix24", key.marker),
                report=report,
                cycle=cycle,
                row=item_row(item, snap.user_names) | {"route": route},
            )
        )
        rows.append(item_row(item, snap.user_names))
    rows.sort(key=lambda r: int(str(r.get("id") or 0)))
    return actions, rows


def completion(
    link: Link,
    issue: Issue,
    items: list[ElapsedItem],
    snap: Snapshot,
    state: StateView,
    config: Config,
    route: RouteConfig | None = None,
) -> list[Action]:
    """A task finished: its time (when the route copies it), one report, the return, the close."""
    route = route or _route(link, config)
    issue_id, cycle = link.issue_id, link.cycle
    report = keys.SummaryKey(issue_id, cycle)
    actions: list[Action] = []
    rows: list[Row] = []
    if route.flows.copy_time:
        actions, rows = copy_actions(issue_id, cycle, items, report, snap, state, config, route.name)
    task_id = link.task_id
    if route.name == DEFAULT_ROUTE:
        heading = f"The programmers completed Bitrix24 task #{task_id}."
    else:
        heading = f"Route {route.name}: Bitrix24 task #{task_id} was completed."
    result = snap.results.get(task_id or 0) if route.flows.result_comment else None

    def report_of(footer: str, return_owed: bool) -> PostReport:
        if route.flows.copy_time:
            return time_report(report, heading, rows, footer, config, return_owed=return_owed, route=route, link=link)
        text = render_routes.result_note(heading, result, footer)
        return _note_report(report, text, route, link, return_owed)

    back_note = f"Back from route {route.name}: Bitrix24 task #{task_id} is done."
    if route.name == DEFAULT_ROUTE:
        back_note = f"Back from the programmers: Bitrix24 task #{task_id} is done."
    return actions + report_back(link, route, issue, report_of, back_note, snap, state, config)


def _route(link: Link, config: Config) -> RouteConfig:
    found = config.route(link.route)
    assert found is not None, f"issue {link.issue_id}: route {link.route} is not configured"
    return found


def report_back(
    link: Link,
    route: RouteConfig,
    issue: Issue,
    report_of: Callable[[str, bool], PostReport],
    back_note: str,
    snap: Snapshot,
    state: StateView,
    config: Config,
) -> list[Action]:
    """The report of a finished target and the status return, as one write when it can be.

    issue still in the route's status, no return   -> ReturnIssue carrying the report
    Okdesk refused that change before              -> the report alone (its marker says the return
                                                      is owed), then the return with a short note
    someone moved the issue meanwhile              -> the report alone, status left as it is
    then                                           -> CloseLink
    """
    issue_id, cycle, handoff = link.issue_id, link.cycle, route.status
    report = keys.SummaryKey(issue_id, cycle)
    return_key = keys.ReturnKey(issue_id, cycle)
    actions: list[Action] = []
    will_return = issue.status == handoff and not state.done(return_key)
    back, why_back = routing.return_target(route, link, config)
    back_name = snap.statuses.get(back, back)
    return_op = state.ops.get(return_key.text)
    rejected = return_op is not None and return_op.state == "failed" and not return_op.ambiguous
    # A change whose answer was lost may have moved the issue AND posted the summary: plan it
    # again, so the applier looks for the summary's marker before anything is written twice.
    unsure = return_op is not None and return_op.unsure
    returns = f"The issue returns to '{back_name}'" + (f" ({why_back})." if why_back else ".")
    if (will_return or unsure) and not state.done(report) and not rejected:
        # the usual case: one write moves the issue back and carries the summary as its comment
        summary = report_of(returns, False)
        actions.append(
            ReturnIssue(
                issue_id,
                cycle=cycle,
                from_status=handoff,
                to_status=back,
                comment_html=summary.html,
                public=summary.public,
                summary=summary,
            )
        )
    else:
        if not state.done(report):
            if will_return:  # Okdesk refused the change carrying the summary: the summary goes alone
                error = (return_op.error or "") if return_op else ""
                footer = f"okbx could not move the issue back to '{back_name}' yet: {error[:200]}"
            else:
                footer = (
                    f"The status was left unchanged: someone moved the issue to "
                    f"'{snap.statuses.get(issue.status, issue.status)}' meanwhile."
                )
            actions.append(report_of(footer, will_return))
        if will_return:
            note = note_html(back_note, return_key.marker)
            actions.append(ReturnIssue(issue_id, cycle=cycle, from_status=handoff, to_status=back, comment_html=note))
    actions += task_files_back(file_route(config, route), link, snap, state, late=False)  # after the summary
    actions.append(CloseLink(issue_id, cycle=cycle))
    return actions


def time_report(
    report: keys.SummaryKey | keys.LateKey,  # the report of a completion, of a move, or of late time
    heading: str,
    rows: list[Row],
    footer: str,
    config: Config,
    *,
    return_owed: bool = False,
    route: RouteConfig | None = None,
    link: Link | None = None,
) -> PostReport:
    draft = PostReport(report.issue_id, report=report, return_owed=return_owed)
    total = sum(int(str(r["seconds"])) for r in rows)
    items = [int(str(r["id"])) for r in rows if r.get("id") is not None]
    return PostReport(
        report.issue_id,
        report=report,
        html=render.report(heading, rows, footer, draft.marker, items),
        public=route.flows.summary_public if route else _summary_public(config),
        total_seconds=total,
        item_count=len(rows),
        return_owed=return_owed,
        rows=tuple(rows),
        target=_target_of(link),
    )


def _note_report(report: keys.SummaryKey, text: str, route: RouteConfig, link: Link, return_owed: bool) -> PostReport:
    """The report of a route that copies no time: the result in words, no time lines."""
    draft = PostReport(report.issue_id, report=report, return_owed=return_owed)
    return PostReport(
        report.issue_id,
        report=report,
        html=note_html(text, draft.marker),
        public=route.flows.summary_public,
        return_owed=return_owed,
        target=_target_of(link),
        note=text.splitlines()[0],
    )


def _target_of(link: Link | None) -> tuple[str, str, int] | None:
    """(route, target kind, target id) of the report, kept with its op (billing links its invoice)."""
    return (link.route, link.target, link.task_id) if link is not None and link.task_id is not None else None


def _summary_public(config: Config) -> bool:
    route = config.route(DEFAULT_ROUTE) or (config.routes[0] if config.routes else None)
    return route.flows.summary_public if route else False


def late_time(link: Link, snap: Snapshot, state: StateView, config: Config, now: datetime) -> list[Action]:
    if link.task_id is None or (link.done_at and now - link.done_at > timedelta(days=config.time.late_window_days)):
        return []
    issue_id = link.issue_id
    # A note whose items were copied before a crash but that was not posted yet takes the new items too.
    orphan = sorted(
        {
            late
            for op in state.ops_of(issue_id)
            if op.report_key
            and op.state == "done"
            and (late := keys.parse_as(keys.LateKey, op.report_key)) is not None
            and not state.done(late)
        },
        key=lambda k: k.first_item,
    )
    new_items = [i for i in snap.late_elapsed if i.task_id == link.task_id and not state.done(keys.TimeKey(i.id))]
    if not new_items and not orphan:
        return []
    report = orphan[0] if orphan else keys.LateKey(issue_id, min(i.id for i in new_items))
    actions, rows = copy_actions(issue_id, link.cycle, new_items, report, snap, state, config, link.route)
    heading = f"More time was logged in Bitrix24 task #{link.task_id} after it was completed."
    total = human_duration(sum(int(str(r["seconds"])) for r in rows))
    actions.append(time_report(report, heading, rows, f"Copied as time entries ({total}).", config))
    return actions
