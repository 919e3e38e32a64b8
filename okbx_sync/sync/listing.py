"""The route's reads once per cycle, whatever the number of links: listings and the tasks' state.

  Okdesk:   the issues in the routes' statuses (a full listing) and the issues updated since
            the last cycle (less an overlap: the filter has minute precision, clocks drift);
  Bitrix24: the linked tasks (batched `tasks.task.list`, 2,500 per request) or, between full
            listings, only the tasks changed since the last cycle (`>=CHANGED_DATE`); a direct
            `tasks.task.get` for a task missing from the listing (absence is never deletion) and,
            when that answers "no such task", one `user.admin`: only an administrator's "no such
            task" means deleted, for anyone else the task may merely be hidden;
            the time logged on recently completed tasks after their completion (late time);
            the deals of active sales-route links (batched `crm.item.list` by id; a deal missing
            from it is read directly, and only `NOT_FOUND` means deleted).
A failing listing aborts the cycle: planning from half the picture could mistake an outage for
change.  What each issue needs read besides is decided purely (select.py) and read in pages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_deals import DealsClient
from ..clients.bitrix24_deals_parse import Deal
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..errors import ApiError
from ..model import ElapsedItem, Issue, Task
from ..state.store import Link, LinkState

log = logging.getLogger(__name__)
OVERLAP = timedelta(minutes=10)
NOT_VISIBLE = "task not visible to the webhook user: check its rights"


@dataclass
class Listing:
    full: bool  # the whole handoff status and every linked task were listed
    handoff: dict[int, Issue] = field(default_factory=dict)  # issues in the handoff status (listed)
    seen_status: dict[int, str] = field(default_factory=dict)  # status of every issue listed
    seen_updated: dict[int, datetime] = field(default_factory=dict)  # updated_at of every issue listed
    tasks: dict[int, Task | None] = field(default_factory=dict)  # task id -> task; None = direct not found
    errors: dict[int, str] = field(default_factory=dict)  # issue id -> why its task could not be read
    late_elapsed: list[ElapsedItem] = field(default_factory=list)  # new items on tasks of done links
    deals: dict[int, Deal | None] = field(default_factory=dict)  # deal id -> deal; None = direct not found


@dataclass(frozen=True)
class Window:
    """Where the last cycles left off: what the change filters start from."""

    okdesk_since: datetime | None  # None: no cycle finished yet, list everything
    tasks_since: datetime | None
    elapsed_after: int
    full_listing: bool
    overlap: timedelta = OVERLAP  # widened when a server's clock is off (engine.py)


def read_listing(
    okdesk: OkdeskClient,
    bitrix: Bitrix24Client,
    config: Config,
    links: dict[int, Link],
    window: Window,
    *,
    now: datetime,
    load_links: Callable[[set[int]], dict[int, Link]],
) -> Listing:
    """`links` holds the hot links (Store.hot_links); archived ones that show up in a listing are
    loaded with `load_links` and added to it in place, so the cycle plans with the same links."""
    codes = sorted({route.status for route in config.routes})
    full = window.full_listing or window.okdesk_since is None
    listing = Listing(full=full)
    seen: list[Issue] = []
    if full:
        listing.handoff = {i.id: i for i in okdesk.list_issues(status_codes=codes)}
        seen += listing.handoff.values()
    if window.okdesk_since is not None:
        seen += okdesk.list_issues(updated_since=window.okdesk_since - window.overlap)
    if not full:  # an issue handed off since the last cycle moved its updated_at
        listing.handoff = {i.id: i for i in seen if i.status in codes}
    for issue in seen:
        listing.seen_status[issue.id] = issue.status
        if issue.updated_at is not None:
            listing.seen_updated[issue.id] = issue.updated_at
    links.update(load_links(set(listing.seen_status) - set(links)))
    _read_tasks(bitrix, listing, links, window)
    _read_deals(bitrix, listing, links)
    _read_late_time(bitrix, listing, config, links, window, now)
    return listing


def task_reads(links: dict[int, Link], listing: Listing) -> dict[int, Link]:
    """The links whose task the cycle reads: every active one, and done ones handed off again
    (their task may have been deleted since: then a new one is needed)."""
    wanted = {
        i: link
        for i, link in links.items()
        if link.state == LinkState.ACTIVE and link.task_id is not None and link.on_task
    }
    for issue_id in listing.handoff:
        link = links.get(issue_id)
        if link is not None and link.state == LinkState.DONE and link.task_id and link.on_task:
            wanted[issue_id] = link
    return wanted


def _read_deals(bitrix: Bitrix24Client, listing: Listing, links: dict[int, Link]) -> None:
    """The deals of active sales-route links, 2,500 per request; a failed read is that issue's error."""
    by_deal = {
        link.task_id: i
        for i, link in links.items()
        if link.state == LinkState.ACTIVE and link.task_id is not None and link.target == "deal"
    }
    if not by_deal:
        return
    deals = DealsClient(bitrix)
    found, failed = deals.deals_by_id(by_deal)
    listing.deals.update(found)
    for deal_id, issue_id in by_deal.items():
        if deal_id in failed:
            listing.errors[issue_id] = f"reading deal {deal_id} failed: {failed[deal_id]}"
        elif deal_id not in found:
            try:  # missing from the listing: only a direct NOT_FOUND means deleted
                listing.deals[deal_id] = deals.get_deal(deal_id)
            except ApiError as error:
                listing.errors[issue_id] = f"reading deal {deal_id} failed: {error}"


