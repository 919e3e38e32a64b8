"""config.example.yaml documents every key, and every value it shows for a key with a default IS
that default (each key is declared once, in okbx_sync/config/sections.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from okbx_sync.config import REQUIRED, SECTIONS, parse_yaml
from okbx_sync.config.convert import convert

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.yaml"
RAW = parse_yaml(EXAMPLE.read_text(encoding="utf-8"))
KEYS = [(section, name, key) for section, (_, keys) in SECTIONS.items() for name, key in keys.items()]


def test_the_example_has_every_section_and_key_and_nothing_else():
    assert {s: set(RAW[s]) for s in RAW} == {s: set(keys) for s, (_, keys) in SECTIONS.items()}


@pytest.mark.parametrize(("section", "name", "key"), KEYS, ids=[f"{s}.{n}" for s, n, _ in KEYS])
def test_an_example_value_is_the_default(section, name, key, tmp_path):
    if key.default is REQUIRED:
        pytest.skip("required: the example shows a sample value")
    shown = RAW[section][name]
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
