"""`okbx init`: a starter okbx.yaml and okbx.env from what both accounts report, in steps:
where to write, the secrets, discovery (a wrong answer is asked again), the choices, the files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from .base import Run, app, errors
from .prompts import ask, choose, nonempty, url_problem
from .setup_cmd import doctor

if TYPE_CHECKING:
    from ..setup_wizard import Discovery


@dataclass(frozen=True)
class Flags:
    """What was given on the command line; None = not given."""

    okdesk_url: str | None
    handoff_status: str | None
    return_status: str | None
    bot_employee: str | None
    group: str | None
    responsible: str | None
    default_employee: str | None
    interactive: bool


def _refuse_missing_directory(output: Path, mkdir: bool) -> None:
    if not output.parent.is_dir() and not mkdir:
        raise UsageError(
            f"the directory {output.parent} does not exist: create it (owned by the user okbx runs as, "
            "mode 700), or pass --mkdir"
        )


def _refuse_overwrite(output: Path, env_path: Path, force: bool) -> None:
    existing = [str(p) for p in (output, env_path) if p.exists()]
    if existing and not force:
        raise UsageError(
            f"init would overwrite {' and '.join(existing)}; pass --force to replace "
            f"{'them' if len(existing) > 1 else 'it'}, or choose another directory with -o"
        )


def _secrets(flags: Flags) -> tuple[str, str, str]:
    """The Okdesk URL, token and webhook: flags and environment, else asked (hidden for the secrets)."""
    from ..envfile import ENV_TOKEN, ENV_WEBHOOK

    url, token, webhook = flags.okdesk_url, os.environ.get(ENV_TOKEN) or None, os.environ.get(ENV_WEBHOOK) or None
    if not flags.interactive:
        missing = [name for name, value in (("--okdesk-url", url), (f"${ENV_TOKEN}", token)) if not value]
        missing += [f"${ENV_WEBHOOK}"] if not webhook else []
        if missing:
            named = {"--handoff-status": flags.handoff_status, "--bot-employee": flags.bot_employee}
            named |= {"--group": flags.group, "--responsible": flags.responsible}
            missing += [flag for flag, value in named.items() if value is None]
            raise UsageError("init --yes needs: " + ", ".join(missing) + " (secrets from the environment)")
    url = url or ask("Okdesk URL (https://yourcompany.okdesk.ru)", check=url_problem("okdesk"))
    token = token or ask("Okdesk API token (hidden)", hide=True, check=nonempty)
    webhook = webhook or ask("Bitrix24 incoming webhook URL (hidden)", hide=True, check=url_problem("webhook"))
    return url, token, webhook


def _discover(run: Run, flags: Flags, url: str, token: str, webhook: str) -> tuple[Discovery, str, str, str]:
    """Read both accounts; when interactive, a refused answer is asked again and the others kept."""
    from ..errors import ApiError
    from ..setup_wizard import discover

    while True:
        try:
            return discover(url, token, webhook, redactor=run.redactor), url, token, webhook
        except (ApiError, UsageError) as error:
            if not flags.interactive:
                raise
            typer.echo(f"  {run.redactor(str(error))}")
            if getattr(error, "system", "") == "Bitrix24" or "webhook" in str(error):
                webhook = ask("Bitrix24 incoming webhook URL (hidden)", hide=True, check=url_problem("webhook"))
            else:
                url = ask("Okdesk URL", default=url, check=url_problem("okdesk"))
                token = ask("Okdesk API token (hidden)", hide=True, check=nonempty)


def _people(found: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(str(p["id"]), f"{p['name']} <{p.get('email') or '-'}>") for p in found if p.get("active", True)]


def _choices(found: Discovery, flags: Flags) -> dict[str, Any]:
    """Every flag checked against the accounts (asked for when interactive); --yes names every problem at once."""
    from ..setup_wizard import group_owner, likely_bot, propose_user_map

    employees, users = _people(found.okdesk_employees), _people(found.bitrix_users)
    groups = [(str(g["id"]), str(g["name"])) for g in found.groups]
    problems: list[str] = []

    def one(flag: str, label: str, options: list[tuple[str, str]], given: str | None, default: str | None) -> str:
        return choose(flag, label, options, given, default=default, interactive=flags.interactive, problems=problems)

    one_group = groups[0][0] if len(groups) == 1 else None
    # the handoff status is a custom one: proposed when asking, never assumed by --yes
    proposal = "to_programmers" if flags.interactive else None
    handoff = one("--handoff-status", "handoff status", found.statuses, flags.handoff_status, proposal)
    back = one("--return-status", "return status", found.statuses, flags.return_status, "opened")
    # inferred defaults are offered to a person, never taken silently by --yes
    bot_label = "Okdesk employee okbx writes as (its token's owner)"
    bot_guess = likely_bot(found.okdesk_employees) if flags.interactive else None
    bot = one("--bot-employee", bot_label, employees, flags.bot_employee, bot_guess)
    group_id = one("--group", "Bitrix24 group for new tasks", groups, flags.group, one_group)
    owner_guess = group_owner(found.groups, group_id) if flags.interactive else None
    owner = one("--responsible", "Bitrix24 user responsible for new tasks", users, flags.responsible, owner_guess)
    fallback = ""  # defaults to the bot: not worth a complaint of its own while the bot is missing
    if bot or flags.default_employee is not None or flags.interactive:
        label = "Okdesk employee for unmapped programmers' time"
        fallback = one("--default-employee", label, employees, flags.default_employee, bot)
    if problems:
        raise UsageError("init --yes: fix these flags:\n  " + "\n  ".join(problems))
    mapping = propose_user_map(found.bitrix_users, found.okdesk_employees)
    typer.echo(f"proposed Bitrix24 -> Okdesk user mapping (by e-mail): {mapping or 'none found'}")
    if flags.interactive and mapping and not typer.confirm("use this mapping?", default=True):
        mapping = {}
    choices: dict[str, Any] = {
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
    return choices


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
    mkdir: Annotated[
        bool, typer.Option("--mkdir", help="Create the output's directory (mode 700) if missing.")
    ] = False,
) -> None:
    """Write a starter okbx.yaml (and okbx.env for the secrets) from what both APIs report, then run doctor.

    The secrets are never flags (a command line is visible to every user in `ps`): the Okdesk token
    comes from $OKDESK_API_TOKEN and the webhook URL from $BITRIX24_WEBHOOK_URL, else from a hidden prompt."""
    from ..envfile import ENV_WEBHOOK, env_file_for, render_env_file, write_private_file
    from ..setup_wizard import render_config

    flags = Flags(
        okdesk_url, handoff_status, return_status, bot_employee, group, responsible, default_employee, not yes
    )
    run = Run(None)
    with errors(run):
        if webhook_url is not None:
            raise UsageError(
                "--webhook-url is not accepted: the webhook URL holds a secret, and a command line is visible "
                f"in `ps`. Set ${ENV_WEBHOOK}, or leave it out and paste it at the hidden prompt"
            )
        env_path = env_file_for(output)
        _refuse_missing_directory(output, mkdir)
        _refuse_overwrite(output, env_path, force)
        found, url, token, webhook = _discover(run, flags, *_secrets(flags))
        choices = {"okdesk.url": url.rstrip("/"), **_choices(found, flags)}
        output.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        output.write_text(render_config(choices), encoding="utf-8")
        write_private_file(env_path, render_env_file(token, webhook))
        typer.echo(f"wrote {output} and {env_path} (secrets, mode 600); running okbx doctor")
    doctor(config=str(output))
