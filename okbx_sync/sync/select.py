"""Which issues a cycle works on, and what it reads of each: a pure function, tested with literals.

From the links, what the listings showed and the cycle's flags, per issue:
  new handoff (no link, or a done link handed off again, or a create to look for)
                                        -> read the issue and its comments
  active, its task completed            -> read the issue (and the task's time: reader.py)
  active, changed since its comments were read, dirty (deferred, failed, cut short)
                                        -> read its comments (and the issue when not listed in
                                           the handoff status: it left it, or was deleted)
  active, absent from the full handoff listing while last seen there
                                        -> read the issue directly (absence proves nothing)
  active, in another route's status     -> read the issue and its comments, and a task's time
                                           (the handoff ends there: its time so far is reported)
  a full comment scan is due            -> read its comments (`scan_quota` per cycle, from a
                                           cursor, so a pass over 10,000 links spans cycles)
  done, with time logged late; a late note not posted; parked or waiting; task gone;
  active on a route no longer configured
                                        -> planned without reads
Order: completions first (billing waits for them), then real changes, then the scan; each in
issue id order, so a run cut short after N seconds has done the most urgent N seconds of work.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from ..clients.bitrix24_deals_parse import Deal
from ..model import Task
from ..state.store import Link, LinkState


@dataclass(frozen=True)
class Work:
    issue_id: int
    read_issue: bool = False
    read_comments: bool = False
    completing: bool = False
    scan_only: bool = False  # read only because the periodic full scan is due


@dataclass(frozen=True)
class Flags:
    handoff_status: str  # the programmers' route's status (the only route without `route_status`)
    done_statuses: frozenset[int]
    full_listing: bool
    full_scan: bool  # the periodic comment scan is due (or every cycle: comment_detection full)
    first_cycle: bool  # no cycle finished yet: every link is read
    scan_after: int = 0  # a scan cut short goes on after this issue id
    scan_quota: int | None = None
    route_status: Mapping[str, str] = field(default_factory=dict)  # route -> its trigger status

    def status_of(self, link: Link) -> str:
        """The trigger status of the link's route."""
        return self.route_status.get(link.route, self.handoff_status)

    @property
    def triggers(self) -> frozenset[str]:
        return frozenset(self.route_status.values()) or frozenset({self.handoff_status})


@dataclass
class Selection:
    work: list[Work] = field(default_factory=list)
    scan_deferred: set[int] = field(default_factory=set)  # due for the scan, left for later cycles

    def ids(self) -> list[int]:
        return [w.issue_id for w in self.work]


@dataclass(frozen=True)
class Seen:
    """What the cycle's listings showed (listing.py), as plain values."""

    handoff: frozenset[int]
    seen_status: dict[int, str]
    seen_updated: dict[int, datetime]
    tasks: dict[int, Task | None]
    task_errors: frozenset[int] = frozenset()
    late_tasks: frozenset[int] = frozenset()  # tasks with time logged after their completion
    unposted_late: frozenset[int] = frozenset()  # issues whose late-time note waits to be posted
    now: datetime | None = None
    deals: Mapping[int, Deal | None] = field(default_factory=dict)  # deal id -> deal; None = direct not found

    def target(self, link: Link) -> Task | Deal | int | None:
        """The link's target as listed: None when found deleted, 0 when not read."""
        found: Mapping[int, Task | Deal | None] = self.tasks if link.on_task else self.deals
        return found.get(link.task_id or 0, 0)


def wants_task(link: Link | None, handoff_status: str) -> bool:
    return wants_target(link, handoff_status, Flags(handoff_status, frozenset(), True, False, False))


def wants_target(link: Link | None, status: str | None, flags: Flags) -> bool:
    """Does an issue seen in a route's status (`status`) need a target made or taken up?"""
    if link is None or link.state == LinkState.DONE:
        return True
    own = flags.status_of(link)
    if link.state == LinkState.ACTIVE:
        return link.task_id is None or (status is not None and status != own)  # moved to another route
    if link.state == LinkState.GONE_TASK:
        return link.issue_status not in (None, own) or (status is not None and status != own)
    return False


