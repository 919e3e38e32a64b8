"""One root error class carrying data; only the CLI turns errors into words and exit codes."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    ACTIONS_FAILED = 1  # some actions failed; the others went through
    USAGE = 2  # configuration or usage error
    STATE = 3  # the state store cannot be used
    LOCKED = 75  # EX_TEMPFAIL: another okbx run holds the lock


class OkbxError(Exception):
    """Root of every error okbx raises on purpose."""

    exit_code = ExitCode.ACTIONS_FAILED


class ConfigError(OkbxError):
    """The configuration is invalid; `problems` lists every (key path, message)."""

    exit_code = ExitCode.USAGE

    def __init__(self, problems: list[tuple[str, str]], source: str = "") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{key}: {message}" if key else message for key, message in problems]
        where = f" in {source}" if source else ""
        joint = " " if len(lines) == 1 else "\n  "  # one problem, one line
        super().__init__(f"invalid configuration{where}:{joint}" + "\n  ".join(lines))


class UsageError(OkbxError):
    exit_code = ExitCode.USAGE


class StateError(OkbxError):
    """The state store is corrupt, unwritable or from a newer okbx."""

    exit_code = ExitCode.STATE


class LockedError(OkbxError):
    exit_code = ExitCode.LOCKED


class ApiError(OkbxError):
    """A remote API call failed.

    `ambiguous` is True when the request may have been applied by the server although we got
    no usable answer (timeout, dropped connection, 5xx): a write in that state must be checked
    for its marker before it is tried again.
    """

    def __init__(
        self,
        system: str,
        method: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        ambiguous: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.system = system
        self.method = method
        self.status = status
        self.code = code
        self.message = message
        self.ambiguous = ambiguous
        self.retry_after = retry_after
        where = f"{system} {method}"
        if status:
            what = f"HTTP {status}"
        elif isinstance(self, MalformedResponse):
            what = "malformed answer"
        else:
            what = "error" if code else "no answer"
        if code:
            what += f" {code}"
        super().__init__(f"{where}: {what}: {message}")


class NotFound(ApiError):
    """The remote object does not exist (a direct "not found", never an absence from a list)."""


class MalformedResponse(ApiError):
    """The answer was not what the API documents (HTML, truncated JSON, missing fields).

    Always ambiguous: the server may have applied the request before answering nonsense, so a
    write answered this way is looked for by its marker before it is tried again."""

    def __init__(self, system: str, method: str, message: str, **kwargs: Any) -> None:
        kwargs["ambiguous"] = True
        super().__init__(system, method, message, **kwargs)
