"""`okbx link`, `okbx retry` and `okbx rebind`: a person's changes to the links and the store.

What they do to the store lives in `sync/manual.py` and `state/binding.py`; here are the checks
against both systems, the questions and the words."""

from __future__ import annotations

from typing import Annotated

import typer

from ..errors import UsageError
from .base import ConfigOpt, IssueArg, Run, VerboseOpt, app, check_id, confirm, errors, given_clock, log
from .cycle import ensure_binding


@app.command()
def link(
    context: typer.Context,
    issue: IssueArg,
    task: Annotated[int, typer.Argument(help="Bitrix24 task id.")],
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Link an issue that is not in the handoff status.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Connect an existing Okdesk issue and Bitrix24 task; later cycles sync them like any other link."""
    from ..errors import NotFound
    from ..sync.lock import run_lock
    from ..sync.manual import ensure_unlinked, link_pair

    run = Run(config, verbose=verbose, clock=given_clock(context))
    with errors(run):
        check_id(issue, "ISSUE")
        check_id(task, "TASK")
        cfg = run.config
        with run_lock(cfg.state.path, clock=run.clock):
            store = run.store()
            clients = run.clients()
            try:
                ensure_binding(store, cfg)
                ensure_unlinked(store, issue, task)
                try:
                    found_issue = clients.okdesk.get_issue(issue)
                except NotFound:
                    raise UsageError(f"Okdesk issue {issue} does not exist") from None
                task_routes = [r for r in cfg.routes if r.kind == "task"]
                if not task_routes:
                    raise UsageError("no route of this configuration makes tasks: okbx link joins an issue and a task")
                route = next((r for r in task_routes if r.status == found_issue.status), None)
                if route is None and not force:
                    # otherwise the completion would find it "moved by someone" and leave its status alone
                    handoff = "', '".join(r.status for r in task_routes)
                    raise UsageError(
                        f"Okdesk issue {issue} is in status '{found_issue.status}', not the handoff status "
                        f"'{handoff}': hand it off in Okdesk first, or pass --force to link it anyway (its "
                        "status is then left alone when the task is done)"
                    )
                route = route or task_routes[0]
                found_task = clients.bitrix.get_task(task)
                if found_task is None:
                    raise UsageError(f"Bitrix24 task {task} does not exist (or the webhook user cannot see it)")
                link_pair(store, issue, task, issue_status=found_issue.status, route=route.name)
                ensure_binding(store, cfg)
                typer.echo(
                    f"linked Okdesk issue {issue} ('{found_issue.title}') and Bitrix24 task {task} "
                    f"('{found_task.title}'); the next sync forwards comments and, once the task is "
                    "done, brings the time back"
                )
            finally:
                clients.close()
                store.close()


@app.command()
def retry(context: typer.Context, issue: IssueArg, config: ConfigOpt = None) -> None:
    """Clear an issue's failure backoff (or parking) so the next sync tries it at once."""
    from ..sync.manual import retry_issue

    run = Run(config, clock=given_clock(context))
    with errors(run):
        check_id(issue, "ISSUE")
        store = run.store()
        try:
            ensure_binding(store, run.config)
            tracks = retry_issue(store, issue)
            typer.echo(f"issue {issue} will be tried at the next sync ({', '.join(tracks)})")
        finally:
            store.close()


@app.command()
def rebind(
    config: ConfigOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebind even though the portal has none of the store's tasks.")
    ] = False,
) -> None:
    """Record the configured accounts as the ones the state store serves.

    For the same accounts under a new address (an Okdesk custom domain, a renamed portal, a new
    webhook). Never for other accounts: their issues and tasks are not the ones in this store.
    Before asking, a few of the store's tasks are looked up in the configured portal."""
    from ..state.binding import Binding, record_binding, stored_binding, tasks_under_their_markers
    from ..sync.lock import run_lock

    run = Run(config)
    with errors(run):
        cfg = run.config
        with run_lock(cfg.state.path, clock=run.clock):
            store, clients = run.store(), run.clients()
            try:
                wanted, found = Binding.of(cfg), stored_binding(store)
                if found == wanted:
                    typer.echo(f"the state store {cfg.state.path} already serves {wanted.describe()}")
                    return
                typer.echo(f"the state store {cfg.state.path} serves {found.describe() if found else 'no account yet'}")
                typer.echo(f"the configuration says {wanted.describe()}")
                seen, same = tasks_under_their_markers(store, clients.bitrix)
                typer.echo(f"of {seen} of the store's tasks found in that portal, {same} belong to their issue")
                if seen and not same and not force:
                    raise UsageError(
                        "not rebound: none of the store's tasks found there belongs to its issue, so these look "
                        "like other accounts; give this configuration its own state.path (or pass --force)"
                    )
                if not yes and not confirm("are these the same accounts under a new address?"):
                    raise UsageError("not rebound: the state store still serves what it served")
                record_binding(store, wanted)
                log().info("state store %s rebound from %s to %s", cfg.state.path, found, wanted)
                typer.echo(f"the state store now serves {wanted.describe()}")
            finally:
                clients.close()
                store.close()
