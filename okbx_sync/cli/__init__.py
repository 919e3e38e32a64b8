"""The `okbx` command line.  The only package that prints, and the only one that knows rich.

`base` holds the Typer app, the shared options and the error handling; one module per command
group registers its commands on that app (`sync_cmd`: sync, run; `links_cmd`: link, retry,
rebind; `inspect_cmd`: status, show, report; `setup_cmd`: doctor, demo; `init_cmd`; `emulate_cmd`: the playground);
`render` draws what a person sees.  Importing this package stays light (`okbx --help`): the
command modules load the engine, the store, requests, yaml and rich inside their commands.
"""

from __future__ import annotations

import sys

# isort: off
# each registers its commands; this order is the order of `okbx --help`
from . import sync_cmd, links_cmd, inspect_cmd, init_cmd, setup_cmd, emulate_cmd  # noqa: F401

# isort: on
from .base import BROKEN_PIPE, app, silence_stdout

__all__ = ["app", "run"]


def run() -> None:
    try:
        app(prog_name="okbx")
    except BrokenPipeError:
        silence_stdout()
        sys.exit(BROKEN_PIPE)
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            silence_stdout()
