"""Shared fixtures: one test clock, both emulators on it, and the real `okbx` CLI pointed at them.

The harness itself (clock, CLI runner, readers of both systems) lives in `e2e.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("e2e")
from e2e import Okbx, TestClock, start_world  # noqa: E402

from okbx_emulator.world import World  # noqa: E402
from okbx_sync.clients.bitrix24 import forget_admin_rights  # noqa: E402


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
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def world(clock: TestClock) -> Iterator[World]:
    w = start_world(clock)
    yield w
    w.close()


@pytest.fixture
def okbx(world: World, tmp_path: Path, clock: TestClock) -> Okbx:
    return Okbx(world, tmp_path, clock=clock)
