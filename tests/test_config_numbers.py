"""YAML's `.inf` and `.nan` are numbers to a parser but never a setting: a rate of
`.inf` was accepted and crashed the billing with an internal error (decimal.InvalidOperation)."""

from __future__ import annotations

import pytest
from test_config import BASE, valid

from okbx_sync.config import parse_config
from okbx_sync.errors import ConfigError


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize(
    ("section", "key"),
    [("billing", "default_rate"), ("okdesk", "requests_per_second"), ("sync", "backoff_seconds")],
)
def test_a_number_that_is_not_finite_is_a_configuration_error(section, key, value):
    raw = valid()
    raw.setdefault("billing", {"default_rate": 3000})
    raw.setdefault("sync", {})
    raw[section][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={}, base_dir=BASE)
    problems = dict(caught.value.problems)
    assert f"{section}.{key}" in problems, problems
    assert "finite" in problems[f"{section}.{key}"]


def test_a_rate_that_is_not_finite_is_a_configuration_error():
    raw = valid()
    raw["billing"] = {"default_rate": 3000, "rates": {8: float("inf")}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, env={}, base_dir=BASE)
    assert "billing.rates" in dict(caught.value.problems)
