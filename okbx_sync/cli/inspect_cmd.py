"""`okbx status`, `okbx show` and `okbx report`: reading what okbx did."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ..errors import ExitCode, UsageError
from .base import ConfigOpt, IssueArg, JsonOpt, Run, VerboseOpt, app, check_id, errors, given_clock
from .render import render_history, render_ledger, render_status


def _verdict(rows: list[dict[str, Any]], unlinked: dict[int, str], last: dict[str, Any] | None) -> list[str]:
    """Why `okbx status` exits 1 (empty: it exits 0)."""
    reasons = []
    if failing := sum(1 for r in rows if r["state"] == "parked" or r["failures"]):
        reasons.append(f"{failing} link{'s' if failing > 1 else ''} failing or parked")
    if billing := sorted({*unlinked, *(r["issue"] for r in rows if r.get("billing_error"))}):
        shown = ", ".join(map(str, billing[:10])) + (", ..." if len(billing) > 10 else "")
        count = len(billing)
        reasons.append(f"{count} billing step{'s' if count > 1 else ''} failing (issue {shown})")
    if last is not None and last.get("outcome") != "ok":
        why = "; ".join(str(f) for f in last.get("failures") or [])
        reasons.append(f"the last run failed: {why}" if why else "the last run failed")
    return reasons


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, long errors in full.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show the links, their state and failures, and the last run; exit 1 while anything fails or is
    parked, or the last run failed. Reads the store only: creates and changes nothing."""
    import json

    from ..state.overview import billing_failures, last_run, status_rows

    run = Run(config, verbose=verbose)
    with errors(run):
        store = run.read_store()
        if store is None:
            where = run.config.state.path
            if as_json:
                typer.echo(json.dumps({"links": [], "last_run": None, "billing_failures": [], "problems": []}))
            else:
                typer.echo(f"okbx status: no runs yet (no state store at {where}; the first okbx sync creates it)")
            return
        try:
            rows = status_rows(store)
            linked = {r["issue"] for r in rows}
            unlinked = {i: e for i, e in billing_failures(store).items() if i not in linked}  # e.g. a debtor's issue
            last = last_run(store)
        finally:
            store.close()
        problems = _verdict(rows, unlinked, last)
        if as_json:
            failures = [{"issue": i, "error": e} for i, e in sorted(unlinked.items())]
            payload = {"links": rows, "last_run": last, "billing_failures": failures, "problems": problems}
            typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        else:
            for issue_id, error in sorted(unlinked.items()):
                typer.echo(f"billing: issue {issue_id}: {error}")
            render_status(rows, last, wide=wide)
            if problems:
                typer.echo(f"needs a look: {'; '.join(problems)}")
        raise typer.Exit(int(ExitCode.ACTIONS_FAILED if problems else ExitCode.OK))


@app.command()
def show(context: typer.Context, issue: IssueArg, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The full history of one link: every action, when, with what result, every failure and why."""
    import json

    from ..state.overview import failing_work, link_row

    run = Run(config, clock=given_clock(context))
    with errors(run):
        check_id(issue, "ISSUE")
        store = run.read_store()
        if store is None:
            raise UsageError(f"issue {issue} has no history: no runs yet (no state store at {run.config.state.path})")
        try:
            link = store.link(issue)
            entries = store.journal(issue)
            store_counts = store.counts().get(issue, {})
            failing = failing_work(store, issue)  # billing and debt work too, linked or not
        finally:
            store.close()
        if link is None and not entries and not failing:
            raise UsageError(f"issue {issue} has no history: it was never linked")
        if as_json:
            data = {"link": link_row(link, store_counts), "failing": failing, "history": entries}
            typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
            return
        render_history(issue, link, entries, failing)


@app.command()
def report(
    config: ConfigOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    by_issue: Annotated[bool, typer.Option("--by-issue", help="One line per issue too.")] = False,
    by_route: Annotated[bool, typer.Option("--by-route", help="One line per route too.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Compare with both systems; list every drift.")] = False,
) -> None:
    """Hours per client company (and route: --by-route), programmer and month, from the time okbx copied."""
    from ..billing import report as ledger

    run = Run(config)
    with errors(run):
        if fmt not in ("table", "csv", "json"):
            raise UsageError(f"--format must be table, csv or json, not {fmt!r}")
        from ..state.store import Store

        # a report writes nothing: not even a new store (`sudo okbx report` must not leave a root-owned one)
        store, clients = Store(run.config.state.path, clock=run.clock.now, read_only=True), run.clients()
        try:
            ops = ledger.time_ops(store)
            companies = ledger.companies_of_issues(store, clients.okdesk, {op.issue_id for op in ops})
            summary = ledger.summarize(ledger.ledger_rows(ops, companies), by_issue=by_issue, by_route=by_route)
            drifts = ledger.verify(store, clients.okdesk, clients.bitrix) if verify else None
        finally:
            clients.close()
            store.close()
        if fmt == "json":
            typer.echo(ledger.to_json(summary, drifts))
        elif fmt == "csv":
            typer.echo(ledger.to_csv(summary), nl=False)
        else:
            render_ledger(summary)
            for drift in drifts or []:
                typer.echo(f"drift: issue {drift.issue_id} item {drift.item_id or '-'}: {drift.what}")
        if drifts is not None:  # the verdict, always: on stderr when stdout is csv or json
            verdict = f"verify: {len(drifts)} drift{'s' if len(drifts) != 1 else ''}" if drifts else "verify: no drift"
            typer.echo(verdict + ("" if drifts else ": the ledger matches both systems"), err=fmt != "table")
        if drifts:
            raise typer.Exit(int(ExitCode.ACTIONS_FAILED))
