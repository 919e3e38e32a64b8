"""One sync cycle as the commands `sync` and `run` drive it: lock, store, plan, apply, and what
is said about it (log lines per action and failure, the summary line, the record of the run)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import typer

from ..errors import OkbxError
from .base import Run, log
from .render import print_plan

if TYPE_CHECKING:
    from ..clients.bundle import Clients
    from ..config import Config
    from ..core.action import Action
    from ..core.engine import CycleResult
    from ..core.outcome import Outcome
    from ..state.store import Store

PROGRESS_FROM = 20  # actions; smaller cycles finish before a bar is worth drawing


def ensure_binding(store: Store, cfg: Config, *, record: bool = True) -> None:
    """The store serves the configured accounts (issue 7); else exit 3 before any write."""
    from ..state.binding import ensure_binding as ensure

    ensure(store, cfg, record=record)


def _extra(action: Action, outcome: str, **more: Any) -> dict[str, Any]:
    """Structured fields of an action's log line (the JSON log's issue/action/system/outcome)."""
    fields = {"issue": action.issue_id, "action": action.name, "system": action.side or "local"}
    return {**fields, "track": str(action.track), "outcome": outcome, **more}


def _log_action(action: Action, outcome: str) -> None:
    """One log line per action as it happens; failures are logged with their reason afterwards."""
    if outcome != "failed":
        from ..logsetup import ACTION_LOGGER

        log(ACTION_LOGGER).info(
            "issue %s: %s %s: %s",
            action.issue_id,
            action.name,
            outcome,
            action.detail,
            extra=_extra(action, outcome),
        )


def _log_failures(outcome: Outcome) -> None:
    """Failures, new parkings and held-back changes as WARNING/ERROR (stderr and the log file, also
    with -q): exactly what the summary counts."""
    from ..logsetup import ACTION_LOGGER

    action_log = log(ACTION_LOGGER)
    for failure in outcome.failures:
        where = f"issue {failure.issue_id}: " if failure.issue_id is not None else ""
        what = f"{failure.what}: " if failure.what else ""
        extra = {"issue": failure.issue_id, "action": failure.what, "outcome": "failed", "reason": failure.why}
        action_log.warning("failed: %s%s%s", where, what, failure.why, extra=extra)
    for health in outcome.parked:
        log().error(
            "issue %s parked after %s failures (%s): %s; fix the cause, then `okbx retry %s`",
            health.issue_id,
            health.fail_count,
            health.track,
            health.last_error,
            health.issue_id,
            extra={"issue": health.issue_id, "outcome": "parked", "reason": health.last_error},
        )
    if outcome.refused:
        action_log.warning(
            "refused: %s. Nothing was written for those issues; check both systems; if the change is real, "
            "run `okbx sync --force`.",
            outcome.refused,
            extra={"outcome": "refused", "reason": outcome.refused},
        )


def _say(line: str, *, quiet: bool, emit: Callable[..., None] | None, extra: dict[str, Any] | None = None) -> None:
    """A result line: through `emit` in the loop; else on stdout unless quiet, and always in the log file."""
    from ..logsetup import ON_STDOUT

    if emit is not None:
        emit("%s", line, extra=extra or {})
        return
    if not quiet:
        typer.echo(line)
    log().info("%s", line, extra={**(extra or {}), ON_STDOUT: not quiet})


def report_cycle(
    result: CycleResult, clients: Clients, *, quiet: bool, emit: Callable[..., None] | None = None
) -> tuple[int, str, list[str]]:
    """Everything said about a finished cycle; returns its exit code and summary line.  Counts,
    line and exit code all come from one Outcome (core/outcome.py), so they agree."""
    from ..core.outcome import outcome_of

    outcome = outcome_of(result, clients.requests_sent())
    _log_failures(outcome)
    line = outcome.line()
    _say(line, quiet=quiet, emit=emit, extra=outcome.fields())
    return outcome.exit_code, line, outcome.failure_lines()


@contextmanager
def _progress(enabled: bool) -> Iterator[tuple[Callable[[Any], None], Callable[[Any, str], None]]]:
    """A progress bar for long cycles (a first run over a backlog), on a terminal only."""
    if not (enabled and sys.stderr.isatty()):
        yield (lambda plan: None), (lambda action, outcome: None)
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as progress:
        task: list[Any] = []

        def on_plan(plan: Any) -> None:  # called per page: the bar grows with the pages planned
            if not task and len(plan.actions) >= PROGRESS_FROM:
                task.append(progress.add_task("syncing", total=len(plan.actions)))
            elif task:
                progress.update(task[0], total=(progress.tasks[0].total or 0) + len(plan.actions))

        def on_action(action: Any, outcome: str) -> None:
            if task:
                progress.advance(task[0])

        yield on_plan, on_action


def _remember(store: Store, started: Any, outcome: str, summary: str, failures: list[str] | None = None) -> None:
    from datetime import UTC, datetime

    from ..state.overview import remember_run

    remember_run(store, started, datetime.now(UTC), outcome, summary, failures)


def one_cycle(
    run: Run,
    *,
    dry_run: bool = False,
    force: bool = False,
    wait: float = 0.0,
    quiet: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    emit: Callable[..., None] | None = None,
) -> int:
    from ..cycle import opened, sync_cycle
    from ..sync.lock import run_lock

    cfg = run.config
    # A dry run writes nothing: no lock file, and the store is an in-memory copy.
    lock = nullcontext() if dry_run else run_lock(cfg.state.path, wait, run.clock)
    with lock, opened(cfg, run.redactor, run.crash_after, run.clock, read_only=dry_run) as (clients, store):
        ensure_binding(store, cfg, record=not dry_run)  # before any request: a foreign store writes nothing
        started = run.clock.now()
        try:
            with _progress(enabled=not quiet and not dry_run) as (on_page, on_progress):

                def on_action(action: Action, outcome: str) -> None:
                    _log_action(action, outcome)
                    on_progress(action, outcome)

                result = sync_cycle(
                    cfg,
                    clients,
                    store,
                    dry_run=dry_run,
                    force=force,
                    should_stop=should_stop,
                    on_page=on_page,
                    on_action=on_action,
                )
        except OkbxError as error:
            if not dry_run:
                _remember(store, started, "failed", run.redactor(str(error)), [run.redactor(str(error))])
            raise
        if dry_run:
            print_plan(result)
            return 0
        ensure_binding(store, cfg)  # a new store is bound once it holds a task of these accounts
        code, line, failures = report_cycle(result, clients, quiet=quiet, emit=emit)
        _remember(store, started, "ok" if code == 0 else "failed", line, failures)
        return code
