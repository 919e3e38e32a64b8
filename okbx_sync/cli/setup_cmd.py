"""`okbx doctor`, `okbx demo` and `okbx emulate`: before the first real run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ExitCode, UsageError
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


def _state_files(state_path: Path) -> list[Path]:
    return [state_path.with_name(state_path.name + suffix) for suffix in ("", "-wal", "-shm", ".lock")]


def _playground(directory: Path | None, force: bool) -> Path:
    """A fresh playground directory, or `directory` when it holds no configuration or store (or --force)."""
    import tempfile

    from ..envfile import ENV_FILE_NAME

    if directory is None:
        return Path(tempfile.mkdtemp(prefix="okbx-playground-", dir="."))
    # Never take over someone's configuration: its store would see every link's issue as deleted.
    candidates = [directory / "okbx.yaml", directory / ENV_FILE_NAME, *_state_files(directory / "okbx.sqlite3")]
    found = [p for p in candidates if p.exists()]
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
    return directory


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
    import threading

    from okbx_emulator.world import World

    from ..envfile import ENV_FILE_NAME, render_env_file, write_private_file

    with errors():
        directory = _playground(directory, force)
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
