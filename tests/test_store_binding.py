"""A state store belongs to one Okdesk account and one Bitrix24 portal (issue 7, item 2).

Told as a user meets it: a store copied to another pair of accounts (a restored backup, staging
next to production) is refused before any request, with exit code 3 and both sides named; the
same accounts under a new address are taken back with `okbx rebind`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Okbx
from test_secrets import free_port
from test_sync_story import hand_off, only_task
from typer.testing import CliRunner

from okbx_emulator.world import WEBHOOK_SECRET, World
from okbx_sync.cli import app
from okbx_sync.state.binding import Binding, stored_binding

WRITES = (
    "POST /issues/{id}/comments",
    "POST /issues/{id}/statuses",
    "POST /issues/{id}/time_entries",
    "tasks.task.add",
    "tasks.task.renew",
    "task.commentitem.add",
    "task.elapseditem.add",
)


@pytest.fixture
def other_world() -> World:
    world = World.start()
    yield world
    world.close()


def requests_seen(world: World) -> int:
    return len(world.okdesk_server.log) + len(world.bitrix_server.log)


def writes_seen(world: World) -> int:
    counts = world.okdesk_server.counts() + world.bitrix_server.counts()
    return sum(counts[w] for w in WRITES)


def host_of(url: str) -> str:
    return url.split("://", 1)[1].rstrip("/")


def binding_of(okbx: Okbx) -> Binding | None:
    store = okbx.store()
    try:
        return stored_binding(store)
    finally:
        store.close()


def test_the_first_sync_records_the_accounts_and_never_the_webhook_secret(world, okbx):
    hand_off(world)
    okbx.sync()
    binding = binding_of(okbx)
    assert binding == Binding(host_of(world.okdesk_server.url), host_of(world.bitrix_server.url), world.bitrix.user_id)
    assert WEBHOOK_SECRET.encode() not in okbx.config().state.path.read_bytes()


def test_a_dry_run_on_a_new_store_records_nothing(world, okbx):
    hand_off(world)
    assert okbx("sync", "--dry-run").exit_code == 0
    assert binding_of(okbx) is None


def test_a_store_copied_to_other_accounts_is_refused_before_any_request(world, okbx, other_world, tmp_path):
    issue = hand_off(world, comment="first words")
    okbx.sync()
    # the other accounts have an issue and a task with the very same ids
    other_issue = hand_off(other_world, "Someone else's printer", comment="not yours")
    assert other_issue == issue
    other_world.bitrix.create_task("Someone else's task", responsible_id=other_world.people.bx_ivan)
    seen_here, writes_here = requests_seen(world), writes_seen(world)

    copy_dir = tmp_path / "restored"
    copy_dir.mkdir()
    shutil.copy(okbx.config().state.path, copy_dir / "okbx.sqlite3")
    stranger = Okbx(other_world, copy_dir)
    for command in (["sync"], ["sync", "--dry-run"], ["link", str(issue), "1"], ["retry", str(issue)]):
        result = stranger(*command)
        assert result.exit_code == 3, (command, result.output)
        assert "belongs to Okdesk " + host_of(world.okdesk_server.url) in result.stderr
        assert f"Bitrix24 {host_of(world.bitrix_server.url)} (webhook user 1)" in result.stderr
        assert "says Okdesk " + host_of(other_world.okdesk_server.url) in result.stderr
        assert "Nothing was written" in result.stderr and "okbx rebind" in result.stderr
        assert WEBHOOK_SECRET not in result.output
    assert requests_seen(other_world) == 0  # not one request, let alone a write
    assert [c["content"] for c in other_world.okdesk.comments(other_issue)] == ["not yours"]
    assert other_world.bitrix.comments(1) == []
    assert (requests_seen(world), writes_seen(world)) == (seen_here, writes_here)
    assert "first words" in "".join(c["POST_MESSAGE"] for c in world.bitrix.comments(only_task(world)))


def test_the_run_loop_stops_with_exit_code_3_instead_of_retrying_a_foreign_store(world, okbx, other_world, tmp_path):
    hand_off(world)
    okbx.sync()
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    shutil.copy(okbx.config().state.path, copy_dir / "okbx.sqlite3")
    stranger = Okbx(other_world, copy_dir)
    finished = subprocess.run(
        [sys.executable, "-m", "okbx_sync", "run", "--every", "1s"],
        env={**os.environ, **stranger.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert finished.returncode == 3, finished.stderr
    assert "belongs to Okdesk" in finished.stderr and requests_seen(other_world) == 0


def test_rebind_refuses_a_portal_where_the_store_s_tasks_belong_to_other_issues(world, okbx, other_world, tmp_path):
    hand_off(world)
    okbx.sync()
    other_world.bitrix.create_task("Someone else's task", responsible_id=other_world.people.bx_ivan)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    shutil.copy(okbx.config().state.path, copy_dir / "okbx.sqlite3")
    stranger = Okbx(other_world, copy_dir)
    refused = stranger("rebind", "--yes")
    assert refused.exit_code == 2 and "of 1 of the store's tasks found in that portal, 0 belong" in refused.stdout
    assert "look like other accounts" in refused.stderr
    assert stranger("sync").exit_code == 3  # still bound to the first accounts
    forced = stranger("rebind", "--yes", "--force")
    assert forced.exit_code == 0 and "now serves Okdesk " + host_of(other_world.okdesk_server.url) in forced.stdout


def test_a_new_webhook_user_is_another_binding(world, okbx, tmp_path):
    hand_off(world)
    okbx.sync()
    world.bitrix.add_user(5, "Second", "Admin")
    okbx.env["BITRIX24_WEBHOOK_URL"] = world.webhook_url.replace("/rest/1/", "/rest/5/")
    refused = okbx("sync")
    assert refused.exit_code == 3 and "(webhook user 1)" in refused.stderr and "(webhook user 5)" in refused.stderr


def moved_to_a_custom_domain(world: World, okbx: Okbx) -> None:
    """The same Okdesk account, now reached under another name."""
    okbx.reconfigure(okdesk={"url": world.okdesk_server.url.replace("127.0.0.1", "localhost")})


def test_the_same_accounts_under_a_new_address_are_taken_back_with_rebind(world, okbx):
    ok, p = world.okdesk, world.people
    issue = hand_off(world, comment="before the move")
    okbx.sync()
    task = only_task(world)
    moved_to_a_custom_domain(world, okbx)
    ok.add_comment(issue, "after the move", author_id=p.client, author_type="contact")
    refused = okbx("sync")
    assert refused.exit_code == 3 and "says Okdesk localhost:" in refused.stderr

    rebound = okbx("rebind", "--yes")
    assert rebound.exit_code == 0, rebound.output
    assert "now serves Okdesk localhost:" in rebound.stdout
    assert "of 1 of the store's tasks found in that portal, 1 belong to their issue" in rebound.stdout
    assert okbx("rebind", "--yes").stdout.startswith("the state store")  # idempotent: "already serves"
    assert okbx.sync().exit_code == 0
    okbx.sync()
    texts = [c["POST_MESSAGE"] for c in world.bitrix.comments(task)]
    assert sum("before the move" in t for t in texts) == 1 and sum("after the move" in t for t in texts) == 1
    assert only_task(world) == task


def invoke(okbx: Okbx, args: list[str], answer: str | None) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env=okbx.env, input=answer, catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize(("answer", "code"), [("y\n", 0), ("n\n", 2), (None, 2)])
def test_rebind_asks_first_and_only_a_yes_rebinds(world, okbx, answer, code):
    hand_off(world)
    okbx.sync()
    before = binding_of(okbx)
    moved_to_a_custom_domain(world, okbx)
    exit_code, output = invoke(okbx, ["rebind"], answer)
    assert exit_code == code, output
    assert "serves Okdesk 127.0.0.1:" in output and "the configuration says Okdesk localhost:" in output
    after = binding_of(okbx)
    assert (after != before) if code == 0 else (after == before)
    assert "internal error" not in output


def test_a_store_from_before_binding_is_bound_on_its_first_run(world, okbx, tmp_path: Path):
    hand_off(world)
    okbx.sync()
    store = okbx.store()
    try:
        store.conn.execute("DELETE FROM meta WHERE key='binding'")  # as an older okbx left it
    finally:
        store.close()
    assert okbx.sync().exit_code == 0
    assert binding_of(okbx) is not None


def test_a_first_run_against_a_mistyped_address_does_not_bind_the_store(world, okbx):
    issue = hand_off(world, comment="hello")
    good = okbx.env["BITRIX24_WEBHOOK_URL"]
    okbx.env["BITRIX24_WEBHOOK_URL"] = good.replace(world.bitrix_server.url, f"http://127.0.0.1:{free_port()}")
    assert okbx("sync").exit_code == 1  # nothing answers there: the task create fails
    assert okbx("sync").exit_code == 1  # a lost answer is retried at the very next run, and fails again
    assert okbx("sync").exit_code == 0  # now waiting to retry
    assert okbx("retry", str(issue)).exit_code == 0
    assert binding_of(okbx) is None
    okbx.env["BITRIX24_WEBHOOK_URL"] = good  # the typo fixed: no rebind needed
    assert okbx.sync().exit_code == 0
    assert binding_of(okbx) is not None
    assert sum("hello" in c["POST_MESSAGE"] for c in world.bitrix.comments(only_task(world))) == 1
    store = okbx.store()
    try:
        assert store.link(issue).task_id == only_task(world)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("okdesk_url", "webhook", "expected"),
    [
        (
            "https://Acme.okdesk.ru/",
            "https://acme.bitrix24.ru/rest/7/s3cr3t/",
            ("acme.okdesk.ru", "acme.bitrix24.ru", 7),
        ),
        (
            "http://acme.okdesk.ru:80",
            "https://ACME.bitrix24.ru:443/rest/7/x/",
            ("acme.okdesk.ru", "acme.bitrix24.ru", 7),
        ),
        (
            "https://help.acme.com/okdesk",
            "https://b24.acme.com:8443/rest/12/x/",
            ("help.acme.com/okdesk", "b24.acme.com:8443", 12),
        ),
    ],
)
def test_the_binding_is_the_normalised_addresses_and_the_webhook_user(world, tmp_path, okdesk_url, webhook, expected):
    okbx = Okbx(world, tmp_path, {"okdesk": {"url": okdesk_url, "allow_insecure_http": True}})
    okbx.env["BITRIX24_WEBHOOK_URL"] = webhook
    binding = Binding.of(okbx.config())
    assert (binding.okdesk_account, binding.bitrix_portal, binding.bitrix_user) == expected
    assert "s3cr3t" not in binding.describe() and "x/" not in binding.describe()
