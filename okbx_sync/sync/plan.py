"""The planner: a pure function from snapshots of both systems plus our state to actions.

Level-based, not edge-based: every cycle derives all outstanding work from what is true now
(an issue in the handoff status without a link, a comment without a "done" op, a completed
task without a summary...), so a crash or a failed write is simply planned again next time.

Decision table, per issue:
  handoff, no link                       -> create task, link comment, forward comments
  handoff, link done                     -> note (first: the renewal carries no marker), renew task
                                            (new cycle), forward comments
  handoff, link done, task deleted       -> create a new task (new cycle)
  handoff, task deleted, re-entered      -> create a new task (new cycle)
  active, task not found (direct)        -> note in the issue, stop the link
  active, issue not found (direct)       -> note in the task, stop the link
  active                                 -> link comment if missing; forward new comments
  active, issue left handoff             -> one note in the task per cycle
  active, issue deadline moved           -> the task's deadline follows
  active, task done                      -> copy time, summary, return status (if still handoff), close
  done, time logged after completion     -> copy it, with a short note
  waiting for a retry, or parked         -> nothing (see `okbx status`, `okbx retry`); a parked
                                            link whose note is not written yet -> that note
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from .. import keys
from ..config import Config
from ..core.action import Action
from ..core.notes import IssueNote, note_html, stuck_note
from ..core.plan import Plan
from ..model import Task
from ..state.store import Link, LinkState
from . import render
from .completion import completion, late_time
from .files.plan import comment_files, issue_files, task_files_back
from .files.route import file_route
from .issue_writes import MarkGone, PostLinkComment, RememberDeadline
from .snapshot import Snapshot, StateView
from .task_writes import CreateTask, ForwardComment, RenewTask, TaskNote, UpdateDeadline, same_minute


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
        plan.actions.extend(_plan_issue(issue_id, link, snapshot, state, config, now))
    return plan


def _plan_issue(
    issue_id: int, link: Link | None, snap: Snapshot, state: StateView, config: Config, now: datetime
) -> list[Action]:
    handoff = config.okdesk.handoff_status
    in_handoff = issue_id in snap.handoff
    if link is None:
        return _new_task(issue_id, 1, snap, state, config) if in_handoff else []
    if link.state == "done":
        if in_handoff and link.task_id is not None:
            cycle = link.cycle + 1
            if link.task_id in snap.tasks and snap.tasks[link.task_id] is None:
                return _new_task(issue_id, cycle, snap, state, config)  # the old task was deleted meanwhile
            renewed, closed = replace(link, state=LinkState.ACTIVE, cycle=cycle), _closed_at(snap, link.task_id)
            return [  # the note first: the task shows the handoff before it is reopened (rebuild.py)
                *_renew_note(renewed, state, closed),
                RenewTask(issue_id, task_id=link.task_id, cycle=cycle, closed_before=closed),
                *_active(renewed, snap, state, config),
            ]
        files_back = task_files_back(file_route(config), link, snap, state, late=True)
        return late_time(link, snap, state, config, now) + files_back
    if link.state == "gone_task":
        if in_handoff and link.issue_status not in (None, handoff):
            return _new_task(issue_id, link.cycle + 1, snap, state, config)
        return []
    if link.state == "active":
        if link.task_id is None:  # the create failed or its answer was lost: plan it again
            actions = _new_task(issue_id, link.cycle, snap, state, config)
            if not in_handoff and actions and isinstance(actions[0], CreateTask):
                return [replace(actions[0], adopt_only=True)]  # withdrawn: only adopt what was made
            return actions
        return _active(link, snap, state, config)
    return []


def _closed_at(snap: Snapshot, task_id: int) -> datetime | None:
    task = snap.tasks.get(task_id)
    return task.closed_at if task else None


def _new_task(issue_id: int, cycle: int, snap: Snapshot, state: StateView, config: Config) -> list[Action]:
    issue = snap.issues.get(issue_id)
    if issue is None:
        return []  # the full issue was not read (or vanished): nothing to create from
    fields: dict[str, Any] = {
        "TITLE": render.task_title(issue),
        "DESCRIPTION": render.task_description(issue, config.okdesk.url),
        "RESPONSIBLE_ID": config.bitrix24.responsible_id,
        "GROUP_ID": config.bitrix24.group_id,
        "XML_ID": keys.task_xml_id(issue.id),
        "TAGS": list(config.bitrix24.tags),
    }
    if config.bitrix24.created_by:
        fields["CREATED_BY"] = config.bitrix24.created_by
    if issue.deadline_at:
        fields["DEADLINE"] = issue.deadline_at.isoformat()
    actions: list[Action] = [
        CreateTask(issue_id, issue=issue, cycle=cycle, fields=fields),
        PostLinkComment(issue_id, task_cycle=cycle),
    ]
    actions += _forward_comments(issue_id, cycle, snap, state, config)
    return actions


def _forward_comments(issue_id: int, task_cycle: int, snap: Snapshot, state: StateView, config: Config) -> list[Action]:
    issue = snap.issues.get(issue_id) or snap.handoff.get(issue_id)
    company = issue.company if issue else None
    files = file_route(config)  # the issue's own files, then each comment with its files
    comments = snap.comments.get(issue_id, [])
    actions = issue_files(files, snap.issues.get(issue_id), comments, task_cycle, state) if files else []
    for comment in comments:
        if comment.author.kind == "employee" and comment.author.id == config.okdesk.bot_employee_id:
            continue  # our own comments (link notes, summaries) never go back
        if not (config.comments.forward_public if comment.public else config.comments.forward_internal):
            continue
        action = ForwardComment(issue_id, comment=comment, task_cycle=task_cycle, text="")
        if state.done(action.key):
            continue
        forward = replace(action, text=render.forwarded_comment(comment, company, action.marker))
        actions += comment_files(files, forward, state) if files else [forward]
    return actions


def _renew_note(link: Link, state: StateView, closed_before: datetime | None) -> list[Action]:
    """The note announcing a handoff in the task, unless one (with any stamp) was written."""
    for op in state.ops_of(link.issue_id):
        written = keys.parse_as(keys.TaskNoteKey, op.key)
        if written is not None and written.why == "renew" and written.cycle == link.cycle and op.done:
            return []
    note = keys.TaskNoteKey.renew(link.issue_id, link.cycle, closed_before)
    text = f"The Okdesk issue was handed to the programmers again (handoff #{link.cycle}); the task is reopened."
    return [TaskNote(link.issue_id, note=note, text=render.task_note(text, note.marker))]


def _active(link: Link, snap: Snapshot, state: StateView, config: Config) -> list[Action]:
    issue_id, task_id = link.issue_id, link.task_id
    assert task_id is not None
    task_cycle = state.task_cycle(link)
    task_gone = task_id in snap.tasks and snap.tasks[task_id] is None
    issue_gone = issue_id in snap.issues and snap.issues[issue_id] is None
    if task_gone and issue_gone:  # nobody left to tell
        return [MarkGone(issue_id, what="issue", cycle=link.cycle)]
    if task_gone:
        inote = keys.IssueNoteKey("taskdeleted", issue_id, task_cycle)
        text = (
            f"Bitrix24 task #{task_id} was deleted, so okbx stopped syncing this issue. To hand it to the "
            f"programmers again, move the issue out of the status '{config.okdesk.handoff_status}', wait for "
            "the next sync (a few minutes), then move it back."
        )
        return [
            IssueNote(issue_id, note=inote, html=note_html(text, inote.marker)),
            MarkGone(issue_id, what="task", cycle=link.cycle),
        ]
    if issue_gone:
        note = keys.TaskNoteKey("issuedeleted", issue_id, link.cycle)
        text = f"Okdesk issue #{issue_id} was deleted; okbx stopped syncing this task."
        return [
            TaskNote(issue_id, note=note, text=render.task_note(text, note.marker)),
            MarkGone(issue_id, what="issue", cycle=link.cycle),
        ]

    actions: list[Action] = []
    if not state.done(keys.LinkCommentKey(issue_id, task_cycle)):
        actions.append(PostLinkComment(issue_id, task_cycle=task_cycle))
    if state.done(keys.RenewKey(issue_id, link.cycle)):  # renewed by an older okbx, which noted it afterwards
        actions += _renew_note(link, state, None)
    actions += _forward_comments(issue_id, task_cycle, snap, state, config)

    task = snap.tasks.get(task_id)
    issue = snap.issues.get(issue_id)
    task_done = task is not None and task.status in config.bitrix24.done_statuses
    if task is not None and not task_done and (move := _deadline_move(issue_id, task, snap, state)) is not None:
        actions.append(move)
    if task_done and issue is not None and task_id in snap.elapsed:
        actions += completion(link, issue, snap.elapsed[task_id], snap, state, config)
    elif issue is not None and issue.status != config.okdesk.handoff_status and not task_done:
        note = keys.TaskNoteKey("left", issue_id, link.cycle)
        if not state.done(note):
            name = snap.statuses.get(issue.status, issue.status)
            text = (
                f"In Okdesk the issue left the status '{config.okdesk.handoff_status}' and is now "
                f"'{name}' (for example, the consultant solved it). The task stays open; time logged "
                f"here is still copied to Okdesk when the task is completed."
            )
            actions.append(TaskNote(issue_id, note=note, text=render.task_note(text, note.marker)))
    return actions


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
