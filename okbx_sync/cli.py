"""The `okbx` command line.  The only module that prints, and the only one that knows rich.

Exit codes: 0 all done; 1 some actions failed (the others went through), an issue was parked,
a plan was refused as unsafe, or (status) a link is failing or parked; 2 configuration or usage
error; 3 the state store cannot be used; 75 another okbx run holds the lock (try again later).
"""

from __future__ import annotations

# Only what `okbx --help` needs is imported here: the sync engine, requests, sqlite-utils, yaml
# and rich load inside the commands that use them (help stays well under 0.15 s).
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from . import __version__
from .clock import Clock
from .errors import ExitCode, OkbxError, UsageError
from .secrets import Redactor

if TYPE_CHECKING:
    from datetime import datetime

    from rich.console import Console

    from .clients.bundle import Clients
    from .config import Config
    from .core.action import Action
    from .core.engine import CycleResult
    from .state.store import Link, Store

HELP = __doc__.split("\n\n", 1)[1] if __doc__ else ""
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader went away
app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="okbx-sync: hand Okdesk issues to programmers in Bitrix24 and bring the result back.\n\n" + HELP,
)

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="Config file (default: $OKBX_CONFIG, else ./okbx.yaml).")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="For cron: print nothing unless something failed (then on stderr).")
]
LogFileOpt = Annotated[Path | None, typer.Option("--log-file", help="Also append logs to this file.")]
LogFormatOpt = Annotated[
    str, typer.Option("--log-format", help="text, or json (one object per line, for log collectors).")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Apply a plan that stops an unusual share of links.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _log(name: str = "okbx") -> Any:
    import logging

    return logging.getLogger(name)


def _out() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _print_table(title: str, headers: Sequence[str], rows: list[Sequence[Any]]) -> None:
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(str(c) for c in row))
        _out().print(table)
    else:
        print(title)
        print("\t".join(headers))
        for row in rows:
            print("\t".join(str(c) for c in row))


class _Run:
    """Everything a command needs, built from the options; `_errors` turns its failures into words."""

    def __init__(
        self,
        config_opt: str | None,
        *,
        verbose: bool = False,
        quiet: bool = False,
        log_file: Path | None = None,
        log_format: str = "text",
        clock: Clock | None = None,
    ) -> None:
        self.redactor = Redactor()
        self.verbose = verbose
        self._logging = {"verbose": verbose, "quiet": quiet, "log_file": log_file, "log_format": log_format}
        self._config_opt = config_opt
        self._config: Config | None = None
        self.clock = clock or Clock()

    def start(self) -> None:
        """Logging set up; called by `_errors`, so a log file that cannot be opened is a clear error."""
        from .logsetup import setup_logging

        setup_logging(self.redactor, **self._logging)  # type: ignore[arg-type]

    @property
    def config_file(self) -> Path:
        from .config import config_path

        return config_path(self._config_opt, os.environ)

    @property
    def config(self) -> Config:
        if self._config is None:
            from .config import load_config
            from .envfile import environment

            self._config = load_config(self.config_file, environment(self.config_file, os.environ))
            for secret in self._config.secrets():
                self.redactor.add(secret)
        return self._config

    @property
    def crash_after(self) -> str | None:
        return os.environ.get("OKBX_CRASH_AFTER")  # fault injection for the crash tests only

    def store(self) -> Store:
        from .state.store import Store

        return Store(self.config.state.path, clock=self.clock.now, crash_after=self.crash_after)

    def clients(self) -> Clients:
        from .clients.bundle import Clients

        return Clients.build(self.config, self.redactor, self.clock)


def _given_clock(context: typer.Context) -> Clock:
    """The clock passed in as the context object (tests pass one they advance), else the real one."""
    return context.obj if isinstance(context.obj, Clock) else Clock()


