"""`okbx init` logic against both emulators: discovery, the e-mail mapping, and a rendered
config + env file that loads and passes every doctor check."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from okbx_emulator.world import GROUP_ID, HANDOFF, OKDESK_TOKEN, WEBHOOK_SECRET, World
from okbx_sync.clients.bitrix24 import Bitrix24Client
from okbx_sync.clients.okdesk import OkdeskClient
from okbx_sync.config import OPT_IN_SECTIONS, SECTIONS, load_config
from okbx_sync.doctor import run_checks
from okbx_sync.errors import ApiError, UsageError
from okbx_sync.secrets import Redactor
from okbx_sync.setup_wizard import (
    Discovery,
    discover,
    parse_env_file,
    propose_user_map,
    render_config,
    render_env_file,
    write_private_file,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"


def run_discover(world: World) -> Discovery:
    return discover(world.okdesk_server.url, OKDESK_TOKEN, world.webhook_url, redactor=Redactor())


def required_choices(world: World, found: Discovery, state_path: Path) -> dict[str, Any]:
    bot = next(e for e in found.okdesk_employees if e["email"] == "okbx@example.com")
    return {
        "okdesk.url": world.okdesk_server.url,
        "okdesk.bot_employee_id": bot["id"],
        "okdesk.handoff_status": HANDOFF,
        "bitrix24.group_id": found.groups[0]["id"],
        "bitrix24.responsible_id": world.people.bx_ivan,
        "time.default_employee_id": bot["id"],
        "time.users": propose_user_map(found.bitrix_users, found.okdesk_employees),
        "state.path": str(state_path),
    }


def test_discovery_lists_statuses_people_and_groups(world: World) -> None:
    world.bitrix.add_group(43, "Archived project", active=False)
    world.bitrix.add_group(44, "Closed project", closed=True)
    found = run_discover(world)
    assert (HANDOFF, "Передана программистам") in found.statuses and ("opened", "Открыта") in found.statuses
    emails = {e["email"]: e for e in found.okdesk_employees}
    assert set(emails) == {"okbx@example.com", "anna@example.com", "ivan@example.com", "olga@example.com"}
    assert emails["ivan@example.com"] == {
        "id": world.people.ok_ivan,
        "name": "Ivan Petrov",
        "email": "ivan@example.com",
        "active": True,
    }
    assert found.groups == [
        {"id": GROUP_ID, "name": "Programmers (paid)", "owner": world.people.bx_ivan}
    ]  # inactive and closed left out
    assert {u["id"] for u in found.bitrix_users} == {1, 7, 8, 9}
    assert {"id": 8, "name": "Olga Sidorova", "email": "olga@example.com", "active": True} in found.bitrix_users
    assert found.webhook_user_id == world.bitrix.user_id
    assert {"task", "user", "sonet"} <= set(found.scopes)


def test_discovery_pages_through_many_users_and_employees(world: World) -> None:
    for n in range(60):
        world.bitrix.add_user(100 + n, f"User{n}", "Test", email=f"user{n}@example.com")
    for n in range(105):
        world.okdesk.add_employee(f"Emp{n}", "Test", email=f"emp{n}@example.com")
    found = run_discover(world)
    assert len(found.bitrix_users) == 64 and len({u["id"] for u in found.bitrix_users}) == 64
    assert len(found.okdesk_employees) == 109 and len({e["id"] for e in found.okdesk_employees}) == 109


def test_discovery_errors_are_scrubbed(world: World) -> None:
    redactor = Redactor()
    with pytest.raises(ApiError) as caught:
        discover(world.okdesk_server.url, "wrong-token-1234", world.webhook_url, redactor=redactor)
    assert caught.value.status == 401 and "wrong-token-1234" not in str(caught.value)
    bad_url = world.webhook_url.replace(WEBHOOK_SECRET, "other-secret-5678")
    with pytest.raises(ApiError) as caught:
        discover(world.okdesk_server.url, OKDESK_TOKEN, bad_url, redactor=redactor)
    assert caught.value.status == 401
    assert "other-secret-5678" not in str(caught.value) and OKDESK_TOKEN not in str(caught.value)
    with pytest.raises(UsageError):
        discover(world.okdesk_server.url, OKDESK_TOKEN, "https://portal.example/rest/", redactor=redactor)


def test_email_mapping_from_the_emulators(world: World) -> None:
    found = run_discover(world)
    proposal = propose_user_map(found.bitrix_users, found.okdesk_employees)
    assert proposal == {world.people.bx_ivan: world.people.ok_ivan, world.people.bx_olga: world.people.ok_olga}


def test_email_mapping_rules() -> None:
    bitrix = [
        {"id": 7, "email": "Ivan@Example.com", "active": True},
        {"id": 8, "email": "olga@example.com", "active": False},  # dismissed
        {"id": 9, "email": "twin@example.com", "active": True},  # ambiguous on the Okdesk side
        {"id": 10, "email": "", "active": True},
        {"id": 11, "email": "gone@example.com", "active": True},
    ]
    okdesk = [
        {"id": 3, "email": "ivan@example.COM ", "active": True},
        {"id": 4, "email": "olga@example.com", "active": True},
        {"id": 5, "email": "twin@example.com", "active": True},
        {"id": 6, "email": "twin@example.com", "active": True},
        {"id": 12, "email": "", "active": True},
        {"id": 13, "email": "gone@example.com", "active": False},
    ]
    assert propose_user_map(bitrix, okdesk) == {7: 3}


def test_rendered_config_has_every_example_key_and_no_secret(world: World, tmp_path: Path) -> None:
    found = run_discover(world)
    text = render_config(required_choices(world, found, tmp_path / "state.sqlite3"))
    rendered, example = yaml.safe_load(text), yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    # billing and debt are opt-in: in the example (a worked example), not in what init writes
    # routes: is a worked example there too (the one-route form init writes is the same configuration)
    assert {s: set(v) for s, v in rendered.items()} == {
        s: set(v) for s, v in example.items() if s not in OPT_IN_SECTIONS and s != "routes"
    }
    assert {s: set(keys) for s, (_, keys) in SECTIONS.items()} == {
        s: set(v) for s, v in example.items() if s != "routes"
    }
    assert rendered["okdesk"]["api_token"] == "${OKDESK_API_TOKEN}"
    assert rendered["bitrix24"]["webhook_url"] == "${BITRIX24_WEBHOOK_URL}"
    assert OKDESK_TOKEN not in text and WEBHOOK_SECRET not in text
    assert "# required. Status code that hands an issue to programmers" in text  # comments kept
    assert rendered["bitrix24"]["created_by"] is None and rendered["okdesk"]["timezone"] is None


def test_render_config_refuses_missing_unknown_and_secret_keys() -> None:
    with pytest.raises(ValueError, match=r"okdesk\.handoff_status: is required"):
        render_config({"okdesk.url": "https://a.okdesk.ru"})
    with pytest.raises(ValueError, match="unknown key"):
        render_config({"okdesk.urll": "x"})
    with pytest.raises(ValueError, match="environment"):
        render_config({"okdesk.api_token": "abc"})


def test_render_config_quotes_values_yaml_would_retype(world: World, tmp_path: Path) -> None:
    found = run_discover(world)
    choices = required_choices(world, found, tmp_path / "s.sqlite3") | {
        "okdesk.timezone": "+03:00",
        "okdesk.handoff_status": "true",
        "bitrix24.tags": ["okdesk", "1C: support"],
    }
    rendered = yaml.safe_load(render_config(choices))
    assert rendered["okdesk"]["timezone"] == "+03:00"
    assert rendered["okdesk"]["handoff_status"] == "true"
    assert rendered["bitrix24"]["tags"] == ["okdesk", "1C: support"]


def test_env_file_is_private_and_parses(world: World, tmp_path: Path) -> None:
    path = tmp_path / "okbx.env"
    path.write_text("old")
    path.chmod(0o644)
    write_private_file(path, render_env_file(OKDESK_TOKEN, world.webhook_url))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert parse_env_file(path.read_text()) == world.env()
    with pytest.raises(ValueError):
        render_env_file("token with space", world.webhook_url)


def test_rendered_config_and_env_load_and_pass_doctor(world: World, tmp_path: Path) -> None:
    found = run_discover(world)
    config_path, env_path = tmp_path / "okbx.yaml", tmp_path / "okbx.env"
    config_path.write_text(render_config(required_choices(world, found, Path("okbx.sqlite3"))), encoding="utf-8")
    write_private_file(env_path, render_env_file(OKDESK_TOKEN, world.webhook_url))
    config = load_config(config_path, env=parse_env_file(env_path.read_text()))
    assert config.state.path == tmp_path / "okbx.sqlite3"  # relative to the config file
    assert dict(config.time.users) == {world.people.bx_ivan: world.people.ok_ivan, 8: world.people.ok_olga}
    redactor = Redactor(config.secrets())
    okdesk, bitrix = OkdeskClient(config.okdesk, redactor), Bitrix24Client(config.bitrix24, redactor)
    try:
        checks = run_checks(config, okdesk, bitrix, now=lambda: datetime.now(UTC))
    finally:
        okdesk.transport.close()
        bitrix.transport.close()
    assert [c for c in checks if not c.ok] == []
    for check in checks:
        assert OKDESK_TOKEN not in check.detail and WEBHOOK_SECRET not in check.detail
