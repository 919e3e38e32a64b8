"""`okbx init` for a person at a terminal and for a script (issue 16): a default for every prompt it
can infer (the bot-looking employee, the group's owner), a clean end when input ends, and no
directory created unless asked."""

from __future__ import annotations

from typer.testing import CliRunner

from okbx_emulator.world import OKDESK_TOKEN
from okbx_sync.cli import app

NO_SECRETS = {"OKDESK_API_TOKEN": "", "BITRIX24_WEBHOOK_URL": ""}


def test_enter_takes_the_inferred_bot_employee_and_the_group_owner(world, tmp_path):
    out = tmp_path / "okbx.yaml"
    answers = [world.okdesk_server.url, OKDESK_TOKEN, world.webhook_url, "", "", "", "", "", "", "y"]
    result = CliRunner().invoke(app, ["init", "-o", str(out)], input="\n".join(answers) + "\n", env=NO_SECRETS)
    assert result.exit_code == 0, result.output
    bot, owner = world.people.bot, world.people.bx_ivan
    assert f"(its token's owner) [{bot}]" in result.output
    assert f"Bitrix24 user responsible for new tasks [{owner}]" in result.output
    config = out.read_text()
    assert f"bot_employee_id: {bot}" in config and f"responsible_id: {owner}" in config


def test_input_that_ends_early_stops_cleanly_with_exit_2(world, tmp_path):
    out = tmp_path / "okbx.yaml"
    for given in ("", world.okdesk_server.url + "\n", f"{world.okdesk_server.url}\n{OKDESK_TOKEN}\n"):
        result = CliRunner().invoke(app, ["init", "-o", str(out)], input=given, env=NO_SECRETS)
        assert result.exit_code == 2, result.output
        assert "no answer given; stopped" in result.stderr and "internal error" not in result.output
    assert not out.exists()


def test_a_missing_output_directory_is_refused_unless_asked(world, tmp_path):
    out = tmp_path / "missing" / "dir" / "okbx.yaml"
    env = {"OKDESK_API_TOKEN": OKDESK_TOKEN, "BITRIX24_WEBHOOK_URL": world.webhook_url}
    flags = ["--okdesk-url", world.okdesk_server.url, "--handoff-status", "to_programmers"]
    flags += ["--bot-employee", "1", "--group", "42", "--responsible", "7"]
    refused = CliRunner().invoke(app, ["init", "--yes", "-o", str(out), *flags], env=env)
    assert refused.exit_code == 2 and "does not exist" in refused.stderr and "--mkdir" in refused.stderr
    assert not (tmp_path / "missing").exists()
    made = CliRunner().invoke(app, ["init", "--yes", "--mkdir", "-o", str(out), *flags], env=env)
    assert made.exit_code == 0, made.output
    assert out.exists() and out.parent.stat().st_mode & 0o777 == 0o700
