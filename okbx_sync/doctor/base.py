"""The frame of `okbx doctor`: a `Check`, what the checks share, and the registry the runner walks.

Each wing of the package (`okdesk`, `bitrix24`, `state`, `billing`, `clock`, `files`) registers
its groups of checks with `@check_group(order, name)`; `run_checks` runs every registered group
in order.  Adding a wing's checks is adding one module to the package.  A group whose code fails
becomes one failed check named after it, never a lost report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ..clients.bitrix24 import Bitrix24Client
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..errors import OkbxError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warn: bool = False  # passes, but deserves a look (shown as WARN; doctor still exits 0)


ServerTimes = list[tuple[str, datetime, datetime]]  # (label, server time, local time of the request)


@dataclass
class Context:
    """What the checks of one doctor run share: the configuration, the clients, the local clock,
    and what earlier groups found (server times for the clock check, whether Okdesk answered)."""

    config: Config
    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    now: Callable[[], datetime]
    server_times: ServerTimes = field(default_factory=list)
    okdesk_works: bool = False


Body = Callable[[Context], list[Check]]


@dataclass(frozen=True)
class Group:
    order: int
    name: str
    body: Body
    applies: Callable[[Context], bool]


REGISTRY: dict[str, Group] = {}  # by name: importing a wing twice registers it once


def check_group(
    order: int, name: str, *, applies: Callable[[Context], bool] = lambda ctx: True
) -> Callable[[Body], Body]:
    """Register a group of checks; `applies` is asked when its turn comes (after the earlier groups ran)."""

    def register(body: Body) -> Body:
        REGISTRY[name] = Group(order, name, body, applies)
        return body

    return register


def fail_text(error: Exception) -> str:
    if isinstance(error, OkbxError):
        return str(error)
    # ParseError (a ValueError) can escape the clients' people/group verbs on a malformed answer
    return f"unexpected answer: {error}"


def guarded(name: str, body: Callable[[], list[Check]]) -> list[Check]:
    """A bug in one group of checks becomes a failed check, never a lost report."""
    try:
        return body()
    except Exception as error:  # reported as a failed check, never swallowed
        return [
            Check(
                name,
                False,
                f"the check itself failed: {error.__class__.__name__}: {error}",
                "this is a bug in okbx doctor; please report it with the output of okbx doctor -v",
            )
        ]


def yes(value: object) -> bool:
    return value is True or str(value).strip().upper() in ("Y", "1", "TRUE")
