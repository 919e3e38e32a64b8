"""The life of a link and the health of an issue's work, as named transitions.

A link ties an Okdesk issue to the target okbx made for it (a Bitrix24 task or deal, `task_id`
holds its id) through handoffs 1, 2, ...: one link per issue, on one route at a time (`route`);
the handoff number counts across routes, so every marker of a handoff stays unique.  It changes
only through the transitions below; each returns a typed `LinkChange` that the store applies in
one transaction with a journal line.  Nothing else writes link rows.

Health is separate: per issue and per track (the route, billing, the debt hold) okbx counts
failures, waits before trying again (`retry_at`, a pure function of the configuration) and
parks the work after `sync.max_retries` failures, so that one failing invoice never blocks the
programmers' route of the same issue, and nothing is retried for ever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from ..keys import DEFAULT_ROUTE

MAX_WAIT = timedelta(days=7)  # the longest backoff, whatever retry_base_seconds and the count say


class LinkState(StrEnum):
    """Where a link stands.  A StrEnum: equal to its text, so code comparing strings still works."""

    ACTIVE = "active"  # handed off: the target is being worked on
    DONE = "done"  # completed and returned; late time is still copied within the window
    GONE_TASK = "gone_task"  # the target was deleted (or withdrawn before it existed)
    GONE_ISSUE = "gone_issue"  # the Okdesk issue was deleted


class Track(StrEnum):
    """A line of work okbx does for an issue; each fails, waits and is parked on its own."""

    ROUTE = "route"
    BILLING = "billing"
    DEBT = "debt"


@dataclass(frozen=True)
class Health:
    issue_id: int
    track: Track
    fail_count: int = 0
    last_error: str | None = None
    next_retry_at: datetime | None = None
    parked: bool = False

    def waiting(self, now: datetime) -> bool:
        """Parked, or not due yet: the planner leaves this work alone for now."""
        return self.parked or (self.next_retry_at is not None and self.next_retry_at > now)

    @property
    def failing(self) -> bool:
        return self.parked or self.fail_count > 0


@dataclass(frozen=True)
class Link:
    issue_id: int
    task_id: int | None
    state: LinkState
    cycle: int
    issue_status: str | None
    dirty: bool
    created_at: datetime
    updated_at: datetime
    done_at: datetime | None
    issue_updated_at: datetime | None = None
    route: str = DEFAULT_ROUTE
    health: Health | None = None  # of the route track
    target: str = "task"  # what task_id names: a Bitrix24 "task" or "deal"
    previous_status: str | None = None  # where the issue returns when its route says `previous`

    @property
    def target_id(self) -> int | None:
        return self.task_id

    @property
    def on_task(self) -> bool:
        return self.target == "task"

    # the route track's health, read as the link's own (what status, planner and reads ask)
    @property
    def fail_count(self) -> int:
        return self.health.fail_count if self.health else 0

    @property
    def last_error(self) -> str | None:
        return self.health.last_error if self.health else None

    @property
    def next_retry_at(self) -> datetime | None:
        return self.health.next_retry_at if self.health else None

    @property
    def parked(self) -> bool:
        return self.health.parked if self.health else False


LINK_FIELDS = frozenset(
    {"task_id", "state", "cycle", "issue_status", "dirty", "done_at", "issue_updated_at", "route", "target"}
    | {"previous_status"}
)


@dataclass(frozen=True)
class LinkChange:
    """One named step of a link's life: the columns it sets, and its journal line."""

    issue_id: int
    event: str
    summary: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    create: bool = False  # a new link (handoff, adoption, link by hand)

    def __post_init__(self) -> None:
        unknown = set(self.fields) - LINK_FIELDS
        if unknown:
            raise ValueError(f"not a link field: {', '.join(sorted(unknown))}")


# -- link transitions -------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """Which route a handoff is on, what it makes, and where the issue goes back after it."""

    route: str = DEFAULT_ROUTE
    target: str = "task"
    previous_status: str | None = None

    def fields(self) -> dict[str, Any]:
        return {"route": self.route, "target": self.target, "previous_status": self.previous_status}

    def said(self, cycle: int) -> str:
        return f"handoff #{cycle}" if self.route == DEFAULT_ROUTE else f"handoff #{cycle} to route {self.route}"


DEFAULT_ENTRY = Entry()  # the programmers' route, its task, a fixed return


def handed_off(
    issue_id: int, cycle: int, status: str | None, *, existing: Link | None, entry: Entry = DEFAULT_ENTRY
) -> LinkChange:
    """The issue entered a route's status: a new link, or the next handoff of a known one (on the
    same route or another: the link follows the issue)."""
    if existing is None:
        fields = {"state": LinkState.ACTIVE, "cycle": cycle, "issue_status": status, "task_id": None}
        return LinkChange(
            issue_id, "link", entry.said(cycle).replace("handoff #1", "handoff"), fields | entry.fields(), create=True
        )
    fields = {"state": LinkState.ACTIVE, "cycle": cycle, "task_id": None, "done_at": None, **entry.fields()}
    return LinkChange(issue_id, "handoff", f"handed off again ({entry.said(cycle)})", fields)