def select(links: dict[int, Link], seen: Seen, flags: Flags) -> Selection:
    new_ids = {i for i in seen.handoff if wants_target(links.get(i), seen.seen_status.get(i), flags)}
    # a create whose answer was lost is looked for even after the issue left the route's status
    new_ids |= {i for i, link in links.items() if link.state == LinkState.ACTIVE and link.task_id is None}
    active = {i: link for i, link in links.items() if link.state == LinkState.ACTIVE and link.task_id is not None}
    changed = {i for i, at in seen.seen_updated.items() if i in links and links[i].issue_updated_at != at}
    completing = {i for i, link in active.items() if _done(seen.target(link), flags)}
    # in another route's status: the handoff ends, and a task's time so far is reported
    completing |= {i for i, link in active.items() if i in new_ids and link.on_task}

    fresh = new_ids | completing
    for issue_id, link in active.items():
        if issue_id in seen.handoff:
            continue
        own = flags.status_of(link)
        if flags.full_listing:
            # absent from the routes' listing while last seen there: left the status, or deleted?
            if link.dirty or link.issue_status in (own, None):
                fresh.add(issue_id)
        elif link.dirty or link.issue_status is None or issue_id in seen.seen_status:
            fresh.add(issue_id)  # changed, and no longer in the route's status: read it directly
    comments = set(new_ids)
    scan_only: set[int] = set()
    for issue_id, link in active.items():
        if link.dirty or link.fail_count or issue_id in changed or issue_id in fresh:
            comments.add(issue_id)
        elif (flags.full_scan or flags.first_cycle) and issue_id > flags.scan_after:
            comments.add(issue_id)  # a scan cut short by the budget goes on after scan_after
            scan_only.add(issue_id)
    selection = Selection()
    if flags.scan_quota is not None and not flags.first_cycle:  # spread the scan over cycles
        later = sorted(scan_only)[flags.scan_quota :]
        selection.scan_deferred.update(later)
        scan_only.difference_update(later)
        comments.difference_update(later)

    # waiting for a retry, or parked: nothing is read until it is due (the planner says why)
    now = seen.now
    waiting = {i for i, link in links.items() if now and link.health is not None and link.health.waiting(now)}
    reading = (fresh | comments) - waiting
    for issue_id in sorted(reading, key=lambda i: (i not in completing, i in scan_only, i)):
        selection.work.append(
            Work(
                issue_id,
                read_issue=issue_id in fresh,
                read_comments=issue_id in comments,
                completing=issue_id in completing,
                scan_only=issue_id in scan_only,
            )
        )
    quiet = _planned_without_reads(links, seen, flags) - reading - selection.scan_deferred
    selection.work += [Work(i) for i in sorted(quiet)]
    return selection


def _done(target: Task | Deal | int | None, flags: Flags) -> bool:
    if isinstance(target, Deal):
        return target.semantics in ("S", "F") or target.closed
    return isinstance(target, Task) and target.status in flags.done_statuses


def _planned_without_reads(links: dict[int, Link], seen: Seen, flags: Flags) -> set[int]:
    """Links the planner looks at although nothing of them is read this cycle."""
    found = set(seen.unposted_late) & set(links)
    for issue_id, link in links.items():
        if link.state == LinkState.DONE and link.on_task and link.task_id in seen.late_tasks:
            found.add(issue_id)  # time logged after the completion
        elif link.health is not None and link.health.failing:
            found.add(issue_id)  # parked (its note may be due) or waiting: shown as skipped
        elif link.state == LinkState.ACTIVE and flags.route_status and link.route not in flags.route_status:
            found.add(issue_id)  # its route was taken out of the configuration: a person decides
        elif link.state == LinkState.ACTIVE and link.task_id is not None:
            if seen.target(link) is None or issue_id in seen.task_errors:
                found.add(issue_id)  # its target is gone, or could not be read
    return found


def in_pages(ids: Iterable[int], size: int) -> list[list[int]]:
    ordered = list(dict.fromkeys(ids))
    return [ordered[start : start + size] for start in range(0, len(ordered), size)]
