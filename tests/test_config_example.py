"""config.example.yaml documents every key, and every value it shows for a key with a default IS
that default (each key is declared once, in okbx_sync/config/sections.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from okbx_sync.config import REQUIRED, SECTIONS, parse_config, parse_yaml
from okbx_sync.config.convert import convert
from okbx_sync.config.routes import BLOCKS, block_keys

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"
RAW = parse_yaml(EXAMPLE.read_text(encoding="utf-8"))
KEYS = [(section, name, key) for section, (_, keys) in SECTIONS.items() for name, key in keys.items()]
ROUTE_KEYS = [(block, name, key) for block, cls in BLOCKS.items() for name, key in block_keys(cls).items()]
LINES = EXAMPLE.read_text(encoding="utf-8").splitlines()


def test_the_example_has_every_section_and_key_and_nothing_else():
    sections = {s: set(RAW[s]) for s in RAW if s != "routes"}
    assert sections == {s: set(keys) for s, (_, keys) in SECTIONS.items()}


def test_the_example_is_a_valid_configuration_with_three_routes(tmp_path):
    env = {"OKDESK_API_TOKEN": "t", "BITRIX24_WEBHOOK_URL": "https://b.example/rest/1/s/"}
    config = parse_config(RAW, env=env, base_dir=tmp_path)
    assert [(r.name, r.kind, r.finish.return_status) for r in config.routes] == [
        ("programmers", "task", "opened"),
        ("documents", "task", "previous"),
        ("sales", "deal", "opened"),
    ]


def test_the_first_route_shows_every_route_key_with_its_default_or_a_sample(tmp_path):
    first = RAW["routes"][0]
    assert set(first) == {"name", *BLOCKS}
    for block, name, key in ROUTE_KEYS:
        assert name in first[block], f"routes[0].{block}.{name} is not shown"
        shown, line = first[block][name], next(line for line in LINES if line.strip().startswith(f"{name}:"))
        if key.default is REQUIRED or "required" in line or "not the default" in line:
            continue
        value = None if shown is None else convert(key, shown, {}, tmp_path)
        assert value == key.default, f"routes[0].{block}.{name}: shows {shown!r}, the default is {key.default!r}"


@pytest.mark.parametrize(("section", "name", "key"), KEYS, ids=[f"{s}.{n}" for s, n, _ in KEYS])
def test_an_example_value_is_the_default(section, name, key, tmp_path):
    if key.default is REQUIRED:
        pytest.skip("required: the example shows a sample value")
    shown = RAW[section][name]
    if key.route_key and shown is None:
        return  # the one route's key: left out next to routes:, its default said in the comment
    env = {"OKDESK_API_TOKEN": "t", "BITRIX24_WEBHOOK_URL": "https://b.example/rest/1/s/"}
    value = None if shown is None else convert(key, shown, env, tmp_path)
    default = None if key.default is None else convert(key, key.default, env, tmp_path)
    assert value == default, f"{section}.{name}: the example shows {shown!r}, the default is {key.default!r}"


def test_the_example_marks_each_required_key_as_required():
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for section, name, key in KEYS:
        if key.default is REQUIRED:
            line = next(line for line in lines if line.strip().startswith(f"{name}:"))
            assert "required" in line, f"{section}.{name} is required; its line says not so: {line}"
