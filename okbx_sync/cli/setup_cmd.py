"""`okbx doctor` and `okbx demo`: before the first real run (`okbx emulate` is emulate_cmd)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import ExitCode
from .base import ConfigOpt, Run, VerboseOpt, app, errors
from .render import print_table


@app.command()
def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the demo's config and state directory.")] = False,
) -> None:
    """Play the whole story on built-in emulators of both APIs (no credentials needed)."""
    from ..demo import run_demo

    with errors():
        ok = run_demo(say=typer.echo, keep=keep)
        raise typer.Exit(0 if ok else 1)


@app.command()
def doctor(config: ConfigOpt = None, verbose: VerboseOpt = False) -> None:
    """Check the configuration and both accounts before the first real run; exit 0 only when all pass."""
    from datetime import UTC, datetime

    from ..doctor import run_checks

    run = Run(config, verbose=verbose)
    with errors(run):
        cfg = run.config
        clients = run.clients()
        try:
            checks = run_checks(cfg, clients.okdesk, clients.bitrix, now=lambda: datetime.now(UTC))
        finally:
            clients.close()
        warnings = sum(c.ok and c.warn for c in checks)
        print_table(
            f"okbx doctor: {sum(c.ok for c in checks)} of {len(checks)} checks pass"
            + (f", {warnings} with a warning" if warnings else ""),
            ("check", "result", "detail", "how to fix"),
            [
                (c.name, ("WARN" if c.warn else "ok") if c.ok else "FAIL", run.redactor(c.detail), run.redactor(c.fix))
                for c in checks
            ],
        )
        raise typer.Exit(0 if all(c.ok for c in checks) else int(ExitCode.ACTIONS_FAILED))
