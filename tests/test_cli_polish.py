"""Bad input is one clear line and exit 2; the commands a person uses every day are pleasant and safe."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from okbx_emulator.http import Fault, Response
from okbx_emulator.world import HANDOFF, OKDESK_TOKEN, WEBHOOK_SECRET
from okbx_sync.cli import app
from okbx_sync.config import MAX_CONFIG_BYTES, MAX_NESTING

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


# -- 6. every bad input is a clear error, exit 2 -------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://[::1", "okdesk.url: must be an http(s) URL, got 'http://[::1': Invalid IPv6 URL"),
        ("http://host:99999", "okdesk.url: must be an http(s) URL, got 'http://host:99999': Port out of range"),
        ("https://host:8o80", "okdesk.url: must be an http(s) URL, got 'https://host:8o80': Port could not be cast"),
        ("http://okdesk.example.com", "okdesk.url: plain http:// to okdesk.example.com would send the secret in clear"),
    ],
    ids=["ipv6-bracket", "port-range", "port-letters", "insecure-http"],
)
def test_a_bad_url_is_a_configuration_error_at_load_time(okbx, url, words):
    okbx.reconfigure(okdesk={"url": url})
    result = okbx("sync")
    one_clear_line(result, words)
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert sum(okbx.world.okdesk_server.counts().values()) == 0  # refused before any request


@pytest.mark.parametrize(
    ("yaml_text", "words"),
    [
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", f"nested more than {MAX_NESTING} levels deep (line 1)"),
        ("".join(f"{'  ' * n}k{n}:\n" for n in range(60)), f"nested more than {MAX_NESTING} levels deep"),
        ("x: " + "y" * (MAX_CONFIG_BYTES + 1) + "\n", "the file is larger than 256 KiB"),
        ("okdesk:\n  url: https://a.okdesk.ru\n  url: https://b.okdesk.ru\n", "duplicate key 'url' at line 3"),
        ("okdesk: [unclosed\n", "not valid YAML at line 2"),
    ],
    ids=["deep-flow", "deep-block", "enormous", "duplicate", "syntax"],
)
def test_a_malformed_configuration_file_is_one_line(okbx, tmp_path, yaml_text, words):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    result = okbx("sync", "--config", str(bad))
    one_clear_line(result, words)
    assert len(result.stderr.splitlines()) == 1, result.stderr


@pytest.mark.parametrize("every", ["nan", "inf", "-5m", "0s", "5x", "", "8d", "1e9"])
def test_a_bad_interval_is_a_clear_error(okbx, every):
    result = okbx("run", "--every", every)
    one_clear_line(result, f"--every must be a duration from 1s to 7 days like 30s, 5m or 1h, got {every!r}")


def test_a_log_file_that_cannot_be_opened_is_one_line(okbx, tmp_path):
    missing = tmp_path / "no" / "such" / "okbx.log"
    result = okbx("sync", "-q", "--log-file", str(missing))
    one_clear_line(result, f"cannot open the log file {missing}: its directory {missing.parent} does not exist")
    assert len(result.stderr.splitlines()) == 1
    result = okbx("sync", "-q", "--log-file", str(tmp_path))
    one_clear_line(result, f"cannot open the log file {tmp_path}: it is a directory")


def test_a_broken_pipe_ends_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (say, `head`) is gone before okbx writes
    try:
        result = subprocess.run([str(OKBX), "--help"], stdout=write_end, stderr=subprocess.PIPE, text=True)
        assert result.stderr == ""
        assert result.returncode != 0
        demo = subprocess.run(
            [str(OKBX), "status", "-c", "/nonexistent.yaml"], stdout=write_end, stderr=subprocess.PIPE
        )
        assert demo.returncode == 2  # the real error still wins over the pipe
    finally:
        os.close(write_end)


def test_a_broken_pipe_during_a_command_exits_141_without_a_word(okbx):
    okbx.sync()
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [str(OKBX), "status", "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **okbx.env},
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141 and result.stderr == ""


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
    assert first.exit_code == 0 and "last run: none recorded yet" in first.stdout
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
        "heavy = [m for m in ('requests', 'sqlite_utils', 'yaml', 'rich.console', 'okbx_sync.sync.engine',"
        " 'okbx_sync.state.store', 'okbx_sync.config') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout + result.stderr
