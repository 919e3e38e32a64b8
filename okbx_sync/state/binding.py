"""Which accounts a state store belongs to, and the refusal to use it for others.

The store's links, markers and watermarks only mean something for the Okdesk account and the
Bitrix24 portal they were made in: issue 12 and task 77 of another pair of accounts are other
people's work.  A store restored from a backup of production onto staging, or copied to a new
server configured for another portal, would post notes into unrelated tasks and bill unrelated
time.  So the store records, on first use, the Okdesk account (its normalised base URL), the
Bitrix24 portal (its host) and the incoming webhook's user id (never the webhook's secret); every
command that writes compares them with the configuration first and refuses on any difference
(exit code 3).  `okbx rebind` records the configuration's accounts for the legitimate case: the
same accounts under a new address (a custom domain), or a new webhook of another administrator.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Protocol
from urllib.parse import urlsplit

from .. import keys
from ..config import Config
from ..errors import StateError
from .store import Store

META_KEY = "binding"


@dataclass(frozen=True)
class Binding:
    okdesk_account: str  # host[:port][/path] of okdesk.url, lower-case, no scheme, no trailing slash
    bitrix_portal: str  # host[:port] of the webhook URL, lower-case
    bitrix_user: int  # the webhook's user id (/rest/<user>/<secret>/); the secret is never kept

    @classmethod
    def of(cls, config: Config) -> Binding:
        webhook = config.bitrix24.webhook_url.reveal()
        user = re.search(r"/rest/(\d+)/", urlsplit(webhook).path)
        return cls(
            okdesk_account=_account(config.okdesk.url),
            bitrix_portal=_host(webhook),
            bitrix_user=int(user.group(1)) if user else 0,
        )

    def describe(self) -> str:
        return f"Okdesk {self.okdesk_account} and Bitrix24 {self.bitrix_portal} (webhook user {self.bitrix_user})"


class MarkedTask(Protocol):
    @property
    def xml_id(self) -> str | None: ...


class TaskReader(Protocol):
    """What a rebind needs of the Bitrix24 side (the client implements it): a task by id, or None
    when the webhook user cannot see it."""

    def get_task(self, task_id: int) -> MarkedTask | None: ...


class ForeignStore(StateError):
    """The state store was made for other accounts than the configuration names."""


def _host(url: str) -> str:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _account(url: str) -> str:
    # http and https of one host are one account; an Okdesk account may live under a path
    return _host(url) + urlsplit(url).path.rstrip("/").lower()


def stored_binding(store: Store) -> Binding | None:
    raw = store.get_meta(META_KEY)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        return Binding(str(data["okdesk_account"]), str(data["bitrix_portal"]), int(data["bitrix_user"]))
    except (ValueError, KeyError, TypeError):
        raise StateError(
            f"state store {store.path}: its record of the accounts it serves is unreadable; "
            "run `okbx rebind` to record the configured ones"
        ) from None


def record_binding(store: Store, binding: Binding) -> None:
    store.set_meta(META_KEY, json.dumps(asdict(binding), sort_keys=True))


def tasks_under_their_markers(store: Store, bitrix: TaskReader, sample: int = 5) -> tuple[int, int]:
    """Evidence for a rebind: of up to `sample` of the store's latest task links, how many tasks the
    configured portal shows, and how many of those carry their issue's marker (`XML_ID
    okdesk:<issue>`, as sync/plan.py writes it).  The same accounts under a new address have them
    all; other accounts have none, or unrelated tasks under the same ids."""
    linked = sorted((link for link in store.links().values() if link.task_id), key=lambda link: -link.issue_id)
    seen = same = 0
    for link in linked[:sample]:
        task = bitrix.get_task(int(link.task_id or 0))
        if task is not None:  # hidden or deleted tells nothing either way
            seen += 1
            same += task.xml_id == keys.task_xml_id(link.issue_id)
    return seen, same


def ensure_binding(store: Store, config: Config, *, record: bool = True) -> Binding:
    """Refuse a store that belongs to other accounts; bind a store once it holds their work.

    A store is bound when it first holds a link with a task, i.e. once both accounts answered:
    a first run against a mistyped address must not tie the store to that address.  Commands
    call this before their first request and again after their writes.  `record=False` (a dry
    run) only compares: a dry run writes nothing, not even this."""
    wanted = Binding.of(config)
    found = stored_binding(store)
    if found is None:
        if record and store.has_linked_task():
            record_binding(store, wanted)
        return wanted
    if found != wanted:
        raise ForeignStore(
            f"the state store {store.path} belongs to {found.describe()}, but the configuration"
            f"{' ' + config.source if config.source else ''} says {wanted.describe()}. Nothing was written. "
            "If these are the same accounts under a new address (a custom domain, a new webhook), "
            "run `okbx rebind`; otherwise point state.path at this configuration's own store."
        )
    return wanted