def _silence_stdout() -> None:
    """After the reader of our stdout went away: nothing more to say, and no noise at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


@contextmanager
def _errors(run: _Run | None = None) -> Iterator[None]:
    redact: Callable[[str], str] = run.redactor if run else (lambda s: s)
    try:
        if run is not None:
            run.start()
        yield
    except typer.Exit:
        raise
    except BrokenPipeError:  # `okbx status | head`: the reader has what it wanted
        _silence_stdout()
        raise typer.Exit(BROKEN_PIPE) from None
    except OkbxError as error:
        typer.echo(f"okbx: {redact(str(error))}", err=True)
        raise typer.Exit(int(error.exit_code)) from None
    except KeyboardInterrupt:
        typer.echo("okbx: interrupted", err=True)
        raise typer.Exit(130) from None
    except click.exceptions.Abort:  # a prompt got no answer (input ended, or Ctrl-C)
        typer.echo("okbx: no answer given; stopped (for a run without questions pass --yes and the flags)", err=True)
        raise typer.Exit(int(ExitCode.USAGE)) from None
    except Exception as error:  # a bug: say so plainly, full detail only with -v, secrets scrubbed
        import traceback

        typer.echo(f"okbx: internal error: {redact(error.__class__.__name__ + ': ' + str(error))}", err=True)
        if run is not None and run.verbose:
            typer.echo(redact("".join(traceback.format_exception(error))), err=True)
        else:
            typer.echo("okbx: run again with -v for the traceback", err=True)
        raise typer.Exit(int(ExitCode.ACTIONS_FAILED)) from None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"okbx {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """okbx-sync."""


# -- sync and run ---------------------------------------------------------------------------------
def _ensure_binding(store: Store, cfg: Config, *, record: bool = True) -> None:
    """The store serves the configured accounts (issue 7); else exit 3 before any write."""
    from .state.binding import ensure_binding

    ensure_binding(store, cfg, record=record)


def _extra(action: Action, outcome: str, **more: Any) -> dict[str, Any]:
    """Structured fields of an action's log line (the JSON log's issue/action/system/outcome)."""
    fields = {"issue": action.issue_id, "action": action.name, "system": action.side or "local"}
    return {**fields, "track": str(action.track), "outcome": outcome, **more}


def _log_action(action: Action, outcome: str) -> None:
    """One log line per action as it happens; failures are logged with their reason afterwards."""
    if outcome != "failed":
        from .logsetup import ACTION_LOGGER

        _log(ACTION_LOGGER).info(
            "issue %s: %s %s: %s",
            action.issue_id,
            action.name,
            outcome,
            action.detail,
            extra=_extra(action, outcome),
        )


def _report_cycle(
    result: CycleResult,
    clients: Clients,
    *,
    quiet: bool,
    emit: Callable[..., None] | None = None,
) -> tuple[int, str]:
    """Failures and new parkings as WARNING/ERROR (stderr and the log file, also with -q); the
    summary on stdout unless quiet (or through `emit` in the loop), and always in the log file.
    Counts, line and exit code all come from one Outcome, so they agree."""
    from .core.outcome import outcome_of
    from .logsetup import ACTION_LOGGER, ON_STDOUT

    outcome = outcome_of(result, clients.requests_sent())
    action_log = _log(ACTION_LOGGER)
    for failure in outcome.failures:
        where = f"issue {failure.issue_id}: " if failure.issue_id is not None else ""
        what = f"{failure.what}: " if failure.what else ""
        action_log.warning(
            "failed: %s%s%s",
            where,
            what,
            failure.why,
            extra={"issue": failure.issue_id, "action": failure.what, "outcome": "failed", "reason": failure.why},
        )
    for health in outcome.parked:
        _log().error(
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
    line = outcome.line()
    if emit is not None:
        emit("%s", line, extra=outcome.fields())
    else:
        printed = not quiet
        if printed:
            typer.echo(line)
        _log().info("%s", line, extra={**outcome.fields(), ON_STDOUT: printed})
    return outcome.exit_code, line


def _print_plan(result: CycleResult) -> None:
    from .core.outcome import plan_rows, plan_title

    _print_table(plan_title(result.plan), ("issue", "system", "action", "detail"), list(plan_rows(result.plan)))


@app.command()
def sync(
    context: typer.Context,
    config: ConfigOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Plan and print; write nothing anywhere (not even a new state store).")
    ] = False,
    force: ForceOpt = False,
    wait: Annotated[float, typer.Option("--wait", help="Wait up to SECONDS for another run to finish.")] = 0.0,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_file: LogFileOpt = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """Run one sync cycle."""
    run = _Run(
        config, verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, clock=_given_clock(context)
    )
    with _errors(run):
        code = _one_cycle(run, dry_run=dry_run, force=force, wait=wait, quiet=quiet)
        raise typer.Exit(code)


PROGRESS_FROM = 20  # actions; smaller cycles finish before a bar is worth drawing


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


LAST_RUN = "last_run"  # state-store meta key: when the last (non-dry) run ended and how


def _remember_run(store: Store, started: datetime, outcome: str, summary: str) -> None:
    import json
    from datetime import UTC, datetime

    record = {"started": started.isoformat(), "ended": datetime.now(UTC).isoformat(), "outcome": outcome}
    try:
        store.set_meta(LAST_RUN, json.dumps({**record, "summary": summary}, ensure_ascii=False))
    except OkbxError:
        pass  # the store failing is reported by the error that brought us here, or by the next run


def _one_cycle(
    run: _Run,
    *,
    dry_run: bool = False,
    force: bool = False,
    wait: float = 0.0,
    quiet: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    emit: Callable[..., None] | None = None,
) -> int:

    from .cycle import opened, sync_cycle
    from .sync.lock import run_lock

    cfg = run.config
    # A dry run writes nothing: no lock file, and the store is an in-memory copy.
    lock = nullcontext() if dry_run else run_lock(cfg.state.path, wait, run.clock)
    with lock, opened(cfg, run.redactor, run.crash_after, run.clock, read_only=dry_run) as (clients, store):
        _ensure_binding(store, cfg, record=not dry_run)  # before any request: a foreign store writes nothing
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
                _remember_run(store, started, "failed", run.redactor(str(error)))
            raise
        if dry_run:
            _print_plan(result)
            return 0
        _ensure_binding(store, cfg)  # a new store is bound once it holds a task of these accounts
        code, line = _report_cycle(result, clients, quiet=quiet, emit=emit)
        _remember_run(store, started, "ok" if code == 0 else "failed", line)
        return code


# -- link, status, retry ---------------------------------------------------------------------------
@app.command()
def link(
    context: typer.Context,
    issue: Annotated[int, typer.Argument(help="Okdesk issue id.")],
    task: Annotated[int, typer.Argument(help="Bitrix24 task id.")],
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Link an issue that is not in the handoff status.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Connect an existing Okdesk issue and Bitrix24 task; later cycles sync them like any other link."""
    from .errors import NotFound
    from .sync.lock import run_lock

    run = _Run(config, verbose=verbose, clock=_given_clock(context))
    with _errors(run):
        cfg = run.config
        with run_lock(cfg.state.path, clock=run.clock):
            store = run.store()
            clients = run.clients()
            try:
                _ensure_binding(store, cfg)
                if (existing := store.link(issue)) is not None:
                    raise UsageError(f"issue {issue} is already linked to task {existing.task_id} ({existing.state})")
                if (existing := store.link_for_task(task)) is not None:
                    raise UsageError(f"task {task} is already linked to issue {existing.issue_id} ({existing.state})")
                try:
                    found_issue = clients.okdesk.get_issue(issue)
                except NotFound:
                    raise UsageError(f"Okdesk issue {issue} does not exist") from None
                handoff = cfg.okdesk.handoff_status
                if found_issue.status != handoff and not force:
                    # otherwise the completion would find it "moved by someone" and leave its status alone
                    raise UsageError(
                        f"Okdesk issue {issue} is in status '{found_issue.status}', not the handoff status "
                        f"'{handoff}': hand it off in Okdesk first, or pass --force to link it anyway (its "
                        "status is then left alone when the task is done)"
                    )
                found_task = clients.bitrix.get_task(task)
                if found_task is None:
                    raise UsageError(f"Bitrix24 task {task} does not exist (or the webhook user cannot see it)")
                from .sync.manual import link_pair

                link_pair(store, issue, task, found_issue.status)
                _ensure_binding(store, cfg)
                typer.echo(
                    f"linked Okdesk issue {issue} ('{found_issue.title}') and Bitrix24 task {task} "
                    f"('{found_task.title}'); the next sync forwards comments and, once the task is "
                    "done, brings the time back"
                )
            finally:
                clients.close()
                store.close()


