"""The planner: a pure function from snapshots of both systems plus our state to actions.

Level-based, not edge-based: every cycle derives all outstanding work from what is true now
(an issue in the handoff status without a link, a comment without a "done" op, a completed
task without a summary...), so a crash or a failed write is simply planned again next time.

Decision table, per issue:
  handoff, no link                       -> create task, link comment, forward comments
  handoff, link done                     -> renew task (new cycle), note, forward comments
  handoff, link done, task deleted       -> create a new task (new cycle)
  handoff, task deleted, re-entered      -> create a new task (new cycle)
  active, task not found (direct)        -> note in the issue, stop the link
  active, issue not found (direct)       -> note in the task, stop the link
  active                                 -> link comment if missing; forward new comments
  active, issue left handoff             -> one note in the task per cycle
  active, issue deadline moved           -> the task's deadline follows
  active, task done                      -> copy time, summary, return status (if still handoff), close
  done, time logged after completion     -> copy it, with a short note
  waiting for a retry, or parked         -> nothing (see `okbx status`, `okbx retry`)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ..config import Config
from ..model import ElapsedItem, Issue, Task
from ..state.store import Link, LinkState
from ..timeutil import human_duration
from . import keys, render
from .actions import (
    Action,
    CloseLink,
    CopyTimeEntry,
    CreateTask,
    ForwardComment,
    IssueNote,
    MarkGone,
    PostLinkComment,
    PostReport,
    RememberDeadline,
    RenewTask,
    ReturnIssue,
    TaskNote,
    UpdateDeadline,
    same_minute,
)
from .snapshot import Snapshot, StateView


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # issue id -> why nothing was planned

    def by_issue(self) -> dict[int, list[Action]]:
        grouped: dict[int, list[Action]] = {}
        for action in self.actions:
            grouped.setdefault(action.issue_id, []).append(action)
        return grouped

    def unusual(self, state: StateView, config: Config) -> str | None:
        """Why this plan looks like an outage rather than real change, or None.

        Stopping links is what an outage can fake (a webhook user who lost its rights sees every
        task as missing), so a mass of those is refused.  Completions are read from each task's
        own status, positive evidence, and a team closing many tasks at once is normal.
        """
        active = sum(1 for link in state.links.values() if link.state == "active")
        stopping = {a.issue_id for a in self.actions if isinstance(a, MarkGone)}
        if len(stopping) >= config.sync.unusual_min_links and len(stopping) > config.sync.unusual_share * max(
            active, 1
        ):
            return (
                f"{len(stopping)} of {active} active links would stop at once because their task or issue "
                f"looks deleted (more than {config.sync.unusual_share:.0%}); this looks like an outage or lost "
                "access rather than real deletions"
            )
        return None


def build_plan(snapshot: Snapshot, state: StateView, config: Config, now: datetime) -> Plan:
    plan = Plan()
    for issue_id in sorted(set(snapshot.handoff) | set(state.links)):
        link = state.links.get(issue_id)
        if link is not None and (link.parked or (link.next_retry_at and link.next_retry_at > now)):
            why = (
                "parked after repeated failures"
                if link.parked
                else f"waiting to retry at {link.next_retry_at:%H:%M} UTC"
            )
            plan.skipped[issue_id] = why
            if link.parked and not state.done((note := stuck_note(link, config)).key):
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


def stuck_note(link: Link, config: Config) -> IssueNote:
    """The one note a consultant finds in an issue whose link okbx parked (one per parking)."""
    stamp = int(link.next_retry_at.timestamp()) if link.next_retry_at else 0
    note = f"stuck:{link.issue_id}:{link.cycle}:{stamp}"
    text = (
        f"okbx could not sync this issue with the programmers' Bitrix24 task and stopped trying after "
        f"{link.fail_count} failures. The last one: {link.last_error}. Nothing is lost: an administrator "
        f"sees the cause with `okbx status` and resumes with `okbx retry {link.issue_id}` once it is fixed."
    )
    return IssueNote(link.issue_id, note=note, html=render.issue_note(text, keys.issue_note(note).marker))


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
            return [
                RenewTask(issue_id, task_id=link.task_id, cycle=cycle, closed_before=_closed_at(snap, link.task_id)),
                *_active(replace(link, state=LinkState.ACTIVE, cycle=cycle), snap, state, config, renewing=True),
            ]
        return _late_time(link, snap, state, config, now)
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
        "XML_ID": f"okdesk:{issue.id}",
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
    actions: list[Action] = []
    for comment in snap.comments.get(issue_id, []):
        if comment.author.kind == "employee" and comment.author.id == config.okdesk.bot_employee_id:
            continue  # our own comments (link notes, summaries) never go back
        if not (config.comments.forward_public if comment.public else config.comments.forward_internal):
            continue
        action = ForwardComment(issue_id, comment=comment, task_cycle=task_cycle, text="")
        if state.done(action.key):
            continue
        text = render.forwarded_comment(comment, company, action.marker)
        actions.append(replace(action, text=text))
    return actions


def _active(link: Link, snap: Snapshot, state: StateView, config: Config, renewing: bool = False) -> list[Action]:
    issue_id, task_id = link.issue_id, link.task_id
    assert task_id is not None
    task_cycle = state.task_cycle(link)
    task_gone = task_id in snap.tasks and snap.tasks[task_id] is None
    issue_gone = issue_id in snap.issues and snap.issues[issue_id] is None
    if task_gone and issue_gone:  # nobody left to tell
        return [MarkGone(issue_id, what="issue", cycle=link.cycle)]
    if task_gone:
        note = f"taskdeleted:{issue_id}:{task_cycle}"
        text = (
            f"Bitrix24 task #{task_id} was deleted, so okbx stopped syncing this issue. To hand it to the "
            f"programmers again, move the issue out of the status '{config.okdesk.handoff_status}', wait for "
            "the next sync (a few minutes), then move it back."
        )
        return [
            IssueNote(issue_id, note=note, html=render.issue_note(text, keys.issue_note(note).marker)),
            MarkGone(issue_id, what="task", cycle=link.cycle),
        ]
    if issue_gone:
        note = f"issuedeleted:{issue_id}:{link.cycle}"
        text = f"Okdesk issue #{issue_id} was deleted; okbx stopped syncing this task."
        return [
            TaskNote(issue_id, note=note, text=render.task_note(text, keys.task_note(note).marker)),
            MarkGone(issue_id, what="issue", cycle=link.cycle),
        ]

    actions: list[Action] = []
    if not state.done(keys.link_comment(issue_id, task_cycle).text):
        actions.append(PostLinkComment(issue_id, task_cycle=task_cycle))
    renewed = renewing or state.done(keys.renew(issue_id, link.cycle).text)  # not a task created anew
    if renewed and not state.done(keys.task_note(f"renew:{issue_id}:{link.cycle}").text):
        note = f"renew:{issue_id}:{link.cycle}"
        text = f"The Okdesk issue was handed to the programmers again (handoff #{link.cycle}); the task is reopened."
        actions.append(TaskNote(issue_id, note=note, text=render.task_note(text, keys.task_note(note).marker)))
    actions += _forward_comments(issue_id, task_cycle, snap, state, config)

    task = snap.tasks.get(task_id)
    issue = snap.issues.get(issue_id)
    task_done = task is not None and task.status in config.bitrix24.done_statuses
    if task is not None and not task_done and (move := _deadline_move(issue_id, task, snap, state)) is not None:
        actions.append(move)
    if task_done and issue is not None and task_id in snap.elapsed:
        actions += _completion(link, issue, snap.elapsed[task_id], snap, state, config)
    elif issue is not None and issue.status != config.okdesk.handoff_status and not task_done:
        note = f"left:{issue_id}:{link.cycle}"
        if not state.done(keys.task_note(note).text):
            name = snap.statuses.get(issue.status, issue.status)
            text = (
                f"In Okdesk the issue left the status '{config.okdesk.handoff_status}' and is now "
                f"'{name}' (for example, the consultant solved it). The task stays open; time logged "
                f"here is still copied to Okdesk when the task is completed."
            )
            actions.append(TaskNote(issue_id, note=note, text=render.task_note(text, keys.task_note(note).marker)))
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


def _item_row(item: ElapsedItem, snap: Snapshot) -> dict[str, object]:
    return {
        "id": item.id,
        "date": item.created_at.strftime("%d.%m.%Y") if item.created_at else "—",
        "user": snap.user_names.get(item.user_id, f"Bitrix24 user #{item.user_id}"),
        "seconds": item.seconds,
        "comment": item.comment,
    }


def _copy_actions(
    issue_id: int,
    cycle: int,
    items: list[ElapsedItem],
    report_key: str,
    snap: Snapshot,
    state: StateView,
    config: Config,
) -> tuple[list[Action], list[dict[str, object]]]:
    """Copy each item not copied yet; return the actions and all rows the report lists."""
    actions: list[Action] = []
    rows = [dict(op.detail) for op in state.reported_in(report_key) if op.state == "done" and op.detail]
    for item in sorted(items, key=lambda i: i.id):
        key = keys.time_entry(item.id)
        if state.done(key.text):
            continue
        employee = config.time.users.get(item.user_id, config.time.default_employee_id)
        actions.append(
            CopyTimeEntry(
                issue_id,
                item=item,
                employee_id=employee,
                comment=render.time_entry_comment(item.comment or "Bitrix24", key.marker),
                report_key=report_key,
                cycle=cycle,
                row=_item_row(item, snap),
            )
        )
        rows.append(_item_row(item, snap))
    rows.sort(key=lambda r: int(str(r["id"])))
    return actions, rows


def _completion(
    link: Link, issue: Issue, items: list[ElapsedItem], snap: Snapshot, state: StateView, config: Config
) -> list[Action]:
    issue_id, cycle, handoff = link.issue_id, link.cycle, config.okdesk.handoff_status
    report_key = keys.summary(issue_id, cycle).text
    return_key = keys.status_return(issue_id, cycle)
    actions, rows = _copy_actions(issue_id, cycle, items, report_key, snap, state, config)
    will_return = issue.status == handoff and not state.done(return_key.text)
    back = config.okdesk.return_status
    back_name = snap.statuses.get(back, back)
    heading = f"The programmers completed Bitrix24 task #{link.task_id}."
    return_op = state.ops.get(return_key.text)
    rejected = return_op is not None and return_op.state == "failed" and not return_op.ambiguous
    # A change whose answer was lost may have moved the issue AND posted the summary: plan it
    # again, so the applier looks for the summary's marker before anything is written twice.
    unsure = return_op is not None and (return_op.state == "intent" or return_op.ambiguous)
    if (will_return or unsure) and not state.done(report_key) and not rejected:
        # the usual case: one write moves the issue back and carries the summary as its comment
        summary = _report(issue_id, report_key, heading, rows, f"The issue returns to '{back_name}'.", config)
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
        if not state.done(report_key):
            if will_return:  # Okdesk refused the change carrying the summary: the summary goes alone
                error = (return_op.error or "") if return_op else ""
                footer = f"okbx could not move the issue back to '{back_name}' yet: {error[:200]}"
            else:
                footer = (
                    f"The status was left unchanged: someone moved the issue to "
                    f"'{snap.statuses.get(issue.status, issue.status)}' meanwhile."
                )
            actions.append(_report(issue_id, report_key, heading, rows, footer, config))
        if will_return:
            note = render.issue_note(
                f"Back from the programmers: Bitrix24 task #{link.task_id} is done.", return_key.marker
            )
            actions.append(ReturnIssue(issue_id, cycle=cycle, from_status=handoff, to_status=back, comment_html=note))
    actions.append(CloseLink(issue_id, cycle=cycle))
    return actions


def _report(
    issue_id: int, report_key: str, heading: str, rows: list[dict[str, object]], footer: str, config: Config
) -> PostReport:
    token = keys.Key.parse(report_key).marker
    total = sum(int(str(r["seconds"])) for r in rows)
    return PostReport(
        issue_id,
        report_key=report_key,
        html=render.report(heading, rows, footer, token),
        public=config.comments.summary_public,
        total_seconds=total,
        item_count=len(rows),
    )


def _late_time(link: Link, snap: Snapshot, state: StateView, config: Config, now: datetime) -> list[Action]:
    if link.task_id is None or (link.done_at and now - link.done_at > timedelta(days=config.time.late_window_days)):
        return []
    issue_id = link.issue_id
    prefix = f"late:{issue_id}:"
    # A note whose items were copied before a crash but that was not posted yet takes the new items too.
    orphan = sorted(
        {
            op.report_key
            for op in state.ops_of(issue_id)
            if op.report_key
            and op.report_key.startswith(prefix)
            and op.state == "done"
            and not state.done(op.report_key)
        }
    )
    new_items = [
        i for i in snap.late_elapsed if i.task_id == link.task_id and not state.done(keys.time_entry(i.id).text)
    ]
    if not new_items and not orphan:
        return []
    report_key = orphan[0] if orphan else keys.late_note(issue_id, min(i.id for i in new_items)).text
    actions, rows = _copy_actions(issue_id, link.cycle, new_items, report_key, snap, state, config)
    heading = f"More time was logged in Bitrix24 task #{link.task_id} after it was completed."
    total = human_duration(sum(int(str(r["seconds"])) for r in rows))
    actions.append(_report(issue_id, report_key, heading, rows, f"Copied as time entries ({total}).", config))
    return actions
