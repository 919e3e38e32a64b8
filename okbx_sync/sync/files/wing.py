"""The files part of the route's wing: what it reads besides the route, and the cycle's cap.

The route's wing (sync/wing.py) calls these at its own steps:
  prepare    the tasks completed lately whose new files okbx has not dealt with (reads.py)
  reads      what an issue needs read besides: a dirty or failing active link its issue too (its
             files are on it, and a handoff cut short by a crash or a failure has files to finish),
             a task with new files after its completion the issue's comments (okbx's own list what
             they carried)
  read_page  the files of the page's completing tasks, and the late ones read in `prepare`
  fit        the cycle's cap on bytes moved: what does not fit waits, its issue read again next time
  finish     when files were switched on, kept in the store (late files only for later completions)
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from ... import keys
from ...clients.bitrix24_disk import Bitrix24Drive
from ...clients.limits import BudgetExhausted, RequestBudget
from ...core.action import Context
from ...core.plan import Plan
from ...errors import ApiError
from ...state.store import Link, LinkState
from ..reader import READ_SHARE
from ..select import Work
from ..snapshot import Snapshot
from .plan import fit_cycle_cap
from .reads import FILES_SINCE, TaskFiles, files_since, late_links, read_late_files, read_task_files
from .route import FileRoute, big_file_key

log = logging.getLogger(__name__)


class RouteFiles:
    def __init__(self, ctx: Context, route: FileRoute | None, started: datetime, budget: RequestBudget | None) -> None:
        self.ctx, self.route, self.started, self.budget = ctx, route, started, budget
        self.late: dict[int, TaskFiles] = {}  # task id -> files added after its completion, not dealt with
        self.late_issues: set[int] = set()
        self.moved = 0  # bytes the cycle's plan moves so far

    @property
    def drive(self) -> Bitrix24Drive:
        return self.ctx.remote.files.drive

    def prepare(self, links: dict[int, Link], handed_off: set[int]) -> set[int]:
        """The tasks with files added after their completion (their links are planned this cycle)."""
        if self.route is None:
            return set()
        window = timedelta(days=self.ctx.config.time.late_window_days)
        recent = late_links(links, files_since(self.ctx.store), self.started, window)
        recent = {task: issue for task, issue in recent.items() if issue not in handed_off}
        try:
            self.late = read_late_files(self.drive, self.ctx.store, recent)
        except BudgetExhausted:
            raise
        except ApiError as error:  # looked at again next cycle; nothing depends on it
            log.warning("could not read the files of recently completed tasks: %s", error)
            self.late = {}
        self.late_issues = {recent[task] for task in self.late}
        return set(self.late)

    def reads(self, work: list[Work], links: dict[int, Link]) -> list[Work]:
        if self.route is None:
            return work
        unsettled = self._unsettled([w.issue_id for w in work if w.read_comments and not w.read_issue], links)
        wanted = []
        for item in work:
            if item.issue_id in unsettled:
                item = replace(item, read_issue=True)
            if item.issue_id in self.late_issues and not item.read_comments:
                item = replace(item, read_comments=True)
            wanted.append(item)
        return wanted

    def _unsettled(self, issue_ids: list[int], links: dict[int, Link]) -> set[int]:
        """Active links whose handoff had files not yet attached to the task or named in a note (the
        task's op lists them): a handoff cut short by a crash, a stop or a failure.  These read their
        issue with their comments, as the files are on the issue; the others read nothing more."""
        active = {i: link for i in issue_ids if (link := links.get(i)) is not None and link.state == LinkState.ACTIVE}
        if not active or self.route is None:
            return set()
        store, internal_too = self.ctx.store, self.route.policy.internal_files
        made = store.ops_by_keys(keys.TaskKey(i, link.cycle).text for i, link in active.items())
        files = {
            (op.issue_id, int(str(op.cycle)), int(a))
            for op in made.values()
            if op.done and op.cycle is not None
            for a in op.detail.get("files") or []
            if internal_too or a not in (op.detail.get("internal_files") or [])
        }
        wanted = [k.text for i, c, a in files for k in (keys.AttachKey(i, c, a), big_file_key(i, c, a))]
        settled = {text for text, op in store.ops_by_keys(wanted).items() if op.done}
        return {
            i
            for i, c, a in files
            if keys.AttachKey(i, c, a).text not in settled and big_file_key(i, c, a).text not in settled
        }

    def read_page(self, snapshot: Snapshot, work: list[Work], links: dict[int, Link]) -> None:
        if self.route is None:
            return
        page_tasks = {links[w.issue_id].task_id: w.issue_id for w in work if w.issue_id in links}
        snapshot.task_files.update({t: f for t, f in self.late.items() if t in page_tasks})
        completing = {
            task_id: w.issue_id
            for w in work
            if w.completing
            and w.issue_id not in snapshot.deferred | set(snapshot.errors)
            and (task_id := links[w.issue_id].task_id) is not None
        }
        if not completing:
            return
        if self.budget is not None and self.budget.share_spent(READ_SHARE):
            snapshot.deferred.update(completing.values())
            return
        try:
            snapshot.task_files.update(read_task_files(self.drive, completing))
        except BudgetExhausted:
            snapshot.deferred.update(completing.values())
        except ApiError as error:  # the completion goes on; the files come later, as added after it
            log.warning("could not read the files of %s completed task(s): %s", len(completing), error)

    def fit(self, plan: Plan, snapshot: Snapshot) -> Plan:
        if self.route is None:
            return plan
        plan, waiting, self.moved = fit_cycle_cap(plan, self.route.policy.max_cycle_bytes, moved=self.moved)
        snapshot.deferred |= waiting  # read fully next cycle (settle marks the link dirty)
        return plan

    def finish(self) -> None:
        since = self.ctx.store.get_meta(FILES_SINCE)
        if self.route is not None and not since:
            # to the second, like the links' done_at it is compared with
            self.ctx.store.set_meta(FILES_SINCE, self.started.replace(microsecond=0).isoformat())
        elif self.route is None and since:
            self.ctx.store.set_meta(FILES_SINCE, "")  # switched on again later: a new start