def _link_row(link_: Link | None, counts: dict[str, int] | None = None) -> dict[str, Any] | None:
    if link_ is None:
        return None
    counts = counts or {}
    return {
        "issue": link_.issue_id,
        "task": link_.task_id,
        "state": "parked" if link_.parked else link_.state,
        "cycle": link_.cycle,
        "issue_status": link_.issue_status,
        "comments_forwarded": counts.get("comment", 0),
        "time_entries_copied": counts.get("time", 0),
        "adopted": counts.get("adopted", 0),
        "failures": link_.fail_count,
        "last_error": link_.last_error,
        "next_retry_at": link_.next_retry_at.isoformat() if link_.next_retry_at else None,
        "updated_at": link_.updated_at.isoformat(),
    }


def _billing_failures(store: Store) -> dict[int, str]:
    """Billing and debt-hold work that is failing or parked (an unmatched company, a refused hold ...)."""
    from .state.lifecycle import Track

    found: dict[int, str] = {}
    for health in store.failing():
        if health.track != Track.ROUTE:
            state = "parked" if health.parked else f"{health.fail_count} failures"
            text = f"{health.track} ({state}): {health.last_error}"
            found[health.issue_id] = f"{found[health.issue_id]}; {text}" if health.issue_id in found else text
    return found


def _status_rows(store: Store) -> list[dict[str, Any]]:
    counts = store.counts()
    for issue_id, adopted in store.adopted_counts().items():
        counts.setdefault(issue_id, {})["adopted"] = adopted
    billing_errors = _billing_failures(store)
    rows = [_link_row(link_, counts.get(link_.issue_id, {})) for link_ in store.links().values()]
    for row in rows:
        if row is not None and row["issue"] in billing_errors:
            row["billing_error"] = billing_errors[row["issue"]]
            row["last_error"] = row["last_error"] or row["billing_error"]
    return [r for r in rows if r is not None]


def _local(moment: str | None, *, with_date: bool = True) -> str:
    """An ISO time from the store, in this machine's zone (the zone is named once, in the title)."""
    from datetime import datetime

    if not moment:
        return "-"
    local = datetime.fromisoformat(moment).astimezone()
    return local.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def _zone_name() -> str:
    from datetime import datetime

    now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return f"{now.tzname()} (UTC{offset[:3]}:{offset[3:]})"


def _status_title(rows: list[dict[str, Any]], last_run: dict[str, Any] | None) -> list[str]:
    unhealthy = sum(1 for r in rows if r["state"] == "parked" or r["failures"])
    lines = [f"okbx status: {len(rows)} links, {unhealthy} failing or parked; times in {_zone_name()}"]
    if last_run:
        lines.append(f"last run: {_local(last_run.get('ended'))}, {last_run.get('outcome')}: {last_run.get('summary')}")
    else:
        lines.append("last run: none recorded yet")
    return lines


