"""`okbx doctor` checks against both emulators over real HTTP: all pass on the demo world, and
each single misconfiguration fails exactly the check that names it, with a useful detail."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from okbx_emulator.world import GROUP_ID, OKDESK_TOKEN, WEBHOOK_SECRET, World
from okbx_sync.clients.bitrix24 import Bitrix24Client
from okbx_sync.clients.okdesk import OkdeskClient
from okbx_sync.config import parse_config
from okbx_sync.doctor import Check, run_checks
from okbx_sync.secrets import Redactor

ALL_CHECKS = {
    "Okdesk credentials",
    "Okdesk handoff status",
    "Okdesk return status",
    "Okdesk return transition",
    "Okdesk bot employee",
    "Okdesk time employees",
    "Bitrix24 webhook",
    "Bitrix24 webhook scopes",
    "Bitrix24 administrator",
    "Bitrix24 group",
    "Bitrix24 responsible user",
    "Bitrix24 creator",
    "Bitrix24 mapped users",
    "Bitrix24 task card",
    "Bitrix24 Drive folder",
    "State store",
    "Clock",
    "Transport",
}
WRONG_TOKEN = "wrong-okdesk-token-77c1"
WRONG_SECRET = "wrong-webhook-secret-3e9f"
SECRETS = (OKDESK_TOKEN, WEBHOOK_SECRET, WRONG_TOKEN, WRONG_SECRET)


def doctor(
    world: World,
    tmp_path: Path,
    *,
    env: dict[str, str] | None = None,
    now: Callable[[], datetime] | None = None,
    **overrides: dict[str, Any],
) -> list[Check]:
    raw = world.config_dict(tmp_path / "okbx.sqlite3", **overrides)
    config = parse_config(raw, env={**world.env(), **(env or {})}, base_dir=tmp_path)
    redactor = Redactor(config.secrets())
    okdesk, bitrix = OkdeskClient(config.okdesk, redactor), Bitrix24Client(config.bitrix24, redactor)
    try:
        checks = run_checks(config, okdesk, bitrix, now=now or (lambda: datetime.now(UTC)))
    finally:
        okdesk.transport.close()
        bitrix.transport.close()
    for check in checks:
        for secret in SECRETS:
            assert secret not in check.detail and secret not in check.fix, check
    return checks


def failed(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks if not c.ok}


def only_failure(checks: list[Check], name: str) -> Check:
    bad = failed(checks)
    assert set(bad) == {name}, [(c.name, c.detail) for c in bad.values()]
    assert bad[name].fix, "a failing check must say how to fix it"
    return bad[name]


@pytest.fixture
def started() -> Iterator[Callable[..., World]]:
    worlds: list[World] = []

    def start(**options: Any) -> World:
        worlds.append(World.start(**options))
        return worlds[-1]

    yield start
    for w in worlds:
        w.close()


def test_all_checks_pass_on_the_demo_world(world: World, tmp_path: Path) -> None:
    checks = doctor(world, tmp_path)
    assert {c.name for c in checks} == ALL_CHECKS
    assert failed(checks) == {}, [(c.name, c.detail) for c in checks if not c.ok]
    by_name = {c.name: c for c in checks}
    assert "cannot read" in by_name["Okdesk return transition"].detail  # the manual part is spelled out
    assert "no tasks yet" in by_name["Bitrix24 task card"].detail


def test_wrong_okdesk_token(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, env={"OKDESK_API_TOKEN": WRONG_TOKEN}), "Okdesk credentials")
    assert "401" in check.detail
    assert "wrong or revoked" in check.fix and "Settings → API" in check.fix


def test_wrong_webhook_secret(world: World, tmp_path: Path) -> None:
    url = world.webhook_url.replace(WEBHOOK_SECRET, WRONG_SECRET)
    check = only_failure(doctor(world, tmp_path, env={"BITRIX24_WEBHOOK_URL": url}), "Bitrix24 webhook")
    assert "401" in check.detail
    assert "wrong, expired, or was rotated" in check.fix


def test_unknown_handoff_status(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, okdesk={"handoff_status": "to_devs"}), "Okdesk handoff status")
    assert "'to_devs'" in check.detail and "to_programmers" in check.detail  # lists the known codes


def test_unknown_return_status(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, okdesk={"return_status": "reopened"}), "Okdesk return status")
    assert "'reopened'" in check.detail and "opened" in check.detail


def test_missing_bot_employee(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, okdesk={"bot_employee_id": 99}), "Okdesk bot employee")
    assert "99" in check.detail and "does not exist" in check.detail


def test_inactive_mapped_employee(world: World, tmp_path: Path) -> None:
    gone = world.okdesk.add_employee("Old", "Timer", email="old@example.com", active=False)
    users = {world.people.bx_ivan: world.people.ok_ivan, world.people.bx_olga: gone}
    check = only_failure(doctor(world, tmp_path, time={"users": users}), "Okdesk time employees")
    assert f"time.users[{world.people.bx_olga}]" in check.detail and "deactivated" in check.detail


def test_missing_default_employee(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, time={"default_employee_id": 77}), "Okdesk time employees")
    assert "time.default_employee_id" in check.detail and "77" in check.detail


def test_group_missing(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, bitrix24={"group_id": 43}), "Bitrix24 group")
    assert "43" in check.detail and "no such workgroup" in check.detail


@pytest.mark.parametrize(("options", "word"), [({"closed": True}, "closed"), ({"active": False}, "archived")])
def test_group_closed_or_archived(world: World, tmp_path: Path, options: dict[str, bool], word: str) -> None:
    world.bitrix.add_group(44, "Old project", **options)
    check = only_failure(doctor(world, tmp_path, bitrix24={"group_id": 44}), "Bitrix24 group")
    assert "44" in check.detail and word in check.detail


def test_responsible_user_missing(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, bitrix24={"responsible_id": 99}), "Bitrix24 responsible user")
    assert "99" in check.detail and "does not exist" in check.detail


def test_responsible_user_inactive(world: World, tmp_path: Path) -> None:
    world.bitrix.add_user(10, "Fired", "Person", email="fired@example.com", active=False)
    check = only_failure(doctor(world, tmp_path, bitrix24={"responsible_id": 10}), "Bitrix24 responsible user")
    assert "10" in check.detail and "not active" in check.detail


def test_creator_missing(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, bitrix24={"created_by": 55}), "Bitrix24 creator")
    assert "55" in check.detail


def test_mapped_bitrix_user_missing(world: World, tmp_path: Path) -> None:
    users = {world.people.bx_ivan: world.people.ok_ivan, 66: world.people.ok_olga}
    check = only_failure(doctor(world, tmp_path, time={"users": users}), "Bitrix24 mapped users")
    assert "time.users key 66" in check.detail


def test_missing_webhook_scope(started: Callable[..., World], tmp_path: Path) -> None:
    world = started(bitrix_scopes=("task",))
    checks = doctor(world, tmp_path)
    check = only_failure(checks, "Bitrix24 webhook scopes")
    assert "user" in check.detail and "sonet" in check.detail
    names = {c.name for c in checks}
    assert "Bitrix24 group" not in names and "Bitrix24 responsible user" not in names  # skipped, said so
    assert "skipped" in check.detail


def test_unwritable_state_path(world: World, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    check = only_failure(doctor(world, tmp_path, state={"path": str(blocker / "okbx.sqlite3")}), "State store")
    assert "not a directory" in check.detail


def test_state_from_a_newer_okbx(world: World, tmp_path: Path) -> None:
    path = tmp_path / "newer.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version=99")
    conn.close()
    check = only_failure(doctor(world, tmp_path, state={"path": str(path)}), "State store")
    assert "newer okbx" in check.detail


def test_existing_state_store_passes(world: World, tmp_path: Path) -> None:
    from okbx_sync.state.store import Store

    Store(tmp_path / "okbx.sqlite3").close()
    checks = doctor(world, tmp_path)
    assert failed(checks) == {}
    assert "opens" in {c.name: c for c in checks}["State store"].detail


def test_clock_skew_against_bitrix_server_time(started: Callable[..., World], tmp_path: Path) -> None:
    world = started(bitrix_clock=lambda: datetime.now(UTC) + timedelta(minutes=10))
    check = only_failure(doctor(world, tmp_path), "Clock")
    assert "Bitrix24 server.time" in check.detail and "behind" in check.detail


def test_clock_skew_of_the_local_clock(world: World, tmp_path: Path) -> None:
    check = only_failure(doctor(world, tmp_path, now=lambda: datetime.now(UTC) - timedelta(minutes=10)), "Clock")
    assert "Okdesk" in check.detail and "Bitrix24" in check.detail


def test_small_skew_is_tolerated(started: Callable[..., World], tmp_path: Path) -> None:
    world = started(bitrix_clock=lambda: datetime.now(UTC) + timedelta(seconds=60))
    assert failed(doctor(world, tmp_path)) == {}


def test_new_task_card_portal_passes_with_a_warning(started: Callable[..., World], tmp_path: Path) -> None:
    world = started(bitrix_new_task_card=True)
    world.bitrix.create_task("Existing task", responsible_id=world.people.bx_ivan, group_id=GROUP_ID)
    checks = doctor(world, tmp_path)
    assert failed(checks) == {}
    detail = {c.name: c for c in checks}["Bitrix24 task card"].detail
    assert "new task card" in detail and "task.commentitem.add" in detail
    assert "task chat" in detail and "im.dialog.messages.get" in detail


def test_new_task_card_portal_needs_the_im_scope(started: Callable[..., World], tmp_path: Path) -> None:
    world = started(bitrix_new_task_card=True, bitrix_scopes=("task", "tasks", "user", "sonet", "crm", "disk"))
    world.bitrix.create_task("Existing task", responsible_id=world.people.bx_ivan, group_id=GROUP_ID)
    check = only_failure(doctor(world, tmp_path), "Bitrix24 task card")
    assert "no im scope" in check.detail and "im" in check.fix


def test_classic_task_card_is_named(world: World, tmp_path: Path) -> None:
    world.bitrix.create_task("Existing task", responsible_id=world.people.bx_ivan, group_id=GROUP_ID)
    detail = {c.name: c for c in doctor(world, tmp_path)}["Bitrix24 task card"].detail
    assert "classic" in detail


def test_one_failing_call_does_not_stop_the_others(world: World, tmp_path: Path) -> None:
    from okbx_emulator.http import Fault, Response

    world.bitrix_server.inject(
        Fault("sonet_group.get", when="before", response=Response.json(400, {"error": "ERROR_CORE"}), times=10)
    )
    checks = doctor(world, tmp_path)
    assert set(failed(checks)) == {"Bitrix24 group"}
    assert {c.name for c in checks} == ALL_CHECKS


def test_the_webhook_user_s_administrator_rights_are_reported(started: Callable[..., World], tmp_path: Path) -> None:
    admin = {c.name: c for c in doctor(started(), tmp_path / "a")}["Bitrix24 administrator"]
    assert admin.ok and "is an administrator" in admin.detail
    world = started(bitrix_admins=())
    world.bitrix.set_group_members(GROUP_ID, [world.bitrix.user_id])  # as README advises: its files' drive too
    checks = doctor(world, tmp_path / "b")
    assert failed(checks) == {}  # a warning, not a failure: okbx works, more carefully
    plain = {c.name: c for c in checks}["Bitrix24 administrator"]
    assert "Warning" in plain.detail and "not a Bitrix24 administrator" in plain.detail
    assert "never concludes 'deleted'" in plain.detail and "administrator" in plain.fix


# -- files (issue 15) ----------------------------------------------------------------------------
def test_files_need_the_disk_scope(started: Callable[..., World], tmp_path: Path) -> None:
    world = started(bitrix_scopes=("task", "user", "sonet", "im"))
    checks = doctor(world, tmp_path)
    check = only_failure(checks, "Bitrix24 webhook scopes")
    assert "disk" in check.detail and "files.enabled: false" in check.fix
    assert "Bitrix24 Drive folder" not in {c.name for c in checks}  # skipped, said so
    assert "Drive folder" in check.detail
    assert failed(doctor(world, tmp_path, files={"enabled": False})) == {}


def test_a_drive_folder_the_webhook_user_may_not_add_to_fails(world: World, tmp_path: Path) -> None:
    root = world.bitrix.drive.storage_of("group", GROUP_ID)["root_id"]
    world.bitrix.drive.set_rights(root, add=set())
    check = only_failure(doctor(world, tmp_path), "Bitrix24 Drive folder")
    assert "may not add files" in check.detail and f"workgroup {GROUP_ID}" in check.detail
    assert world.bitrix.drive.files_in(root) == []  # the check wrote nothing


def test_a_configured_drive_folder_is_checked_as_it_is(world: World, tmp_path: Path) -> None:
    root = world.bitrix.drive.storage_of("group", GROUP_ID)["root_id"]
    passed = {c.name: c for c in doctor(world, tmp_path, files={"folder_id": root})}["Bitrix24 Drive folder"]
    assert passed.ok and f"files.folder_id {root}" in passed.detail
    check = only_failure(doctor(world, tmp_path, files={"folder_id": 987654}), "Bitrix24 Drive folder")
    assert "987654" in check.detail and "files.folder_id" in check.fix


# -- routes (issue 14): each route's statuses, group or pipeline, users and scopes ----------------------
def test_doctor_checks_every_route(world: World, tmp_path: Path) -> None:
    world.routes_story()
    checks = doctor(world, tmp_path, routes=world.routes())  # type: ignore[arg-type]
    assert not failed(checks), [(c.name, c.detail) for c in failed(checks).values()]
    names = {c.name for c in checks}
    assert {"Route documents: handoff status", "Route documents: return status", "Route sales: pipeline"} <= names
    assert {"Route documents: Bitrix24 group", "Route sales: Bitrix24 deal user"} <= names
    by_name = {c.name: c for c in checks}
    assert "routes.documents.finish.fallback_status" in by_name["Route documents: return status"].detail


def test_doctor_names_a_missing_pipeline_stage_and_group_of_a_route(world: World, tmp_path: Path) -> None:
    world.routes_story()
    routes = world.routes()
    routes[1]["target"]["group_id"] = 99
    routes[2]["target"]["stage_id"] = "C10:NOPE"
    checks = doctor(world, tmp_path, routes=routes)  # type: ignore[arg-type]
    bad = failed(checks)
    assert set(bad) == {"Route documents: Bitrix24 group", "Route sales: pipeline"}
    assert "routes.documents.target.group_id 99" in bad["Route documents: Bitrix24 group"].detail
    assert "'C10:NOPE' is not one of its stages" in bad["Route sales: pipeline"].detail


def test_doctor_says_when_a_deal_route_lacks_the_crm_scope(started: Callable[..., World], tmp_path: Path) -> None:
    world = started(bitrix_scopes=("task", "user", "sonet"))
    checks = doctor(world, tmp_path, routes=world.routes())  # type: ignore[arg-type]
    bad = failed(checks)
    assert "Routes: crm scope" in bad and "sales" in bad["Routes: crm scope"].detail


def test_doctor_refuses_a_deal_route_that_starts_its_deals_in_a_final_stage(world: World, tmp_path: Path) -> None:
    """stage_id: C10:WON would make every deal over at once ("Deal won: 0 RUB" and back)."""
    world.routes_story()
    routes = world.routes()
    routes[2]["target"]["stage_id"] = "C10:WON"
    bad = failed(doctor(world, tmp_path, routes=routes))  # type: ignore[arg-type]
    assert set(bad) == {"Route sales: pipeline"}
    assert "'C10:WON' is a final stage" in bad["Route sales: pipeline"].detail
