"""The `okbx` command line.  The only module that prints, and the only one that knows rich.

Exit codes: 0 all done; 1 some actions failed (the others went through), or a plan was
refused as unsafe; 2 configuration or usage error; 3 the state store cannot be used;
75 another okbx run holds the lock (try again later).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from . import __version__
from .clock import Clock
from .config import Config, config_path, load_config
from .errors import ExitCode, NotFound, OkbxError, UsageError
from .secrets import Redactor
from .state.store import Link, Store
from .sync.engine import Clients, CycleResult, opened, run_cycle
from .sync.lock import run_lock

log = logging.getLogger("okbx")
HELP = __doc__.split("\n\n", 1)[1] if __doc__ else ""
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="okbx-sync: hand Okdesk issues to programmers in Bitrix24 and bring the result back.\n\n" + HELP,
)

ConfigOpt = Annotated[
    str | None, typer.Option("--config", "-c", help="Config file (default: $OKBX_CONFIG, else ./okbx.yaml).")
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log details.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing when nothing happened.")]
LogFileOpt = Annotated[Path | None, typer.Option("--log-file", help="Also append logs to this file.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Apply a plan that stops an unusual share of links.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _print_table(title: str, headers: Sequence[str], rows: list[Sequence[Any]]) -> None:
    if sys.stdout.isatty():
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
    """Everything a command needs, built from the options; turns errors into words and exit codes."""

    def __init__(
        self,
        config_opt: str | None,
        *,
        verbose: bool = False,
        quiet: bool = False,
        log_file: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.redactor = Redactor()
        self.verbose = verbose
        from .logsetup import setup_logging

        setup_logging(self.redactor, verbose=verbose, quiet=quiet, log_file=log_file)
        self.config_file = config_path(config_opt, os.environ)
        self._config: Config | None = None
        self.clock = clock or Clock()

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_file, _environment(self.config_file))
            for secret in self._config.secrets():
                self.redactor.add(secret)
        return self._config

    @property
    def crash_after(self) -> str | None:
        return os.environ.get("OKBX_CRASH_AFTER")  # fault injection for the crash tests only

    def store(self) -> Store:
        return Store(self.config.state.path, clock=self.clock.now, crash_after=self.crash_after)

    def clients(self) -> Clients:
        return Clients.build(self.config, self.redactor, self.clock)


def _given_clock(context: typer.Context) -> Clock:
    """The clock passed in as the context object (tests pass one they advance), else the real one."""
    return context.obj if isinstance(context.obj, Clock) else Clock()


def _environment(config_file: Path) -> dict[str, str]:
    """The process environment, completed by an `okbx.env` next to the config (as `okbx init` writes)."""
    from .setup_wizard import parse_env_file

    env = dict(os.environ)
    env_file = config_file.parent / "okbx.env"
    if env_file.is_file():
        try:
            for key, value in parse_env_file(env_file.read_text(encoding="utf-8")).items():
                if not env.get(key):  # a value set in the environment wins
                    env[key] = value
        except OSError:
            pass  # unreadable: ${VAR} errors will name what is missing
    return env


@contextmanager
def _errors(run: _Run | None = None) -> Iterator[None]:
    redact: Callable[[str], str] = run.redactor if run else (lambda s: s)
    try:
        yield
    except typer.Exit:
        raise
    except OkbxError as error:
        typer.echo(f"okbx: {redact(str(error))}", err=True)
        raise typer.Exit(int(error.exit_code)) from None
    except KeyboardInterrupt:
        typer.echo("okbx: interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as error:  # a bug: say so plainly, full detail only with -v, secrets scrubbed
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


def _report_cycle(
    result: CycleResult, clients: Clients, *, quiet: bool, emit: Callable[[str], None] | None = None
) -> int:
    applied = result.applied
    assert applied is not None
    sent = clients.requests_sent()
    changed = len(applied.done) + len(applied.adopted)
    for action, error in applied.failed:
        typer.echo(f"failed: issue {action.issue_id}: {action.kind}: {error}", err=True)
    for issue_id, error in result.read_errors.items():
        typer.echo(f"failed: issue {issue_id}: {error}", err=True)
    left = len(applied.not_reached) + len(result.snapshot.deferred)
    line = (
        f"okbx sync: {len(applied.done)} done, {len(applied.adopted)} adopted, {len(applied.failed)} failed, "
        f"{left} left for the next run; requests: Okdesk {sent['okdesk']}, "
        f"Bitrix24 {sent['bitrix24']}"
    )
    if applied.stopped_because:
        line += f"; stopped early: {applied.stopped_because}"
    elif result.snapshot.deferred:
        line += f"; {len(result.snapshot.deferred)} issues deferred: the request budget is spent"
    if not (quiet and changed == 0 and result.ok and not left):
        (emit or typer.echo)(line)
    return int(ExitCode.OK if result.ok else ExitCode.ACTIONS_FAILED)


def _print_plan(result: CycleResult) -> None:
    rows: list[Sequence[Any]] = []
    for action in result.plan.actions:
        rows.append((action.issue_id, action.side or "local", action.__class__.__name__, action.detail))
    for issue_id, why in result.plan.skipped.items():
        rows.append((issue_id, "", "skip", why))
    _print_table(
        f"okbx sync --dry-run: {len(result.plan.actions)} actions (nothing was written)",
        ("issue", "system", "action", "detail"),
        rows,
    )


@app.command()
def sync(
    context: typer.Context,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and print; write nothing anywhere.")] = False,
    force: ForceOpt = False,
    wait: Annotated[float, typer.Option("--wait", help="Wait up to SECONDS for another run to finish.")] = 0.0,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    log_file: LogFileOpt = None,
) -> None:
    """Run one sync cycle."""
    run = _Run(config, verbose=verbose, quiet=quiet, log_file=log_file, clock=_given_clock(context))
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


def _one_cycle(
    run: _Run,
    *,
    dry_run: bool = False,
    force: bool = False,
    wait: float = 0.0,
    quiet: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    emit: Callable[[str], None] | None = None,
) -> int:
    cfg = run.config
    with (
        run_lock(cfg.state.path, wait, run.clock),
        opened(cfg, run.redactor, run.crash_after, run.clock) as (clients, store),
    ):
        with _progress(enabled=not quiet and not dry_run) as (on_plan, on_action):
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
        if dry_run:
            _print_plan(result)
            return 0
        return _report_cycle(result, clients, quiet=quiet, emit=emit)


@app.command()
def link(
    context: typer.Context,
    issue: Annotated[int, typer.Argument(help="Okdesk issue id.")],
    task: Annotated[int, typer.Argument(help="Bitrix24 task id.")],
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Connect an existing Okdesk issue and Bitrix24 task; later cycles sync them like any other link."""
    run = _Run(config, verbose=verbose, clock=_given_clock(context))
    with _errors(run):
        cfg = run.config
        with run_lock(cfg.state.path):
            store = run.store()
            clients = run.clients()
            try:
                if (existing := store.link(issue)) is not None:
                    raise UsageError(f"issue {issue} is already linked to task {existing.task_id} ({existing.state})")
                if (existing := store.link_for_task(task)) is not None:
                    raise UsageError(f"task {task} is already linked to issue {existing.issue_id} ({existing.state})")
                try:
                    found_issue = clients.okdesk.get_issue(issue)
                except NotFound:
                    raise UsageError(f"Okdesk issue {issue} does not exist") from None
                found_task = clients.bitrix.get_task(task)
                if found_task is None:
                    raise UsageError(f"Bitrix24 task {task} does not exist (or the webhook user cannot see it)")
                store.create_link(issue, task, status=found_issue.status, origin=f"linked by hand to task {task}")
                key = f"task:{issue}:1"
                store.begin_op(key, issue, "task", cycle=1, report_key=None, detail={"detail": "linked by hand"})
                store.finish_op(
                    key, issue, "task", remote_id=str(task), outcome="linked", summary=f"linked by hand to task {task}"
                )
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
        "failures": link_.fail_count,
        "last_error": link_.last_error,
        "next_retry_at": link_.next_retry_at.isoformat() if link_.next_retry_at else None,
        "updated_at": link_.updated_at.isoformat(),
    }


