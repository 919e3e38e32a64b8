"""What one cycle knows about both systems and about itself: plain data for the planner."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from ..keys import Key
from ..model import Comment, ElapsedItem, Issue, Task
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
    def _task_cycles(self) -> dict[tuple[int, str], int]:
        return {
            (op.issue_id, op.remote_id or ""): op.cycle
            for op in self.ops.values()
            if op.kind == "task" and op.state == OpState.DONE and op.cycle is not None
        }

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
        """The cycle in which the link's current task was created (or linked by hand)."""
        return self._task_cycles.get((link.issue_id, str(link.task_id)), 1)
