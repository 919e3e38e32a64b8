"""The planner: a pure function from snapshots of both systems plus our state to actions.

Level-based, not edge-based: every cycle derives all outstanding work from what is true now
(an issue in a route's status without a link, a comment without a "done" op, a finished target
without a summary...), so a crash or a failed write is simply planned again next time.  Every
route is planned here; what differs with its target (a task, a deal) is asked of the target's
kind (targets/), and which route an issue is on of routing.py.

Decision table, per issue ("its route": the one whose trigger status the issue is in):
  on a route, no link                    -> make the target, link comment, forward comments
  on the link's route again, link done   -> note (first: the renewal carries no marker), renew its
                                            task (new handoff), forward comments
  on another route, link done            -> that route's task taken up again, or a new target
  link done, target deleted; gone, re-entered -> a new target (new handoff)
  active, target not found (direct)      -> note in the issue, stop the link
  active, issue not found (direct)       -> note in the target, stop the link
  active                                 -> link comment if missing; forward new comments
  active, issue left the route's status  -> one note in the target per handoff
  active, issue in another route's status -> "moved" note, a task's time so far reported, the
                                            handoff closed, the new route's handoff (handoff.py)
  active, issue deadline moved           -> the task's deadline follows
  active, target finished                -> time (a task), report, return (to the route's status
                                            or `previous`, if still in the route's), close
  done, time logged after completion     -> copy it, with a short note
  waiting for a retry, or parked         -> nothing (see `okbx status`, `okbx retry`); a parked
                                            link whose note is not written yet -> that note
  the link's route no longer configured  -> Blocked: a person decides (add it back, or finish by hand)
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from .. import keys
from ..config import Config, RouteConfig
from ..core.action import Action
from ..core.notes import IssueNote, note_html, stuck_note
from ..core.plan import Blocked, Plan
from ..keys import DEFAULT_ROUTE
from ..model import Task
from ..state.lifecycle import Entry
from ..state.store import Link, LinkState, Track
from . import routing
from .completion import late_time
from .files.plan import task_files_back
from .files.route import file_route
from .handoff import Planned, Withdraw, forward_comments, moved, new_handoff
from .issue_writes import MarkGone, RememberDeadline
from .snapshot import Snapshot, StateView
from .targets import MISSING, target_of
from .task_writes import RenewTask, UpdateDeadline, same_minute


def build_plan(snapshot: Snapshot, state: StateView, config: Config, now: datetime) -> Plan:
    plan = Plan()
    for issue_id in sorted(set(snapshot.handoff) | set(state.links)):
        link = state.links.get(issue_id)
        if link is not None and link.health is not None and link.health.waiting(now):
            health = link.health
            plan.skipped[issue_id] = (
                "parked after repeated failures"
                if health.parked
                else f"waiting to retry at {health.next_retry_at:%H:%M} UTC"
            )
            if health.parked and not state.done((note := stuck_note(health, link.cycle)).key):
                plan.actions.append(note)  # parked, and the consultant was not told yet (a crash, a failed note)
            continue
        if issue_id in snapshot.errors:
            plan.skipped[issue_id] = snapshot.errors[issue_id]
            continue
        if issue_id in snapshot.deferred:
            plan.skipped[issue_id] = "deferred to the next cycle: the request budget is spent"
            continue
        actions, blocked = _plan_issue(issue_id, link, snapshot, state, config, now)
        plan.actions.extend(actions)
        if blocked is not None:
            plan.blocked.append(blocked)
    return plan


def _plan_issue(
    issue_id: int, link: Link | None, snap: Snapshot, state: StateView, config: Config, now: datetime
) -> Planned:
    listed = snap.handoff.get(issue_id)
    now_on = routing.route_of(snap.issues.get(issue_id) or listed, config, listed.status if listed else None)
    if link is None:
        return new_handoff(issue_id, now_on, 1, None, snap, state, config, now) if now_on else ([], None)
    route = config.route(link.route)
    if link.state == LinkState.DONE:
        if now_on is not None and link.task_id is not None:
            return _again(link, now_on, snap, state, config, now)
        copies = route is None or route.flows.copy_time
        late = late_time(link, snap, state, config, now) if link.on_task and copies else []
        files_back = task_files_back(file_route(config, route), link, snap, state, late=True) if link.on_task else []
        return late + files_back, None
    if link.state == LinkState.GONE_TASK:
        own = route.status if route else None
        if now_on is not None and (now_on.name != link.route or link.issue_status not in (None, own)):
            return new_handoff(issue_id, now_on, link.cycle + 1, link, snap, state, config, now)
        return [], None
    if link.state != LinkState.ACTIVE:
        return [], None
    if route is None:
        why = f"route {link.route} is no longer in the configuration: add it back, or finish its work by hand"
        return [], Blocked(issue_id, Track.ROUTE, "route", why)
    if link.task_id is None:  # the create failed, its answer was lost, or it waits for a match
        on = now_on if now_on is not None and now_on.name == route.name else route
        actions, blocked = new_handoff(issue_id, on, link.cycle, link, snap, state, config, now)
        if now_on is None or now_on.name != route.name:  # withdrawn: only adopt what was made
            creates = [a for a in actions if a.kind in ("task", "deal")]
            if creates:
                return [target_of(route.kind).adopt_only(creates[0])], None
            if blocked is None or (seen := snap.issues.get(issue_id)) is None:
                return [], None
            if state.ops.get(keys.TaskKey(issue_id, link.cycle).text) is not None:  # a create was sent: look for it
                return [target_of(route.kind).adopt_only_made(route, seen, link.cycle, link)], None
            return [Withdraw(issue_id, cycle=link.cycle)], None
        return actions, blocked
    target = target_of(link.target)
    issue = snap.issues.get(issue_id)
    current = target.current(link, snap)
    if now_on is not None and now_on.name != route.name and issue is not None and current is not None:
        if current is MISSING or not target.finished(current, config):
            return moved(link, route, now_on, issue, snap, state, config, now)
    return _active(link, route, snap, state, config), None


def _again(link: Link, route: RouteConfig, snap: Snapshot, state: StateView, config: Config, now: datetime) -> Planned:
    """A new handoff of an issue whose link is done: the route's task is taken up again (renewed
    when it was completed), or a new target is made."""
    issue_id, cycle = link.issue_id, link.cycle + 1
    issue = snap.issues.get(issue_id)
    if route.kind == "task" and issue is not None:
        same = link.route == route.name and link.on_task
        task_id = link.task_id if same else state.route_task(issue_id, route.name)
        if task_id is not None and not (task_id in snap.tasks and snap.tasks[task_id] is None):
            entry = routing.entry_for(route, issue, link, config)
            closed = snap.tasks.get(task_id)
            renew = RenewTask(
                issue_id,
                task_id=task_id,
                cycle=cycle,
                closed_before=closed.closed_at if closed else None,
                entry=entry if (not same or route.returns_previous) else None,
                resume=not same,
            )
            active = replace(
                link, state=LinkState.ACTIVE, cycle=cycle, route=route.name, target="task", task_id=task_id
            )
            active = replace(active, previous_status=entry.previous_status)
            # the note first: the task shows the handoff before it is reopened (rebuild.py)
            note = _renew_note(active, route, state, renew.closed_before)
            return [*note, renew, *_active(active, route, snap, state, config, renewing=True)], None
    return new_handoff(issue_id, route, cycle, link, snap, state, config, now)


def _renew_note(link: Link, route: RouteConfig, state: StateView, closed_before: datetime | None) -> list[Action]:
    """The note announcing a handoff in the task, unless one (with any stamp) was written."""
    for op in state.ops_of(link.issue_id):
        written = keys.parse_as(keys.TaskNoteKey, op.key)
        if written is not None and written.why == "renew" and written.cycle == link.cycle and op.done:
            return []
    note = keys.TaskNoteKey.renew(link.issue_id, link.cycle, closed_before)
    text = f"The Okdesk issue was handed to {_whom(route)} again (handoff #{link.cycle}); the task is reopened."
    return [target_of("task").note(link.issue_id, note, text)]


def _active(
    link: Link, route: RouteConfig, snap: Snapshot, state: StateView, config: Config, *, renewing: bool = False
) -> list[Action]:
    """`renewing`: the task is reopened in this plan; the snapshot still shows it completed (the
    last handoff's completion), which is no completion of this handoff."""
    issue_id, target_id = link.issue_id, link.task_id
    assert target_id is not None
    target = target_of(link.target)
    target_cycle = state.task_cycle(link)
    current = target.current(link, snap)
    issue_gone = issue_id in snap.issues and snap.issues[issue_id] is None
    if current is None and issue_gone:  # nobody left to tell
        return [MarkGone(issue_id, what="issue", cycle=link.cycle)]
    if current is None:
        inote = keys.IssueNoteKey("taskdeleted", issue_id, target_cycle)
        text = (
            f"Bitrix24 {target.label} #{target_id} was deleted, so okbx stopped syncing this issue. To hand it to "
            f"{_whom(route)} again, move the issue out of the status '{route.status}', wait for "
            "the next sync (a few minutes), then move it back."
        )
        return [
            IssueNote(issue_id, note=inote, html=note_html(text, inote.marker)),
            MarkGone(issue_id, what="task", cycle=link.cycle),
        ]
    if issue_gone:
        note = keys.TaskNoteKey("issuedeleted", issue_id, link.cycle)
        text = f"Okdesk issue #{issue_id} was deleted; okbx stopped syncing this {target.label}."
        return [target.note(issue_id, note, text), MarkGone(issue_id, what="issue", cycle=link.cycle)]

    actions: list[Action] = []
    # the link comment names the target; on a route other than the programmers' (or one that
    # returns to `previous`) every handoff has its own, whose marker says the route and `previous`
    per_handoff = route.name != DEFAULT_ROUTE or route.returns_previous
    comment_cycle = link.cycle if per_handoff else target_cycle
    if not state.done(keys.LinkCommentKey(issue_id, comment_cycle)):
        entry = Entry(route.name, link.target, link.previous_status)
        actions.append(target.link_comment(issue_id, comment_cycle, route, entry))
    if state.done(keys.RenewKey(issue_id, link.cycle)):  # renewed by an older okbx, which noted it afterwards
        actions += _renew_note(link, route, state, None)
    actions += forward_comments(issue_id, target_cycle, route, snap, state, config, kind=link.target)

    issue = snap.issues.get(issue_id)
    finished = not renewing and target.finished(current, config)
    if isinstance(current, Task) and not finished and route.target.deadline == "issue":
        if (move := _deadline_move(issue_id, current, snap, state)) is not None:
            actions.append(move)
    if finished and issue is not None:
        actions += target.completion(link, route, issue, snap, state, config) or []
    elif issue is not None and issue.status != route.status and not finished:
        note = keys.TaskNoteKey("left", issue_id, link.cycle)
        if not state.done(note):
            name = snap.statuses.get(issue.status, issue.status)
            text = (
                f"In Okdesk the issue left the status '{route.status}' and is now "
                f"'{name}' (for example, the consultant solved it). The {target.label} stays open"
                + ("; time logged here is still copied to Okdesk when the task is completed." if link.on_task else ".")
            )
            actions.append(target.note(issue_id, note, text))
    return actions


def _whom(route: RouteConfig) -> str:
    return "the programmers" if route.name == DEFAULT_ROUTE else f"route {route.name}"


def _deadline_move(issue_id: int, task: Task, snap: Snapshot, state: StateView) -> Action | None:
    """The task's deadline follows the issue's when that moved since okbx last gave it to the task.
    A deadline a programmer changed in Bitrix24 stays until the consultant moves the Okdesk one."""
    seen = snap.issues.get(issue_id) or snap.handoff.get(issue_id)  # the listing carries it too
    if seen is None or seen.deadline_at is None:
        return None
    known, synced = state.synced_deadline(issue_id)
    if not known:  # a link older than deadline sync: who set the task's date is unknown
        return RememberDeadline(issue_id, deadline=seen.deadline_at)
    given = datetime.fromisoformat(synced) if synced else None
    # the key names the deadline it replaces, as okbx knows it: stable until the write is done
    move = UpdateDeadline(issue_id, task_id=task.id, deadline=seen.deadline_at, previous=given)
    unfinished = (op := state.ops.get(move.key)) is not None and op.state != "done"  # look for it again
    return move if unfinished or not same_minute(seen.deadline_at, given) else None