def _problem(row: dict[str, Any]) -> str:
    if not (row["failures"] or row["state"] == "parked"):
        return ""
    retry = "" if row["state"] == "parked" else f", retry {_local(row['next_retry_at'], with_date=False)}"
    return f"{row['failures']}x{retry}: {row['last_error'] or ''}"


def _render_status(rows: list[dict[str, Any]], last_run: dict[str, Any] | None, *, wide: bool) -> None:
    """A table that fits the terminal (80 columns when not a terminal); `--wide` shows every column."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # not a terminal: 80 columns, or (--wide) no limit at all, so a long error stays on its line
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 100_000 if wide else 80)
    for line in _status_title(rows, last_run):
        console.print(line, overflow="ellipsis", no_wrap=not wide, markup=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    if wide:
        columns = ("issue", "task", "state", "handoff", "comments", "time entries", "adopted", "last activity")
        for header in (*columns, "failures", "next retry", "last error"):
            table.add_column(header, overflow="fold")
        for r in rows:
            table.add_row(
                *(str(c) for c in (r["issue"], r["task"] or "-", r["state"], r["cycle"])),
                str(r["comments_forwarded"]),
                str(r["time_entries_copied"]),
                str(r["adopted"]),
                _local(r["updated_at"]),
                str(r["failures"]),
                _local(r["next_retry_at"]),
                r["last_error"] or "",
                end_section=False,
            )
    else:
        for header, justify in (("issue", "right"), ("task", "right"), ("state", "left")):
            table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        for header in ("com.", "time"):
            table.add_column(header, justify="right", no_wrap=True)
        table.add_column("activity", no_wrap=True)
        cells = [
            (
                str(r["issue"]),
                str(r["task"] or "-"),
                r["state"],
                str(r["comments_forwarded"]),
                str(r["time_entries_copied"]),
                _local(r["updated_at"])[5:],  # MM-DD HH:MM: the year is in the last run's line
            )
            for r in rows
        ]
        fixed = sum(max([len(str(c.header)), *(len(row[i]) for row in cells)]) for i, c in enumerate(table.columns))
        room = max(12, console.width - fixed - 3 * len(table.columns) - 3)  # padding and separators
        table.add_column("problem", no_wrap=True, overflow="ellipsis", max_width=room)
        for row, r in zip(cells, rows, strict=True):
            problem = _problem(r)
            table.add_row(*row, problem if len(problem) <= room else problem[: room - 1] + "…")
    console.print(table, markup=False)


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, long errors in full.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show the links, their state and failures, and the last run; exit 1 while any link fails or is parked."""
    import json

    run = _Run(config, verbose=verbose)
    with _errors(run):
        store = run.store()
        try:
            rows = _status_rows(store)
            linked = {r["issue"] for r in rows}
            unlinked = {i: e for i, e in _billing_failures(store).items() if i not in linked}  # e.g. a debtor's issue
            last_run_text = store.get_meta(LAST_RUN)
        finally:
            store.close()
        last_run = json.loads(last_run_text) if last_run_text else None
        if as_json:
            failures = [{"issue": i, "error": e} for i, e in sorted(unlinked.items())]
            payload = {"links": rows, "last_run": last_run, "billing_failures": failures}
            typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        else:
            for issue_id, error in sorted(unlinked.items()):
                typer.echo(f"billing: issue {issue_id}: {error}")
            _render_status(rows, last_run, wide=wide)
        unhealthy = unlinked or any(r["state"] == "parked" or r["failures"] or r.get("billing_error") for r in rows)
        raise typer.Exit(int(ExitCode.ACTIONS_FAILED if unhealthy else ExitCode.OK))


@app.command()
def retry(
    context: typer.Context, issue: Annotated[int, typer.Argument(help="Okdesk issue id.")], config: ConfigOpt = None
) -> None:
    """Clear an issue's failure backoff (or parking) so the next sync tries it at once."""
    run = _Run(config, clock=_given_clock(context))
    with _errors(run):
        store = run.store()
        try:
            from .sync.manual import retry_issue

            _ensure_binding(store, run.config)
            tracks = retry_issue(store, issue)
            typer.echo(f"issue {issue} will be tried at the next sync ({', '.join(tracks)})")
        finally:
            store.close()


