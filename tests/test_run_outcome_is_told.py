"""The truth in status, exit codes and logs (issue 16): status exits 1 while the last run failed and
says why; a run that ends in an error reaches the log file and the JSON log; -q is silent for an
expected overlap; a one-shot sync stops cleanly on SIGTERM; the log file is private; retry of a
healthy link and report --verify say what they found."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from e2e import clean, hand_off, in_task, okbx_command, spawn_okbx, task_of

from okbx_emulator.http import Fault, Response


def test_status_exits_1_and_says_why_while_the_last_run_failed(world, okbx):
    hand_off(world)
    clean(okbx.sync())
    assert okbx("status").exit_code == 0
    world.okdesk_server.inject(Fault(op="GET /issues/list", when="before", response=Response.json(500, {}), times=4))
    assert okbx("sync").exit_code == 1
    result = okbx("status")
    assert result.exit_code == 1 and "needs a look: the last run failed" in result.stdout, result.output
    (problem,) = json.loads(okbx("status", "--json").stdout)["problems"]
    assert problem.startswith("the last run failed: ") and "GET /issues/list" in problem, problem  # and why
    clean(okbx.sync())  # Okdesk answers again
    assert okbx("status").exit_code == 0


def test_an_error_that_ends_a_run_reaches_the_log_file_and_the_json_log(world, okbx, tmp_path):
    text_log, json_log = tmp_path / "okbx.log", tmp_path / "okbx.jsonl"
    okbx.reconfigure(state={"path": str(tmp_path / "okbx.sqlite3")})
    (tmp_path / "okbx.sqlite3").write_bytes(b"not a database at all, but a file someone put here")
    first = okbx("sync", "-q", "--log-file", str(text_log))
    assert first.exit_code == 3 and first.stderr.startswith("okbx: state store")
    assert len(first.stderr.strip().splitlines()) == 1  # said once, not again by the log handler
    assert "ERROR okbx: run ended, exit code 3: state store" in text_log.read_text()
    okbx("sync", "--log-file", str(json_log), "--log-format", "json")
    entry = json.loads(json_log.read_text().splitlines()[-1])
    assert entry["level"] == "ERROR" and entry["outcome"] == "failed" and "exit code 3" in entry["message"]


def test_the_log_file_is_created_for_its_owner_only(world, okbx, tmp_path):
    log = tmp_path / "new.log"
    clean(okbx.sync("--log-file", str(log)))
    assert log.stat().st_mode & 0o777 == 0o600
    kept = tmp_path / "rotated.log"
    kept.touch(mode=0o640)
    kept.chmod(0o640)  # logrotate's `create 640 okbx okbx`: an existing file keeps its mode
    clean(okbx.sync("--log-file", str(kept)))
    assert kept.stat().st_mode & 0o777 == 0o640


def test_quiet_sync_says_nothing_about_an_expected_overlap_but_logs_it(world, okbx, tmp_path):
    hand_off(world)
    hold = world.okdesk_server.inject(Fault(op="GET /issues/list", when="before", kind="hang", hang_seconds=30))
    first = spawn_okbx(okbx, "sync")
    log = tmp_path / "cron.log"
    try:
        assert hold.hit.wait(20), "the first run never reached Okdesk"
        command = [*okbx_command(), "sync", "-q", "--log-file", str(log)]
        second = subprocess.run(command, env=okbx.spawn_env(), capture_output=True, text=True, timeout=30)
        assert second.returncode == 75 and second.stdout == "" and second.stderr == "", second
        assert "WARNING okbx: run ended, exit code 75: another okbx run" in log.read_text()
        loud = subprocess.run([*okbx_command(), "sync"], env=okbx.spawn_env(), capture_output=True, text=True)
        assert loud.returncode == 75 and "another okbx run" in loud.stderr  # without -q it is said
    finally:
        hold.release()
        first.communicate(timeout=30)


def test_a_one_shot_sync_finishes_the_write_in_flight_on_sigterm_and_exits_143(world, okbx, tmp_path):
    issue = hand_off(world, "Stopped by a timer", comment="a question")
    hang = world.bitrix_server.inject(Fault("tasks.task.add", when="after", kind="hang", hang_seconds=20))
    log = tmp_path / "okbx.log"
    proc = spawn_okbx(okbx, "sync", "--log-file", str(log))
    try:
        assert hang.hit.wait(20), "the sync never reached the write"
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None  # still finishing the write in flight
        hang.release()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out + err
    assert "stopped by SIGTERM after the write in flight" in log.read_text()
    assert "Traceback" not in err
    store = okbx.store()
    try:
        ops = store.ops_for([issue])
        assert ops[f"task:{issue}:1"].state == "done"  # the write in flight was recorded
        assert all(op.state == "done" for op in ops.values())  # and nothing after it was started
        assert store.link(issue).task_id == task_of(world, issue)
    finally:
        store.close()
    assert in_task(world, issue, "a question") == 0
    clean(okbx.sync())
    assert in_task(world, issue, "a question") == 1


def test_retry_of_a_link_that_is_not_failing_says_there_is_nothing_to_retry(world, okbx):
    issue = hand_off(world)
    clean(okbx.sync())
    result = okbx("retry", str(issue))
    assert result.exit_code == 1 and "nothing to retry" in result.stderr and "will be tried" not in result.output


def test_report_verify_always_prints_its_verdict(world, okbx):
    hand_off(world)
    clean(okbx.sync())
    table = okbx("report", "--verify")
    assert table.exit_code == 0 and "verify: no drift" in table.stdout, table.output
    as_json = okbx("report", "--verify", "--format", "json")
    assert as_json.exit_code == 0 and "verify: no drift" in as_json.stderr
    json.loads(as_json.stdout)  # stdout stays machine-readable
