"""Bitrix24's wire format: PHP-style nested query strings, and which answers are limits."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def classify(status: int, body: Any) -> str:
    code = body.get("error") if isinstance(body, dict) else None
    if status == 503 and code == "QUERY_LIMIT_EXCEEDED":
        return "retry"  # rejected by the leaky bucket before execution: safe to repeat
    if status == 429 and code == "OPERATION_TIME_LIMIT":
        return "block"  # this method's 10-minute budget is spent; come back next cycle
    if status == 503 and code == "OVERLOAD_LIMIT":
        return "block"  # a manual block by Bitrix24 support: repeating only digs deeper; stop the cycle
    return "ok"


def php_query(params: dict[str, Any]) -> str:
    """Encode nested params the way PHP parses them (`filter[ID][]=1&select[]=ID`), keeping order."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), sub)
        elif isinstance(value, list | tuple):
            for index, sub in enumerate(value):
                # scalars append (a[]=1); containers need their index, or PHP splits them up
                walk(f"{prefix}[{index}]" if isinstance(sub, dict | list | tuple) else f"{prefix}[]", sub)
        elif isinstance(value, bool):
            pairs.append((prefix, "Y" if value else "N"))
        elif value is None:
            pairs.append((prefix, ""))
        else:
            pairs.append((prefix, str(value)))

    walk("", params)
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in pairs)


def as_map(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, list):  # [] for empty, or a list when keys were numeric
        return {str(i): v for i, v in enumerate(value)}
    return {}


def clean_error(text: str) -> str:
    return text.replace("<br>", " ").strip()
