"""One cycle over every wing: read the globals, then read, plan and apply in pages.

  1. each wing reads what it needs once per cycle (listings, the CRM's stages and debts...) and
     says which issues it has work for, most urgent first;
  2. the safety policy learns what those reads already foresee (tasks found deleted, debt moves);
  3. the issues go PAGE at a time: each wing reads the page's issues and plans them (purely),
     billing after the route so a completion reported now is invoiced now; the safety policy
     admits the page; unless this is a dry run, the applier writes it and each wing settles it
     (every step is committed as it goes, so a run killed after N seconds keeps N seconds of work);
  4. the wings finish: watermarks move on only when every page was done.
Dry run means "stop after planning": the flag is checked here, once per page; the applier never
sees it.  Failures of a wing's global reads end that wing's part of the cycle and are counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..clients.http import RateLimited
from ..clients.limits import BudgetExhausted
from ..errors import ApiError
from ..state.lifecycle import Track
from .action import Action, Context
from .applier import Applier, ApplyReport, Guard
from .health import Failures
from .plan import Plan, Safety

log = logging.getLogger(__name__)
PAGE = 50  # the most issues of a page (a Bitrix24 `batch` carries 50 commands)
FIRST_PAGES = (5, 10)  # a run writes within seconds, however soon it is killed


class Wing(Protocol):
    """A route or billing: what the engine asks of each."""

    name: str
    guards: tuple[Guard, ...]

    def prepare(self) -> None: ...
    def work(self) -> list[int]: ...
    def foreseen(self) -> tuple[set[int], set[int]]: ...  # (links that would stop, issues moved for debt)
    def plan_page(self, page: list[int], so_far: Plan) -> Plan: ...
    def settle_page(self, page: list[int], plan: Plan, applied: ApplyReport) -> None: ...
    def finish(self, complete: bool) -> None: ...
    def deferred(self) -> set[int]: ...


@dataclass
class CycleResult:
    plan: Plan = field(default_factory=Plan)
    applied: ApplyReport | None = None
    wing_errors: list[str] = field(default_factory=list)  # a wing that could not run this cycle
    left: set[int] = field(default_factory=set)  # issues with work not reached this cycle
    dry_run: bool = False


def run_cycle(
    ctx: Context,
    wings: list[Wing],
    *,
    failures: Failures,
    safety: Safety,
    dry_run: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    on_action: Callable[[Action, str], None] = lambda a, o: None,
    on_page: Callable[[Plan], None] = lambda plan: None,
    page_size: int = PAGE,
) -> CycleResult:
    result = CycleResult(dry_run=dry_run, applied=None if dry_run else ApplyReport())
    ready: list[Wing] = []
    for wing in wings:
        try:
            wing.prepare()
        except (BudgetExhausted, RateLimited):
            raise
        except ApiError as error:
            if wing is wings[0]:  # the route's listings: planning from half the picture is worse
                raise
            log.warning("%s could not run this cycle: %s", wing.name, error)
            result.wing_errors.append(f"{wing.name}: {error}")
            continue
        ready.append(wing)
    order = list(dict.fromkeys(i for wing in ready for i in wing.work()))
    for wing in ready:
        safety.foresee(*wing.foreseen())
    applier = Applier(
        ctx,
        failures,
        should_stop=should_stop,
        on_action=on_action,
        guards=tuple(g for wing in ready for g in wing.guards),
    )
    pages = in_pages(order, page_size)
    cycle = _Pages(ready, safety, applier, failures, result, on_page)
    complete, waiting = True, set[int]()
    pages.append([])  # the last: the issues whose link would stop, judged on the whole cycle's count
    for number, page in enumerate(pages):
        if not page and not waiting:
            break
        if not dry_run and (should_stop() or (result.applied and result.applied.stopped_because)):
            result.left.update(i for rest in pages[number:] for i in rest)
            result.left |= waiting
            complete = False
            break
        if page:
            waiting |= cycle.run(page, last=False)
        elif waiting:
            for issue_id in waiting:
                result.plan.skipped.pop(issue_id, None)
            cycle.run(sorted(waiting), last=True)
    deferred = set().union(*(wing.deferred() for wing in ready)) if ready else set()
    deferred |= {a.issue_id for a in result.plan.held_back}  # seen again next cycle, as they are now
    result.left |= deferred
    complete = complete and not deferred and not (result.applied and result.applied.stopped_because)
    if not dry_run:
        for wing in ready:
            wing.finish(complete)
    return result


@dataclass
class _Pages:
    """Plan, admit, apply and settle one page at a time."""

    wings: list[Wing]
    safety: Safety
    applier: Applier
    failures: Failures
    result: CycleResult
    on_page: Callable[[Plan], None]

    def run(self, page: list[int], *, last: bool) -> set[int]:
        """The issues of the page whose link stop waits for the end of the cycle."""
        plan = Plan()
        for wing in self.wings:
            plan.extend(wing.plan_page(page, plan))
        plan = self.safety.admit(plan, last=last)
        waiting, plan.waiting = plan.waiting, set()
        self.result.plan.extend(plan)
        if self.result.dry_run:
            return waiting
        self.on_page(plan)
        assert self.result.applied is not None
        applied = ApplyReport()
        _record_blocked(plan, self.applier, applied)
        self.applier.apply(plan.by_issue(), applied)
        for wing in self.wings:
            wing.settle_page(page, plan, applied)
        _heal(page, plan, applied, self.failures)
        self.result.applied.merge(applied)
        return waiting


def in_pages(order: list[int], page_size: int = PAGE) -> list[list[int]]:
    """Small pages first, so the first writes come after a few reads (a cron `timeout` may kill
    a run at any moment: what it did stays done), then `page_size` issues at a time."""
    pages: list[list[int]] = []
    start = 0
    size_after = max(1, min(page_size, PAGE))
    for size in (*FIRST_PAGES, *[size_after] * (len(order) // size_after + 1)):
        if start >= len(order):
            break
        pages.append(order[start : start + size])
        start += size
    return pages


def _record_blocked(plan: Plan, applier: Applier, report: ApplyReport) -> None:
    for blocked in (b for b in plan.blocked if b.recorded):
        applier.record_failure(blocked.issue_id, blocked.track, blocked.why, transient=blocked.transient, report=report)


def _heal(page: list[int], plan: Plan, applied: ApplyReport, failures: Failures) -> None:
    """A track of an issue whose every planned action of this page went through is healthy again
    (the route heals itself too when it read an issue cleanly with nothing to do: settle.py)."""
    troubled = {(a.issue_id, a.track) for a, _ in applied.failed} | {(a.issue_id, a.track) for a in applied.not_reached}
    troubled |= {(b.issue_id, b.track) for b in plan.blocked}
    for issue_id, track in {(a.issue_id, a.track) for a in plan.actions} - troubled:
        if track != Track.ROUTE:  # the route settles its own (it also knows about clean reads)
            failures.heal(issue_id, track)
