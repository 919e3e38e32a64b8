"""The Typer app, the options every command shares, and how failures become words and exit codes.

Only what `okbx --help` needs is imported here: the sync engine, requests, sqlite-utils, yaml
and rich load inside the commands that use them (help stays well under 0.15 s).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from .. import __version__
from ..clock import Clock
from ..errors import ExitCode, LockedError, OkbxError, StateError, UsageError
from ..secrets import Redactor

if TYPE_CHECKING:
    from ..clients.bundle import Clients
    from ..config import Config
    from ..state.store import Store

HELP = """Exit codes: 0 all done; 1 some actions failed (the others went through), an issue was parked,
a plan was refused as unsafe, or (status) a link is failing or parked; 2 configuration or usage
error; 3 the state store cannot be used; 75 another okbx run holds the lock (try again later)."""
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
IssueArg = Annotated[int, typer.Argument(help="Okdesk issue id.")]
MAX_ID = 2**53 - 1  # as config.MAX_ID (not imported: `okbx --help` stays light)


def check_id(value: int, name: str) -> int:
    """An id from the command line: a whole number SQLite and both APIs can hold, else exit 2."""
    if not 1 <= value <= MAX_ID:
        raise UsageError(f"{name} must be an id from 1 to 2**53, got {value}")
    return value


def log(name: str = "okbx") -> Any:
    import logging

    return logging.getLogger(name)


class Run:
    """Everything a command needs, built from the options; `errors` turns its failures into words."""

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
        self.quiet = quiet
        self.started = False  # logging is set up: the end of the run goes to the log too
        self._logging = {"verbose": verbose, "quiet": quiet, "log_file": log_file, "log_format": log_format}
        self._config_opt = config_opt
        self._config: Config | None = None
        self.clock = clock or Clock()

    def start(self) -> None:
        """Logging set up; called by `errors`, so a log file that cannot be opened is a clear error."""
        from ..logsetup import setup_logging

        setup_logging(self.redactor, **self._logging)  # type: ignore[arg-type]
        self.started = True

    @property
    def config_file(self) -> Path:
        from ..config import config_path

        return config_path(self._config_opt, os.environ)

    @property
    def config(self) -> Config:
        if self._config is None:
            from ..config import load_config
            from ..envfile import environment

            self._config = load_config(self.config_file, environment(self.config_file, os.environ))
            for secret in self._config.secrets():
                self.redactor.add(secret)
        return self._config

    @property
    def crash_after(self) -> str | None:
        return os.environ.get("OKBX_CRASH_AFTER")  # fault injection for the crash tests only

    def store(self) -> Store:
        from ..state.store import Store

        return Store(self.config.state.path, clock=self.clock.now, crash_after=self.crash_after)

    def read_store(self) -> Store | None:
        """The store for a command that only reads: an in-memory copy (nothing on disk is created or
        changed, a read-only directory is fine), or None before the first run."""
        from ..state.store import Store

        path = self.config.state.path
        if not path.exists() and not path.is_symlink():
            ancestor = next((p for p in path.parents if p.exists()), path.parent)
            if not ancestor.is_dir():  # no run ever could: say so now, as a run would
                raise StateError(f"state store {path} cannot be created: {ancestor} is not a directory")
            return None
        return Store(path, clock=self.clock.now, read_only=True)

    def clients(self) -> Clients:
        from ..clients.bundle import Clients

        return Clients.build(self.config, self.redactor, self.clock)


def given_clock(context: typer.Context) -> Clock:
    """The clock passed in as the context object (tests pass one they advance), else the real one."""
    return context.obj if isinstance(context.obj, Clock) else Clock()


def silence_stdout() -> None:
    """After the reader of our stdout went away: nothing more to say, and no noise at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (tests)
        pass


@contextmanager
def errors(run: Run | None = None) -> Iterator[None]:
    redact: Callable[[str], str] = run.redactor if run else (lambda s: s)
    try:
        if run is not None:
            run.start()
        yield
    except typer.Exit:
        raise
    except BrokenPipeError:  # `okbx status | head`: the reader has what it wanted
        silence_stdout()
        raise typer.Exit(BROKEN_PIPE) from None
    except OkbxError as error:
        said = redact(str(error))
        expected_overlap = isinstance(error, LockedError) and run is not None and run.quiet
        if not expected_overlap:  # -q: cron mails nothing for an overlap; the log still has it
            typer.echo(f"okbx: {said}", err=True)
        if run is not None and run.started:
            _log_end(said, int(error.exit_code))
        raise typer.Exit(int(error.exit_code)) from None
    except KeyboardInterrupt:
        typer.echo("okbx: interrupted", err=True)
        raise typer.Exit(130) from None
    except (click.exceptions.Abort, typer.Abort):  # a prompt got no answer (input ended, or Ctrl-C)
        typer.echo("okbx: no answer given; stopped (for a run without questions pass --yes and the flags)", err=True)
        raise typer.Exit(int(ExitCode.USAGE)) from None
    except Exception as error:  # a bug: say so plainly, full detail only with -v, secrets scrubbed
        import traceback

        said = f"internal error: {redact(error.__class__.__name__ + ': ' + str(error))}"
        typer.echo(f"okbx: {said}", err=True)
        if run is not None and run.started:
            _log_end(said, int(ExitCode.ACTIONS_FAILED))
        if run is not None and run.verbose:
            typer.echo(redact("".join(traceback.format_exception(error))), err=True)
        else:
            typer.echo("okbx: run again with -v for the traceback", err=True)
        raise typer.Exit(int(ExitCode.ACTIONS_FAILED)) from None


def _log_end(said: str, code: int) -> None:
    """A run that ends in an error reaches the log file and the JSON log too (not stderr again)."""
    from ..logsetup import ON_STDOUT

    level = "warning" if code == ExitCode.LOCKED else "error"
    outcome = "locked" if code == ExitCode.LOCKED else "failed"
    getattr(log(), level)("run ended, exit code %s: %s", code, said, extra={"outcome": outcome, ON_STDOUT: True})


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


def confirm(question: str) -> bool:
    try:
        return bool(typer.confirm(question, default=False))
    except typer.Abort:  # no answer (stdin closed, as under cron): not a yes
        typer.echo("", err=True)
        return False
