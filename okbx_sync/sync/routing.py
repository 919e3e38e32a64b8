"""Which route an issue is on, and where it goes back: pure decisions over the configured routes.

route_of        the first route whose trigger status is the issue's and whose filters (issue
                types, a parameter) admit it; None when the issue is on no route
previous_for    where `previous` returns the issue: the status it had before it entered this
                route (Okdesk's `old_status`), or, when it came straight from another route's
                status, the status that route would have returned it to, so okbx's own return
                never lands in a route's status (the loop guard, with config/routes.py)
return_target   the status a finished target sends the issue back to, and why when it is the
                fallback instead of `previous`
"""

from __future__ import annotations

from ..config import Config, RouteConfig
from ..model import Issue
from ..state.lifecycle import Entry, Link

# Okdesk refuses `delayed` without a date (delay_to, okdesk.md 4); the date the issue was postponed
# to is neither kept nor still meaningful when the route ends, so `previous` cannot be `delayed`
DELAYED = "delayed"


def route_of(issue: Issue | None, config: Config, status: str | None = None) -> RouteConfig | None:
    """`status`: the one the listing showed, when it differs from the issue read (which still
    gives the type and parameters): the listing is what put the issue on a route this cycle."""
    if issue is None:
        return None
    parameters = dict(issue.parameters)
    for route in config.routes:
        if route.status == (status or issue.status) and route.admits(issue.type_code, parameters):
            return route
    return None


def triggers(config: Config) -> frozenset[str]:
    return frozenset(route.status for route in config.routes)


def previous_for(issue: Issue, link: Link | None, config: Config) -> str | None:
    """The status to remember for `previous` when the issue enters a route now (None: unknown)."""
    before = issue.old_status
    if before is None or before not in triggers(config):
        return before
    # it came from another route's status: that handoff's own `previous`, else nothing known
    return link.previous_status if link is not None and link.previous_status not in triggers(config) else None


def entry_for(route: RouteConfig, issue: Issue, link: Link | None, config: Config) -> Entry:
    previous = previous_for(issue, link, config) if route.returns_previous else None
    return Entry(route.name, route.kind, previous)


def return_target(route: RouteConfig, link: Link, config: Config) -> tuple[str, str]:
    """(status, why it is not the one the route names: "" when it is)."""
    if not route.returns_previous:
        return route.finish.return_status, ""
    previous = link.previous_status
    if previous is None:
        return (
            route.finish.fallback_status,
            "the status it had before the route is not known (okbx did not see it, or it came from another route)",
        )
    if previous in triggers(config):
        return route.finish.fallback_status, f"the status it had before, '{previous}', would start a route again"
    if previous == DELAYED:
        return route.finish.fallback_status, "it was postponed before; Okdesk postpones an issue only with a new date"
    return previous, ""
