"""The applier: executes a plan one action at a time, recording each in the state store.

For every remote write: first look for its marker on the remote side (`Action.find`), always,
whatever the state store says; adopt it if it is there.  Otherwise intent first (begin_op), then
the request (`Action.perform`), then the result with its effect on the link (finish_op), or the
failure (fail_op).  A write is never repeated in the same cycle.  A failure stops the remaining
actions of that issue for this run (they depend on each other); other issues go on.
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
from ..errors import ApiError, MalformedResponse, NotFound
from ..model import Comment
from ..state.store import LinkState, OpState, Store
from . import rebuild
from .actions import Action, Context, CreateTask, Found, LocalAction
from .plan import stuck_note
from .remote import RemoteMarkers

log = logging.getLogger(__name__)
BATCH = 50  # Bitrix24 runs at most 50 commands per `batch` (reference section 6)


@dataclass
class ApplyReport:
    done: list[Action] = field(default_factory=list)
    adopted: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    not_reached: list[Action] = field(default_factory=list)
    stopped_because: str | None = None
    own_writes: dict[int, datetime] = field(default_factory=dict)  # issue id -> okbx's last comment there


class Applier:
    def __init__(
        self,
        okdesk: OkdeskClient,
        bitrix: Bitrix24Client,
        store: Store,
        config: Config,
        should_stop: Callable[[], bool] = lambda: False,
        on_action: Callable[[Action, str], None] = lambda a, outcome: None,
        issue_comments: dict[int, list[Comment]] | None = None,
    ) -> None:
        self.okdesk = okdesk
        self.store = store
        self.config = config
        self.should_stop = should_stop
        self.on_action = on_action
        # the comments the cycle just read serve as the first look at what okbx wrote there
        self.remote = RemoteMarkers(okdesk, bitrix, config.okdesk.bot_employee_id, issue_comments)
        self.ctx = Context(okdesk, bitrix, store, config, self.remote)
        self._checked: set[int] = set()
        self._early: dict[str, str | BaseException] = {}  # action key -> outcome met in a batch

    def apply(self, by_issue: dict[int, list[Action]]) -> ApplyReport:
        """Issues go BATCH at a time, in rounds: each round takes the next action of every issue
        of the batch, and same-kind Bitrix24 writes of a round go out in one `batch` request."""
        report = ApplyReport()
        issues = list(by_issue.items())
        for start in range(0, len(issues), BATCH):
            self._apply_rounds(dict(issues[start : start + BATCH]), report)
        report.own_writes = dict(self.ctx.own_writes)
        return report

    def _apply_rounds(self, chunk: dict[int, list[Action]], report: ApplyReport) -> None:
        self._read_tasks_of(chunk)
        cursor = {issue_id: 0 for issue_id in chunk}
        while cursor:
            if report.stopped_because:
                for issue_id, index in cursor.items():
                    report.not_reached.extend(chunk[issue_id][index:])
                return
            fronts = [chunk[issue_id][index] for issue_id, index in cursor.items() if index < len(chunk[issue_id])]
            self._write_in_batches(fronts, report)
            for issue_id, index in list(cursor.items()):
                actions = chunk[issue_id]
                if index < len(actions) and not self._step(issue_id, actions, index, report):
                    del cursor[issue_id]
                elif index + 1 >= len(actions):
                    del cursor[issue_id]
                else:
                    cursor[issue_id] = index + 1

    def _read_tasks_of(self, chunk: dict[int, list[Action]]) -> None:
        """The comments of the chunk's tasks in one request: every issue with a remote write looks
        at its task's markers first (`_check_handoff_number`), and one by one that would cost a
        request per issue, enough to spend a small request budget before anything is written."""
        writing = [i for i, actions in chunk.items() if any(a.side and not self._done(a) for a in actions)]
        task_ids = [link.task_id for link in map(self.store.link, writing) if link is not None and link.task_id]
        try:
            self.remote.read_tasks(task_ids)
        except (BudgetExhausted, RateLimited):
            return  # the first write meets the same and stops the run
        except ApiError as error:  # each issue reads its own task instead
            log.warning("could not read the comments of %s tasks together: %s", len(task_ids), error)

    def _done(self, action: Action) -> bool:
        op = self.store.op(action.key)
        return op is not None and op.state == OpState.DONE

    def _step(self, issue_id: int, actions: list[Action], index: int, report: ApplyReport) -> bool:
        """One action of an issue; False when the rest of the issue's actions wait."""
        action = actions[index]
        if action.key not in self._early and self.should_stop():
            report.stopped_because = "asked to stop"
        try:
            if report.stopped_because and action.key not in self._early:
                raise _Stop
            outcome = self._apply_one(action)
        except (BudgetExhausted, RateLimited) as stop:
            report.stopped_because = str(stop)
            report.not_reached.extend(actions[index:])
            return False
        except _Stop:
            report.not_reached.extend(actions[index:])
            return False
        except _Drift:
            report.not_reached.extend(actions[index:])
            return False
        except _Replan:
            report.adopted.append(action)
            report.not_reached.extend(actions[index + 1 :])
            return False
        except ApiError as error:
            if isinstance(error, NotFound) and action.side == "Okdesk" and self._issue_gone(issue_id):
                # a direct 404 on the issue written to: it was deleted, so the link stops
                # (time logged late, say, has nowhere to go) instead of failing forever
                self.store.local_change(
                    issue_id, "gone", f"the Okdesk issue was deleted ({error})", state=LinkState.GONE_ISSUE, dirty=False
                )
                report.not_reached.extend(actions[index + 1 :])
                self.on_action(action, "gone")
                return False
            report.failed.append((action, str(error)))
            report.not_reached.extend(actions[index + 1 :])
            self.on_action(action, "failed")
            self.record_failure(issue_id, str(error), transient=error.ambiguous)
            return False
        (report.adopted if outcome == "adopted" else report.done).append(action)
        self.on_action(action, outcome)
        return True

    def _write_in_batches(self, fronts: list[Action], report: ApplyReport) -> None:
        """Same-kind batchable writes of one round: looked for together, their intents recorded,
        then sent in one request.  Each outcome (or error) waits in `_early` for `_step`, which
        books it exactly as a write made alone; a crash after the intents leaves the markers to
        find (each task carries its XML_ID, each comment its marker)."""
        groups: dict[type[Action], list[Action]] = {}
        for action in fronts:
            if action.batchable and action.key not in self._early:
                groups.setdefault(type(action), []).append(action)
        for kind, actions in groups.items():
            if len(actions) < 2 or report.stopped_because or self.should_stop():
                continue
            try:
                kind.look_many(self.ctx, actions)
            except (BudgetExhausted, RateLimited):
                return  # the first action alone meets the same and stops the run
            except ApiError as error:  # each looks for itself instead
                log.warning("could not look for %s writes together: %s", kind.kind, error)
            ready: list[Action] = []
            for action in actions:
                try:
                    outcome = self._before_write(action)
                except (ApiError, _Replan, BudgetExhausted, RateLimited) as problem:
                    self._early[action.key] = problem
                    continue
                if outcome is None:
                    ready.append(action)
                else:
                    self._early[action.key] = outcome
            if len(ready) < 2:
                continue  # a single write goes the usual way
            for action in ready:
                cycle, report_key, detail = action.op_record()
                self.store.begin_op(
                    action.key, action.issue_id, action.kind, cycle=cycle, report_key=report_key, detail=detail
                )
            try:
                results = kind.perform_many(self.ctx, ready)
            except (BudgetExhausted, RateLimited) as stop:  # not sent: the intents stay, looked for next run
                self._early.update({action.key: stop for action in ready})
                continue
            except ApiError as error:
                for action in ready:
                    self.store.fail_op(
                        action.key, action.issue_id, action.kind, error=str(error), ambiguous=error.ambiguous
                    )
                    self._early[action.key] = error
                continue
            for action in ready:
                result = results.get(action.key) or MalformedResponse("Bitrix24", "batch", "no answer for the command")
                if isinstance(result, RateLimited):  # not run: the intent stays, looked for next run
                    self._early[action.key] = result
                elif isinstance(result, ApiError):
                    self.store.fail_op(
                        action.key, action.issue_id, action.kind, error=str(result), ambiguous=result.ambiguous
                    )
                    self._early[action.key] = result
                else:
                    self._finish(action, result[0], "done", action.detail, result[1])
                    self._early[action.key] = "done"

    def record_failure(self, issue_id: int, error: str, *, transient: bool) -> None:
        """A failure of the link; a link that becomes parked gets one note in the issue at once."""
        link = self.store.link(issue_id)
        if link is None or link.parked:  # a parked link's own note failing adds nothing
            return
        link = self.store.record_failure(
            issue_id,
            error,
            max_retries=self.config.sync.max_retries,
            base_seconds=self.config.sync.retry_base_seconds,
            transient=transient,
        )
        if link is None or not link.parked:
            return
        log.warning("issue %s parked after %s failures: %s", issue_id, link.fail_count, error)
        note = stuck_note(link, self.config)
        try:
            self._apply_one(note)
        except (ApiError, BudgetExhausted, _Replan) as problem:  # planned again next run (plan.py)
            log.warning("issue %s: could not post the note that it is parked: %s", issue_id, problem)
        else:
            self.on_action(note, "done")

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

    # -- one action --------------------------------------------------------------------------
    def _apply_one(self, action: Action) -> str:
        if (early := self._early.pop(action.key, None)) is not None:  # written (or met) in a batch
            if isinstance(early, BaseException):
                raise early
            return early
        ctx = self.ctx
        if isinstance(action, LocalAction):
            action.apply_locally(ctx)
            return "done"
        outcome = self._before_write(action)
        if outcome is not None:
            return outcome
        cycle, report_key, detail = action.op_record()
        self.store.begin_op(action.key, action.issue_id, action.kind, cycle=cycle, report_key=report_key, detail=detail)
        try:
            remote_id, link_update = action.perform(ctx)
        except ApiError as error:
            self.store.fail_op(action.key, action.issue_id, action.kind, error=str(error), ambiguous=error.ambiguous)
            raise
        self._finish(action, remote_id, "done", action.detail, link_update)
        return "done"

    def _before_write(self, action: Action) -> str | None:
        """Everything before the intent; an outcome when no write is needed."""
        ctx = self.ctx
        op = self.store.op(action.key)
        if op is not None and op.state == OpState.DONE:
            return "skipped"
        self._check_handoff_number(action.issue_id)
        action.prepare(ctx)
        # Look before every write, whatever the store says: it may be lost, restored, or one of two.
        found = action.find(ctx, op)
        if found is not None:
            self._adopt(action, found)
            if found.replan:
                raise _Replan
            return "adopted"
        if isinstance(action, CreateTask) and action.unwritten(ctx):
            return "done"
        return None

    def _check_handoff_number(self, issue_id: int) -> None:
        """Before an issue's first write: is the store behind the accounts?

        Another installation (or a store restored from a backup) may have seen handoffs this
        store has not.  Markers of a later handoff on either side prove it; then the link is
        rebuilt from the markers and the issue planned again next cycle, so that a summary of
        this handoff is never mistaken for one of an earlier handoff.
        """
        if issue_id in self._checked:
            return
        self._checked.add(issue_id)
        link = self.store.link(issue_id)
        if link is None or link.task_id is None:
            return
        issue_written, task_written = self._written_or_nothing(issue_id, link.task_id)
        if rebuild.latest_handoff(issue_id, [*issue_written, *task_written]) <= link.cycle:
            return
        task = self.ctx.bitrix.get_task(link.task_id)
        if task is None:
            return  # the planner notices a deleted task by itself
        found = rebuild.link_from_remote(
            issue_id, task, issue_written, task_written, self.config.bitrix24.done_statuses, floor_cycle=link.cycle
        )
        log.warning(
            "issue %s: the accounts are at handoff %s, the state store at %s; rebuilt from the markers",
            issue_id,
            found.cycle,
            link.cycle,
        )
        self.store.local_change(
            issue_id,
            "rebuild",
            f"rebuilt from the markers: handoff {found.cycle}, {found.state}",
            **found.link_update(),
        )
        raise _Drift

    def _written_or_nothing(self, issue_id: int, task_id: int) -> tuple[dict[str, str], dict[str, str]]:
        """What okbx wrote on each side; a side that cannot be read (deleted) counts as nothing here:
        the planner notices deletions by itself, and each write still looks for its own marker."""
        found: list[dict[str, str]] = []
        for read, what in ((self.remote.issue, issue_id), (self.remote.task, task_id)):
            try:
                found.append(read(what))
            except ApiError:
                found.append({})
        return found[0], found[1]

    def _adopt(self, action: Action, found: Found) -> None:
        cycle, report_key, detail = action.op_record()
        self.store.begin_op(
            action.key,
            action.issue_id,
            action.kind,
            cycle=found.op_cycle or cycle,
            report_key=report_key,
            detail=detail,
        )
        summary = f"found already written: {action.detail}"
        if found.by_marker:
            self._finish(action, found.remote_id, "adopted", summary, found.link_update)
        else:  # inferred from the remote state: nothing it carried was written
            self.store.finish_op(
                action.key,
                action.issue_id,
                action.kind,
                remote_id=found.remote_id,
                outcome="adopted",
                summary=summary,
                link_update=found.link_update,
            )

    def _finish(
        self, action: Action, remote_id: str | None, outcome: str, summary: str, link_update: dict[str, Any]
    ) -> None:
        self.store.finish_op(
            action.key,
            action.issue_id,
            action.kind,
            remote_id=remote_id,
            outcome=outcome,
            summary=summary,
            link_update=link_update,
        )
        for carried in action.also_completes():  # e.g. the summary a status change carried
            self.store.begin_op(
                carried.key, carried.issue_id, carried.kind, cycle=carried.op_record()[0], report_key=None
            )
            self.store.finish_op(
                carried.key,
                carried.issue_id,
                carried.kind,
                remote_id=remote_id,
                outcome=outcome,
                summary=f"{carried.detail} (with {action.kind})",
            )


class _Stop(Exception):
    pass


class _Replan(Exception):
    """The rest of this issue's plan no longer fits what was found; plan it again next cycle."""


class _Drift(_Replan):
    """The store was behind the accounts; the link was rebuilt before anything was written."""
