"""Secrets never leave the process in clear text.

`Secret` wraps a value so that str/repr/logging show a mask; `Redactor` scrubs known secret
values out of any text (error messages from `requests` contain full URLs, and both the Okdesk
token and the Bitrix24 webhook code travel in URLs).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import quote

MASK = "***"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def webhook_secret_parts(webhook_url: str) -> list[str]:
    """The secret code in `https://portal/rest/<user>/<code>/` (the user id is not secret)."""
    match = re.search(r"/rest/(?:api/)?\d+/([^/?#]+)", webhook_url)
    return [match.group(1)] if match else [webhook_url]


class Redactor:
    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets: list[str] = []
        for secret in secrets or []:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) < 4:  # too short to mask without mangling ordinary text
            return
        for form in {secret, quote(secret, safe=""), quote(secret)}:
            if form not in self._secrets:
                self._secrets.append(form)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


class RedactingFormatter(logging.Formatter):
    """Formats as usual, then scrubs secrets from the whole line, traceback included."""

    def __init__(self, redactor: Redactor, fmt: str | None = None, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(super().format(record))
