"""The billing applier: one action at a time through the store's write journal.

Intent first (`begin_op`), then the request, then `finish_op` or `fail_op`, exactly as the
sync's applier does.  Every remote write is looked for by its marker first, whatever the store
says: a second installation or a store restored from a backup has no record of what the other
wrote, and a note posted twice is as visible to the client as an invoice made twice.
A failure stops the remaining actions of that issue for this run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..clients.bitrix24_crm import CrmClient
from ..clients.http import BudgetExhausted, RateLimited
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..errors import ApiError
from ..state.store import Store
from .actions import BillingAction

log = logging.getLogger(__name__)


@dataclass
class Context:
    okdesk: OkdeskClient
    crm: CrmClient
    store: Store
    config: Config


@dataclass
class BillingApplied:
    done: list[BillingAction] = field(default_factory=list)
    adopted: list[BillingAction] = field(default_factory=list)
    failed: list[tuple[BillingAction, str]] = field(default_factory=list)
    not_reached: list[BillingAction] = field(default_factory=list)
    stopped_because: str | None = None


def apply_billing(
    by_issue: dict[int, list[BillingAction]],
    ctx: Context,
    on_action: Callable[[BillingAction, str], None] = lambda a, outcome: None,
) -> BillingApplied:
    report = BillingApplied()
    for actions in by_issue.values():
        for index, action in enumerate(actions):
            if report.stopped_because:
                report.not_reached.extend(actions[index:])
                break
            try:
                outcome = _apply_one(action, ctx)
            except (BudgetExhausted, RateLimited) as stop:
                report.stopped_because = str(stop)
                report.not_reached.extend(actions[index:])
                break
            except ApiError as error:
                report.failed.append((action, str(error)))
                report.not_reached.extend(actions[index + 1 :])
                on_action(action, "failed")
                break
            if outcome != "skipped":
                (report.adopted if outcome == "adopted" else report.done).append(action)
            on_action(action, outcome)
    return report


def _apply_one(action: BillingAction, ctx: Context) -> str:
    store = ctx.store
    op = store.op(action.key)
    if op is not None and op.state == "done":
        return "skipped"
    begin: dict[str, Any] = {"cycle": getattr(action, "cycle", None), "report_key": None, "detail": action.record()}
    if not action.side:  # a decision kept in the store only
        store.begin_op(action.key, action.issue_id, action.kind, **begin)
        remote_id = action.local_remote_id()
        store.finish_op(
            action.key, action.issue_id, action.kind, remote_id=remote_id, outcome="done", summary=action.detail
        )
        return "done"
    found = action.find(ctx)  # always: the accounts are the truth, not this store
    if found is not None:
        store.begin_op(action.key, action.issue_id, action.kind, **begin)
        store.finish_op(
            action.key,
            action.issue_id,
            action.kind,
            remote_id=found[0],
            outcome="adopted",
            summary=f"found already written: {action.detail}",
        )
        return "adopted"
    store.begin_op(action.key, action.issue_id, action.kind, **begin)
    try:
        remote_id, _facts = action.perform(ctx)
    except ApiError as error:
        store.fail_op(action.key, action.issue_id, action.kind, error=str(error), ambiguous=error.ambiguous)
        raise
    store.finish_op(
        action.key, action.issue_id, action.kind, remote_id=remote_id, outcome="done", summary=action.detail
    )
    return "done"


def record_blocked(store: Store, blocked: dict[str, tuple[int, str]]) -> None:
    """A completion that cannot be billed (unmatched company, unreadable issue): a failure of
    that issue, shown by `okbx status`, written once per distinct reason."""
    for key, (issue_id, why) in blocked.items():
        op = store.op(key)
        if op is not None and (op.state == "done" or (op.state == "failed" and op.error == why[:500])):
            continue
        kind = key.split(":")[0]  # "invoice", or "release" (a debtor that cannot be matched now)
        store.begin_op(key, issue_id, kind, cycle=None, report_key=None, detail={"detail": kind})
        store.fail_op(key, issue_id, kind, error=why, ambiguous=False)