def _status_rows(store: Store) -> list[dict[str, Any]]:
    counts = store.counts()
    rows = [_link_row(link_, counts.get(link_.issue_id, {})) for link_ in store.links().values()]
    return [r for r in rows if r is not None]


@app.command()
def status(config: ConfigOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """Show the links and their state, including failures with their reason."""
    run = _Run(config, verbose=verbose)
    with _errors(run):
        store = run.store()
        try:
            rows = _status_rows(store)
        finally:
            store.close()
        if as_json:
            typer.echo(json.dumps({"links": rows}, ensure_ascii=False, indent=2))
            return
        headers = (
            "issue",
            "task",
            "state",
            "handoff",
            "comments",
            "time entries",
            "last activity",
            "failures",
            "next retry",
            "last error",
        )
        _print_table(
            f"okbx status: {len(rows)} links",
            headers,
            [
                (
                    r["issue"],
                    r["task"] or "-",
                    r["state"],
                    r["cycle"],
                    r["comments_forwarded"],
                    r["time_entries_copied"],
                    r["updated_at"][:16].replace("T", " "),
                    r["failures"],
                    (r["next_retry_at"] or "-")[:16],
                    r["last_error"] or "",
                )
                for r in rows
            ],
        )


@app.command()
def retry(
    context: typer.Context, issue: Annotated[int, typer.Argument(help="Okdesk issue id.")], config: ConfigOpt = None
) -> None:
    """Clear an issue's failure backoff (or parking) so the next sync tries it at once."""
    run = _Run(config, clock=_given_clock(context))
    with _errors(run):
        store = run.store()
        try:
            if store.link(issue) is None:
                raise UsageError(f"issue {issue} is not linked")
            store.update_link(issue, fail_count=0, next_retry_at=None, parked=False, dirty=True)
            typer.echo(f"issue {issue} will be tried at the next sync")
        finally:
            store.close()


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
        _print_table(
            f"okbx doctor: {sum(c.ok for c in checks)} of {len(checks)} checks pass",
            ("check", "result", "detail", "how to fix"),
            [(c.name, "ok" if c.ok else "FAIL", run.redactor(c.detail), run.redactor(c.fix)) for c in checks],
        )
        raise typer.Exit(0 if all(c.ok for c in checks) else int(ExitCode.ACTIONS_FAILED))


def _pick(label: str, options: list[tuple[str, str]], given: str | None, interactive: bool) -> str:
    """One value from a discovered list: the flag's value, else a prompt, else refuse."""
    codes = [code for code, _ in options]
    if given is not None:
        if given not in codes:
            raise UsageError(f"{label}: {given!r} is not one of: {', '.join(codes) or '(none found)'}")
        return given
    if not interactive:
        raise UsageError(f"{label}: give it with its flag (choices: {', '.join(codes) or '(none found)'})")
    for number, (code, name) in enumerate(options, 1):
        typer.echo(f"  {number}. {name} [{code}]")
    while True:
        answer = typer.prompt(label).strip()
        if answer in codes:
            return answer
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            return options[int(answer) - 1][0]
        typer.echo("  pick a number or a code from the list")


@app.command()
def init(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the configuration.")] = Path(
        "okbx.yaml"
    ),
    okdesk_url: Annotated[str | None, typer.Option(help="https://yourcompany.okdesk.ru")] = None,
    webhook_url: Annotated[
        str | None, typer.Option(help="Bitrix24 incoming webhook URL (default: $BITRIX24_WEBHOOK_URL).")
    ] = None,
    handoff_status: Annotated[str | None, typer.Option(help="Okdesk status code that hands an issue off.")] = None,
    return_status: Annotated[str | None, typer.Option(help="Okdesk status code set when the task is done.")] = None,
    bot_employee: Annotated[str | None, typer.Option(help="Okdesk employee id okbx writes as.")] = None,
    group: Annotated[str | None, typer.Option(help="Bitrix24 group id for new tasks.")] = None,
    responsible: Annotated[str | None, typer.Option(help="Bitrix24 user id responsible for new tasks.")] = None,
    default_employee: Annotated[
        str | None, typer.Option(help="Okdesk employee for unmapped programmers' time.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Non-interactive: take the flags and the proposed user mapping.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing configuration.")] = False,
) -> None:
    """Write a starter okbx.yaml (and okbx.env for the secrets) from what both APIs report, then run doctor.

    The Okdesk token is read from $OKDESK_API_TOKEN or asked for (hidden); it is never a flag."""
    from .setup_wizard import discover, propose_user_map, render_config, render_env_file, write_private_file

    run = _Run(None)
    with _errors(run):
        interactive = not yes and sys.stdin.isatty()
        if output.exists() and not force:
            raise UsageError(f"{output} exists; pass --force to overwrite it")

        def ask(value: str | None, env_key: str | None, label: str, hide: bool = False) -> str:
            value = value or (os.environ.get(env_key) if env_key else None)
            if value:
                return value
            if not interactive:
                raise UsageError(f"{label} is needed" + (f" (set ${env_key})" if env_key else ""))
            return str(typer.prompt(label, hide_input=hide)).strip()

        url = ask(okdesk_url, None, "Okdesk URL")
        token = ask(None, "OKDESK_API_TOKEN", "Okdesk API token", hide=True)
        webhook = ask(webhook_url, "BITRIX24_WEBHOOK_URL", "Bitrix24 webhook URL", hide=True)
        found = discover(url, token, webhook, redactor=run.redactor)
        statuses = found.statuses
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
        handoff = _pick("handoff status", statuses, handoff_status, interactive)
        back = _pick("return status", statuses, return_status or ("opened" if not interactive else None), interactive)
        bot = _pick("Okdesk employee okbx writes as (its token's owner)", employees, bot_employee, interactive)
        group_id = _pick("Bitrix24 group for new tasks", groups, group, interactive)
        owner = _pick("Bitrix24 user responsible for new tasks", users, responsible, interactive)
        fallback = _pick(
            "Okdesk employee for unmapped programmers' time", employees, default_employee or bot, interactive
        )
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
        env_path = output.parent / "okbx.env"
        write_private_file(env_path, render_env_file(token, webhook))
        typer.echo(f"wrote {output} and {env_path} (secrets, mode 600); running okbx doctor")
    doctor(config=str(output))


