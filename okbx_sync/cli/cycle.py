"""One sync cycle as the commands `sync` and `run` drive it: lock, store, plan, apply, and what
is said about it (log lines per action and failure, the summary line, the record of the run)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import typer

from ..errors import ExitCode, OkbxError
from .base import Run, log
from .render import print_plan, summary_line

if TYPE_CHECKING:
    from ..config import Config
    from ..state.store import Link, Store
    from ..sync.actions import Action
    from ..sync.engine import Clients, CycleResult

PROGRESS_FROM = 20  # actions; smaller cycles finish before a bar is worth drawing


def ensure_binding(store: Store, cfg: Config, *, record: bool = True) -> None:
    """The store serves the configured accounts (issue 7); else exit 3 before any write."""
    from ..state.binding import ensure_binding as ensure

    ensure(store, cfg, record=record)


def _extra(action: Action, outcome: str, **more: Any) -> dict[str, Any]:
    """Structured fields of an action's log line (the JSON log's issue/action/system/outcome)."""
    fields = {"issue": action.issue_id, "action": action.__class__.__name__, "system": action.side or "local"}
    return {**fields, "outcome": outcome, **more}


def _log_action(action: Action, outcome: str) -> None:
    """One log line per action as it happens; failures are logged with their reason afterwards."""
    if outcome != "failed":
        from ..logsetup import ACTION_LOGGER

        log(ACTION_LOGGER).info(
            "issue %s: %s %s: %s",
            action.issue_id,
            action.__class__.__name__,
            outcome,
            action.detail,
            extra=_extra(action, outcome),
        )


def _log_failures(result: CycleResult, newly_parked: dict[int, Link]) -> None:
    """Failures and new parkings as WARNING/ERROR (stderr and the log file, also with -q)."""
    from ..logsetup import ACTION_LOGGER

    applied = result.applied
    assert applied is not None
    action_log = log(ACTION_LOGGER)
    for action, error in applied.failed:
        action_log.warning(
            "failed: issue %s: %s: %s",
            action.issue_id,
            action.kind,
            error,
            extra=_extra(action, "failed", reason=error),
        )
    for issue_id, error in result.read_errors.items():
        action_log.warning("failed: issue %s: %s", issue_id, error, extra={"issue": issue_id, "reason": error})
    reported = {action.issue_id for action, _ in applied.failed}  # the applier logs those parkings itself
    for issue_id, link in newly_parked.items():
        if issue_id not in reported:
            log().error(
                "issue %s parked after %s failures: %s; fix the cause, then `okbx retry %s`",
                issue_id,
                link.fail_count,
                link.last_error,
                issue_id,
                extra={"issue": issue_id, "outcome": "parked", "reason": link.last_error},
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


def _report_billing(result: CycleResult, *, quiet: bool, emit: Callable[..., None] | None) -> None:
    """Issue 10: what billing did (invoices, notes, holds, releases) and why something failed.
    Failures go to the log at WARNING like the sync's own (stderr and the log file, also with -q)."""
    from ..logsetup import ACTION_LOGGER

    action_log = log(ACTION_LOGGER)
    billed = result.billing
    if result.billing_error:
        action_log.warning("failed: %s", result.billing_error, extra={"reason": result.billing_error})
    if billed is None:
        return
    for action, error in billed.failed:
        action_log.warning(
            "failed: issue %s: %s: %s", action.issue_id, action.kind, error, extra={"issue": action.issue_id}
        )
    for issue_id, why in billed.blocked.values():
        action_log.warning("failed: issue %s: invoice: %s", issue_id, why, extra={"issue": issue_id, "reason": why})
    if billed.refused:
        action_log.warning("%s", billed.refused)
    applied = billed.applied
    if applied and (applied.done or applied.adopted):
        _say(f"okbx billing: {len(applied.done)} done, {len(applied.adopted)} adopted", quiet=quiet, emit=emit)


def report_cycle(
    result: CycleResult,
    clients: Clients,
    *,
    quiet: bool,
    newly_parked: dict[int, Link],
    emit: Callable[..., None] | None = None,
) -> tuple[int, str]:
    """Everything said about a finished cycle; returns its exit code and summary line."""
    _log_failures(result, newly_parked)
    _report_billing(result, quiet=quiet, emit=emit)
    line, fields = summary_line(result, clients.requests_sent(), len(newly_parked))
    ok = result.ok and not newly_parked
    _say(line, quiet=quiet, emit=emit, extra={**fields, "outcome": "ok" if ok else "failed"})
    return int(ExitCode.OK if ok else ExitCode.ACTIONS_FAILED), line


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

        def on_plan(plan: Any) -> None:
            if len(plan.actions) >= PROGRESS_FROM:
                task.append(progress.add_task("syncing", total=len(plan.actions)))

        def on_action(action: Any, outcome: str) -> None:
            if task:
                progress.advance(task[0])

        yield on_plan, on_action


def _remember(store: Store, started: Any, outcome: str, summary: str) -> None:
    from datetime import UTC, datetime

    from ..state.overview import remember_run

    remember_run(store, started, datetime.now(UTC), outcome, summary)


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
    from ..sync.engine import opened, run_cycle
    from ..sync.lock import run_lock

    cfg = run.config
    # A dry run writes nothing: no lock file, and the store is an in-memory copy.
    lock = nullcontext() if dry_run else run_lock(cfg.state.path, wait, run.clock)
    with lock, opened(cfg, run.redactor, run.crash_after, run.clock, read_only=dry_run) as (clients, store):
        ensure_binding(store, cfg, record=not dry_run)  # before any request: a foreign store writes nothing
        parked_before = {issue_id for issue_id, link in store.links().items() if link.parked}
        started = run.clock.now()
        try:
            with _progress(enabled=not quiet and not dry_run) as (on_plan, on_progress):

                def on_action(action: Action, outcome: str) -> None:
                    _log_action(action, outcome)
                    on_progress(action, outcome)

                result = run_cycle(
                    cfg,
                    clients,
                    store,
                    dry_run=dry_run,
                    force=force,
                    should_stop=should_stop,
                    on_plan=on_plan,
                    on_action=on_action,
                )
        except OkbxError as error:
            if not dry_run:
                _remember(store, started, "failed", run.redactor(str(error)))
            raise
        if dry_run:
            print_plan(result)
            return 0
        ensure_binding(store, cfg)  # a new store is bound once it holds a task of these accounts
        links_now = store.links().items()
        newly_parked = {i: lk for i, lk in links_now if lk.parked and i not in parked_before}
        code, line = report_cycle(result, clients, quiet=quiet, newly_parked=newly_parked, emit=emit)
        _remember(store, started, "ok" if code == 0 else "failed", line)
        return code
