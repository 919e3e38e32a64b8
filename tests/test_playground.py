"""A playground to rehearse in (issue 16): `okbx emulate` seeds sample clients, issues and a CRM, and
`okbx emulate act ...` acts as the people, so an administrator watches a route, billing and the
debt hold work before going live.  All through the real CLI, against a running `okbx emulate`."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from okbx_sync.cli import app


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "okbx_sync", "emulate", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(5)]
    assert "Okdesk emulator" in lines[0], lines
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert proc.returncode == 0


@pytest.fixture
def playground(tmp_path):
    directory = tmp_path / "play"
    proc = start("--dir", str(directory), "--billing", cwd=tmp_path)
    yield directory
    stop(proc)


def okbx(directory: Path, *args: str):
    env = {"OKBX_CONFIG": str(directory / "okbx.yaml"), "OKDESK_API_TOKEN": "", "BITRIX24_WEBHOOK_URL": ""}
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return result


def test_a_route_billing_and_the_debt_hold_rehearsed_as_the_people(playground):
    seeded = okbx(playground, "emulate", "seed")
    assert seeded.exit_code == 0 and "3 issues in Okdesk" in seeded.stdout, seeded.output
    assert okbx(playground, "emulate", "act", "handoff", "1", "--comment", "please look").exit_code == 0
    assert okbx(playground, "emulate", "act", "comment", "1", "it still jams", "--as", "client").exit_code == 0
    assert okbx(playground, "sync").exit_code == 0
    look = okbx(playground, "emulate", "act", "look").stdout
    assert "[Okdesk #1] Printer jams" in look and "okdesk:1" in look
    assert "VPN drops at night\tdebt" in look  # Vasilek JSC owes an overdue invoice: its issue is held

    logged = okbx(playground, "emulate", "act", "log-time", "1", "1h30m", "--user", "7", "--comment", "driver")
    assert logged.exit_code == 0 and "90 min logged by user 7" in logged.stdout
    assert okbx(playground, "emulate", "act", "complete", "1").exit_code == 0
    returned = okbx(playground, "sync")
    assert returned.exit_code == 0 and "0 failed" in returned.stdout, returned.output  # billing runs in the same cycle
    look = okbx(playground, "emulate", "act", "look").stdout
    assert "Printer jams on every second page\topened" in look  # returned to the consultant
    invoice = next(line.split("\t")[0] for line in look.splitlines() if line.endswith("DT31_1:N"))
    assert okbx(playground, "emulate", "act", "pay", invoice).exit_code == 0
    assert okbx(playground, "sync").exit_code == 0
    history = okbx(playground, "show", "1").stdout
    assert "payment_note" in history or "paid" in history, history
    assert okbx(playground, "status").exit_code == 0


def test_acting_on_what_does_not_exist_is_one_clear_line(playground):
    for args, words in (
        (("emulate", "act", "complete", "999"), "999"),
        (("emulate", "act", "comment", "1", "x", "--as", "robot"), "--as must be client or consultant"),
        (("emulate", "act", "log-time", "1", "forever"), "DURATION must be 1s to 24h"),
        (("emulate", "act", "move-deal", "1", "WON"), "cannot move deal 1"),
    ):
        result = okbx(playground, *args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.output)


def test_acting_without_a_running_playground_says_how_to_start_one(tmp_path):
    result = okbx(tmp_path, "emulate", "act", "look")
    assert result.exit_code == 2 and "no running playground" in result.stderr and "okbx emulate" in result.stderr


def test_without_dir_the_store_stays_inside_the_playground(tmp_path):
    proc = start("--seed", cwd=tmp_path)
    try:
        (directory,) = tmp_path.glob("okbx-playground-*")
        config = yaml.safe_load((directory / "okbx.yaml").read_text())
        assert Path(config["state"]["path"]) == directory.resolve() / "okbx.sqlite3"
        assert okbx(directory, "emulate", "act", "handoff", "1").exit_code == 0  # --seed filled it
        assert okbx(directory, "sync").exit_code == 0
        assert (directory / "okbx.sqlite3").exists()
        assert [p.name for p in tmp_path.iterdir()] == [directory.name]
    finally:
        stop(proc)
    assert not (directory / ".okbx-emulate.json").exists()  # the control file goes with the playground


def test_the_three_routes_rehearsed_as_the_people(tmp_path):
    directory = tmp_path / "play"
    proc = start("--dir", str(directory), "--routes", "--seed", cwd=tmp_path)
    try:
        config = yaml.safe_load((directory / "okbx.yaml").read_text())
        assert [r["name"] for r in config["routes"]] == ["programmers", "documents", "sales"]
        assert okbx(directory, "doctor").exit_code == 0  # the group, pipeline and statuses exist
        look = okbx(directory, "emulate", "act", "look").stdout
        issue = next(line.split("\t")[0] for line in look.splitlines() if "Принтер печатает полосами" in line)

        assert okbx(directory, "emulate", "act", "set-status", issue, "waiting_docs").exit_code == 0
        assert okbx(directory, "sync").exit_code == 0
        look = okbx(directory, "emulate", "act", "look").stdout
        docs = [line.split("\t") for line in look.splitlines() if line.endswith(f"okdesk:{issue}:documents")]
        assert len(docs) == 1 and docs[0][2] == "43", look  # in the document department's group
        assert okbx(directory, "emulate", "act", "complete", docs[0][0]).exit_code == 0
        assert okbx(directory, "sync").exit_code == 0

        assert okbx(directory, "emulate", "act", "set-status", issue, "to_sales").exit_code == 0
        assert okbx(directory, "sync").exit_code == 0
        look = okbx(directory, "emulate", "act", "look").stdout
        deals = [line.split("\t") for line in look.splitlines() if f"okdesk:{issue}:" in line and "C10:" in line]
        assert len(deals) == 1, look
        assert okbx(directory, "emulate", "act", "move-deal", deals[0][0], "WON").exit_code == 0
        assert okbx(directory, "sync").exit_code == 0
        look = okbx(directory, "emulate", "act", "look").stdout
        assert f"{issue}\tПринтер печатает полосами\topened" in look, look
        status = okbx(directory, "status")
        assert status.exit_code == 0 and "sales" in status.stdout, status.output
    finally:
        stop(proc)
