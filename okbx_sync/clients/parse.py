"""Helpers for pure parsers: read typed fields out of untrusted JSON, naming what is wrong."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..timeutil import parse_iso


class ParseError(ValueError):
    """A payload is not shaped as documented; the message names the field."""


def obj(value: Any, what: str) -> dict[str, Any]:
    # Bitrix24 serialises empty objects as [] (PHP arrays); treat that as {}.
    if value == []:
        return {}
    if not isinstance(value, dict):
        raise ParseError(f"{what}: expected an object, got {type(value).__name__}")
    return value


def items(value: Any, what: str) -> list[Any]:
    if isinstance(value, dict) and not value:
        return []
    if not isinstance(value, list):
        raise ParseError(f"{what}: expected a list, got {type(value).__name__}")
    return value


def integer(data: dict[str, Any], key: str, what: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or value is None:
        raise ParseError(f"{what}.{key}: missing or not a number")
    try:
        return int(value)  # the APIs send numbers as strings ("3711")
    except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON 1e999 is float("inf")
        raise ParseError(f"{what}.{key}: not a number: {str(value)[:30]!r}") from None


def opt_integer(data: dict[str, Any], key: str, what: str) -> int | None:
    if data.get(key) in (None, "", []):
        return None
    return integer(data, key, what)


def text(data: dict[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        if default is not None:
            return default
        raise ParseError(f"{what}.{key}: missing")
    if not isinstance(value, str | int | float):
        raise ParseError(f"{what}.{key}: expected text, got {type(value).__name__}")
    return str(value)


def timestamp(data: dict[str, Any], key: str, what: str) -> datetime | None:
    value = data.get(key)
    if value in (None, "", []):
        return None
    if not isinstance(value, str):
        raise ParseError(f"{what}.{key}: expected a timestamp, got {type(value).__name__}")
    try:
        return parse_iso(value)
    except ValueError:
        raise ParseError(f"{what}.{key}: not an ISO-8601 timestamp: {value[:40]!r}") from None


def number(data: dict[str, Any], key: str, what: str) -> float:
    value = data.get(key)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ParseError(f"{what}.{key}: not a number: {str(value)[:30]!r}") from None
