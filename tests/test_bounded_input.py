"""Bounded input everywhere (issue 16): files okbx reads are refused past their limit whatever their
type, every number has a range, and a value outside it is one line naming the key or argument
(exit 2), never an internal error; doctor warns about rates and a currency the CRM does not know."""

from __future__ import annotations

import os
import subprocess
import time

import pytest
from e2e import clean, hand_off, okbx_command

HUGE = "99999999999999999999999"


def one_line(result, code: int, *words: str) -> None:
    assert result.exit_code == code, result.output
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_a_configuration_that_is_a_device_is_refused_at_once(okbx):
    started = time.monotonic()
    one_line(okbx("status", "-c", "/dev/zero"), 2, "/dev/zero", "larger than 256 KiB")
    assert time.monotonic() - started < 5


def test_an_env_file_that_links_to_a_device_is_refused(okbx, tmp_path):
    (tmp_path / "okbx.env").symlink_to("/dev/zero")
    one_line(okbx("status"), 2, "okbx.env", "larger than 64 KiB")


def test_a_configuration_or_env_file_that_is_a_named_pipe_is_refused_not_waited_on(okbx, tmp_path):
    """Opening a FIFO waits for a writer: a cron job would hang there for ever, before its first line."""
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    for args, env_file in ((("status", "-c", str(pipe)), None), (("status",), tmp_path / "okbx.env")):
        if env_file is not None:
            os.mkfifo(env_file)
        try:
            run = subprocess.run(
                [*okbx_command(), *args], env=okbx.spawn_env(), capture_output=True, text=True, timeout=20
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"okbx {' '.join(args)} waited for a writer of the pipe")
        assert run.returncode == 2 and "named pipe" in run.stderr, run
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_a_store_that_links_to_a_device_is_refused(okbx, tmp_path):
    (tmp_path / "okbx.sqlite3").symlink_to("/dev/zero")
    for command in (("sync",), ("status",)):
        one_line(okbx(*command), 3, "not a regular file")


@pytest.mark.parametrize(
    "command, name",
    [
        (("show", HUGE), "ISSUE"),
        (("retry", HUGE), "ISSUE"),
        (("link", HUGE, "1"), "ISSUE"),
        (("link", "1", HUGE), "TASK"),
    ],
)
def test_an_id_too_large_for_any_account_is_one_line(world, okbx, command, name):
    hand_off(world)
    clean(okbx.sync())
    one_line(okbx(*command), 2, f"{name} must be an id")


@pytest.mark.parametrize("wait", ["-1", "nan", "1e12"])
def test_a_wait_outside_its_range_is_refused(okbx, wait):
    one_line(okbx("sync", "--wait", wait), 2, "--wait must be 0 to 86400 seconds")


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("time", "late_window_days", 1_000_000),
        ("sync", "retry_base_seconds", 10**12),
        ("sync", "max_retries", 10_000),
        ("okdesk", "bot_employee_id", 10**30),
        ("billing", "default_rate", 1e20),
    ],
)
def test_a_number_outside_its_range_names_its_key(world, okbx, section, key, value):
    okbx.reconfigure(**{section: {key: value}})
    for command in (("sync",), ("sync", "--dry-run"), ("doctor",)):
        one_line(okbx(*command), 2, f"{section}.{key}")


@pytest.mark.parametrize(
    "section, values, key",
    [
        ("time", {"default_employee_id": 1, "users": {7: -3}}, "time.users"),
        ("time", {"default_employee_id": 1, "users": {0: 3}}, "time.users"),
        ("bitrix24", {"done_statuses": [5, 0]}, "bitrix24.done_statuses"),
        ("billing", {"default_rate": 3000, "company_map": {1: 0}}, "billing.company_map"),
        ("billing", {"default_rate": 3000, "rates": {-7: 3000}}, "billing.rates"),
    ],
)
def test_an_id_in_a_list_or_mapping_outside_its_range_names_its_key(world, okbx, section, values, key):
    okbx.reconfigure(**{section: values})
    for command in (("sync",), ("status",)):
        one_line(okbx(*command), 2, key, "from 1 to 2**53")


def test_doctor_warns_about_a_zero_or_absurd_rate_and_an_unknown_currency(world, okbx):
    okbx.reconfigure(billing={"default_rate": 0, "rates": {7: 5_000_000}, "currency": "XYZ"})
    result = okbx("doctor")
    lines = {line.split("\t")[0]: line for line in result.stdout.splitlines() if "\t" in line}
    assert "WARN" in lines["Billing rates"] and "billing.default_rate is 0" in lines["Billing rates"]
    assert "billing.rates[7] is 5e+06" in lines["Billing rates"]
    assert (
        "WARN" in lines["Billing currency"] and "'XYZ' is not among the CRM's currencies" in lines["Billing currency"]
    )
    okbx.reconfigure(billing={"default_rate": 3000, "currency": "RUB"})
    lines = {line.split("\t")[0]: line for line in okbx("doctor").stdout.splitlines() if "\t" in line}
    assert "\tok\t" in lines["Billing rates"] and "\tok\t" in lines["Billing currency"]
