"""Bad input is one clear line and exit 2 (a bad URL, file, interval or log file; a broken pipe is quiet)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from okbx_emulator.world import HANDOFF
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