# -- rebind: the store's accounts (issue 7) ------------------------------------------------------------
@app.command()
def rebind(
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebind even though the portal has none of the store's tasks.")
    ] = False,
) -> None:
    """Record the configured accounts as the ones the state store serves.

    For the same accounts under a new address (an Okdesk custom domain, a renamed portal, a new
    webhook). Never for other accounts: their issues and tasks are not the ones in this store.
    Before asking, a few of the store's tasks are looked up in the configured portal."""
    from .state.binding import Binding, record_binding, stored_binding, tasks_under_their_markers
    from .sync.lock import run_lock

    run = _Run(config)
    with _errors(run):
        cfg = run.config
        with run_lock(cfg.state.path, clock=run.clock):
            store, clients = run.store(), run.clients()
            try:
                wanted, found = Binding.of(cfg), stored_binding(store)
                if found == wanted:
                    typer.echo(f"the state store {cfg.state.path} already serves {wanted.describe()}")
                    return
                typer.echo(f"the state store {cfg.state.path} serves {found.describe() if found else 'no account yet'}")
                typer.echo(f"the configuration says {wanted.describe()}")
                seen, same = tasks_under_their_markers(store, clients.bitrix)
                typer.echo(f"of {seen} of the store's tasks found in that portal, {same} belong to their issue")
                if seen and not same and not force:
                    raise UsageError(
                        "not rebound: none of the store's tasks found there belongs to its issue, so these look "
                        "like other accounts; give this configuration its own state.path (or pass --force)"
                    )
                if not yes and not _confirm("are these the same accounts under a new address?"):
                    raise UsageError("not rebound: the state store still serves what it served")
                record_binding(store, wanted)
                _log().info("state store %s rebound from %s to %s", cfg.state.path, found, wanted)
                typer.echo(f"the state store now serves {wanted.describe()}")
            finally:
                clients.close()
                store.close()


def _confirm(question: str) -> bool:
    try:
        return bool(typer.confirm(question, default=False))
    except typer.Abort:  # no answer (stdin closed, as under cron): not a yes
        typer.echo("", err=True)
        return False


# -- demo, doctor --------------------------------------------------------------------------------
@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's config and state directory.")] = False,
) -> None:
    """Play the whole story on built-in emulators of both APIs (no credentials needed)."""
    from .demo import run_demo

    with _errors():
        ok = run_demo(say=typer.echo, keep=keep)
        raise typer.Exit(0 if ok else 1)


@app.command()
def doctor(config: ConfigOpt = None, verbose: VerboseOpt = False) -> None:
    """Check the configuration and both accounts before the first real run; exit 0 only when all pass."""
    from datetime import UTC, datetime

    from .doctor import run_checks

    run = _Run(config, verbose=verbose)
    with _errors(run):
        cfg = run.config
        clients = run.clients()
        try:
            checks = run_checks(cfg, clients.okdesk, clients.bitrix, now=lambda: datetime.now(UTC))
        finally:
            clients.close()
        warnings = sum(c.ok and c.warn for c in checks)
        _print_table(
            f"okbx doctor: {sum(c.ok for c in checks)} of {len(checks)} checks pass"
            + (f", {warnings} with a warning" if warnings else ""),
            ("check", "result", "detail", "how to fix"),
            [
                (c.name, ("WARN" if c.warn else "ok") if c.ok else "FAIL", run.redactor(c.detail), run.redactor(c.fix))
                for c in checks
            ],
        )
        raise typer.Exit(0 if all(c.ok for c in checks) else int(ExitCode.ACTIONS_FAILED))


# -- init -----------------------------------------------------------------------------------------
def _ask(label: str, *, default: str | None = None, hide: bool = False, check: Callable[[str], str | None]) -> str:
    """Prompt until `check` accepts the answer (it returns a problem or None); a bad answer is asked again."""
    while True:
        answer = str(typer.prompt(label, default=default, hide_input=hide, show_default=not hide)).strip()
        problem = check(answer)
        if problem is None:
            return answer
        typer.echo(f"  {problem}; try again")


def _pick(label: str, options: list[tuple[str, str]], default: str | None = None) -> str:
    """One value from a discovered list, interactively: a number or a code, Enter for the default."""
    codes = [code for code, _ in options]
    for number, (code, name) in enumerate(options, 1):
        typer.echo(f"  {number}. {name} [{code}]")

    def check(answer: str) -> str | None:
        if answer in codes or (answer.isdigit() and 1 <= int(answer) <= len(options)):
            return None
        return f"{answer!r} is not in the list: pick a number or a code"

    answer = _ask(label, default=default if default in codes else None, check=check)
    return answer if answer in codes else options[int(answer) - 1][0]


def _url_problem(what: str) -> Callable[[str], str | None]:
    from .config import insecure_http_problem

    def check(answer: str) -> str | None:
        import re

        if what == "webhook" and not re.match(r"^https?://[^/\s]+/rest/\d+/[^/\s?#]+/?$", answer):
            return "the webhook URL must look like https://<portal>/rest/<user id>/<secret>/"
        if what == "okdesk" and not re.match(r"^https?://[^/\s]+", answer):
            return "the Okdesk URL must look like https://yourcompany.okdesk.ru"
        problem = insecure_http_problem(answer)
        return problem.replace("in this section", "in okbx.yaml") if problem else None

    return check


def _nonempty(answer: str) -> str | None:
    return None if answer else "an answer is needed"


