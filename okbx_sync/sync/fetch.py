"""Read both systems into a Snapshot, spending requests on change, not on the number of links.

Per cycle, whatever the number of links:
  Okdesk:   one listing of issues in the handoff status, one listing of issues updated since
            the last cycle (less an overlap, because the filter has minute precision);
  Bitrix24: one batched `tasks.task.list` per 2,500 active links, one elapsed-time query over
            the tasks of recently completed links.
Per change: a full read and the comments of each issue that is new, changed, completing, or
left the handoff status; the elapsed items of each completed task; a direct `tasks.task.get`
for a task missing from the listing (absence from a listing is never taken as deletion), and,
when that answers "no such task", one `user.admin` per process: only an administrator's "no
such task" means deleted; for anyone else the task may merely be hidden from it.
Every `full_scan_minutes` (and when the Okdesk comment-detection fact is not trusted,
`comment_detection: full`) the comments of all active links are read; `scan_quota` of them per
cycle at most, in id order from a cursor, so a pass over 10,000 links spans cycles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from ..clients.bitrix24 import Bitrix24Client
from ..clients.http import RequestBudget
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..errors import ApiError, NotFound
from ..model import Issue
from ..state.store import Link, LinkState
from .snapshot import Snapshot

log = logging.getLogger(__name__)
OVERLAP = timedelta(minutes=10)
READ_SHARE = 0.6


def fetch_snapshot(
    okdesk: OkdeskClient,
    bitrix: Bitrix24Client,
    config: Config,
    links: dict[int, Link],
    *,
    watermark: datetime | None,
    elapsed_after: int,
    full_scan: bool,
    now: datetime,
    budget: RequestBudget | None = None,
    scan_after: int = 0,
    full_listing: bool = True,
    tasks_changed_since: datetime | None = None,
    load_links: Callable[[set[int]], dict[int, Link]] = lambda ids: {},
    scan_quota: int | None = None,
) -> Snapshot:
    """`full_listing=False` (between the slow full listings): Okdesk is read only through
    `updated_since` and the tasks through `>=CHANGED_DATE` since `tasks_changed_since`; an
    issue or task that does not show up there has not changed.  `links` holds the hot links
    (see Store.hot_links); `load_links` adds archived ones that show up in a listing, and the
    dict is completed in place so the caller plans with the same links."""
    handoff_code = config.okdesk.handoff_status
    snap = Snapshot()
    # A failing listing aborts the cycle: planning from half the picture could mistake an outage for change.
    full_listing = full_listing or watermark is None
    if full_listing:
        snap.handoff = {i.id: i for i in okdesk.list_issues(status_codes=[handoff_code])}
    seen_status: dict[int, str] = {i.id: i.status for i in snap.handoff.values()}
    seen = list(snap.handoff.values())
    if watermark is not None:
        seen += okdesk.list_issues(updated_since=watermark - OVERLAP)
    if not full_listing:  # an issue handed off since the last cycle moved its updated_at
        snap.handoff = {i.id: i for i in seen if i.status == handoff_code}
    for issue in seen:
        seen_status[issue.id] = issue.status
        if issue.updated_at is not None:
            snap.seen_updated[issue.id] = issue.updated_at
    links.update(load_links(set(seen_status) - set(links)))
    # Changed = updated since we last read its comments (the listing's window overlaps, so the
    # same change shows up for several cycles; (id, updated_at) tells it apart).
    changed = {i for i, at in snap.seen_updated.items() if i in links and links[i].issue_updated_at != at}
    snap.seen_status = seen_status
    new_ids = {i for i in snap.handoff if _wants_task(links.get(i), handoff_code)}
    # a task create whose answer was lost is looked for even after the issue left the handoff status
    new_ids |= {i for i, link in links.items() if link.state == LinkState.ACTIVE and link.task_id is None}
    active = {i: link for i, link in links.items() if link.state == LinkState.ACTIVE and link.task_id is not None}
    # done links handed off again: their task may have been deleted since (then a new one is needed)
    returning = {i: links[i] for i in new_ids if i in links and links[i].state == LinkState.DONE and links[i].task_id}
    if full_listing or tasks_changed_since is None:
        _fetch_tasks(bitrix, snap, {**active, **returning})
    else:
        _fetch_changed_tasks(bitrix, snap, active, tasks_changed_since)
        # besides what changed: tasks of links okbx must look at again whatever the task did
        again = {i: link for i, link in active.items() if link.dirty or link.fail_count or link.last_error}
        again |= {i: active[i] for i in changed if i in active}
        _fetch_tasks(
            bitrix, snap, {i: link for i, link in {**again, **returning}.items() if link.task_id not in snap.tasks}
        )
    done_statuses = set(config.bitrix24.done_statuses)
    completing = {
        i for i, link in active.items() if (t := snap.tasks.get(link.task_id or 0)) and t.status in done_statuses
    }

    fresh = set(new_ids) | completing
    for issue_id, link in active.items():
        if issue_id in snap.handoff:
            continue
        if full_listing:
            # Absent from the handoff listing while we last saw it there: read it directly to learn
            # whether it left the status or was deleted (absence alone proves neither).
            if link.dirty or link.issue_status in (handoff_code, None):
                fresh.add(issue_id)
        elif link.dirty or link.issue_status is None or issue_id in seen_status:
            fresh.add(issue_id)  # changed, and no longer in the handoff status: read it directly
    comments_for = set(new_ids)
    scan_only: set[int] = set()  # read only because a full scan is due: the first to wait for budget
    for issue_id, link in active.items():
        if link.dirty or issue_id in changed or issue_id in fresh:
            comments_for.add(issue_id)
        elif (full_scan or watermark is None) and issue_id > scan_after:
            comments_for.add(issue_id)  # a scan cut short by the budget goes on after scan_after
            scan_only.add(issue_id)
    # a done link handed off again: read it like a new one
    for issue_id in new_ids:
        comments_for.add(issue_id)
    if scan_quota is not None and watermark is not None:  # spread the scan: the rest waits for later cycles
        waiting = sorted(scan_only)[scan_quota:]
        snap.scan_deferred.update(waiting)
        scan_only.difference_update(waiting)
        comments_for.difference_update(waiting)

    # Per-issue reads may use READ_SHARE of the request budget; the rest of the issues wait for the
    # next cycle, so a backlog larger than one cycle's budget still makes progress (and writes).
    # The same share of the time budget (`sync.max_seconds`), so a run cut short still writes.
    def over_budget(issue_id: int) -> bool:
        if budget is not None and budget.share_spent(READ_SHARE):
            snap.deferred.add(issue_id)
        return issue_id in snap.deferred

    # completions first (billing), then real changes, then the full scan, each in id order; an
    # issue is read whole or not at all
    for issue_id in sorted(fresh | comments_for, key=lambda i: (i not in completing, i in scan_only, i)):
        if over_budget(issue_id):
            if issue_id in scan_only:
                snap.scan_deferred.add(issue_id)
            continue
        if issue_id in scan_only:
            snap.scanned.add(issue_id)
        if issue_id in fresh:
            _read_issue(okdesk, snap, issue_id)
        if issue_id not in comments_for or snap.issues.get(issue_id, True) is None or issue_id in snap.errors:
            continue
        try:
            snap.comments[issue_id] = okdesk.list_comments(issue_id)
        except NotFound:
            snap.issues[issue_id] = None
        except ApiError as error:
            snap.errors[issue_id] = f"reading comments failed: {error}"

    if not full_listing:  # read directly and still handed off: as good as listed
        for issue_id, read in snap.issues.items():
            if read is not None and read.status == handoff_code and issue_id not in snap.handoff:
                snap.handoff[issue_id] = read
    _fetch_time(bitrix, snap, config, links, active, completing, elapsed_after, now)
    if fresh:
        try:
            snap.statuses = dict(okdesk.list_statuses())
        except ApiError as error:  # names are cosmetic; codes still work
            log.warning("could not read Okdesk status names: %s", error)
    return snap


def _wants_task(link: Link | None, handoff_code: str) -> bool:
    if link is None:
        return True
    if link.state == LinkState.DONE:
        return True
    if link.state == LinkState.ACTIVE:
        return link.task_id is None
    if link.state == LinkState.GONE_TASK:
        return link.issue_status not in (None, handoff_code)
    return False


def _read_issue(okdesk: OkdeskClient, snap: Snapshot, issue_id: int) -> None:
    try:
        issue = okdesk.get_issue(issue_id)
    except NotFound:
        snap.issues[issue_id] = None
        return
    except ApiError as error:
        snap.errors[issue_id] = f"reading the issue failed: {error}"
        return
    summary: Issue | None = snap.handoff.get(issue_id)
    if summary is not None:  # the listing carries company and contact names; the full issue only ids
        issue = Issue(**{**issue.__dict__, "company": summary.company, "contact": summary.contact})
    snap.issues[issue_id] = issue


def _fetch_changed_tasks(bitrix: Bitrix24Client, snap: Snapshot, active: dict[int, Link], since: datetime) -> None:
    """The linked tasks changed since `since` (less an overlap for clock skew): one request when
    nothing changed.  A status change moves CHANGED_DATE (reference section 3.2); what else does
    is unknown, so completion is the only thing read this way (time and comments have their own
    reads, and the slow full listing re-reads every task)."""
    ours = {link.task_id for link in active.values() if link.task_id is not None}
    for task in bitrix.find_tasks({">=CHANGED_DATE": (since - OVERLAP).isoformat(timespec="seconds")}):
        if task.id in ours:
            snap.tasks[task.id] = task


def _fetch_tasks(bitrix: Bitrix24Client, snap: Snapshot, active: dict[int, Link]) -> None:
    if not active:
        return
    by_task = {link.task_id: issue_id for issue_id, link in active.items() if link.task_id is not None}
    found, failed = bitrix.tasks_by_id(by_task)
    snap.tasks.update(found)
    for task_id, error in failed.items():
        snap.errors[by_task[task_id]] = f"reading task {task_id} failed: {error}"
    for task_id, issue_id in by_task.items():
        if task_id in found or task_id in failed:
            continue
        try:  # missing from the listing: only a direct "not found" means deleted
            task = bitrix.get_task(task_id)
            if task is None and not _sees_every_task(bitrix):
                snap.errors[issue_id] = f"{NOT_VISIBLE} (Bitrix24 task #{task_id})"
                continue
            snap.tasks[task_id] = task
        except ApiError as error:
            snap.errors[issue_id] = f"reading task {task_id} failed: {error}"


NOT_VISIBLE = "task not visible to the webhook user: check its rights"


def _sees_every_task(bitrix: Bitrix24Client) -> bool:
    """`tasks.task.get` answers `[]` for a task that does not exist *or* that the user may not
    see (doc).  Only an administrator sees every task, so only its `[]` means "deleted"; for
    anyone else the link fails with a plain reason, is retried and parked like any failure, and
    resumes once the task is visible again."""
    try:
        return bitrix.is_admin()
    except ApiError as error:
        log.warning("could not ask Bitrix24 whether the webhook user is an administrator: %s", error)
        return False  # unknown: never conclude "deleted"


def _fetch_time(
    bitrix: Bitrix24Client,
    snap: Snapshot,
    config: Config,
    links: dict[int, Link],
    active: dict[int, Link],
    completing: set[int],
    elapsed_after: int,
    now: datetime,
) -> None:
    task_ids = {active[i].task_id for i in completing if active[i].task_id is not None}
    if task_ids:
        try:
            snap.elapsed.update(bitrix.elapsed_for_tasks(t for t in task_ids if t is not None))
        except ApiError as error:
            for issue_id in completing:
                snap.errors[issue_id] = f"reading elapsed time failed: {error}"
    window = timedelta(days=config.time.late_window_days)
    recent_done = {
        link.task_id
        for link in links.values()
        if link.state == LinkState.DONE and link.task_id and (link.done_at is None or now - link.done_at <= window)
    }
    if recent_done:
        try:
            snap.late_elapsed = bitrix.elapsed_since(elapsed_after, (t for t in recent_done if t is not None))
        except ApiError as error:
            log.warning("could not read time logged after completion: %s", error)
            for issue_id, link in links.items():
                if link.task_id in recent_done:
                    snap.errors[issue_id] = f"reading late elapsed time failed: {error}"
    users = {i.user_id for items in snap.elapsed.values() for i in items} | {i.user_id for i in snap.late_elapsed}
    if users:
        try:
            snap.user_names = {
                int(u["ID"]): " ".join(filter(None, [str(u.get("NAME") or ""), str(u.get("LAST_NAME") or "")])).strip()
                or f"Bitrix24 user #{u['ID']}"
                for u in bitrix.users(users)
                if "ID" in u
            }
        except (ApiError, ValueError, TypeError) as error:
            log.warning("could not read Bitrix24 user names: %s", error)
