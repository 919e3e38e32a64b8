"""Planning a handoff onto a route: its target made (or taken up again), the link comment, the
conversation forwarded; and the end of a handoff when the issue moves to another route.  Pure.

  a new handoff                     -> the target kind's create, the link comment, every comment
  a deal's company cannot be matched -> the issue enters the route (so its link shows the
                                       failure), and Blocked: never a guess, tried again
  moved to another route's status   -> a note "moved to <route>" in the old target; a task's time
                                       so far copied with a report (the status left alone);
                                       the handoff closed; the new route's handoff at once
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import ClassVar

from .. import keys
from ..config import Config, RouteConfig
from ..core.action import Action, Context, Effect, LocalAction
from ..core.plan import Blocked
from ..model import Issue
from ..state import lifecycle
from ..state.lifecycle import Entry, Link, LinkState
from . import render, render_routes, routing
from .completion import copy_actions, time_report
from .files.plan import comment_files, issue_files
from .files.route import file_route
from .snapshot import Snapshot, StateView
from .targets import target_of
from .task_writes import ForwardComment

Planned = tuple[list[Action], Blocked | None]  # an issue's actions, and what blocks the rest of them


def new_handoff(
    issue_id: int,
    route: RouteConfig,
    cycle: int,
    link: Link | None,
    snap: Snapshot,
    state: StateView,
    config: Config,
    now: datetime,
) -> Planned:
    issue = snap.issues.get(issue_id)
    if issue is None:
        return [], None  # the full issue was not read (or vanished): nothing to create from
    entry = routing.entry_for(route, issue, link, config)
    target = target_of(route.kind)
    made = target.create(route, issue, cycle, entry, snap, config, now)
    if isinstance(made, Blocked):
        enters = link is None or link.state != LinkState.ACTIVE or link.cycle != cycle or link.route != route.name
        return ([EnterRoute(issue_id, cycle=cycle, issue=issue, entry=entry)] if enters else []), made
    actions = [made, target.link_comment(issue_id, cycle, route, entry)]
    return actions + forward_comments(issue_id, cycle, route, snap, state, config, kind=route.kind), None


def forward_comments(
    issue_id: int,
    target_cycle: int,
    route: RouteConfig,
    snap: Snapshot,
    state: StateView,
    config: Config,
    *,
    kind: str = "task",
) -> list[Action]:
    issue = snap.issues.get(issue_id) or snap.handoff.get(issue_id)
    company = issue.company if issue else None
    target = target_of(kind)
    files = file_route(config, route) if kind == "task" else None  # the issue's files, then each comment's
    comments = snap.comments.get(issue_id, [])
    actions = issue_files(files, snap.issues.get(issue_id), comments, target_cycle, state) if files else []
    for comment in comments:
        if comment.author.kind == "employee" and comment.author.id == config.okdesk.bot_employee_id:
            continue  # our own comments (link notes, summaries) never go back
        if not (route.flows.forward_public if comment.public else route.flows.forward_internal):
            continue
        action = target.forward(issue_id, target_cycle, comment, "")
        if state.done(action.key):
            continue
        forward = replace(action, text=render.forwarded_comment(comment, company, action.marker))  # type: ignore[call-arg]
        if files is not None and isinstance(forward, ForwardComment):
            actions += comment_files(files, forward, state)
        else:
            actions.append(forward)
    return actions


def moved(
    link: Link,
    route: RouteConfig,
    to: RouteConfig,
    issue: Issue,
    snap: Snapshot,
    state: StateView,
    config: Config,
    now: datetime,
) -> Planned:
    """The issue left `route` for `to`'s status before its target was finished."""
    done = replace(link, state=LinkState.DONE)
    following, blocked = new_handoff(link.issue_id, to, link.cycle + 1, done, snap, state, config, now)
    if blocked is not None:  # the new route cannot start yet: the old one goes on meanwhile
        return [], blocked
    issue_id, cycle = link.issue_id, link.cycle
    target = target_of(link.target)
    actions: list[Action] = []
    reported = False
    if link.on_task and route.flows.copy_time and link.task_id in snap.elapsed:
        report = keys.SummaryKey(issue_id, cycle)
        items = snap.elapsed[link.task_id or 0]
        copies, rows = copy_actions(issue_id, cycle, items, report, snap, state, config, route.name)
        if rows and not state.done(report):
            heading = f"The issue moved to route {to.name} before Bitrix24 task #{link.task_id} was completed."
            footer = "The time logged on the task until now is copied; the status is left as it is."
            actions += [*copies, time_report(report, heading, rows, footer, config, route=route, link=link)]
            reported = True
    note = keys.TaskNoteKey("moved", issue_id, cycle)
    if not state.done(note):
        status = snap.statuses.get(issue.status, issue.status)
        text = render_routes.moved_note(to.name, target.label, status, reported=reported)
        actions.insert(0, target.note(issue_id, note, text))
    actions.append(MoveOn(issue_id, cycle=cycle, to_route=to.name))
    return actions + following, None


@dataclass(frozen=True)
class MoveOn(LocalAction):
    """The handoff ends because the issue moved to another route (closed like a completion)."""

    cycle: int
    to_route: str = ""
    kind: ClassVar[str] = "close"

    @property
    def ref(self) -> keys.Key:
        return keys.CloseKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"moved to route {self.to_route}; this handoff is over"

    def apply_locally(self, ctx: Context) -> Effect:
        return None, lifecycle.moved(self.issue_id, self.to_route)


@dataclass(frozen=True)
class EnterRoute(LocalAction):
    """The issue is on the route although its target cannot be made yet (a deal's company is not
    matched): the link says so, and the failure is the link's, shown and retried like any."""

    cycle: int
    issue: Issue | None = None
    entry: Entry = lifecycle.DEFAULT_ENTRY
    kind: ClassVar[str] = "handoff"

    @property
    def ref(self) -> keys.Key:
        return keys.HandoffKey(self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return f"entered route {self.entry.route} (handoff #{self.cycle})"

    def apply_locally(self, ctx: Context) -> Effect:
        status = self.issue.status if self.issue else None
        return None, lifecycle.handed_off(
            self.issue_id, self.cycle, status, existing=ctx.store.link(self.issue_id), entry=self.entry
        )


@dataclass(frozen=True)
class Withdraw(LocalAction):
    """The issue left the route's status before its target could be made (a deal whose company is
    still not matched): nothing was made, so nothing is looked for; the link stops, as it does
    when a create is withdrawn, and a later return to the status is a new handoff."""

    cycle: int
    kind: ClassVar[str] = "gone"

    @property
    def ref(self) -> keys.Key:
        return keys.GoneKey("withdrawn", self.issue_id, self.cycle)

    @property
    def detail(self) -> str:
        return "left the route's status before its target could be made"

    def apply_locally(self, ctx: Context) -> Effect:
        return None, lifecycle.withdrawn(self.issue_id)
