"""Logging for the CLI: stderr (rich on a terminal, plain lines elsewhere), an optional file, secrets scrubbed.

Levels by destination: the file gets INFO and up (DEBUG with -v): one line per run, one per
action, every failure.  stderr gets INFO (WARNING with -q, DEBUG with -v), without the per-action
lines (unless -v) and without the lines the CLI already printed on stdout.  Failures are WARNING
or ERROR, so with -q they still reach stderr and therefore cron's mail.

`--log-format json` writes one JSON object per line ({ts, level, logger, message} plus the
structured fields a record carries: issue, action, outcome, ...) for log collectors.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
from datetime import datetime
from pathlib import Path

from .errors import UsageError
from .secrets import RedactingFormatter, Redactor

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACTION_LOGGER = "okbx.action"  # one INFO line per action: file (and -v) only
FIELDS = ("issue", "task", "action", "system", "outcome", "reason", "done", "adopted", "failed", "left", "requests")
ON_STDOUT = "on_stdout"  # a record whose text the CLI printed already (stdout, or its error on stderr): kept off stderr


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class PlainFormatter(RedactingFormatter):
    """`2026-11-30T10:15:02.123+03:00 WARNING okbx.action: ...`, secrets scrubbed."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # the logging API name
        return _iso(record.created)


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if (value := getattr(record, name, None)) is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return self._redact(json.dumps(entry, ensure_ascii=False, default=str))


class _StderrFilter(logging.Filter):
    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self._verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, ON_STDOUT, False):
            return False
        return self._verbose or record.name != ACTION_LOGGER or record.levelno >= logging.WARNING


def open_log_file(path: Path) -> logging.Handler:
    """A handler appending to `path`; reopened when logrotate moves the file (long `okbx run` loops)."""
    try:
        # created owner-only: it names clients and issues (an existing file keeps its mode: logrotate's `create`)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        return logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"cannot open the log file {path}: its directory {path.parent} does not exist") from None
    except PermissionError:
        raise UsageError(f"cannot open the log file {path}: permission denied") from None
    except IsADirectoryError:
        raise UsageError(f"cannot open the log file {path}: it is a directory") from None
    except OSError as exc:
        raise UsageError(f"cannot open the log file {path}: {exc.strerror or exc.__class__.__name__}") from None


def setup_logging(
    redactor: Redactor, *, verbose: bool, quiet: bool, log_file: Path | None, log_format: str = "text"
) -> None:
    if log_format not in ("text", "json"):
        raise UsageError(f"--log-format must be text or json, got {log_format!r}")
    file_handler = open_log_file(log_file) if log_file is not None else None  # fails before anything changes
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler: logging.Handler
    if log_format == "json":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(redactor))
    elif sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(RedactingFormatter(redactor, "%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PlainFormatter(redactor, PLAIN))
    handler.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    handler.addFilter(_StderrFilter(verbose))
    root.addHandler(handler)
    if file_handler is not None:
        file_handler.setFormatter(JsonFormatter(redactor) if log_format == "json" else PlainFormatter(redactor, PLAIN))
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        root.addHandler(file_handler)
    # urllib3 logs full URLs (with the Okdesk token) at DEBUG; keep it quiet even with -v.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
