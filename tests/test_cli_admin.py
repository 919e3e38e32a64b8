"""What administrators run around the sync: init, doctor, the loop, output fit for cron."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from typer.testing import CliRunner

from okbx_emulator.http import Fault
from okbx_emulator.world import HANDOFF, OKDESK_TOKEN, WEBHOOK_SECRET
from okbx_sync.cli import app


def test_init_non_interactive_writes_a_config_that_doctor_accepts(world, tmp_path):
    output = tmp_path / "okbx.yaml"
    env = {"OKDESK_API_TOKEN": OKDESK_TOKEN, "BITRIX24_WEBHOOK_URL": world.webhook_url}
    result = CliRunner().invoke(
        app,
        [
            "init",
            "--yes",
            "--output",
            str(output),
            "--okdesk-url",
            world.okdesk_server.url,
            "--handoff-status",
            HANDOFF,
            "--bot-employee",
            str(world.people.bot),
            "--group",
            "42",
            "--responsible",
            str(world.people.bx_ivan),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    text = output.read_text()
    assert OKDESK_TOKEN not in text and WEBHOOK_SECRET not in text
    assert "${OKDESK_API_TOKEN}" in text and "handoff_status: to_programmers" in text
    assert f"{world.people.bx_ivan}: {world.people.ok_ivan}" in text  # mapped by e-mail
    env_file = tmp_path / "okbx.env"
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    assert "checks pass" in result.output and "FAIL" not in result.output
    # the env file next to the config is enough for later commands
    later = CliRunner().invoke(
        app, ["doctor", "--config", str(output)], env={"OKDESK_API_TOKEN": "", "BITRIX24_WEBHOOK_URL": ""}
    )
    assert later.exit_code == 0, later.output


def test_init_refuses_an_unknown_status_naming_the_choices(world, tmp_path):
    env = {"OKDESK_API_TOKEN": OKDESK_TOKEN, "BITRIX24_WEBHOOK_URL": world.webhook_url}
    result = CliRunner().invoke(
        app,
        [
            "init",
            "--yes",
            "--output",
            str(tmp_path / "x.yaml"),
            "--okdesk-url",
            world.okdesk_server.url,
            "--handoff-status",
            "no_such_status",
        ],
        env=env,
    )
    assert result.exit_code == 2
    assert "no_such_status" in result.output and "to_programmers" in result.output


def test_doctor_passes_on_a_good_setup_and_names_a_wrong_handoff_status(world, okbx):
    good = okbx("doctor")
    assert good.exit_code == 0, good.output
    okbx.reconfigure(okdesk={"handoff_status": "to_programers"})
    bad = okbx("doctor")
    assert bad.exit_code == 1
    assert "FAIL" in bad.stdout and "to_programers" in bad.stdout


def test_quiet_sync_prints_nothing_when_nothing_happened_nor_when_it_did_its_work(world, okbx):
    okbx.sync()
    result = okbx("sync", "-q")
    assert result.exit_code == 0 and result.output == ""
    world.okdesk.set_status(world.okdesk.create_issue("T", "d"), HANDOFF, by_employee_id=world.people.consultant)
    productive = okbx("sync", "-q")
    assert productive.exit_code == 0 and productive.output == ""  # no cron mail for work done
    assert len(world.bitrix.tasks()) == 1
    loud = okbx("sync")
    assert loud.stdout.count("\n") == 1 and "0 done" in loud.stdout  # without -q: one summary line


def test_run_loop_runs_a_cycle_every_interval_of_its_clock_until_sigterm(world, okbx, clock):
    issue = world.okdesk.create_issue("Loop", "d")
    log_file = okbx.directory / "run.log"

    def cycles() -> int:
        return log_file.read_text().count("okbx sync:") if log_file.exists() else 0

    def between_cycles() -> None:  # while the loop naps: hand off an issue after the first cycle, stop after 3
        if cycles() == 1 and world.okdesk.status_of(issue) != HANDOFF:
            world.okdesk.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
        if cycles() == 3:
            signal.raise_signal(signal.SIGTERM)

    clock.on_sleep = between_cycles
    result = okbx("run", "--every", "5m", "--log-file", str(log_file))
    assert result.exit_code == 0, result.output
    assert "SIGTERM received" in log_file.read_text() and "okbx run: stopped" in log_file.read_text()
    assert cycles() == 3
    assert 600 <= sum(clock.slept) < 601 and max(clock.slept) <= 1.0  # two intervals, in naps of a second
    assert [t["XML_ID"] for t in world.bitrix.tasks()] == [f"okdesk:{issue}"]  # the second cycle's work


def test_run_loop_stopped_by_sigterm_mid_write_leaves_nothing_half_done(world, okbx):
    issue = world.okdesk.create_issue("Loop", "d")
    world.okdesk.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
    hang = world.bitrix_server.inject(Fault("tasks.task.add", when="after", kind="hang", hang_seconds=20))
    proc = subprocess.Popen(
        [sys.executable, "-m", "okbx_sync", "run", "--every", "1s"],
        env={**os.environ, **okbx.env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert hang.hit.wait(20), "the loop never reached the write"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None  # still finishing the write in flight
        hang.release()
        stderr = proc.communicate(timeout=20)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "SIGTERM received" in stderr and "stopped" in stderr
    store = okbx.store()
    try:
        ops = store.ops_for([issue])
        assert ops[f"task:{issue}:1"].state == "done"  # the write in flight was recorded
        assert all(op.state == "done" for op in ops.values())  # and nothing after it was started
        assert store.link(issue).task_id == int(world.bitrix.tasks()[0]["ID"])
    finally:
        store.close()


def test_emulate_serves_a_playground_that_doctor_accepts(tmp_path):
    directory = tmp_path / "play"
    proc = subprocess.Popen(
        [sys.executable, "-m", "okbx_sync", "emulate", "--dir", str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert "Okdesk emulator" in lines[0], lines
        env = {k: v for k, v in os.environ.items() if k not in ("OKDESK_API_TOKEN", "BITRIX24_WEBHOOK_URL")}
        doctor = subprocess.run(
            [sys.executable, "-m", "okbx_sync", "doctor", "--config", str(directory / "okbx.yaml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert proc.returncode == 0
