"""The applier: executes a plan, every action of every wing the same way, recording each.

For every remote write: first look for its marker on the remote side (`Action.find`), always,
whatever the state store says; adopt it if it is there.  Otherwise intent first (begin_op), then
the request (`Action.perform`), then the result with its effect on the link (finish_op), or the
failure (fail_op).  A write is never repeated in the same cycle.  A failure stops the remaining
actions of that issue for this run (they depend on each other) and counts against the action's
track (health.py: backoff, then parking with one note in the issue); other issues go on.  A
stop (SIGTERM, a spent budget, a rate limit) ends the run between two writes.

Issues go BATCH at a time, in rounds: each round takes the next action of every issue, and
same-kind batchable writes of a round go out in one Bitrix24 `batch` request, intents first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..clients.http import RateLimited
from ..clients.limits import BudgetExhausted
from ..errors import ApiError, MalformedResponse, NotFound
from ..state import lifecycle
from ..state.lifecycle import Health, Track
from ..state.records import OpState
from .action import Action, Context, Effect, Found, LocalAction
from .health import Failures

log = logging.getLogger(__name__)
BATCH = 50  # Bitrix24 runs at most 50 commands per `batch` (reference section 6)
Guard = Callable[[Context, int], None]  # may raise Drift before an issue's first write


class Replan(Exception):
    """The rest of this issue's plan no longer fits what was found; plan it again next cycle."""


class Drift(Replan):
    """The store was behind the accounts; the link was rebuilt before anything was written."""


class _Stop(Exception):
    pass


@dataclass
class ApplyReport:
    done: list[Action] = field(default_factory=list)
    adopted: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    not_reached: list[Action] = field(default_factory=list)
    parked: list[Health] = field(default_factory=list)  # work parked by this run
    stopped_because: str | None = None
    own_writes: dict[int, datetime] = field(default_factory=dict)  # issue id -> okbx's last comment there

    def merge(self, other: ApplyReport) -> None:
        self.done += other.done
        self.adopted += other.adopted
        self.failed += other.failed
        self.not_reached += other.not_reached
        self.parked += other.parked
        self.stopped_because = self.stopped_because or other.stopped_because
        self.own_writes.update(other.own_writes)


