"""A Bitrix24 task as a route's target: the programmers' route of every release, generalised.

The task is made in the route's workgroup for its responsible person, with its accomplices and
auditors, and found again by its XML_ID (`okdesk:<issue>` for the programmers' route, as ever;
`okdesk:<issue>:<route>` for any other); every later handoff on the route takes it up again.
Its description is the issue, or (`describe: equipment`) the issue with its equipment and the
company's equipment under the issue's service agreement.  Finished: a status among
`bitrix24.done_statuses`.  What it brings back: its time (when the route copies time), one
report, the return (completion.py).  The action kinds are `task_writes.py`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from ... import keys
from ...config import Config, RouteConfig
from ...core.action import Action
from ...core.plan import Blocked
from ...model import Comment, Issue, Task
from ...state.lifecycle import Entry, Link
from .. import render, render_routes
from ..completion import completion
from ..issue_writes import PostLinkComment
from ..snapshot import Snapshot, StateView
from ..task_writes import CreateTask, ForwardComment, TaskNote
from .base import MISSING


class TaskTarget:
    kind = "task"
    label = "task"

    def create(
        self, route: RouteConfig, issue: Issue, cycle: int, entry: Entry, snap: Snapshot, config: Config, now: datetime
    ) -> Action | Blocked:
        target = route.target
        if target.describe == "equipment":
            description = render_routes.equipment_description(issue, config.okdesk.url, snap.equipment.get(issue.id))
        else:
            description = render.task_description(issue, config.okdesk.url)
        fields: dict[str, Any] = {
            "TITLE": render.task_title(issue),
            "DESCRIPTION": description,
            "RESPONSIBLE_ID": target.responsible_id,
            "GROUP_ID": target.group_id,
            "XML_ID": keys.task_xml_id(issue.id, route.name),
            "TAGS": list(config.bitrix24.tags),
        }
        if config.bitrix24.created_by:
            fields["CREATED_BY"] = config.bitrix24.created_by
        if deadline := deadline_of(route, issue, now):
            fields["DEADLINE"] = deadline.isoformat()
        if target.accomplices:
            fields["ACCOMPLICES"] = list(target.accomplices)
        if target.auditors:
            fields["AUDITORS"] = list(target.auditors)
        return CreateTask(issue.id, issue=issue, cycle=cycle, fields=fields, entry=entry)

    def adopt_only(self, create: Action) -> Action:
        assert isinstance(create, CreateTask)
        return replace(create, adopt_only=True)

    def adopt_only_made(self, route: RouteConfig, issue: Issue, cycle: int, link: Link) -> Action:
        xml_id = keys.task_xml_id(issue.id, route.name)  # the look needs only its XML_ID and group
        fields: dict[str, Any] = {"XML_ID": xml_id, "GROUP_ID": route.target.group_id}
        entry = Entry(route.name, "task", link.previous_status)
        return CreateTask(issue.id, issue=issue, cycle=cycle, fields=fields, entry=entry, adopt_only=True)

    def link_comment(self, issue_id: int, cycle: int, route: RouteConfig, entry: Entry) -> Action:
        said = keys.LinkCommentKey.of(issue_id, cycle, route.name, entry.previous_status)
        return PostLinkComment(
            issue_id,
            task_cycle=cycle,
            said=said if said != keys.LinkCommentKey(issue_id, cycle) else None,
            responsible_id=route.target.responsible_id,
        )

    def forward(self, issue_id: int, cycle: int, comment: Comment, text: str) -> Action:
        return ForwardComment(issue_id, comment=comment, task_cycle=cycle, text=text)

    def note(self, issue_id: int, key: keys.TaskNoteKey, text: str) -> Action:
        return TaskNote(issue_id, note=key, text=render.task_note(text, key.marker))

    def current(self, link: Link, snap: Snapshot) -> object:
        return snap.tasks.get(link.task_id or 0, MISSING)

    def finished(self, current: object, config: Config) -> bool:
        return isinstance(current, Task) and current.status in config.bitrix24.done_statuses

    def completion(
        self, link: Link, route: RouteConfig, issue: Issue, snap: Snapshot, state: StateView, config: Config
    ) -> list[Action] | None:
        task_id = link.task_id or 0
        if route.flows.copy_time and task_id not in snap.elapsed:
            return None  # its time was not read this cycle
        return completion(link, issue, snap.elapsed.get(task_id, []), snap, state, config, route)


def deadline_of(route: RouteConfig, issue: Issue, now: datetime) -> datetime | None:
    """The Okdesk deadline (`deadline: issue`), else `deadline_days` after the handoff, else none."""
    if route.target.deadline == "issue" and issue.deadline_at is not None:
        return issue.deadline_at
    if route.target.deadline_days is not None:
        return (now + timedelta(days=route.target.deadline_days)).replace(microsecond=0)
    return None


TASK = TaskTarget()