def _choose(
    flag: str,
    label: str,
    options: list[tuple[str, str]],
    given: str | None,
    *,
    default: str | None,
    interactive: bool,
    problems: list[str],
) -> str:
    """A flag's value checked against what the accounts offer; asked for when interactive, else
    every missing or wrong flag is collected in `problems` and reported together."""
    codes = [code for code, _ in options]
    if given in codes:
        return str(given)
    shown = ", ".join(f"{code} ({name})" if name != code else code for code, name in options[:15])
    shown += ", …" if len(options) > 15 else ""
    if given is None and default in codes and not interactive:
        return str(default)
    problem = (
        f"{flag} {given!r} is not one of: {shown or '(none found)'}"
        if given is not None
        else f"{flag} is missing; one of: {shown or '(none found)'}"
    )
    if not interactive:
        problems.append(problem)
        return ""
    if given is not None:
        typer.echo(f"  {problem}")
    return _pick(label, options, default)


@app.command()
def init(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the configuration.")] = Path(
        "okbx.yaml"
    ),
    okdesk_url: Annotated[str | None, typer.Option(help="https://yourcompany.okdesk.ru")] = None,
    webhook_url: Annotated[str | None, typer.Option(hidden=True)] = None,
    handoff_status: Annotated[str | None, typer.Option(help="Okdesk status code that hands an issue off.")] = None,
    return_status: Annotated[
        str | None, typer.Option(help="Okdesk status code set when the task is done [default: opened].")
    ] = None,
    bot_employee: Annotated[str | None, typer.Option(help="Okdesk employee id okbx writes as.")] = None,
    group: Annotated[str | None, typer.Option(help="Bitrix24 group id for new tasks.")] = None,
    responsible: Annotated[str | None, typer.Option(help="Bitrix24 user id responsible for new tasks.")] = None,
    default_employee: Annotated[
        str | None, typer.Option(help="Okdesk employee for unmapped programmers' time [default: the bot].")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Non-interactive: take the flags and the proposed user mapping.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing configuration and the okbx.env next to it.")
    ] = False,
) -> None:
    """Write a starter okbx.yaml (and okbx.env for the secrets) from what both APIs report, then run doctor.

    The secrets are never flags (a command line is visible to every user in `ps`): the Okdesk token
    comes from $OKDESK_API_TOKEN and the webhook URL from $BITRIX24_WEBHOOK_URL, else from a hidden prompt."""
    from .envfile import ENV_TOKEN, ENV_WEBHOOK, env_file_for, render_env_file, write_private_file
    from .errors import ApiError
    from .setup_wizard import discover, propose_user_map, render_config

    run = _Run(None)
    with _errors(run):
        if webhook_url is not None:
            raise UsageError(
                "--webhook-url is not accepted: the webhook URL holds a secret, and a command line is visible "
                f"in `ps`. Set ${ENV_WEBHOOK}, or leave it out and paste it at the hidden prompt"
            )
        env_path = env_file_for(output)
        existing = [str(p) for p in (output, env_path) if p.exists()]
        if existing and not force:
            raise UsageError(
                f"init would overwrite {' and '.join(existing)}; pass --force to replace "
                f"{'them' if len(existing) > 1 else 'it'}, or choose another directory with -o"
            )
        interactive = not yes
        url, token, webhook = okdesk_url, os.environ.get(ENV_TOKEN) or None, os.environ.get(ENV_WEBHOOK) or None
        if not interactive:
            missing = [name for name, value in (("--okdesk-url", url), (f"${ENV_TOKEN}", token)) if not value]
            missing += [f"${ENV_WEBHOOK}"] if not webhook else []
            if missing:
                flags = {"--handoff-status": handoff_status, "--bot-employee": bot_employee}
                flags |= {"--group": group, "--responsible": responsible}
                missing += [flag for flag, value in flags.items() if value is None]
                raise UsageError("init --yes needs: " + ", ".join(missing) + " (secrets from the environment)")
        url = url or _ask("Okdesk URL (https://yourcompany.okdesk.ru)", check=_url_problem("okdesk"))
        token = token or _ask("Okdesk API token (hidden)", hide=True, check=_nonempty)
        webhook = webhook or _ask("Bitrix24 incoming webhook URL (hidden)", hide=True, check=_url_problem("webhook"))
        while True:
            try:
                found = discover(url, token, webhook, redactor=run.redactor)
                break
            except (ApiError, UsageError) as error:
                if not interactive:
                    raise
                # a wrong answer is asked again; the others are kept
                typer.echo(f"  {run.redactor(str(error))}")
                if getattr(error, "system", "") == "Bitrix24" or "webhook" in str(error):
                    webhook = _ask("Bitrix24 incoming webhook URL (hidden)", hide=True, check=_url_problem("webhook"))
                else:
                    url = _ask("Okdesk URL", default=url, check=_url_problem("okdesk"))
                    token = _ask("Okdesk API token (hidden)", hide=True, check=_nonempty)
        employees = [
            (str(e["id"]), f"{e['name']} <{e.get('email') or '-'}>")
            for e in found.okdesk_employees
            if e.get("active", True)
        ]
        users = [
            (str(u["id"]), f"{u['name']} <{u.get('email') or '-'}>")
            for u in found.bitrix_users
            if u.get("active", True)
        ]
        groups = [(str(g["id"]), str(g["name"])) for g in found.groups]
        problems: list[str] = []

        def choose(
            flag: str, label: str, options: list[tuple[str, str]], given: str | None, default: str | None
        ) -> str:
            return _choose(flag, label, options, given, default=default, interactive=interactive, problems=problems)

        one_group = groups[0][0] if len(groups) == 1 else None
        # the handoff status is a custom one: proposed when asking, never assumed by --yes
        proposal = "to_programmers" if interactive else None
        handoff = choose("--handoff-status", "handoff status", found.statuses, handoff_status, proposal)
        back = choose("--return-status", "return status", found.statuses, return_status, "opened")
        bot = choose(
            "--bot-employee", "Okdesk employee okbx writes as (its token's owner)", employees, bot_employee, None
        )
        group_id = choose("--group", "Bitrix24 group for new tasks", groups, group, one_group)
        owner = choose("--responsible", "Bitrix24 user responsible for new tasks", users, responsible, None)
        fallback = ""  # defaults to the bot: not worth a complaint of its own while the bot is missing
        if bot or default_employee is not None or interactive:
            label = "Okdesk employee for unmapped programmers' time"
            fallback = choose("--default-employee", label, employees, default_employee, bot)
        if problems:
            raise UsageError("init --yes: fix these flags:\n  " + "\n  ".join(problems))
        mapping = propose_user_map(found.bitrix_users, found.okdesk_employees)
        typer.echo(f"proposed Bitrix24 -> Okdesk user mapping (by e-mail): {mapping or 'none found'}")
        if interactive and mapping and not typer.confirm("use this mapping?", default=True):
            mapping = {}
        choices: dict[str, Any] = {
            "okdesk.url": url.rstrip("/"),
            "okdesk.bot_employee_id": int(bot),
            "okdesk.handoff_status": handoff,
            "okdesk.return_status": back,
            "bitrix24.group_id": int(group_id),
            "bitrix24.responsible_id": int(owner),
            "time.default_employee_id": int(fallback),
            "time.users": mapping,
        }
        if found.webhook_user_id:
            choices["bitrix24.created_by"] = found.webhook_user_id
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(render_config(choices), encoding="utf-8")
        write_private_file(env_path, render_env_file(token, webhook))
        typer.echo(f"wrote {output} and {env_path} (secrets, mode 600); running okbx doctor")
    doctor(config=str(output))


