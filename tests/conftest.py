"""Shared fixtures: both emulators on loopback, and the real `okbx` CLI pointed at them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from okbx_sync.cli import app
from okbx_sync.clients.bitrix24 import forget_admin_rights
from okbx_sync.config import Config, load_config
from okbx_sync.emulator.world import World
from okbx_sync.state.store import Store


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run slow tests (long chaos runs, big backlogs)")
    parser.addoption("--chaos-seed", type=int, default=None, help="seed for the chaos test")
    parser.addoption("--chaos-steps", type=int, default=None, help="steps of the chaos test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _fresh_admin_rights() -> Iterator[None]:
    """okbx asks `user.admin` once per process; each test starts portals of its own."""
    forget_admin_rights()
    yield
    forget_admin_rights()


@pytest.fixture
def world() -> Iterator[World]:
    w = World.start()
    yield w
    w.close()


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Okbx:
    """The real CLI, in-process, with the environment a user would set."""

    def __init__(self, world: World, directory: Path, overrides: dict[str, dict[str, Any]] | None = None) -> None:
        self.world = world
        self.directory = directory
        self.config_path = world.write_config(directory, **(overrides or {}))
        self.env = {**world.env(), "OKBX_CONFIG": str(self.config_path)}

    def __call__(self, *args: str) -> CliResult:
        result = CliRunner().invoke(app, list(args), env=self.env, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def sync(self, *args: str) -> CliResult:
        result = self("sync", *args)
        assert result.exit_code in (0, 1), result.output
        return result

    def config(self) -> Config:
        return load_config(self.config_path, env=self.env)

    def store(self) -> Store:
        return Store(self.config().state.path)

    def reconfigure(self, **overrides: dict[str, Any]) -> None:
        self.config_path = self.world.write_config(self.directory, **overrides)


@pytest.fixture
def okbx(world: World, tmp_path: Path) -> Okbx:
    return Okbx(world, tmp_path)
