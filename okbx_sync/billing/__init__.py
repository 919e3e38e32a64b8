"""Billing (issue 10): invoices for finished work, payment notes, the debt hold, the time ledger.

Opt-in through the `billing:` and `debt:` sections.  `run` is the one entry point the sync
engine calls after its own apply: fetch -> plan (pure) -> [dry run stops here] -> apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_crm import CrmClient
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..state.store import Store
from .actions import BillingAction, HoldIssue, ReleaseIssue
from .apply import BillingApplied, Context, apply_billing, record_blocked
from .fetch import fetch_billing
from .plan import BillingPlan, build_billing_plan


@dataclass
class BillingResult:
    plan: BillingPlan
    applied: BillingApplied | None = None
    refused: str | None = None  # the debt part of the plan looked unsafe: not applied (--force)
    blocked: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def failed(self) -> list[tuple[BillingAction, str]]:
        return self.applied.failed if self.applied else []

    @property
    def ok(self) -> bool:
        return not self.failed and not self.refused and not self.blocked


def enabled(config: Config) -> bool:
    return config.billing is not None or config.debt is not None


def run(
    config: Config,
    okdesk: OkdeskClient,
    bitrix: Bitrix24Client,
    store: Store,
    now: datetime,
    *,
    dry_run: bool = False,
    force: bool = False,
) -> BillingResult:
    since_text = store.get_meta("billing_since")
    since = datetime.fromisoformat(since_text) if since_text else now
    if since_text is None and not dry_run:
        store.set_meta("billing_since", now.isoformat())  # earlier completions are never billed
    crm = CrmClient(bitrix)
    snapshot = fetch_billing(config, okdesk, crm, store, today=now.date(), since=since)
    plan = build_billing_plan(snapshot, config)
    result = BillingResult(plan, blocked=dict(plan.blocked))
    if dry_run:
        return result
    record_blocked(store, plan.blocked)
    actions = plan.actions
    if not force and (why := plan.unusual(config)):
        result.refused = f"refused: {why}. No issue was held or released. If this is real, run `okbx sync --force`."
        actions = [a for a in actions if not isinstance(a, HoldIssue | ReleaseIssue)]
    grouped: dict[int, list[BillingAction]] = {}
    for action in actions:
        grouped.setdefault(action.issue_id, []).append(action)
    result.applied = apply_billing(grouped, Context(okdesk, crm, store, config))
    return result
