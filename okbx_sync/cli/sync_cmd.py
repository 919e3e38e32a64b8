"""`okbx sync` (one cycle) and `okbx run` (cycles in a loop)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from ..errors import OkbxError, UsageError
from .base import (
    ConfigOpt,
    ForceOpt,
    LogFileOpt,
    LogFormatOpt,
    QuietOpt,
    Run,
    VerboseOpt,
    app,
    errors,
    given_clock,
    log,
)
from .cycle import one_cycle

MAX_EVERY = 7 * 24 * 3600
MAX_WAIT = 24 * 3600


@contextmanager
def stop_requests() -> Iterator[list[str]]:
    """SIGTERM and Ctrl-C ask to stop: the write in flight is finished and recorded, then the run
    ends (a cron `timeout`, a systemd stop).  Yields the names of the signals received."""
    import signal

    stop: list[str] = []

    def ask_to_stop(signum: int, _frame: object) -> None:
        stop.append(signal.Signals(signum).name)
        log().info("%s received: finishing the action in flight, then stopping", stop[-1])

    previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_wait(wait: float) -> None:
    if not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT):
        raise UsageError(f"--wait must be 0 to {MAX_WAIT} seconds, got {wait:g}")


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
    """Run one sync cycle; SIGTERM or Ctrl-C finish the write in flight, then stop (exit 143 or 130)."""
    run = Run(
        config, verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, clock=given_clock(context)
    )
    with errors(run):
        _check_wait(wait)
        with stop_requests() as stop:
            code = one_cycle(run, dry_run=dry_run, force=force, wait=wait, quiet=quiet, should_stop=lambda: bool(stop))
        if stop:  # 128 + the signal, as a shell reports a process that a signal ended
            signum = 143 if stop[0] == "SIGTERM" else 130
            log().warning("okbx sync: stopped by %s after the write in flight (exit code %s)", stop[0], signum)
            raise typer.Exit(signum)
        raise typer.Exit(code)


def parse_every(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        value = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
    except (ValueError, KeyError):
        value = math.nan
    if not (math.isfinite(value) and 1 <= value <= MAX_EVERY):
        raise UsageError(f"--every must be a duration from 1s to 7 days like 30s, 5m or 1h, got {text!r}")
    return value


def _loop(run: Run, seconds: float, *, force: bool, quiet: bool, stop: list[str]) -> None:
    """Cycles until `stop` is non-empty; the interval counts from the end of a cycle."""
    from ..state.binding import ForeignStore
    from ..state.opening import ForeignDatabase

    clock = run.clock
    next_cycle = clock.monotonic()
    while not stop:
        if clock.monotonic() >= next_cycle:
            try:
                one_cycle(run, force=force, quiet=quiet, should_stop=lambda: bool(stop), emit=log().info)
            except (ForeignStore, ForeignDatabase):
                raise  # the store is not this configuration's: no later cycle can succeed (exit code 3)
            except OkbxError as error:  # one bad cycle does not end the loop; the next may succeed
                log().error("%s", run.redactor(str(error)))
            next_cycle = clock.monotonic() + seconds
        else:  # short naps, so a stop request is noticed within a second
            clock.sleep(min(1.0, next_cycle - clock.monotonic()))


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
    run = Run(
        config, verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, clock=given_clock(context)
    )
    with errors(run):
        seconds = parse_every(every)
        run.config  # noqa: B018 - fail on a bad config before looping
        with stop_requests() as stop:
            log().info("okbx run: a cycle every %s; stop with SIGTERM or Ctrl-C", every)
            _loop(run, seconds, force=force, quiet=quiet, stop=stop)
        log().info("okbx run: stopped")
