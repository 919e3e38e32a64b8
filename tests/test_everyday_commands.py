"""The commands a person uses every day are pleasant and safe: a dry run writes nothing, status fits
80 columns, init asks well, help is fast."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from e2e import sync_ok, task_of
from typer.testing import CliRunner

from okbx_emulator.http import Fault, Response
from okbx_emulator.world import HANDOFF, OKDESK_TOKEN, WEBHOOK_SECRET
from okbx_sync.cli import app

OKBX = Path(sys.executable).with_name("okbx")


def hand_off(world, title: str = "Printer jams") -> int:
    issue = world.okdesk.create_issue(title, "<p>details</p>")
    world.okdesk.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
    return issue


def one_clear_line(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output
    for word in words:
        assert word in result.stderr, result.stderr


# -- 7. commands a person enjoys --------------------------------------------------------------------
def test_dry_run_writes_nothing_at_all_not_even_a_new_store(okbx):
    hand_off(okbx.world)
    state_dir = okbx.config_path.parent
    before = sorted(p.name for p in state_dir.iterdir())
    result = okbx("sync", "--dry-run")
    assert result.exit_code == 0 and "CreateTask" in result.stdout
    assert sorted(p.name for p in state_dir.iterdir()) == before  # no store, no -wal, no lock
    okbx.sync()  # now a store exists, closed
    files = {p.name: p.read_bytes() for p in state_dir.iterdir() if p.is_file()}
    hand_off(okbx.world, "Second")
    assert "CreateTask" in okbx("sync", "--dry-run").stdout
    assert {p.name: p.read_bytes() for p in state_dir.iterdir() if p.is_file()} == files


def test_status_fits_80_columns_shows_local_times_with_their_zone_and_the_last_run(okbx):
    world = okbx.world
    okbx.reconfigure(sync={"max_retries": 1})
    issue = hand_off(world, "A title")
    refusal = Response.json(400, {"error": "ERROR_CORE", "error_description": "Task title is not specified " * 8})
    world.bitrix_server.inject(Fault(op="tasks.task.add", when="before", response=refusal))
    first = okbx("status")
    assert first.exit_code == 0 and "no runs yet" in first.stdout
    okbx("sync")
    hand_off(world, "Healthy")
    okbx("sync")
    result = okbx("status")
    assert result.exit_code == 1  # a parked link: a monitoring check fails
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    zone = time.strftime("%Z")
    assert f"times in {zone} (UTC" in lines[0] and "1 failing or parked" in lines[0]
    assert re.match(r"last run: \d{4}-\d\d-\d\d \d\d:\d\d, ok: okbx sync: 2 done", lines[1]), lines[1]
    assert any(line.lstrip().startswith(str(issue)) and "parked" in line for line in lines)
    wide = okbx("status", "--wide")
    assert wide.exit_code == 1 and ("Task title is not specified " * 8).strip() in wide.stdout  # on one line
    data = json.loads(okbx("status", "--json").stdout)
    assert data["last_run"]["outcome"] == "ok" and data["links"][0]["state"] == "parked"


def test_status_exits_0_when_every_link_is_healthy(okbx):
    hand_off(okbx.world)
    okbx.sync()
    assert okbx("status").exit_code == 0


def test_shell_completion_is_installable():
    assert "--install-completion" in CliRunner().invoke(app, ["--help"]).output
    script = subprocess.run([str(OKBX), "--show-completion", "bash"], capture_output=True, text=True)
    assert script.returncode == 0 and "complete -o default -F _okbx_completion okbx" in script.stdout


def init_flags(world) -> list[str]:
    return ["--okdesk-url", world.okdesk_server.url]


def test_init_yes_lists_every_missing_flag_at_once(world, tmp_path):
    out = tmp_path / "okbx.yaml"
    bare = CliRunner().invoke(
        app, ["init", "--yes", "-o", str(out)], env={"OKDESK_API_TOKEN": "", "BITRIX24_WEBHOOK_URL": ""}
    )
    assert bare.exit_code == 2
    assert (
        "init --yes needs: --okdesk-url, $OKDESK_API_TOKEN, $BITRIX24_WEBHOOK_URL, --handoff-status, "
        "--bot-employee, --group, --responsible" in bare.output
    )
    env = {"OKDESK_API_TOKEN": OKDESK_TOKEN, "BITRIX24_WEBHOOK_URL": world.webhook_url}
    some = CliRunner().invoke(app, ["init", "--yes", "-o", str(out), *init_flags(world), "--group", "99"], env=env)
    assert some.exit_code == 2
    text = some.output
    assert "--handoff-status is missing; one of: opened (" in text and "to_programmers (" in text
    assert "--bot-employee is missing; one of: 1 (okbx Bot <okbx@example.com>)" in text
    assert "--group '99' is not one of: 42 (Programmers (paid))" in text
    assert "--responsible is missing; one of: 1 (Webhook Admin <->), 7 (Ivan Petrov" in text
    assert "--default-employee" not in text  # it defaults to the bot employee
    assert not out.exists()


def test_interactive_init_shows_defaults_and_asks_again_instead_of_giving_up(world, tmp_path):
    out = tmp_path / "okbx.yaml"
    answers = [
        "ftp://wrong",  # a bad URL: asked again
        world.okdesk_server.url,
        "wrong-token-1234",  # refused by Okdesk: the URL and token are asked again, nothing else is lost
        world.webhook_url,
        "",  # keep the URL shown as the default
        OKDESK_TOKEN,
        "",  # handoff status: the default, to_programmers
        "",  # return status: the default, opened
        "42",  # not an employee: asked again
        "1",  # the bot
        "",  # group: the only one, by default
        "7",  # responsible
        "",  # unmapped time: the bot, by default
        "y",  # the proposed mapping
    ]
    result = CliRunner().invoke(
        app,
        ["init", "-o", str(out)],
        input="\n".join(answers) + "\n",
        env={"OKDESK_API_TOKEN": "", "BITRIX24_WEBHOOK_URL": ""},
    )
    text = result.output
    assert result.exit_code == 0, text
    assert "the Okdesk URL must look like https://yourcompany.okdesk.ru; try again" in text
    assert "HTTP 401" in text and "wrong-token-1234" not in text and OKDESK_TOKEN not in text
    assert f"Okdesk URL [{world.okdesk_server.url}]" in text  # the earlier answer is the default
    assert "handoff status [to_programmers]" in text and "return status [opened]" in text
    assert "'42' is not in the list: pick a number or a code; try again" in text
    config = out.read_text()
    assert "handoff_status: to_programmers" in config and "return_status: opened" in config
    assert "bot_employee_id: 1" in config and "responsible_id: 7" in config and "group_id: 42" in config
    assert WEBHOOK_SECRET not in config


def test_link_with_force_links_an_issue_outside_the_handoff_status(okbx):
    world = okbx.world
    issue = world.okdesk.create_issue("Solved already", "x")
    task = world.bitrix.create_task("Existing task", responsible_id=world.people.bx_ivan, group_id=42)
    assert okbx("link", str(issue), str(task)).exit_code == 2
    forced = okbx("link", str(issue), str(task), "--force")
    assert forced.exit_code == 0 and f"linked Okdesk issue {issue}" in forced.stdout


# -- issue 8: help is fast --------------------------------------------------------------------------
def test_help_imports_none_of_the_heavy_modules():
    probe = (
        "import sys, okbx_sync.cli as c\n"
        "heavy = [m for m in ('requests', 'sqlite_utils', 'yaml', 'rich.console', 'okbx_sync.cycle',"
        " 'okbx_sync.state.store', 'okbx_sync.config') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr


def test_show_lists_each_step_of_a_link_once(world, okbx):
    """A write and the link change it makes are one line of the history (the close was shown twice)."""
    issue = hand_off(world)
    sync_ok(okbx)
    task = task_of(world, issue)
    world.bitrix.log_time(task, world.people.bx_ivan, 600, "work")
    world.bitrix.complete_task(task)
    sync_ok(okbx)
    history = okbx("show", str(issue)).stdout.splitlines()
    steps = [line.split("\t")[1] for line in history if line.count("\t") == 3][1:]  # after the header
    assert steps.count("close") == 1 and steps.count("task") == 1, history
    assert any("task 1" in line and "[Okdesk #" in line for line in history), history