def resumed(issue_id: int, cycle: int, target_id: int, entry: Entry) -> LinkChange:
    """Back on a route whose target exists from an earlier handoff: the link takes it up again."""
    fields = {"state": LinkState.ACTIVE, "cycle": cycle, "task_id": target_id, "done_at": None, **entry.fields()}
    return LinkChange(issue_id, "renew", f"{entry.said(cycle)}: {entry.target} {target_id} again", fields)


def moved(issue_id: int, to_route: str) -> LinkChange:
    """The issue left its route for another: this handoff is over (the next one follows at once)."""
    fields = {"state": LinkState.DONE, "dirty": False}
    return LinkChange(issue_id, "close", f"moved to route {to_route}; this handoff is over", fields)


def target_made(issue_id: int, task_id: int, what: str = "task") -> LinkChange:
    return LinkChange(issue_id, "task", f"{what} {task_id}", {"task_id": task_id})


def renewed(issue_id: int, cycle: int) -> LinkChange:
    fields = {"state": LinkState.ACTIVE, "cycle": cycle, "done_at": None}
    return LinkChange(issue_id, "renew", f"task reopened (handoff #{cycle})", fields)


def completed(issue_id: int, at: datetime) -> LinkChange:
    fields = {"state": LinkState.DONE, "done_at": at, "dirty": False}
    return LinkChange(issue_id, "close", "link done; comments no longer forwarded", fields)


def gone(issue_id: int, what: str, why: str) -> LinkChange:
    state = LinkState.GONE_TASK if what == "task" else LinkState.GONE_ISSUE
    return LinkChange(issue_id, "gone", why, {"state": state, "dirty": False})


def withdrawn(issue_id: int) -> LinkChange:
    return LinkChange(issue_id, "handoff", "withdrawn before a task existed", {"state": LinkState.GONE_TASK})


def rebuilt(
    issue_id: int,
    task_id: int,
    state: str,
    cycle: int,
    done_at: datetime | None,
    *,
    why: str,
    new: bool = False,
    entry: Entry | None = None,
) -> LinkChange:
    """Where the link really stands, read from the markers on both sides (a lost or behind store)."""
    fields = {"task_id": task_id, "state": LinkState(state), "cycle": cycle, "done_at": done_at}
    if entry is not None:
        fields |= entry.fields()
    if new:
        fields["dirty"] = True  # read fully next cycle: nothing is known of it yet
    return LinkChange(issue_id, "rebuild" if not new else "link", why, fields, create=new)


def linked_by_hand(issue_id: int, task_id: int, status: str | None, *, route: str = DEFAULT_ROUTE) -> LinkChange:
    fields = {"state": LinkState.ACTIVE, "cycle": 1, "task_id": task_id, "issue_status": status, "route": route}
    return LinkChange(issue_id, "link", f"linked by hand to task {task_id}", fields, create=True)


def marked_dirty(issue_id: int) -> LinkChange:
    """Read fully next cycle: something was deferred, cut short or failed."""
    return LinkChange(issue_id, "dirty", "", {"dirty": True})


def marked_clean(issue_id: int) -> LinkChange:
    return LinkChange(issue_id, "clean", "", {"dirty": False})


# -- health transitions -----------------------------------------------------------------------
@dataclass(frozen=True)
class HealthChange:
    """The new health of one track of one issue; `healthy` removes the record."""

    health: Health
    event: str  # "fail" | "park" | "heal" | "retry"

    @property
    def healthy(self) -> bool:
        return not self.health.failing


def retry_at(count: int, *, transient: bool, base_seconds: float, now: datetime) -> datetime | None:
    """When work that failed `count` times is tried again.  A first transient failure (a lost
    answer, a 5xx, a failed read) at the very next run; then base x 2^n, at most MAX_WAIT."""
    if transient and count == 1:
        return None
    exponent = min(count - (2 if transient else 1), 40)
    seconds = min(base_seconds * 2**exponent, MAX_WAIT.total_seconds())
    return now + timedelta(seconds=seconds)


def failed(
    before: Health | None,
    issue_id: int,
    track: Track,
    error: str,
    *,
    transient: bool,
    max_retries: int,
    base_seconds: float,
    now: datetime,
) -> HealthChange:
    count = (before.fail_count if before else 0) + 1
    parked = count >= max_retries
    health = Health(
        issue_id,
        track,
        fail_count=count,
        last_error=error[:500],
        next_retry_at=retry_at(count, transient=transient, base_seconds=base_seconds, now=now),
        parked=parked,
    )
    return HealthChange(health, "park" if parked and not (before and before.parked) else "fail")


def healed(issue_id: int, track: Track) -> HealthChange:
    """Everything of this track went through: failures are forgotten."""
    return HealthChange(Health(issue_id, track), "heal")


def retried(issue_id: int, track: Track) -> HealthChange:
    """A person asked to try again now (`okbx retry`)."""
    return HealthChange(Health(issue_id, track), "retry")
