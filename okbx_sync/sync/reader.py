"""Reads what the selection asked for, one page of issues at a time, into a Snapshot.

Per issue: the full issue and/or its comments; per page: the elapsed time of the page's
completed tasks (one batched request) and the names of the programmers who logged it.  Reads
may use READ_SHARE of the request and time budgets; past that, the rest of the issues wait for
the next cycle (deferred), so a backlog larger than one run still makes progress and writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..clients.bitrix24 import Bitrix24Client
from ..clients.limits import RequestBudget
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..errors import ApiError, NotFound
from ..model import Issue
from ..state.store import Link
from .listing import Listing
from .route_reads import RouteReads
from .select import Work
from .snapshot import Snapshot

log = logging.getLogger(__name__)
READ_SHARE = 0.6


@dataclass
class Reader:
    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    config: Config
    listing: Listing
    budget: RequestBudget | None = None
    statuses: dict[str, str] | None = None  # read once per cycle, when a page reads an issue
    user_names: dict[int, str] = field(default_factory=dict)
    extras: RouteReads | None = None  # what the routes' targets need besides (route_reads.py)

    def over_budget(self) -> bool:
        return self.budget is not None and self.budget.share_spent(READ_SHARE)

    def read_page(self, work: list[Work], links: dict[int, Link]) -> Snapshot:
        listing = self.listing
        page = [w.issue_id for w in work]
        snap = Snapshot(
            handoff={i: listing.handoff[i] for i in page if i in listing.handoff},
            tasks=listing.tasks,
            errors={i: listing.errors[i] for i in page if i in listing.errors},
            seen_status={i: listing.seen_status[i] for i in page if i in listing.seen_status},
            seen_updated={i: listing.seen_updated[i] for i in page if i in listing.seen_updated},
            deals=listing.deals,
        )
        page_tasks = {links[i].task_id for i in page if i in links}
        snap.late_elapsed = [item for item in listing.late_elapsed if item.task_id in page_tasks]
        for item in work:
            self._read_issue(snap, item)
        if not listing.full:  # read directly and still handed off: as good as listed
            triggers = {route.status for route in self.config.routes}
            for issue_id, read in snap.issues.items():
                if read is not None and read.status in triggers:
                    snap.handoff.setdefault(issue_id, read)
        completing = [links[w.issue_id] for w in work if w.completing and w.issue_id not in snap.deferred]
        self._read_time(snap, [link for link in completing if link.on_task and self._copies_time(link)])
        if self.extras is not None:
            self.extras.read(snap, links, completing)
        if snap.issues:
            snap.statuses = self._statuses()
        return snap

    def _read_issue(self, snap: Snapshot, work: Work) -> None:
        issue_id = work.issue_id
        if not (work.read_issue or work.read_comments):
            return
        if self.over_budget():
            snap.deferred.add(issue_id)
            if work.scan_only:
                snap.scan_deferred.add(issue_id)
            return
        if work.scan_only:
            snap.scanned.add(issue_id)
        if work.read_issue:
            self._issue(snap, issue_id)
        if not work.read_comments or snap.issues.get(issue_id, True) is None or issue_id in snap.errors:
            return
        try:
            snap.comments[issue_id] = self.okdesk.list_comments(issue_id)
        except NotFound:
            snap.issues[issue_id] = None
        except ApiError as error:
            snap.errors[issue_id] = f"reading comments failed: {error}"

    def _issue(self, snap: Snapshot, issue_id: int) -> None:
        try:
            issue = self.okdesk.get_issue(issue_id)
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

    def _copies_time(self, link: Link) -> bool:
        route = self.config.route(link.route)
        return route is None or route.flows.copy_time

    def _read_time(self, snap: Snapshot, completing: list[Link]) -> None:
        task_ids = {link.task_id for link in completing if link.task_id is not None}
        if task_ids:
            try:
                snap.elapsed.update(self.bitrix.elapsed_for_tasks(task_ids))
            except ApiError as error:
                for link in completing:
                    snap.errors[link.issue_id] = f"reading elapsed time failed: {error}"
        users = {i.user_id for items in snap.elapsed.values() for i in items} | {i.user_id for i in snap.late_elapsed}
        self._names(users - set(self.user_names))
        snap.user_names = {u: self.user_names[u] for u in users if u in self.user_names}

    def _names(self, users: set[int]) -> None:
        if not users:
            return
        try:
            for user in self.bitrix.users(users):
                if "ID" in user:
                    name = " ".join(filter(None, [str(user.get("NAME") or ""), str(user.get("LAST_NAME") or "")]))
                    self.user_names[int(user["ID"])] = name.strip() or f"Bitrix24 user #{user['ID']}"
        except (ApiError, ValueError, TypeError) as error:
            log.warning("could not read Bitrix24 user names: %s", error)

    def _statuses(self) -> dict[str, str]:
        if self.statuses is None:
            try:
                self.statuses = dict(self.okdesk.list_statuses())
            except ApiError as error:  # names are cosmetic; codes still work
                log.warning("could not read Okdesk status names: %s", error)
                self.statuses = {}
        return self.statuses
