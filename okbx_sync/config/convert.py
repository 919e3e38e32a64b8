"""Turning a raw YAML value into a typed setting, with one clear problem when it cannot be."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..secrets import Secret
from .spec import MAX_ID, MAX_RATE, REQUIRED, Key

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Problem(Exception):
    pass


def _expand_env(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env or env[name] == "":
            raise Problem(f"environment variable {name} is not set")
        return env[name]

    return ENV_REF.sub(replace, value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Problem(f"must be a whole number, got {show(value)}")
    try:
        number = int(value)
    except ValueError:
        raise Problem(f"must be a whole number, got {show(value)}") from None
    if abs(number) > MAX_ID:
        raise Problem(f"must be a whole number below 2**53, got {show(value)}")
    return number


def _as_id(value: Any) -> int:
    """An id in a list or a mapping: a whole number from 1 to 2**53 (no account has id 0 or -3)."""
    number = _as_int(value)
    if number < 1:
        raise Problem(f"every id must be a whole number from 1 to 2**53, got {show(value)}")
    return number


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def convert(key: Key, value: Any, env: Mapping[str, str], base_dir: Path) -> Any:
    if isinstance(value, str) and ENV_REF.search(value):
        expanded = _expand_env(value, env)
        try:
            return _convert_value(key, expanded, base_dir)
        except Problem as problem:
            # The environment may hold a secret put under the wrong key: never echo it.
            raise Problem(str(problem).replace(show(expanded), f"the value of {value}")) from None
    return _convert_value(key, value, base_dir)


def _convert_value(key: Key, value: Any, base_dir: Path) -> Any:
    kind = key.kind
    if kind in ("str", "url", "secret", "secret_url", "path", "tz"):
        if not isinstance(value, str) or not value.strip():
            shown = type(value).__name__ if kind in ("secret", "secret_url") else show(value)
            raise Problem(f"must be a non-empty text, got {shown}")
        value = value.strip()
        if key.choices and value not in key.choices:
            raise Problem(f"must be one of {', '.join(key.choices)}, got {show(value)}")
        if kind in ("url", "secret_url"):
            shown = show(value) if kind == "url" else "a value that is not a URL"
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
            except ValueError as exc:
                raise Problem(f"must be an http(s) URL, got {shown}: {exc}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise Problem(f"must be an http(s) URL, got {shown}")
            if kind == "secret_url" and not re.search(r"/rest/\d+/[^/]+/?$", parts.path):
                raise Problem("must be an incoming-webhook URL of the form https://<portal>/rest/<user id>/<secret>/")
            value = value.rstrip("/") + ("/" if kind == "secret_url" else "")
        if kind == "tz":
            _check_timezone(value)
        if kind in ("secret", "secret_url"):
            return Secret(value)
        if kind == "path":
            try:
                path = Path(value).expanduser()
            except RuntimeError:  # "~nosuchuser/..."
                raise Problem(f"cannot expand the home directory in {show(value)}") from None
            return path if path.is_absolute() else base_dir / path
        return value
    if kind == "int":
        return _as_int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Problem(f"must be a number, got {show(value)}")
        if not math.isfinite(value):  # YAML's .inf and .nan are numbers, never a setting
            raise Problem(f"must be a finite number, got {show(value)}")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise Problem(f"must be true or false, got {show(value)}")
        return value
    if kind == "int_list":
        if not isinstance(value, list | tuple) or not value:
            raise Problem(f"must be a non-empty list of whole numbers, got {show(value)}")
        return tuple(_as_id(v) for v in value)  # Bitrix24 status codes start at 1
    if kind == "id_list":  # Bitrix24 user ids, possibly none
        if not isinstance(value, list | tuple):
            raise Problem(f"must be a list of ids, got {show(value)}")
        return tuple(_as_id(v) for v in value)
    if kind == "str_list":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise Problem(f"must be a list of texts, got {show(value)}")
        return tuple(value)
    if kind == "int_map":
        if not isinstance(value, dict):
            raise Problem(f"must be a mapping of Bitrix24 user id to Okdesk employee id, got {show(value)}")
        return {_as_id(k): _as_id(v) for k, v in value.items()}
    if kind == "rate_map":
        if not isinstance(value, dict):
            raise Problem(f"must be a mapping of Bitrix24 user id to a rate per hour, got {show(value)}")
        rates = {_as_id(k): v for k, v in value.items()}
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= MAX_RATE
            for v in rates.values()
        ):
            raise Problem(f"every rate must be a number from 0 to {MAX_RATE:g}")
        return {k: float(v) for k, v in rates.items()}
    raise AssertionError(kind)


def _check_timezone(value: str) -> None:
    from ..timeutil import parse_timezone

    try:
        parse_timezone(value)
    except ValueError as exc:
        raise Problem(str(exc)) from None


def parse_block(
    prefix: str, keys: Mapping[str, Key], values: Mapping[Any, Any], env: Mapping[str, str], base_dir: Path
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The typed values of one mapping of keys (a section, or a block of a route), and every
    problem with its key path: unknown keys, missing required ones, values that do not convert
    or fail their check.  A key absent or null takes its default."""
    problems: list[tuple[str, str]] = []
    kwargs: dict[str, Any] = {}
    for name in values:
        if name not in keys:
            problems.append((f"{prefix}.{name}", "unknown key"))
    for name, key in keys.items():
        path = f"{prefix}.{name}"
        if name not in values or values[name] is None:
            if key.default is REQUIRED:
                problems.append((path, "is required"))
            elif key.kind == "path":
                kwargs[name] = convert(key, key.default, env, base_dir)
            else:
                kwargs[name] = key.default
            continue
        try:
            kwargs[name] = convert(key, values[name], env, base_dir)
            if key.check and (message := key.check(kwargs[name])):
                problems.append((path, message))
        except Problem as problem:
            problems.append((path, str(problem)))
    return kwargs, problems
