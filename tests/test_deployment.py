"""The documented deployment, followed as a new administrator would: init, cron, systemd, logs, secrets."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from okbx_emulator.http import Fault, Response
from okbx_emulator.world import HANDOFF, OKDESK_TOKEN, WEBHOOK_SECRET, World
from okbx_sync.cli import app
from okbx_sync.config import parse_config
from okbx_sync.doctor.files import transport_check
from okbx_sync.envfile import parse_env_file

ROOT = Path(__file__).resolve().parent.parent
OKBX = Path(sys.executable).with_name("okbx")  # this venv's console script, as pip installs it
ISO_TS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def init_config(world: World, directory: Path, *extra: str) -> Path:
    """`okbx init --yes` exactly as the README says, secrets from the environment."""
    output = directory / "okbx.yaml"
    env = {"OKDESK_API_TOKEN": OKDESK_TOKEN, "BITRIX24_WEBHOOK_URL": world.webhook_url}
    flags = ["--okdesk-url", world.okdesk_server.url, "--handoff-status", HANDOFF]
    flags += ["--bot-employee", str(world.people.bot), "--group", "42", "--responsible", str(world.people.bx_ivan)]
    result = CliRunner().invoke(app, ["init", "--yes", "-o", str(output), *flags, *extra], env=env)
    assert result.exit_code == 0, result.output
    return output


def hand_off(world: World, title: str = "Printer jams") -> int:
    issue = world.okdesk.create_issue(title, "<p>details</p>")
    world.okdesk.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
    return issue


def substitute(line: str, config: Path, log: Path) -> str:
    line = line.replace("/opt/okbx/venv/bin/okbx", str(OKBX))
    line = line.replace("/etc/okbx/okbx.yaml", str(config)).replace(
        "/etc/okbx/okbx.env", str(config.parent / "okbx.env")
    )
    line = line.replace("/var/log/okbx/okbx.log", str(log))
    assert not re.search(r"/etc/okbx|/opt/okbx|/var/log/okbx", line), line  # every documented path was replaced
    return line


def cron_command() -> str:
    (line,) = [ln for ln in (ROOT / "crontab.example").read_text().splitlines() if ln.strip() and ln[0] != "#"]
    return line.split(None, 5)[5]  # after minute, hour, day of month, month, day of week


# -- 1. the documented deployment works verbatim -------------------------------------------------------
def test_the_crontab_line_runs_verbatim_in_crons_empty_environment_with_the_files_init_wrote(world, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    config = init_config(world, conf)
    issue = hand_off(world)
    log = tmp_path / "okbx.log"
    home = tmp_path / "home"
    home.mkdir()
    command = substitute(cron_command(), config, log)
    result = subprocess.run(["env", "-i", "/bin/sh", "-c", command], cwd=home, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # a productive run sends no cron mail
    (task,) = world.bitrix.tasks()
    assert task["XML_ID"] == f"okdesk:{issue}"  # a real sync happened
    text = log.read_text()
    assert re.search(rf"^{ISO_TS} INFO okbx: okbx sync: 2 done, 0 adopted, 0 failed", text, re.M), text
    assert re.search(rf"^{ISO_TS} INFO okbx.action: issue {issue}: CreateTask done", text, re.M), text
    assert OKDESK_TOKEN not in text and WEBHOOK_SECRET not in text


def test_the_systemd_unit_names_the_env_file_init_writes_and_its_command_runs_with_only_that_environment(
    world, tmp_path
):
    unit = dict(
        line.split("=", 1)
        for line in (ROOT / "okbx.service.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    exec_start = unit["ExecStart"].split()
    config_path = Path(exec_start[exec_start.index("--config") + 1])
    assert Path(unit["EnvironmentFile"]) == config_path.parent / "okbx.env"  # the file init writes beside it
    assert exec_start[:2] == ["/opt/okbx/venv/bin/okbx", "run"]
    config = init_config(world, tmp_path)
    env_file = config.parent / "okbx.env"
    # systemd reads KEY=value with no quoting needed: the same values as okbx's own parser
    lines = [ln for ln in env_file.read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Z0-9_]+=[^'\"\\\s]+", ln) for ln in lines), lines
    environment = parse_env_file(env_file.read_text())
    assert environment == world.env()
    issue = hand_off(world)
    command = substitute(unit["ExecStart"], config, tmp_path / "unused.log").split()
    env_file.unlink()  # so only EnvironmentFile's values can be what okbx uses
    proc = subprocess.Popen(command, env={**environment, "PATH": "/usr/bin:/bin"}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not world.bitrix.tasks() and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stderr = proc.communicate(timeout=30)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert [t["XML_ID"] for t in world.bitrix.tasks()] == [f"okdesk:{issue}"]
    # the journal line; how much was done before SIGTERM stopped the run depends on timing
    assert re.search(rf"^{ISO_TS} INFO okbx: okbx sync: [12] done, 0 adopted, 0 failed", stderr, re.M), stderr


# -- 2. cron-quiet, log-complete ------------------------------------------------------------------------
def test_a_quiet_run_with_a_failure_says_so_on_stderr_with_a_timestamp_and_the_log_has_every_line(okbx, tmp_path):
    world = okbx.world
    bad, good = hand_off(world, "Bad"), hand_off(world, "Good")  # the first task creation is refused
    refusal = Response.json(400, {"error": "ERROR_CORE", "error_description": "Task title is too long"})
    world.bitrix_server.inject(Fault(op="tasks.task.add", when="before", response=refusal))
    log = tmp_path / "okbx.log"
    result = okbx("sync", "-q", "--log-file", str(log))
    assert result.exit_code == 1
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()  # the failure alone, no summary
    assert re.fullmatch(rf"{ISO_TS} WARNING okbx.action: failed: issue {bad}: task: .*Task title is too long", line)
    text = log.read_text()
    assert re.search(rf"WARNING okbx.action: failed: issue {bad}: task: .*Task title is too long", text)
    assert re.search(rf"INFO okbx.action: issue {good}: CreateTask done", text)
    assert re.search(r"INFO okbx: okbx sync: 2 done, 0 adopted, 1 failed", text)
    assert len(world.bitrix.tasks()) == 1


def test_a_newly_parked_issue_is_reported_once_and_fails_the_run(okbx, tmp_path):
    world = okbx.world
    okbx.reconfigure(sync={"max_retries": 1, "retry_base_seconds": 1})
    issue = hand_off(world)
    refusal = Response.json(400, {"error": "ERROR_CORE", "error_description": "Responsible person not specified"})
    world.bitrix_server.inject(Fault(op="tasks.task.add", when="before", response=refusal))
    result = okbx("sync", "-q", "--log-file", str(tmp_path / "okbx.log"))
    assert result.exit_code == 1 and result.stdout == ""
    assert f"failed: issue {issue}" in result.stderr and f"issue {issue} parked after 1 failures" in result.stderr
    later = okbx("sync", "-q")  # parked already: nothing new to say
    assert later.exit_code == 0 and later.output == ""


def test_json_logs_are_one_object_per_line_with_structured_fields(okbx, tmp_path):
    issue = hand_off(okbx.world)
    log = tmp_path / "okbx.json"
    assert okbx("sync", "-q", "--log-file", str(log), "--log-format", "json").exit_code == 0
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    assert all(re.fullmatch(ISO_TS, e["ts"]) for e in entries)
    create = next(e for e in entries if e.get("action") == "CreateTask")
    assert create["issue"] == issue and create["outcome"] == "done" and create["system"] == "Bitrix24"
    summary = entries[-1]
    assert summary["logger"] == "okbx" and summary["done"] == 2 and summary["outcome"] == "ok"
    bad = okbx("sync", "--log-format", "xml")
    assert bad.exit_code == 2 and "--log-format must be text or json, got 'xml'" in bad.stderr


# -- 3. never destroy an operator's files -------------------------------------------------------------
def test_emulate_refuses_a_directory_with_a_configuration_and_says_what_it_would_overwrite(tmp_path):
    (tmp_path / "okbx.yaml").write_text("real: config\n")
    (tmp_path / "okbx.sqlite3").write_bytes(b"real state")
    result = subprocess.run(
        [sys.executable, "-m", "okbx_sync", "emulate", "--dir", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert f"{tmp_path} already holds okbx.yaml, okbx.sqlite3; emulate would overwrite them" in result.stderr
    assert "--force" in result.stderr
    assert (tmp_path / "okbx.yaml").read_text() == "real: config\n"
    assert (tmp_path / "okbx.sqlite3").read_bytes() == b"real state"


@pytest.fixture
def emulate_here(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "okbx_sync", "emulate"], cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(3)]
    yield proc, lines
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)


def test_emulate_without_dir_makes_a_fresh_directory_of_its_own(tmp_path, emulate_here):
    _, lines = emulate_here
    (made,) = list(tmp_path.glob("okbx-playground-*"))
    assert sorted(p.name for p in made.iterdir()) == [
        ".okbx-emulate.json",
        "okbx.env",
        "okbx.yaml",
    ]  # the act commands find it there
    assert oct(os.stat(made / "okbx.env").st_mode & 0o777) == "0o600"
    assert f"--config {made.name}/okbx.yaml" in lines[2] or f"--config {made}/okbx.yaml" in lines[2], lines


def test_emulate_with_force_replaces_the_files_and_drops_the_old_state_store(tmp_path):
    (tmp_path / "okbx.yaml").write_text("old: config\n")
    (tmp_path / "okbx.sqlite3").write_bytes(b"another world's state")
    proc = subprocess.Popen(
        [sys.executable, "-m", "okbx_sync", "emulate", "--dir", str(tmp_path), "--force"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and "Okdesk emulator" in proc.stdout.readline()
        assert "old: config" not in (tmp_path / "okbx.yaml").read_text()
        assert not (tmp_path / "okbx.sqlite3").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_init_refuses_to_overwrite_the_env_file_next_to_another_output(world, tmp_path):
    (tmp_path / "okbx.env").write_text("OKDESK_API_TOKEN=the-real-one\n")
    env = {"OKDESK_API_TOKEN": OKDESK_TOKEN, "BITRIX24_WEBHOOK_URL": world.webhook_url}
    result = CliRunner().invoke(app, ["init", "--yes", "-o", str(tmp_path / "other.yaml")], env=env)
    assert result.exit_code == 2
    assert f"init would overwrite {tmp_path / 'okbx.env'}; pass --force to replace it" in result.output
    assert (tmp_path / "okbx.env").read_text() == "OKDESK_API_TOKEN=the-real-one\n"
    assert not (tmp_path / "other.yaml").exists()


# -- 4. secrets stay secret ---------------------------------------------------------------------------
def test_plain_http_is_refused_off_loopback_unless_allowed_and_then_doctor_warns(world, tmp_path):
    raw = world.config_dict(tmp_path / "s.sqlite3", okdesk={"url": "http://okdesk.example.com"})
    with pytest.raises(Exception) as refused:
        parse_config(raw, env=world.env(), base_dir=tmp_path)
    assert "okdesk.url: plain http:// to okdesk.example.com would send the secret in clear" in str(refused.value)
    assert "allow_insecure_http: true" in str(refused.value)
    raw["okdesk"]["allow_insecure_http"] = True
    check = transport_check(parse_config(raw, env=world.env(), base_dir=tmp_path))
    assert check.warn and "okdesk.url uses plain http:// to okdesk.example.com" in check.detail
    loopback = parse_config(world.config_dict(tmp_path / "s.sqlite3"), env=world.env(), base_dir=tmp_path)
    assert not transport_check(loopback).warn  # the emulators on 127.0.0.1 are fine


def test_init_takes_no_secret_on_the_command_line(world, tmp_path):
    result = CliRunner().invoke(
        app, ["init", "--yes", "-o", str(tmp_path / "x.yaml"), "--webhook-url", "https://p/rest/1/s3cr3t/"]
    )
    assert result.exit_code == 2
    assert "--webhook-url is not accepted" in result.output and "visible in `ps`" in result.output
    assert "s3cr3t" not in result.output


def test_env_file_and_state_store_are_private_and_doctor_warns_when_they_are_not(world, tmp_path):
    config = init_config(world, tmp_path)
    hand_off(world)
    env = {"OKDESK_API_TOKEN": "", "BITRIX24_WEBHOOK_URL": ""}
    assert CliRunner().invoke(app, ["sync", "-q", "-c", str(config)], env=env).exit_code == 0
    store = tmp_path / "okbx.sqlite3"
    assert (
        oct(store.stat().st_mode & 0o777) == "0o600" and oct((tmp_path / "okbx.env").stat().st_mode & 0o777) == "0o600"
    )
    os.chmod(tmp_path / "okbx.env", 0o644)
    os.chmod(store, 0o666)
    result = CliRunner().invoke(app, ["doctor", "-c", str(config)], env=env)
    assert result.exit_code == 0, result.output  # warnings, not failures
    assert f"{tmp_path / 'okbx.env'} has mode 644: other users can read it" in result.output
    assert f"{store} has mode 666: other users can read it" in result.output
    assert f"chmod 600 {store}" in result.output and "WARN" in result.output


def test_the_env_file_is_read_like_systemd_environmentfile(tmp_path):
    text = (
        "# comment\n; also a comment\n\n"
        "PLAIN= value with inner spaces  \n"
        "SINGLE='it''s $HOME \\n'\n"
        'DOUBLE="say \\"hi\\" \\$HOME \\\\ # not a comment"\n'
        "export EXPORTED=yes\n"
    )
    assert parse_env_file(text) == {
        "PLAIN": "value with inner spaces",
        "SINGLE": "it''s $HOME \\n",
        "DOUBLE": 'say "hi" $HOME \\ # not a comment',
        "EXPORTED": "yes",
    }
    with pytest.raises(Exception, match=r"okbx.env line 2: expected KEY=value"):
        parse_env_file("A=1\nsecret-without-key\n")
    with pytest.raises(Exception, match=r'okbx.env line 1: the value opens a " quote that is not closed'):
        parse_env_file('A="open\n')


def test_a_quoted_token_in_the_env_file_works(okbx, tmp_path):
    (okbx.config_path.parent / "okbx.env").write_text(
        f"OKDESK_API_TOKEN=\"{OKDESK_TOKEN}\"\nBITRIX24_WEBHOOK_URL='{okbx.world.webhook_url}'\n"
    )
    okbx.env = {"OKBX_CONFIG": str(okbx.config_path), "OKDESK_API_TOKEN": "", "BITRIX24_WEBHOOK_URL": ""}
    hand_off(okbx.world)
    assert okbx("sync", "-q").exit_code == 0 and len(okbx.world.bitrix.tasks()) == 1


def _as_another_user() -> dict[str, object]:
    """subprocess options that run Python as `nobody` (root reads any file, so as root a mode alone
    proves nothing); the venv's own interpreter lives under /root, so the system one of the same
    version runs with this venv's packages."""
    if os.geteuid() != 0:
        return {"python": sys.executable, "env": {}}
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"running as root and {system} is missing")
    return {"python": str(system), "env": {"PYTHONPATH": f"{ROOT}:{sysconfig.get_paths()['purelib']}"}, "user": 65534}


def test_an_unreadable_env_file_is_named_as_such(world):
    directory = Path(tempfile.mkdtemp(dir="/tmp", prefix="okbx-perm-"))
    try:
        os.chmod(directory, 0o755)
        config = world.write_config(directory)
        os.chmod(config, 0o644)
        env_file = directory / "okbx.env"
        env_file.write_text(f"OKDESK_API_TOKEN={OKDESK_TOKEN}\n")
        os.chmod(env_file, 0o600 if os.geteuid() == 0 else 0o000)  # owned by someone else, or unreadable
        how = _as_another_user()
        result = subprocess.run(
            [str(how["python"]), "-m", "okbx_sync", "sync", "--dry-run", "-c", str(config)],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", **how["env"]},  # type: ignore[dict-item]
            cwd="/",
            user=how.get("user"),  # type: ignore[arg-type]
        )
        assert result.returncode == 2, result.stderr
        assert result.stderr == f"okbx: cannot read {env_file}: permission denied (run okbx as the user that owns it)\n"
    finally:
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
