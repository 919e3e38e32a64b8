"""`okbx emulate`: a playground to rehearse in.  The emulators of both systems on 127.0.0.1 with a
matching configuration in a fresh directory; `okbx emulate seed` fills them with sample clients,
issues and a CRM; `okbx emulate act ...` acts as the people (see okbx_emulator/playground.py for
why these reach the running emulators through a small control endpoint)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from .base import app, errors

if TYPE_CHECKING:
    from okbx_emulator.world import World

emulate_app = typer.Typer(help="Run both emulators as a playground, fill them, and act as the people in it.")
act_app = typer.Typer(help="Act as the people in a running playground (okbx emulate in another terminal).")
emulate_app.add_typer(act_app, name="act")
app.add_typer(emulate_app, name="emulate")

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="The playground directory (default: that of $OKBX_CONFIG, else the current one)."),
]
MAX_DURATION = 24 * 3600


def _state_files(state_path: Path) -> list[Path]:
    return [state_path.with_name(state_path.name + suffix) for suffix in ("", "-wal", "-shm", ".lock")]


def _playground(directory: Path | None, force: bool) -> Path:
    """A fresh playground directory, or `directory` when it holds no configuration or store (or --force)."""
    import tempfile

    from ..envfile import ENV_FILE_NAME

    if directory is None:  # absolute: the configuration names its store relative to itself
        return Path(tempfile.mkdtemp(prefix="okbx-playground-", dir=".")).resolve()
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
    return directory.resolve()


def _write_config(world: World, directory: Path, billing: bool, routes: bool) -> Path:
    from ..envfile import ENV_FILE_NAME, render_env_file, write_private_file

    sections: dict[str, Any] = {}
    if routes:  # the README's three routes, on a world that has their group, pipeline and equipment
        world.routes_story()
        sections["routes"] = world.routes()
    if billing:  # the demo's billing and debt hold, to rehearse invoices, payments and holds
        sections["billing"] = {"default_rate": 3000, "round_minutes": 15, "inn_parameter": "inn"}
        sections["debt"] = {"status": "debt", "grace_days": 3}
    config_file = world.write_config(directory, **sections)
    env = world.env()
    write_private_file(directory / ENV_FILE_NAME, render_env_file(env["OKDESK_API_TOKEN"], env["BITRIX24_WEBHOOK_URL"]))
    return config_file


@emulate_app.callback(invoke_without_command=True)
def emulate(
    context: typer.Context,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where to write okbx.yaml and okbx.env (default: a new okbx-playground-* here)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an okbx.yaml, okbx.env and state store already in --dir.")
    ] = False,
    seed: Annotated[bool, typer.Option("--seed", help="Start with sample clients, issues and a CRM.")] = False,
    billing: Annotated[bool, typer.Option("--billing", help="Write billing: and debt: sections too.")] = False,
    routes: Annotated[
        bool,
        typer.Option("--routes", help="Write the three routes (programmers, documents, sales) with what they need."),
    ] = False,
) -> None:
    """Run both emulators on 127.0.0.1 with a matching config, to try okbx safely; Ctrl-C stops them."""
    if context.invoked_subcommand is not None:
        return
    import signal
    import threading

    from okbx_emulator.playground import ControlServer, Playground
    from okbx_emulator.world import World

    with errors():
        directory = _playground(directory, force)
        world = World.start()
        playground = Playground(world)
        control = ControlServer(playground, directory).start()
        stopped = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            config_file = _write_config(world, directory, billing, routes)
            if seed:
                playground.seed()
            typer.echo(f"Okdesk emulator:   {world.okdesk_server.url}")
            typer.echo(f"Bitrix24 emulator: {world.bitrix_server.url} (webhook in {directory / 'okbx.env'})")
            typer.echo(f"Try: okbx doctor --config {config_file}; okbx sync --dry-run --config {config_file}")
            filled = "holds sample clients and issues" if seed else "starts empty: okbx emulate seed fills it"
            typer.echo(f"The playground {filled}; act as the people with: okbx emulate act --help (--dir {directory})")
            typer.echo("Stop it with Ctrl-C.")
            try:
                stopped.wait()
            except KeyboardInterrupt:
                pass
        finally:
            signal.signal(signal.SIGTERM, previous)
            control.stop()
            world.close()


# -- acting in a running playground ----------------------------------------------------------------
def _where(directory: Path | None) -> Path:
    if directory is not None:
        return directory
    config = os.environ.get("OKBX_CONFIG")
    return Path(config).parent if config else Path(".")


def _act(directory: Path | None, verb: str, **args: Any) -> dict[str, Any]:
    from okbx_emulator.playground import PlaygroundError, call

    try:
        return call(_where(directory), verb, **args)
    except PlaygroundError as error:
        raise UsageError(str(error)) from None


def parse_duration(text: str) -> int:
    """1h30m, 90m, 45s, 1.5h or plain seconds -> whole seconds, 1 s to 24 h."""
    import re

    match = re.fullmatch(r"\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*", text)
    seconds = 0.0
    if match and any(match.groups()):
        hours, minutes, rest = (float(g) if g else 0.0 for g in match.groups())
        seconds = hours * 3600 + minutes * 60 + rest
    if not 1 <= seconds <= MAX_DURATION:
        raise UsageError(f"DURATION must be 1s to 24h like 1h30m, 45m or 90s, got {text!r}")
    return round(seconds)


@emulate_app.command("seed")
def seed_cmd(directory: DirOpt = None) -> None:
    """Fill a running playground with sample clients, issues, a CRM and an overdue invoice."""
    with errors():
        found = _act(directory, "seed")
        if not found.pop("seeded"):
            typer.echo("the playground was seeded already")
        typer.echo(
            f"{found['issues']} issues in Okdesk (the first is {found['first_issue']}); CRM companies matching "
            f"Romashka LLC (by its Okdesk id) and Vasilek JSC (by INN), which owes invoice {found['overdue_invoice']}"
        )


@act_app.command("new-issue")
def new_issue(title: str, directory: DirOpt = None) -> None:
    """A client opens an issue (as Romashka LLC's contact)."""
    with errors():
        typer.echo(f"issue {_act(directory, 'new_issue', title=title)['issue']} opened")


@act_app.command()
def handoff(
    issue: int,
    comment: Annotated[str | None, typer.Option(help="With a comment.")] = None,
    directory: DirOpt = None,
) -> None:
    """The consultant hands the issue off to the programmers (the handoff status)."""
    with errors():
        typer.echo(f"issue {issue}: status {_act(directory, 'handoff', issue=issue, comment=comment)['status']}")


@act_app.command("set-status")
def set_status(issue: int, status: str, directory: DirOpt = None) -> None:
    """The consultant moves the issue to another status (e.g. out of the debt hold)."""
    with errors():
        typer.echo(f"issue {issue}: status {_act(directory, 'set_status', issue=issue, status=status)['status']}")


@act_app.command()
def comment(
    issue: int,
    text: str,
    author: Annotated[str, typer.Option("--as", help="client (public) or consultant (internal).")] = "client",
    directory: DirOpt = None,
) -> None:
    """A comment in the Okdesk issue, by the client or the consultant."""
    with errors():
        found = _act(directory, "comment", issue=issue, text=text, author=author)
        typer.echo(f"issue {issue}: comment {found['comment']} by the {author}")


@act_app.command("log-time")
def log_time(
    task: int,
    duration: Annotated[str, typer.Argument(help="1h30m, 45m, 90s.")],
    user: Annotated[int, typer.Option("--user", help="The Bitrix24 programmer.")] = 7,
    note: Annotated[str, typer.Option("--comment", help="What the time was for.")] = "",
    directory: DirOpt = None,
) -> None:
    """A programmer logs time on the Bitrix24 task."""
    with errors():
        seconds = parse_duration(duration)
        found = _act(directory, "log_time", task=task, seconds=seconds, user=user, comment=note)
        typer.echo(f"task {task}: {seconds // 60} min logged by user {user} (item {found['elapsed_item']})")


@act_app.command()
def complete(task: int, directory: DirOpt = None) -> None:
    """A programmer completes the Bitrix24 task."""
    with errors():
        _act(directory, "complete", task=task)
        typer.echo(f"task {task}: completed")


@act_app.command()
def pay(invoice: int, directory: DirOpt = None) -> None:
    """The accountant marks the invoice paid."""
    with errors():
        _act(directory, "pay", invoice=invoice)
        typer.echo(f"invoice {invoice}: paid")


@act_app.command()
def decline(invoice: int, directory: DirOpt = None) -> None:
    """The accountant declines the invoice."""
    with errors():
        _act(directory, "decline", invoice=invoice)
        typer.echo(f"invoice {invoice}: declined")


@act_app.command("move-deal")
def move_deal(deal: int, stage: str, directory: DirOpt = None) -> None:
    """A manager moves a CRM deal to a stage (once the emulator has deals)."""
    with errors():
        _act(directory, "move_deal", deal=deal, stage=stage)
        typer.echo(f"deal {deal}: stage {stage}")


@act_app.command()
def look(directory: DirOpt = None) -> None:
    """What the playground holds now: issues, tasks, invoices and deals."""
    from .render import print_table

    with errors():
        found = _act(directory, "look")
        print_table("Okdesk issues", ("id", "title", "status"), [tuple(i.values()) for i in found["issues"]])
        tasks: list[Sequence[Any]] = [tuple(t.values()) for t in found["tasks"]]
        print_table("Bitrix24 tasks", ("id", "title", "group", "status", "xml_id"), tasks)
        print_table("invoices", ("id", "company", "sum", "stage"), [tuple(i.values()) for i in found["invoices"]])
        if found["deals"]:
            print_table("deals", ("id", "title", "stage", "origin"), [tuple(d.values()) for d in found["deals"]])
