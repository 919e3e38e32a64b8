"""What one cycle knows about both systems and about itself: plain data for the planner."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from ..clients.bitrix24_crm import Stage
from ..clients.bitrix24_deals_parse import Deal
from ..clients.okdesk_equipment_parse import Equipment
from ..keys import DEFAULT_ROUTE, Key
from ..model import Agreement, Comment, ElapsedItem, Issue, Task
from ..state.store import Link, Op, OpState
from .files.reads import TaskFiles


@dataclass
class Snapshot:
    handoff: dict[int, Issue] = field(default_factory=dict)  # issues now in the handoff status (listing)
    issues: dict[int, Issue | None] = field(default_factory=dict)  # fresh full reads; None = direct 404
    comments: dict[int, list[Comment]] = field(default_factory=dict)  # issue id -> all its comments
    tasks: dict[int, Task | None] = field(default_factory=dict)  # task id -> task; None = direct not found
    elapsed: dict[int, list[ElapsedItem]] = field(default_factory=dict)  # task id -> all items (completing tasks)
    late_elapsed: list[ElapsedItem] = field(default_factory=list)  # new items on tasks of done links
    user_names: dict[int, str] = field(default_factory=dict)  # Bitrix24 user id -> name
    statuses: dict[str, str] = field(default_factory=dict)  # Okdesk status code -> name
    errors: dict[int, str] = field(default_factory=dict)  # issue id -> why it could not be read this cycle
    seen_status: dict[int, str] = field(default_factory=dict)  # status codes seen in listings this cycle
    deferred: set[int] = field(default_factory=set)  # not read this cycle: the request budget ran short
    scanned: set[int] = field(default_factory=set)  # read only for the periodic full scan
    scan_deferred: set[int] = field(default_factory=set)  # due for the full scan, but the budget ran short
    seen_updated: dict[int, datetime] = field(default_factory=dict)  # updated_at seen in listings this cycle
    task_files: dict[int, TaskFiles] = field(default_factory=dict)  # task id -> its files (completing, late)
    # routes (issue 14): deals of the sales route, what a new deal or document task needs
    deals: dict[int, Deal | None] = field(default_factory=dict)  # deal id -> deal; None = direct not found
    stages: dict[int, list[Stage] | str] = field(default_factory=dict)  # pipeline -> its stages, or why unread
    parties: dict[int, DealParty | str] = field(default_factory=dict)  # issue -> whom its new deal is for, or why not
    equipment: dict[int, EquipmentSheet] = field(default_factory=dict)  # issue -> its equipment (document route)
    results: dict[int, str] = field(default_factory=dict)  # task id -> the last comment a person wrote there


@dataclass(frozen=True)
class DealParty:
    """Whom a new deal is for: the issue's client company in the CRM (matched as billing matches
    it), its contact where one matches exactly, and the deal's responsible person."""

    company_id: int
    contact_ids: tuple[int, ...] = ()
    assigned_by_id: int | None = None


@dataclass(frozen=True)
class EquipmentSheet:
    """The issue's equipment, and the company's equipment under the issue's service agreement."""

    agreement: Agreement | None
    on_issue: tuple[Equipment, ...]
    under_agreement: tuple[Equipment, ...] = ()


@dataclass(frozen=True)
class StateView:
    links: dict[int, Link]
    ops: dict[str, Op]

    def done(self, key: Key | str) -> bool:
        op = self.ops.get(key if isinstance(key, str) else key.text)
        return op is not None and op.state == OpState.DONE

    @cached_property
    def _by_issue(self) -> dict[int, list[Op]]:
        """Ops per issue: planning one link reads its own ops, not every op of every link."""
        found: dict[int, list[Op]] = {}
        for op in self.ops.values():
            found.setdefault(op.issue_id, []).append(op)
        return found

    @cached_property
    def _by_report(self) -> dict[str, list[Op]]:
        found: dict[str, list[Op]] = {}
        for op in self.ops.values():
            if op.report_key:
                found.setdefault(op.report_key, []).append(op)
        return found

    def ops_of(self, issue_id: int) -> list[Op]:
        return self._by_issue.get(issue_id, [])

    def reported_in(self, report_key: Key) -> list[Op]:
        """The ops whose rows a report (summary, late note) lists."""
        return self._by_report.get(report_key.text, [])

    @cached_property
    def _task_cycles(self) -> dict[tuple[int, str, str], int]:
        return {
            (op.issue_id, op.kind, op.remote_id or ""): op.cycle
            for op in self.ops.values()
            if op.kind in ("task", "deal") and op.state == OpState.DONE and op.cycle is not None
        }

    def route_task(self, issue_id: int, route: str) -> int | None:
        """The task a route made for the issue in an earlier handoff (the newest), if the store knows it."""
        made = [
            (op.cycle or 0, int(op.remote_id or 0))
            for op in self.ops_of(issue_id)
            if op.kind == "task"
            and op.state == OpState.DONE
            and (op.remote_id or "").isdigit()
            and op.detail.get("route", DEFAULT_ROUTE) == route
        ]
        return max(made)[1] if made else None

    @cached_property
    def _synced_deadlines(self) -> dict[int, str | None]:
        """Per issue, the Okdesk deadline okbx last gave the task (at creation or by an update)."""
        latest: dict[int, tuple[str, str | None]] = {}
        for op in self.ops.values():
            if op.kind in ("task", "deadline") and op.state == "done" and "okdesk_deadline" in op.detail:
                at = op.updated_at.isoformat() if op.updated_at else ""
                if op.issue_id not in latest or at >= latest[op.issue_id][0]:
                    latest[op.issue_id] = (at, op.detail["okdesk_deadline"])
        return {issue_id: deadline for issue_id, (_, deadline) in latest.items()}

    def synced_deadline(self, issue_id: int) -> tuple[bool, str | None]:
        """(known, ISO deadline): what okbx last set from Okdesk; unknown for links older than that."""
        found = self._synced_deadlines
        return (issue_id in found, found.get(issue_id))

    def task_cycle(self, link: Link) -> int:
        """The cycle in which the link's current target was created (or linked by hand)."""
        return self._task_cycles.get((link.issue_id, link.target, str(link.task_id)), 1)