@app.command()
def emulate(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write okbx.yaml and okbx.env.")] = Path(
        "okbx-playground"
    ),
) -> None:
    """Run both emulators on 127.0.0.1 with a matching config, to try okbx safely; Ctrl-C stops them."""
    import signal
    import threading

    from .emulator.world import World
    from .setup_wizard import render_env_file, write_private_file

    with _errors():
        world = World.start()
        stopped = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            directory.mkdir(parents=True, exist_ok=True)
            config_file = world.write_config(directory)
            env = world.env()
            write_private_file(
                directory / "okbx.env", render_env_file(env["OKDESK_API_TOKEN"], env["BITRIX24_WEBHOOK_URL"])
            )
            typer.echo(f"Okdesk emulator:   {world.okdesk_server.url}")
            typer.echo(f"Bitrix24 emulator: {world.bitrix_server.url} (webhook in {directory / 'okbx.env'})")
            typer.echo(f"Try: okbx doctor --config {config_file}; okbx sync --dry-run --config {config_file}")
            typer.echo("The emulators start empty of issues; stop them with Ctrl-C.")
            try:
                stopped.wait()
            except KeyboardInterrupt:
                pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            world.close()


def _parse_every(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except (ValueError, KeyError):
        value = 0
    if value < 1:
        raise UsageError(f"--every must be a duration like 30s, 5m or 1h, got {text!r}")
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
) -> None:
    """Run sync cycles in a loop until SIGTERM or Ctrl-C (the action in flight is finished first)."""
    import signal

    run = _Run(config, verbose=verbose, quiet=quiet, log_file=log_file, clock=_given_clock(context))
    with _errors(run):
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
            f"history of issue {issue}",
            ("when", "what", "result", "detail"),
            [(e["at"], e["kind"], e["outcome"], e["detail"]) for e in entries],
        )


def run() -> None:
    app(prog_name="okbx")


if __name__ == "__main__":
    run()
