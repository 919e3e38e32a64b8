"""`okbx doctor`: check a configuration against both live systems and say what to fix.

Each check is a plain `Check(name, ok, detail, fix)`; nothing here prints (the CLI prints the
table).  Checks are independent: a failing API call is caught and reported as that check's
failure, and the others still run.  Checks whose prerequisite failed (the Okdesk token, the
Bitrix24 webhook, a missing webhook scope, an unknown status) are left out rather than reported
as a second failure of the same cause; the failing check says which ones were skipped.

Details are built only from ids, status codes, our own words and the errors' messages (already
scrubbed by the transport); as a last guard every detail also goes through a Redactor holding
the configuration's secrets.

The wings (one module each) register their groups in `base.REGISTRY`; every module of this
package is imported before the first run, so a new module's checks run without being named here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from ..clients.bitrix24 import Bitrix24Client
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..secrets import Redactor
from .base import REGISTRY, Check, Context, Group, guarded

__all__ = ["Check", "run_checks"]


def _load_wings() -> None:
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")


def _run(group: Group, context: Context) -> list[Check]:
    return guarded(group.name, lambda: group.body(context))


def run_checks(
    config: Config, okdesk: OkdeskClient, bitrix: Bitrix24Client, *, now: Callable[[], datetime]
) -> list[Check]:
    """Every registered check, in order; `now` is the local clock (aware datetimes) compared with the servers'."""
    _load_wings()
    redact = Redactor(config.secrets())
    context = Context(config, okdesk, bitrix, now)
    checks: list[Check] = []
    for group in sorted(REGISTRY.values(), key=lambda g: g.order):
        if group.applies(context):
            checks += _run(group, context)
    return [replace(c, detail=redact(c.detail), fix=redact(c.fix)) for c in checks]
