"""Read-only commands never write (issue 16): status, show, report, doctor and a dry run create no
store, change none, work where the okbx user cannot write, and doctor names the real cause of a
store it cannot use.  A database okbx did not create is refused and left as it was."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from e2e import clean, hand_off, okbx_command

from okbx_sync.state.opening import APPLICATION_ID

READERS = (("status",), ("status", "--json"), ("show", "1"), ("report",), ("doctor",), ("sync", "--dry-run"))
NOBODY = 65534


def snapshot(directory: Path) -> dict[str, tuple[int, int, str]]:
    """Every file's size, modification time and content hash."""
    return {
        path.name: (path.stat().st_size, path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(directory.iterdir())
        if path.is_file()
    }


def test_before_the_first_run_the_readers_create_nothing_and_say_no_runs_yet(world, okbx, tmp_path):
    hand_off(world)
    before = snapshot(tmp_path)
    for command in READERS:
        result = okbx(*command)
        assert "Traceback" not in result.output and "internal error" not in result.output, (command, result.output)
    assert snapshot(tmp_path) == before
    status = okbx("status")
    assert status.exit_code == 0 and "no runs yet" in status.stdout
    show = okbx("show", "1")
    assert show.exit_code == 2 and "no runs yet" in show.stderr


def test_after_runs_the_readers_change_no_byte_of_the_store(world, okbx, tmp_path):
    issue = hand_off(world, comment="a question")
    clean(okbx.sync())
    hand_off(world, "Pending")  # work a dry run would plan
    before = snapshot(tmp_path)
    for command in (*READERS, ("show", str(issue))):
        okbx(*command)
    assert snapshot(tmp_path) == before


def test_a_database_of_another_program_is_refused_and_left_as_it_was(world, okbx, tmp_path):
    hand_off(world)
    path = tmp_path / "okbx.sqlite3"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    other.execute("INSERT INTO invoices VALUES (1, 99.5)")
    other.commit()
    other.close()
    before = path.read_bytes()
    for command in (("sync",), ("status",), ("sync", "--dry-run"), ("retry", "1")):
        result = okbx(*command)
        assert result.exit_code == 3 and "did not create" in result.stderr, (command, result.output)
        assert "invoices" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before and world.bitrix.tasks() == []
    doctor = okbx("doctor")
    assert "did not create" in doctor.stdout and "another program's database" in doctor.stdout


def test_doctor_with_billing_on_a_store_it_cannot_open_names_the_store_not_a_bug_of_its_own(world, okbx, tmp_path):
    """The store's cause is the State store check's: billing's checks still run, and doctor never
    advises `chmod` on what the store path links to (here /dev/zero)."""
    okbx.reconfigure(billing={"default_rate": 3000}, debt={"status": "debt"})
    (tmp_path / "okbx.sqlite3").symlink_to("/dev/zero")
    doctor = okbx("doctor")
    assert doctor.exit_code == 1, doctor.output
    assert "not a regular file" in doctor.stdout and "bug in okbx doctor" not in doctor.stdout, doctor.stdout
    for check in ("Bitrix24 invoice pipeline", "Okdesk debt status", "Billing rates", "Billing currency"):
        assert check in doctor.stdout, doctor.stdout
    assert "chmod 600" not in doctor.stdout, doctor.stdout


def test_a_store_of_the_current_release_is_still_accepted_and_marked_as_okbx_s(world, okbx, tmp_path):
    hand_off(world)
    clean(okbx.sync())
    path = tmp_path / "okbx.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id=0")  # as the release before this one wrote it
    db.commit()
    db.close()
    assert okbx("status").exit_code == 0
    clean(okbx.sync())
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    db.close()


@pytest.fixture
def shared_dir(world):
    """A directory another user can reach (pytest's own is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="okbx-shared-", dir="/tmp"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def as_nobody(okbx, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**okbx.spawn_env(), "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"}
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *okbx_command(), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to act as another user")
def test_a_store_made_by_root_is_explained_to_the_user_cron_runs_as(world, okbx, shared_dir):
    """The usual first reflex: `sudo okbx sync` once, then cron runs as okbx and cannot open it."""
    hand_off(world)
    okbx.directory = shared_dir
    okbx.reconfigure()
    okbx.env["OKBX_CONFIG"] = str(shared_dir / "okbx.yaml")
    (shared_dir / "okbx.yaml").chmod(0o644)
    clean(okbx.sync())  # as root: the store is root's, mode 600
    store = shared_dir / "okbx.sqlite3"
    assert store.stat().st_mode & 0o777 == 0o600
    doctor = as_nobody(okbx, "doctor")
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    assert "owned by root (uid 0) with mode 600, and okbx runs as nobody" in doctor.stdout, doctor.stdout
    assert "run okbx as root" in doctor.stdout and "chown" in doctor.stdout
    sync = as_nobody(okbx, "sync")
    assert sync.returncode == 3 and "owned by root (uid 0) with mode 600" in sync.stderr, sync.stderr

    store.chmod(0o644)  # readable, in a directory nobody cannot write: the readers still work
    before = snapshot(shared_dir)
    status = as_nobody(okbx, "status")
    assert status.returncode == 0 and "1 links" in status.stdout, status.stdout + status.stderr
    assert as_nobody(okbx, "show", "1").returncode == 0
    assert as_nobody(okbx, "sync", "--dry-run").returncode == 0
    assert snapshot(shared_dir) == before
