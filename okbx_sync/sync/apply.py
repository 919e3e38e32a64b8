"""The applier: executes a plan one action at a time, recording each in the state store.

For every remote write: intent first (begin_op), then the request, then the result with its
effect on the link (finish_op), or the failure (fail_op).  An op left in "intent" by a crash,
or failed without a clear answer, is first looked for by its marker and adopted if found;
only then is it sent again.  Creating and renewing a task always look first, so even a lost
state store cannot produce a second task.  A failure stops the remaining actions of that
issue for this run (they depend on each other); other issues go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..clients.bitrix24 import Bitrix24Client
from ..clients.http import BudgetExhausted, RateLimited
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..errors import ApiError, NotFound
from ..markup import has_bb_marker, has_html_marker, has_text_marker
from ..state.store import Store
from . import render
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
    RenewTask,
    ReturnIssue,
    TaskNote,
)

log = logging.getLogger(__name__)
Effect = tuple[str | None, dict[str, Any]]  # (remote id, changes to the link)


@dataclass
class ApplyReport:
    done: list[Action] = field(default_factory=list)
    adopted: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    not_reached: list[Action] = field(default_factory=list)
    stopped_because: str | None = None


class Applier:
    def __init__(
        self,
        okdesk: OkdeskClient,
        bitrix: Bitrix24Client,
        store: Store,
        config: Config,
        should_stop: Callable[[], bool] = lambda: False,
        on_action: Callable[[Action, str], None] = lambda a, outcome: None,
    ) -> None:
        self.okdesk = okdesk
        self.bitrix = bitrix
        self.store = store
        self.config = config
        self.should_stop = should_stop
        self.on_action = on_action

    def apply(self, by_issue: dict[int, list[Action]]) -> ApplyReport:
        report = ApplyReport()
        for issue_id, actions in by_issue.items():
            if report.stopped_because:
                report.not_reached.extend(actions)
                self._mark_dirty(issue_id)  # read fully next time: its comments were not all forwarded
                continue
            for index, action in enumerate(actions):
                if self.should_stop():
                    report.stopped_because = "asked to stop"
                try:
                    if report.stopped_because:
                        raise _Stop
                    outcome = self._apply_one(action)
                except (BudgetExhausted, RateLimited) as stop:
                    report.stopped_because = str(stop)
                    report.not_reached.extend(actions[index:])
                    self._mark_dirty(issue_id)
                    break
                except _Stop:
                    report.not_reached.extend(actions[index:])
                    self._mark_dirty(issue_id)
                    break
                except _Replan:
                    report.adopted.append(action)
                    report.not_reached.extend(actions[index + 1 :])
                    self._mark_dirty(issue_id)
                    break
                except ApiError as error:
                    if isinstance(error, NotFound) and action.side == "Okdesk" and self._issue_gone(issue_id):
                        # a direct 404 on the issue written to: it was deleted, so the link stops
                        # (time logged late, say, has nowhere to go) instead of failing forever
                        self.store.local_change(
                            issue_id, "gone", f"the Okdesk issue was deleted ({error})", state="gone_issue", dirty=False
                        )
                        report.not_reached.extend(actions[index + 1 :])
                        self.on_action(action, "gone")
                        break
                    report.failed.append((action, str(error)))
                    report.not_reached.extend(actions[index + 1 :])
                    self.on_action(action, "failed")
                    link = self.store.record_failure(
                        issue_id,
                        str(error),
                        max_retries=self.config.sync.max_retries,
                        base_seconds=self.config.sync.retry_base_seconds,
                    )
                    if link and link.parked:
                        log.warning("issue %s parked after %s failures: %s", issue_id, link.fail_count, error)
                    break
                (report.adopted if outcome == "adopted" else report.done).append(action)
                self.on_action(action, outcome)
            else:
                link = self.store.link(issue_id)
                if link and (link.fail_count or link.dirty or link.last_error):
                    self.store.update_link(
                        issue_id, fail_count=0, last_error=None, next_retry_at=None, parked=False, dirty=False
                    )
        return report

    def _issue_gone(self, issue_id: int) -> bool:
        """A write answered 404: only a direct "not found" for the issue itself means deleted."""
        if self.store.link(issue_id) is None:
            return False
        try:
            self.okdesk.get_issue(issue_id)
        except NotFound:
            return True
        except ApiError:
            return False
        return False

    def _mark_dirty(self, issue_id: int) -> None:
        if self.store.link(issue_id):
            self.store.update_link(issue_id, dirty=True)

    # -- one action --------------------------------------------------------------------------
    def _apply_one(self, action: Action) -> str:
        if isinstance(action, CloseLink):
            self.store.local_change(
                action.issue_id,
                action.kind,
                action.detail,
                state="done",
                done_at=self.store.now(),
                dirty=False,
            )
            return "done"
        if isinstance(action, MarkGone):
            self.store.local_change(action.issue_id, action.kind, action.detail, state=f"gone_{action.what}")
            return "done"
        if isinstance(action, CreateTask):
            self._prepare_link(action)
        op = self.store.op(action.key)
        if op is not None and op.state == "done":
            return "skipped"
        must_look = isinstance(action, CreateTask | RenewTask) or (
            op is not None and (op.state == "intent" or op.ambiguous)
        )
        if must_look:
            found = self._find(action)
            if found is not None:
                self._record_begin(action)
                self.store.finish_op(
                    action.key,
                    action.issue_id,
                    action.kind,
                    remote_id=found[0],
                    outcome="adopted",
                    summary=f"found already written: {action.detail}",
                    link_update=found[1],
                )
                if not (found[0] or "").startswith("status:"):  # found by its marker, not by the status
                    self._finish_carried(action, found[0], "adopted")
                elif isinstance(action, ReturnIssue) and action.summary is not None:
                    # a person moved the issue and the summary never went: the next cycle posts it
                    # alone (with the right words) before the link closes
                    raise _Replan
                return "adopted"
        if isinstance(action, CreateTask) and action.adopt_only:
            self.store.local_change(action.issue_id, "handoff", "withdrawn before a task existed", state="gone_task")
            return "done"
        self._record_begin(action)
        try:
            remote_id, link_update = self._perform(action)
        except ApiError as error:
            self.store.fail_op(action.key, action.issue_id, action.kind, error=str(error), ambiguous=error.ambiguous)
            raise
        self.store.finish_op(
            action.key,
            action.issue_id,
            action.kind,
            remote_id=remote_id,
            outcome="done",
            summary=action.detail,
            link_update=link_update,
        )
        self._finish_carried(action, remote_id, "done")
        return "done"

    def _finish_carried(self, action: Action, remote_id: str | None, outcome: str) -> None:
        """A status change that carried the summary also completes the summary's op."""
        if isinstance(action, ReturnIssue) and action.summary is not None:
            summary = action.summary
            self.store.begin_op(summary.key, summary.issue_id, summary.kind, cycle=action.cycle, report_key=None)
            self.store.finish_op(
                summary.key,
                summary.issue_id,
                summary.kind,
                remote_id=remote_id,
                outcome=outcome,
                summary=f"{summary.detail} (with the status change)",
            )

    def _record_begin(self, action: Action) -> None:
        detail: dict[str, Any] = {"detail": action.detail}
        report_key = None
        cycle = getattr(action, "cycle", None)
        if isinstance(action, RenewTask) and action.closed_before is not None:
            detail["closed_before"] = action.closed_before.isoformat()
        if isinstance(action, CopyTimeEntry):
            item = action.item
            report_key = action.report_key
            # the item's line of the report, kept so a report written after a crash still lists it
            detail = {**action.row, "task_id": item.task_id, "user_id": item.user_id, "employee_id": action.employee_id}
        self.store.begin_op(action.key, action.issue_id, action.kind, cycle=cycle, report_key=report_key, detail=detail)

    def _prepare_link(self, action: CreateTask) -> None:
        link = self.store.link(action.issue_id)
        if link is None:
            self.store.create_link(action.issue_id, None, status=action.issue.status, origin="handoff")
        elif link.state != "active" or link.cycle != action.cycle:
            self.store.local_change(
                action.issue_id,
                "handoff",
                f"handed off again (cycle {action.cycle})",
                state="active",
                cycle=action.cycle,
                task_id=None,
                done_at=None,
            )

    def _task_id(self, issue_id: int) -> int:
        link = self.store.link(issue_id)
        if link is None or link.task_id is None:
            raise ApiError("okbx", "state", f"issue {issue_id} has no task yet")
        return link.task_id

    def _perform(self, action: Action) -> Effect:
        if isinstance(action, CreateTask):
            task = self.bitrix.add_task(dict(action.fields))
            return str(task.id), {"task_id": task.id}
        if isinstance(action, PostLinkComment):
            task_id = self._task_id(action.issue_id)
            html = render.link_comment(self.bitrix.task_url(task_id), task_id, action.marker)
            return str(self.okdesk.add_comment(action.issue_id, html, public=False).id), {}
        if isinstance(action, ForwardComment | TaskNote):
            return str(self.bitrix.add_comment(self._task_id(action.issue_id), action.text)), {}
        if isinstance(action, IssueNote):
            return str(self.okdesk.add_comment(action.issue_id, action.html, public=False).id), {}
        if isinstance(action, PostReport):
            return str(self.okdesk.add_comment(action.issue_id, action.html, public=action.public).id), {}
        if isinstance(action, CopyTimeEntry):
            item = action.item
            self.okdesk.add_time_entry(
                action.issue_id,
                employee_id=action.employee_id,
                seconds=item.seconds,
                logged_at=item.created_at or self.store.now(),
                comment=action.comment,
            )
            return None, {}
        if isinstance(action, ReturnIssue):
            # The transition's comment carries the marker: a status alone cannot tell our change
            # from a consultant's (who may hand the issue off again before we look).
            issue = self.okdesk.change_status(
                action.issue_id, action.to_status, comment_html=action.comment_html, public=action.public
            )
            return issue.status, {"issue_status": issue.status}
        if isinstance(action, RenewTask):
            task = self.bitrix.renew_task(action.task_id)
            return str(task.id), {"state": "active", "cycle": action.cycle, "done_at": None}
        raise AssertionError(f"no way to perform {action!r}")

    def _find(self, action: Action) -> Effect | None:
        """Look for the marker of a write that may already have happened."""
        if isinstance(action, CreateTask):
            xml_id = str(action.fields["XML_ID"])
            # The XML_ID filter is inferred to work; the result is checked here either way.
            tasks = [
                t
                for t in self.bitrix.find_tasks({"XML_ID": xml_id, "GROUP_ID": self.config.bitrix24.group_id})
                if t.xml_id == xml_id
            ]
            if not tasks:
                return None
            task = min(tasks, key=lambda t: t.id)
            return str(task.id), {"task_id": task.id}
        if isinstance(action, PostLinkComment | IssueNote | PostReport):
            for comment in self.okdesk.list_comments(action.issue_id):
                if comment.author.id == self.config.okdesk.bot_employee_id and has_html_marker(
                    comment.content_html, action.marker
                ):
                    return str(comment.id), {}
            return None
        if isinstance(action, ForwardComment | TaskNote):
            for task_comment in self.bitrix.list_comments(self._task_id(action.issue_id)):
                if has_bb_marker(task_comment.text, action.marker):
                    return str(task_comment.id), {}
            return None
        if isinstance(action, CopyTimeEntry):
            for entry in self.okdesk.list_time_entries(action.issue_id):
                if has_text_marker(entry.comment, action.marker):
                    return str(entry.id), {}
            return None
        if isinstance(action, ReturnIssue):
            for comment in self.okdesk.list_comments(action.issue_id):
                if comment.author.id == self.config.okdesk.bot_employee_id and has_html_marker(
                    comment.content_html, action.marker
                ):
                    return str(comment.id), {}
            issue = self.okdesk.get_issue(action.issue_id)
            if issue.status != action.from_status:  # a person moved it meanwhile: nothing left to do
                return f"status:{issue.status}", {"issue_status": issue.status}
            return None
        if isinstance(action, RenewTask):
            current = self.bitrix.get_task(action.task_id)
            if current is None:
                return None
            reopened = current.status not in self.config.bitrix24.done_statuses
            # Completed again since our first attempt: a closedDate other than the one the task had
            # before that attempt (kept in the op) proves the renewal went through.
            op = self.store.op(action.key)
            before_text = op.detail.get("closed_before") if op else None
            before = datetime.fromisoformat(before_text) if before_text else action.closed_before
            closed_again = before is not None and current.closed_at is not None and current.closed_at != before
            if reopened or closed_again:
                return str(current.id), {"state": "active", "cycle": action.cycle, "done_at": None}
            return None
        return None


class _Stop(Exception):
    pass


class _Replan(Exception):
    """The rest of this issue's plan no longer fits what was found; plan it again next cycle."""
