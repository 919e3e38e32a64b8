"""Logging for the CLI: stderr (rich on a terminal, plain lines elsewhere), optional file, secrets scrubbed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from .secrets import RedactingFormatter, Redactor

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(redactor: Redactor, *, verbose: bool, quiet: bool, log_file: Path | None) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(RedactingFormatter(redactor, "%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter(redactor, PLAIN))
    handler.setLevel(level)
    root.addHandler(handler)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(RedactingFormatter(redactor, PLAIN))
        file_handler.setLevel(logging.DEBUG if verbose else logging.INFO)
        root.addHandler(file_handler)
    # urllib3 logs full URLs (with the Okdesk token) at DEBUG; keep it quiet even with -v.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
