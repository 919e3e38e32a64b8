"""Everything okbx shows a person: tables, the dry-run plan, the status table, one link's history.

Pure presentation: the commands hand over rows and results, nothing here reads the store or an
API.  rich loads only here, and only when something is drawn on a terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from ..core.engine import CycleResult
    from ..state.store import Link


def out() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def print_table(title: str, headers: Sequence[str], rows: list[Sequence[Any]]) -> None:
    if sys.stdout.isatty():
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*(str(c) for c in row))
        out().print(table)
    else:
        print(title)
        print("\t".join(headers))
        for row in rows:
            print("\t".join(str(c) for c in row))


def print_plan(result: CycleResult) -> None:
    """The dry run: every write and decision of every wing, as the real run would make them."""
    from ..core.outcome import plan_rows, plan_title

    print_table(
        plan_title(result.plan, result.wing_errors),
        ("issue", "system", "action", "detail"),
        list(plan_rows(result.plan)),
    )


# -- times ------------------------------------------------------------------------------------
def local(moment: str | None, *, with_date: bool = True) -> str:
    """An ISO time from the store, in this machine's zone (the zone is named once, in the title)."""
    from datetime import datetime

    if not moment:
        return "-"
    here = datetime.fromisoformat(moment).astimezone()
    return here.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def zone_name() -> str:
    from datetime import datetime

    now = datetime.now().astimezone()
    offset = now.strftime("%z")
    return f"{now.tzname()} (UTC{offset[:3]}:{offset[3:]})"


# -- okbx status --------------------------------------------------------------------------------
def _status_title(rows: list[dict[str, Any]], last_run: dict[str, Any] | None) -> list[str]:
    unhealthy = sum(1 for r in rows if r["state"] == "parked" or r["failures"] or r.get("billing_error"))
    lines = [f"okbx status: {len(rows)} links, {unhealthy} failing or parked; times in {zone_name()}"]
    if last_run:
        lines.append(f"last run: {local(last_run.get('ended'))}, {last_run.get('outcome')}: {last_run.get('summary')}")
    else:
        lines.append("last run: none recorded yet")
    return lines


def _problem(row: dict[str, Any]) -> str:
    if not (row["failures"] or row["state"] == "parked"):
        return row.get("billing_error") or ""  # the link is fine, its invoice or debt hold is not
    retry = "" if row["state"] == "parked" else f", retry {local(row['next_retry_at'], with_date=False)}"
    return f"{row['failures']}x{retry}: {row['last_error'] or ''}"


def _wide_table(table: Any, rows: list[dict[str, Any]]) -> None:
    columns = ("issue", "route", "task", "state", "handoff", "comments", "time entries", "adopted", "last activity")
    for header in (*columns, "failures", "next retry", "last error"):
        table.add_column(header, overflow="fold")
    for r in rows:
        table.add_row(
            *(str(c) for c in (r["issue"], r.get("route", ""), _target(r), r["state"], r["cycle"])),
            str(r["comments_forwarded"]),
            str(r["time_entries_copied"]),
            str(r["adopted"]),
            local(r["updated_at"]),
            str(r["failures"]),
            local(r["next_retry_at"]),
            r["last_error"] or "",
            end_section=False,
        )


def _target(row: dict[str, Any]) -> str:
    """The target's id; a deal's with its kind (a sales route's link)."""
    if not row["task"]:
        return "-"
    return str(row["task"]) if row.get("target", "task") == "task" else f"{row['target']} {row['task']}"


def _routes_shown(rows: list[dict[str, Any]]) -> bool:
    return any(row.get("route", "programmers") != "programmers" for row in rows)


def _narrow_table(table: Any, rows: list[dict[str, Any]], width: int) -> None:
    routes = _routes_shown(rows)
    headers = (("issue", "right"), *((("route", "left"),) if routes else ()), ("task", "right"), ("state", "left"))
    for header, justify in headers:
        table.add_column(header, justify=justify, no_wrap=True)
    for header in ("com.", "time"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("activity", no_wrap=True)
    cells = [
        (
            str(r["issue"]),
            *((str(r.get("route", "")),) if routes else ()),
            _target(r),
            r["state"],
            str(r["comments_forwarded"]),
            str(r["time_entries_copied"]),
            local(r["updated_at"])[5:],  # MM-DD HH:MM: the year is in the last run's line
        )
        for r in rows
    ]
    fixed = sum(max([len(str(c.header)), *(len(row[i]) for row in cells)]) for i, c in enumerate(table.columns))
    room = max(12, width - fixed - 3 * len(table.columns) - 3)  # padding and separators
    table.add_column("problem", no_wrap=True, overflow="ellipsis", max_width=room)
    for row, r in zip(cells, rows, strict=True):
        problem = _problem(r)
        table.add_row(*row, problem if len(problem) <= room else problem[: room - 1] + "…")


def render_status(rows: list[dict[str, Any]], last_run: dict[str, Any] | None, *, wide: bool) -> None:
    """A table that fits the terminal (80 columns when not a terminal); `--wide` shows every column."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # not a terminal: 80 columns, or (--wide) no limit at all, so a long error stays on its line
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 100_000 if wide else 80)
    for line in _status_title(rows, last_run):
        console.print(line, overflow="ellipsis", no_wrap=not wide, markup=False)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    if wide:
        _wide_table(table, rows)
    else:
        _narrow_table(table, rows, console.width)
    console.print(table, markup=False)


# -- okbx show ----------------------------------------------------------------------------------
def render_history(issue: int, link: Link | None, entries: list[dict[str, Any]], failing: list[dict[str, Any]]) -> None:
    if link is not None:
        route = "" if link.route == "programmers" else f" (route {link.route})"
        typer.echo(
            f"issue {issue} <-> {link.target} {link.task_id or '-'}{route}: {'parked' if link.parked else link.state}, "
            f"handoff #{link.cycle}, failures {link.fail_count}"
            + (f", last error: {link.last_error}" if link.last_error else "")
        )
    for work in failing:
        if work["track"] != "route":  # the route's is the link's line above
            retry = "" if work["state"] == "parked" else f", next retry {local(work['next_retry_at'])}"
            typer.echo(
                f"{work['track']}: {work['state']} after {work['failures']} failures{retry}: {work['last_error']}"
            )
    print_table(
        f"history of issue {issue} (times in {zone_name()})",
        ("when", "what", "result", "detail"),
        [(local(e["at"]), e["kind"], e["outcome"], e["detail"]) for e in entries],
    )


# -- okbx report --------------------------------------------------------------------------------
def render_ledger(summary: list[dict[str, Any]]) -> None:
    top = max((float(str(r["hours"])) for r in summary), default=0.0) or 1.0
    headers = [*(k for k in (summary[0] if summary else {"company": 0})), "bar"]
    rows: list[Sequence[Any]] = [[*r.values(), "█" * max(1, round(20 * float(str(r["hours"])) / top))] for r in summary]
    print_table(f"okbx report: {len(summary)} lines", headers, rows)