def _read_tasks(bitrix: Bitrix24Client, listing: Listing, links: dict[int, Link], window: Window) -> None:
    wanted = task_reads(links, listing)
    if listing.full or window.tasks_since is None:
        _tasks_by_id(bitrix, listing, wanted)
        return
    # Between full listings: a status change moves CHANGED_DATE (reference section 3.2); what
    # else does is unknown, so completion is the only thing read this way (time and comments have
    # their own reads, and the slow full listing re-reads every task).
    ours = {link.task_id for link in wanted.values()}
    since = (window.tasks_since - window.overlap).isoformat(timespec="seconds")
    for task in bitrix.find_tasks({">=CHANGED_DATE": since}):
        if task.id in ours:
            listing.tasks[task.id] = task
    # besides what changed: tasks of links okbx must look at again whatever the task did
    again = {
        i: link
        for i, link in wanted.items()
        if link.task_id not in listing.tasks
        and (link.dirty or link.fail_count or link.state == LinkState.DONE or _changed(link, listing))
    }
    _tasks_by_id(bitrix, listing, again)


def _changed(link: Link, listing: Listing) -> bool:
    seen = listing.seen_updated.get(link.issue_id)
    return seen is not None and link.issue_updated_at != seen


def _tasks_by_id(bitrix: Bitrix24Client, listing: Listing, wanted: dict[int, Link]) -> None:
    if not wanted:
        return
    by_task = {link.task_id: issue_id for issue_id, link in wanted.items() if link.task_id is not None}
    found, failed = bitrix.tasks_by_id(by_task)
    listing.tasks.update(found)
    for task_id, error in failed.items():
        listing.errors[by_task[task_id]] = f"reading task {task_id} failed: {error}"
    for task_id, issue_id in by_task.items():
        if task_id in found or task_id in failed:
            continue
        try:  # missing from the listing: only a direct "not found" means deleted
            task = bitrix.get_task(task_id)
            if task is None and not _sees_every_task(bitrix):
                listing.errors[issue_id] = f"{NOT_VISIBLE} (Bitrix24 task #{task_id})"
                continue
            listing.tasks[task_id] = task
        except ApiError as error:
            listing.errors[issue_id] = f"reading task {task_id} failed: {error}"


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


def _read_late_time(
    bitrix: Bitrix24Client, listing: Listing, config: Config, links: dict[int, Link], window: Window, now: datetime
) -> None:
    late_window = timedelta(days=config.time.late_window_days)
    recent_done = {
        link.task_id: issue_id
        for issue_id, link in links.items()
        if link.state == LinkState.DONE
        and link.task_id
        and link.on_task
        and (link.done_at is None or now - link.done_at <= late_window)
    }
    if not recent_done:
        return
    try:
        listing.late_elapsed = bitrix.elapsed_since(window.elapsed_after, recent_done)
    except ApiError as error:
        log.warning("could not read time logged after completion: %s", error)
        for issue_id in recent_done.values():
            listing.errors[issue_id] = f"reading late elapsed time failed: {error}"