def _state_files(state_path: Path) -> list[Path]:
    return [state_path.with_name(state_path.name + suffix) for suffix in ("", "-wal", "-shm", ".lock")]


@app.command()
def emulate(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to write okbx.yaml and okbx.env (default: a new okbx-playground-* here)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an okbx.yaml, okbx.env and state store already in --dir.")
    ] = False,
) -> None:
    """Run both emulators on 127.0.0.1 with a matching config, to try okbx safely; Ctrl-C stops them."""
    import signal
    import tempfile
    import threading

    from okbx_emulator.world import World

    from .envfile import ENV_FILE_NAME, render_env_file, write_private_file

    with _errors():
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="okbx-playground-", dir="."))
        else:
            # Never take over someone's configuration: its store would see every link's issue as deleted.
            found = [
                p
                for p in [directory / "okbx.yaml", directory / ENV_FILE_NAME, *_state_files(directory / "okbx.sqlite3")]
                if p.exists()
            ]
            if found and not force:
                raise UsageError(
                    f"{directory} already holds {', '.join(p.name for p in found)}; emulate would overwrite them "
                    "(and a state store of real accounts must never meet the emulators). Choose another --dir, "
                    "leave --dir out for a fresh directory, or pass --force to replace them"
                )
            for path in found:
                if path.name != "okbx.yaml" and path.name != ENV_FILE_NAME:
                    path.unlink()  # --force: the old store belongs to another world
            directory.mkdir(parents=True, exist_ok=True)
        world = World.start()
        stopped = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            config_file = world.write_config(directory)
            env = world.env()
            write_private_file(
                directory / ENV_FILE_NAME, render_env_file(env["OKDESK_API_TOKEN"], env["BITRIX24_WEBHOOK_URL"])
            )
            typer.echo(f"Okdesk emulator:   {world.okdesk_server.url}")
            typer.echo(f"Bitrix24 emulator: {world.bitrix_server.url} (webhook in {directory / ENV_FILE_NAME})")
            typer.echo(f"Try: okbx doctor --config {config_file}; okbx sync --dry-run --config {config_file}")
            typer.echo("The emulators start empty of issues; stop them with Ctrl-C.")
            try:
                stopped.wait()
            except KeyboardInterrupt:
                pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            world.close()


# -- the loop -------------------------------------------------------------------------------------
MAX_EVERY = 7 * 24 * 3600


def _parse_every(text: str) -> float:
    import math

    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except (ValueError, KeyError):
        value = math.nan
    if not (math.isfinite(value) and 1 <= value <= MAX_EVERY):
        raise UsageError(f"--every must be a duration from 1s to 7 days like 30s, 5m or 1h, got {text!r}")
    return value