class Applier:
    def __init__(
        self,
        ctx: Context,
        failures: Failures,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_action: Callable[[Action, str], None] = lambda a, outcome: None,
        guards: tuple[Guard, ...] = (),
    ) -> None:
        self.ctx = ctx
        self.store = ctx.store
        self.failures = failures
        self.should_stop = should_stop
        self.on_action = on_action
        self.guards = guards
        self._checked: set[int] = set()
        self._halted: set[tuple[int, Track]] = set()  # (issue, track) after a failure this run
        self._early: dict[str, str | BaseException] = {}  # action key -> outcome met in a batch

    def apply(self, by_issue: dict[int, list[Action]], report: ApplyReport | None = None) -> ApplyReport:
        report = report if report is not None else ApplyReport()
        issues = list(by_issue.items())
        for start in range(0, len(issues), BATCH):
            self._apply_rounds(dict(issues[start : start + BATCH]), report)
        report.own_writes.update(self.ctx.own_writes)
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
        at its task's markers first (the guards), and one by one that would cost a request per
        issue, enough to spend a small request budget before anything is written."""
        writing = [i for i, actions in chunk.items() if any(a.side and not self._done(a) for a in actions)]
        links = self.store.links_for(writing).values()
        task_ids = [link.task_id for link in links if link.task_id and link.on_task]
        try:
            self.ctx.remote.read_tasks(task_ids)
        except (BudgetExhausted, RateLimited):
            return  # the first write meets the same and stops the run
        except ApiError as error:  # each issue reads its own task instead
            log.warning("could not read the comments of %s tasks together: %s", len(task_ids), error)

    def _done(self, action: Action) -> bool:
        op = self.store.op(action.key)
        return op is not None and op.state == OpState.DONE

    def _step(self, issue_id: int, actions: list[Action], index: int, report: ApplyReport) -> bool:
        """One action of an issue; False when the rest of the issue's actions wait for the next run.
        A failure halts the rest of its own track for this issue (they depend on each other); the
        issue's other tracks go on, except an action whose `needs` are not done (an invoice waits
        for the summary it bills)."""
        action = actions[index]
        if (issue_id, action.track) in self._halted or not self._needs_met(action):
            report.not_reached.append(action)
            return True
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
        except (_Stop, Drift):
            report.not_reached.extend(actions[index:])
            return False
        except Replan:
            report.adopted.append(action)
            report.not_reached.extend(actions[index + 1 :])
            return False
        except ApiError as error:
            if isinstance(error, NotFound) and action.side == "Okdesk" and self._issue_gone(issue_id, error):
                self.on_action(action, "gone")
                report.not_reached.extend(actions[index + 1 :])
                return False
            self._halted.add((issue_id, action.track))
            report.failed.append((action, str(error)))
            self.on_action(action, "failed")
            self.record_failure(issue_id, action.track, str(error), transient=error.ambiguous, report=report)
            return True
        if outcome != "skipped":
            (report.adopted if outcome == "adopted" else report.done).append(action)
        self.on_action(action, outcome)
        return True

    def _needs_met(self, action: Action) -> bool:
        return all((op := self.store.op(key)) is not None and op.done for key in action.needs)

    def record_failure(
        self, issue_id: int, track: Track, error: str, *, transient: bool, report: ApplyReport | None = None
    ) -> None:
        """A failure of one track of the issue; work that becomes parked gets one note in the issue."""
        parked = self.failures.record(issue_id, track, error, transient=transient)
        if parked is None:
            return
        if report is not None:
            report.parked.append(parked)
        log.warning("issue %s: %s parked after %s failures: %s", issue_id, track, parked.fail_count, error)
        note = self.failures.note(parked)
        try:
            self._apply_one(note)
        except (ApiError, BudgetExhausted, RateLimited, Replan) as problem:  # planned again next run
            log.warning("issue %s: could not post the note that it is parked: %s", issue_id, problem)
        else:
            self.on_action(note, "done")

    def _issue_gone(self, issue_id: int, error: ApiError) -> bool:
        """A write answered 404: only a direct "not found" for the issue itself means deleted; then
        the link stops (time logged late, say, has nowhere to go) instead of failing forever."""
        if self.store.link(issue_id) is None:
            return False
        try:
            self.ctx.okdesk.get_issue(issue_id)
        except NotFound:
            self.store.apply(lifecycle.gone(issue_id, "issue", f"the Okdesk issue was deleted ({error})"))
            return True
        except ApiError:
            return False
        return False

    # -- batches -------------------------------------------------------------------------------
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
            ready = self._ready(actions)
            if len(ready) >= 2:  # a single write goes the usual way
                self._send_batch(kind, ready)

    def _ready(self, actions: list[Action]) -> list[Action]:
        ready: list[Action] = []
        for action in actions:
            try:
                outcome = self._before_write(action)
            except (ApiError, Replan, BudgetExhausted, RateLimited) as problem:
                self._early[action.key] = problem
                continue
            if outcome is None:
                ready.append(action)
            else:
                self._early[action.key] = outcome
        return ready

    def _send_batch(self, kind: type[Action], ready: list[Action]) -> None:
        for action in ready:
            self._intent(action)
        try:
            results = kind.perform_many(self.ctx, ready)
        except (BudgetExhausted, RateLimited) as stop:  # not sent: the intents stay, looked for next run
            self._early.update({action.key: stop for action in ready})
            return
        except ApiError as error:
            for action in ready:
                self.store.fail_op(
                    action.key, action.issue_id, action.kind, error=str(error), ambiguous=error.ambiguous
                )
                self._early[action.key] = error
            return
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
                self._finish(action, result, "done", action.detail)
                self._early[action.key] = "done"

    # -- one action ------------------------------------------------------------------------------
    def _apply_one(self, action: Action) -> str:
        if (early := self._early.pop(action.key, None)) is not None:  # written (or met) in a batch
            if isinstance(early, BaseException):
                raise early
            return early
        if isinstance(action, LocalAction):
            if self._done(action):
                return "skipped"
            self._intent(action)
            self._finish(action, action.apply_locally(self.ctx), "done", action.detail)
            return "done"
        outcome = self._before_write(action)
        if outcome is not None:
            return outcome
        self._intent(action)
        try:
            effect = action.perform(self.ctx)
        except ApiError as error:
            self.store.fail_op(action.key, action.issue_id, action.kind, error=str(error), ambiguous=error.ambiguous)
            raise
        self._finish(action, effect, "done", action.detail)
        return "done"

    def _before_write(self, action: Action) -> str | None:
        """Everything before the intent; an outcome when no write is needed."""
        op = self.store.op(action.key)
        if op is not None and op.state == OpState.DONE:
            return "skipped"
        if action.issue_id not in self._checked:
            self._checked.add(action.issue_id)
            for guard in self.guards:
                guard(self.ctx, action.issue_id)
        action.prepare(self.ctx)
        # Look before every write, whatever the store says: it may be lost, restored, or one of two.
        found = action.find(self.ctx, op)
        if found is not None:
            self._adopt(action, found)
            if found.replan:
                raise Replan
            return "adopted"
        if (effect := action.unwritten(self.ctx)) is not None:
            self._intent(action)
            self._finish(action, effect, "done", action.detail)
            return "done"
        return None

    def _intent(self, action: Action) -> None:
        record = action.op_record()
        self.store.begin_op(
            action.key,
            action.issue_id,
            action.kind,
            cycle=record.cycle,
            report_key=record.report_key,
            detail=record.detail,
        )

    def _adopt(self, action: Action, found: Found) -> None:
        if found.carried_only:
            self._complete_carried(action, found.remote_id, "adopted")
            return
        record = action.op_record()
        self.store.begin_op(
            action.key,
            action.issue_id,
            action.kind,
            cycle=found.op_cycle or record.cycle,
            report_key=record.report_key,
            detail=record.detail,
        )
        summary = f"found already written: {action.detail}"
        effect: Effect = (found.remote_id, found.change)
        if found.by_marker:
            self._finish(action, effect, "adopted", summary)
        else:  # inferred from the remote state: nothing it carried was written
            self.store.finish_op(
                action.key,
                action.issue_id,
                action.kind,
                remote_id=found.remote_id,
                outcome="adopted",
                summary=summary,
                change=found.change,
            )

    def _finish(self, action: Action, effect: Effect, outcome: str, summary: str) -> None:
        remote_id, change = effect
        self.store.finish_op(
            action.key,
            action.issue_id,
            action.kind,
            remote_id=remote_id,
            outcome=outcome,
            summary=summary,
            change=change,
        )
        self._complete_carried(action, remote_id, outcome)

    def _complete_carried(self, action: Action, remote_id: str | None, outcome: str) -> None:
        for carried in action.also_completes():  # e.g. the summary a status change carried
            record = carried.op_record()
            self.store.begin_op(
                carried.key, carried.issue_id, carried.kind, cycle=record.cycle, report_key=None, detail=record.detail
            )
            self.store.finish_op(
                carried.key,
                carried.issue_id,
                carried.kind,
                remote_id=remote_id,
                outcome=outcome,
                summary=f"{carried.detail} (with {action.kind})",
            )
