"""The plan of a cycle: what every wing decided, as one value, and the one safety policy over it.

A plan holds the actions (in order, per issue), what was left alone and why (`skipped`: waiting
for a retry, parked, deferred), and what cannot be done and is a failure of that issue
(`blocked`: a read that failed, a client company no CRM company matches...).  Dry runs, `-v`,
the summary line and the exit code are all rendered from it (outcome.py), so they agree.

The safety policy (`Safety`) refuses what looks like an outage or a wrong setting rather than
real change, unless `--force`: a mass of links stopping at once (their task or issue looks
deleted) and a mass of debt holds and releases.  It refuses the issues that would make the
unusual change and lets the rest of the plan go on; pages of one cycle share its counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import Config
from ..state.lifecycle import Track
from .action import Action


@dataclass(frozen=True)
class Blocked:
    """Work that cannot be done this cycle, counted as a failure of its issue and track."""

    issue_id: int
    track: Track
    what: str  # "read", "invoice", "release"...
    why: str
    transient: bool = False  # a failed read: tried again at the next run
    recorded: bool = True  # False: counted in this run only (an issue okbx has no work of yet)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)  # issue id -> why nothing was planned
    blocked: list[Blocked] = field(default_factory=list)
    refused: str | None = None  # why the safety policy held part of the plan back
    held_back: list[Action] = field(default_factory=list)  # the actions it held back
    waiting: set[int] = field(default_factory=set)  # links that would stop: judged at the cycle's end

    def by_issue(self) -> dict[int, list[Action]]:
        grouped: dict[int, list[Action]] = {}
        for action in self.actions:
            grouped.setdefault(action.issue_id, []).append(action)
        return grouped

    def extend(self, other: Plan) -> None:
        self.actions += other.actions
        for issue_id, why in other.skipped.items():
            self.skipped[issue_id] = f"{self.skipped[issue_id]}; {why}" if issue_id in self.skipped else why
        self.blocked += other.blocked
        self.refused = self.refused or other.refused
        self.held_back += other.held_back
        self.waiting |= other.waiting


def stops_link(action: Action) -> bool:
    return bool(getattr(action, "stops_link", False))


def moves_for_debt(action: Action) -> bool:
    return bool(getattr(action, "moves_for_debt", False))


class Safety:
    """One policy for the cycle; `admit` is asked for each page and keeps the counts across pages.

    Issues found deleted are only known page by page, so a link stop planned before the last page
    waits (`Plan.waiting`): the engine plans those issues again once every page was read, and only
    then, with the whole cycle's count, are they stopped or refused.
    """

    def __init__(self, config: Config, active_links: int, *, force: bool) -> None:
        self.config = config
        self.active = active_links
        self.force = force
        self.stopping: set[int] = set()
        self.moving: set[int] = set()

    def foresee(self, stopping: set[int], moving: set[int]) -> None:
        """What the cycle's global reads already tell: tasks found deleted, debt holds and releases."""
        self.stopping |= stopping
        self.moving |= moving

    def admit(self, plan: Plan, *, last: bool = True) -> Plan:
        """The plan without the actions of issues whose change is unusual, with the reason; before
        the `last` page, without those of links that would stop (they wait for the whole count)."""
        stops = {a.issue_id for a in plan.actions if stops_link(a)}
        self.stopping |= stops
        self.moving |= {a.issue_id for a in plan.actions if moves_for_debt(a)}
        why = self.why()
        if self.force:
            return plan
        if why is None:
            if last or not stops:
                return plan
            return _without(plan, stops, "waits for the cycle's count of links that would stop", waiting=True)
        refused = {a.issue_id for a in plan.actions if stops_link(a) or moves_for_debt(a)}
        kept = _without(plan, refused, "held back by the safety check (okbx sync --force)")
        kept.refused = why
        kept.held_back += [a for a in plan.actions if a.issue_id in refused]
        return kept

    def why(self) -> str | None:
        sync = self.config.sync
        stopping = len(self.stopping)
        if stopping >= sync.unusual_min_links and stopping > sync.unusual_share * max(self.active, 1):
            return (
                f"{stopping} of {self.active} active links would stop at once because their task or issue "
                f"looks deleted (more than {sync.unusual_share:.0%}); this looks like an outage or lost "
                "access rather than real deletions"
            )
        debt = self.config.debt
        if debt is not None and len(self.moving) > debt.max_changes:
            return (
                f"{len(self.moving)} issues would be held or released at once (debt.max_changes is "
                f"{debt.max_changes}); check the debts in Bitrix24 and the debt settings"
            )
        return None


def _without(plan: Plan, issues: set[int], why: str, *, waiting: bool = False) -> Plan:
    kept = Plan(
        actions=[a for a in plan.actions if a.issue_id not in issues],
        skipped=dict(plan.skipped),
        blocked=list(plan.blocked),
        refused=plan.refused,
        held_back=list(plan.held_back),
        waiting=set(plan.waiting) | (issues if waiting else set()),
    )
    for issue_id in issues:
        kept.skipped[issue_id] = why
    return kept