@app.command("run")
def run_loop(
    context: typer.Context,
    every: Annotated[str, typer.Option("--every", help="Interval between cycles: 30s, 5m, 1h.")] = "5m",
    config: ConfigOpt = None,
    force: ForceOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_file: LogFileOpt = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """Run sync cycles in a loop until SIGTERM or Ctrl-C (the action in flight is finished first)."""
    import signal

    from .state.binding import ForeignStore

    run = _Run(
        config, verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, clock=_given_clock(context)
    )
    with _errors(run):
        log = _log()
        seconds = _parse_every(every)
        run.config  # noqa: B018 - fail on a bad config before looping
        stop: list[str] = []

        def ask_to_stop(signum: int, _frame: object) -> None:
            stop.append(signal.Signals(signum).name)
            log.info("%s received: finishing the action in flight, then stopping", stop[-1])

        previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

        def cycle() -> None:
            try:
                _one_cycle(run, force=force, quiet=quiet, should_stop=lambda: bool(stop), emit=log.info)
            except ForeignStore:
                raise  # the store serves other accounts: no later cycle can succeed (exit code 3)
            except OkbxError as error:  # one bad cycle does not end the loop; the next may succeed
                log.error("%s", run.redactor(str(error)))

        try:
            log.info("okbx run: a cycle every %s; stop with SIGTERM or Ctrl-C", every)
            clock = run.clock
            next_cycle = clock.monotonic()
            while not stop:
                if clock.monotonic() >= next_cycle:
                    cycle()
                    next_cycle = clock.monotonic() + seconds  # the interval counts from the end of a cycle
                else:  # short naps, so a stop request is noticed within a second
                    clock.sleep(min(1.0, next_cycle - clock.monotonic()))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("okbx run: stopped")


@app.command()
def show(
    context: typer.Context,
    issue: Annotated[int, typer.Argument(help="Okdesk issue id.")],
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The full history of one link: every action, when, with what result, every failure and why."""
    import json

    run = _Run(config, clock=_given_clock(context))
    with _errors(run):
        store = run.store()
        try:
            link_ = store.link(issue)
            entries = store.journal(issue)
            store_counts = store.counts().get(issue, {})
        finally:
            store.close()
        if link_ is None and not entries:
            raise UsageError(f"issue {issue} has no history: it was never linked")
        if as_json:
            data = {"link": _link_row(link_, store_counts), "history": entries}
            typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
            return
        if link_ is not None:
            typer.echo(
                f"issue {issue} <-> task {link_.task_id or '-'}: {'parked' if link_.parked else link_.state}, "
                f"handoff #{link_.cycle}, failures {link_.fail_count}"
                + (f", last error: {link_.last_error}" if link_.last_error else "")
            )
        _print_table(
            f"history of issue {issue} (times in {_zone_name()})",
            ("when", "what", "result", "detail"),
            [(_local(e["at"]), e["kind"], e["outcome"], e["detail"]) for e in entries],
        )


# -- okbx report (issue 10): the time ledger; its logic lives in billing/report.py -------------------
@app.command()
def report(
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    by_issue: Annotated[bool, typer.Option("--by-issue", help="One line per issue too.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Compare with both systems; list every drift.")] = False,
) -> None:
    """Hours per client company, programmer and month, from the time okbx copied."""
    from .billing import report as ledger

    run = _Run(config)
    with _errors(run):
        if fmt not in ("table", "csv", "json"):
            raise UsageError(f"--format must be table, csv or json, not {fmt!r}")
        from .state.store import Store

        # a report writes nothing: not even a new store (`sudo okbx report` must not leave a root-owned one)
        store, clients = Store(run.config.state.path, clock=run.clock.now, read_only=True), run.clients()
        try:
            ops = ledger.time_ops(store)
            companies = ledger.companies_of_issues(store, clients.okdesk, {op.issue_id for op in ops})
            summary = ledger.summarize(ledger.ledger_rows(ops, companies), by_issue=by_issue)
            drifts = ledger.verify(store, clients.okdesk, clients.bitrix) if verify else None
        finally:
            clients.close()
            store.close()
        if fmt == "json":
            typer.echo(ledger.to_json(summary, drifts))
        elif fmt == "csv":
            typer.echo(ledger.to_csv(summary), nl=False)
        else:
            top = max((float(str(r["hours"])) for r in summary), default=0.0) or 1.0
            headers = [*(k for k in (summary[0] if summary else {"company": 0})), "bar"]
            rows: list[Sequence[Any]] = [
                [*r.values(), "█" * max(1, round(20 * float(str(r["hours"])) / top))] for r in summary
            ]
            _print_table(f"okbx report: {len(summary)} lines", headers, rows)
            for drift in drifts or []:
                typer.echo(f"drift: issue {drift.issue_id} item {drift.item_id or '-'}: {drift.what}")
        if drifts:
            raise typer.Exit(int(ExitCode.ACTIONS_FAILED))


def run() -> None:
    try:
        app(prog_name="okbx")
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(BROKEN_PIPE)
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            _silence_stdout()


if __name__ == "__main__":
    run()
