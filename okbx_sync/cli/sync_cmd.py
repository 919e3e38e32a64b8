"""`okbx sync` (one cycle) and `okbx run` (cycles in a loop)."""

from __future__ import annotations

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
    run = Run(
        config, verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, clock=given_clock(context)
    )
    with errors(run):
        code = one_cycle(run, dry_run=dry_run, force=force, wait=wait, quiet=quiet)
        raise typer.Exit(code)


def parse_every(text: str) -> float:
    import math

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

    clock = run.clock
    next_cycle = clock.monotonic()
    while not stop:
        if clock.monotonic() >= next_cycle:
            try:
                one_cycle(run, force=force, quiet=quiet, should_stop=lambda: bool(stop), emit=log().info)
            except ForeignStore:
                raise  # the store serves other accounts: no later cycle can succeed (exit code 3)
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
    import signal

    run = Run(
        config, verbose=verbose, quiet=quiet, log_file=log_file, log_format=log_format, clock=given_clock(context)
    )
    with errors(run):
        seconds = parse_every(every)
        run.config  # noqa: B018 - fail on a bad config before looping
        stop: list[str] = []

        def ask_to_stop(signum: int, _frame: object) -> None:
            stop.append(signal.Signals(signum).name)
            log().info("%s received: finishing the action in flight, then stopping", stop[-1])

        previous = {sig: signal.signal(sig, ask_to_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            log().info("okbx run: a cycle every %s; stop with SIGTERM or Ctrl-C", every)
            _loop(run, seconds, force=force, quiet=quiet, stop=stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log().info("okbx run: stopped")
