"""What a cycle did, in words and numbers: one renderer for the dry run, `-v`, the summary line,
the JSON log and the exit code, so that they can never disagree.

Pure: from the CycleResult (and the request counts) to rows, counts and a line; the CLI prints.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExitCode
from ..state.lifecycle import Health
from .action import Action
from .engine import CycleResult
from .plan import Plan


@dataclass(frozen=True)
class Failure:
    issue_id: int | None  # None: a wing that could not run
    what: str
    why: str


@dataclass(frozen=True)
class Outcome:
    done: int
    adopted: int
    failures: tuple[Failure, ...]
    left: int
    parked: tuple[Health, ...]
    stopped_because: str | None
    refused: str | None
    requests: dict[str, int]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.parked and not self.refused

    @property
    def exit_code(self) -> int:
        return int(ExitCode.OK if self.ok else ExitCode.ACTIONS_FAILED)

    def line(self) -> str:
        sent = self.requests
        line = (
            f"okbx sync: {self.done} done, {self.adopted} adopted, {len(self.failures)} failed, "
            f"{self.left} left for the next run; requests: Okdesk {sent.get('okdesk', 0)}, "
            f"Bitrix24 {sent.get('bitrix24', 0)}"
        )
        if self.parked:
            line += f"; {len(self.parked)} newly parked"
        if self.refused:
            line += "; unusual changes held back (okbx sync --force)"
        if self.stopped_because:
            line += f"; stopped early: {self.stopped_because}"
        return line

    def failure_lines(self, limit: int = 3) -> list[str]:
        """The first failures in words (`okbx status` shows them as why the last run failed)."""
        lines = []
        for failure in self.failures[:limit]:
            where = f"issue {failure.issue_id}: " if failure.issue_id is not None else ""
            what = f"{failure.what}: " if failure.what else ""
            lines.append(f"{where}{what}{failure.why}"[:300])
        if len(self.failures) > limit:
            lines.append(f"and {len(self.failures) - limit} more")
        return lines

    def fields(self) -> dict[str, object]:
        """The summary's structured fields (the JSON log)."""
        return {
            "done": self.done,
            "adopted": self.adopted,
            "failed": len(self.failures),
            "left": self.left,
            "parked": len(self.parked),
            "requests": dict(self.requests),
            "outcome": "ok" if self.ok else "failed",
        }


def outcome_of(result: CycleResult, requests: dict[str, int]) -> Outcome:
    applied = result.applied
    failures = [Failure(a.issue_id, a.kind, why) for a, why in (applied.failed if applied else [])]
    # a failed read says what failed in its reason already ("reading the issue failed: ...")
    failures += [Failure(b.issue_id, "" if b.what == "read" else b.what, b.why) for b in result.plan.blocked]
    # a wing's error starts with its name ("billing: ..."): said once
    failures += [
        Failure(None, *why.split(": ", 1)) if ": " in why else Failure(None, "", why) for why in result.wing_errors
    ]
    not_reached = len(applied.not_reached) if applied else 0
    return Outcome(
        done=len(applied.done) if applied else 0,
        adopted=len(applied.adopted) if applied else 0,
        failures=tuple(failures),
        left=not_reached + len(result.left),
        parked=tuple(applied.parked) if applied else (),
        stopped_because=applied.stopped_because if applied else None,
        refused=result.plan.refused,
        requests=requests,
    )


Row = tuple[str, str, str, str]  # issue, system, action, detail


def action_row(action: Action) -> Row:
    return (str(action.issue_id), action.side or "local", action.name, action.detail)


def plan_rows(plan: Plan) -> list[Row]:
    """Every row of a dry run: the writes and decisions, what is held back, skipped or blocked."""
    rows = [action_row(a) for a in plan.actions]
    rows += [(str(a.issue_id), a.side or "local", f"held back: {a.name}", a.detail) for a in plan.held_back]
    rows += [(str(i), "", "skip", why) for i, why in plan.skipped.items()]
    rows += [(str(b.issue_id), "", f"cannot {b.what}", b.why) for b in plan.blocked]
    return rows


def plan_title(plan: Plan, wing_errors: list[str] | None = None) -> str:
    count = len(plan.actions)
    title = f"okbx sync --dry-run: {count} action{'s' if count != 1 else ''} (nothing was written)"
    if plan.blocked:
        title += f", {len(plan.blocked)} failing"
    if wing_errors:  # a wing that could not plan at all (e.g. billing without the crm scope)
        title += f"; could not run: {'; '.join(wing_errors)}"
    if plan.refused:
        title += f"; held back: {plan.refused}"
    return title
