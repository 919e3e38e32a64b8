"""Doctor checks of the Okdesk account: the token, the statuses and the employees okbx writes as."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..clients.okdesk import OkdeskClient
from ..config import Config, RouteConfig
from ..errors import ApiError, OkbxError
from .base import Check, Context, ServerTimes, check_group, fail_text
from .clock import http_date


@check_group(10, "Okdesk credentials")
def okdesk_checks(ctx: Context) -> list[Check]:
    found = _okdesk_checks(ctx.config, ctx.okdesk, ctx.now, ctx.server_times)
    ctx.okdesk_works = found[0].ok
    return found


@check_group(20, "Okdesk employees", applies=lambda ctx: ctx.okdesk_works)
def okdesk_employee_checks(ctx: Context) -> list[Check]:
    return _okdesk_employee_checks(ctx.config, ctx.okdesk)


def _okdesk_fix(error: Exception) -> str:
    status = getattr(error, "status", None)
    if status == 401:
        return (
            "the token is wrong or revoked: Settings → API in Okdesk shows the employees' API tokens; "
            "copy the bot employee's token into OKDESK_API_TOKEN"
        )
    if status == 403:
        return "the token's employee lacks API rights: give its role access to the API in Okdesk"
    if status == 404:
        return "check okdesk.url: the account's base URL such as https://yourcompany.okdesk.ru, without /api/v1"
    if isinstance(error, ApiError) and error.ambiguous:
        return "Okdesk did not answer properly: check okdesk.url, the network and proxy, then try again"
    return "check okdesk.url and okdesk.api_token"


def _okdesk_statuses(okdesk: OkdeskClient, now: Callable[[], datetime], seen: ServerTimes) -> list[tuple[str, str]]:
    """GET /issues/statuses, keeping the answer's Date header for the clock check."""
    before = now()
    statuses, date = okdesk.list_statuses_dated()
    after = now()
    server = http_date(date)
    if server is not None:
        seen.append(("Okdesk (HTTP Date header)", server, before + (after - before) / 2))
    return statuses


def _okdesk_checks(config: Config, okdesk: OkdeskClient, now: Callable[[], datetime], seen: ServerTimes) -> list[Check]:

    try:
        statuses = dict(_okdesk_statuses(okdesk, now, seen))
    except (OkbxError, ValueError) as error:
        return [
            Check(
                "Okdesk credentials",
                False,
                f"{fail_text(error)} (the other Okdesk checks were skipped until this works)",
                _okdesk_fix(error),
            )
        ]
    checks = [Check("Okdesk credentials", True, f"the API token works; the account has {len(statuses)} statuses")]
    for route in config.routes:
        checks += _route_statuses(config, route, statuses)
    return checks


def _route_statuses(config: Config, route: RouteConfig, statuses: dict[str, str]) -> list[Check]:
    """The route's trigger and return statuses exist, and the transition between them is a manual check."""
    legacy = config.okdesk.handoff_status is not None  # no routes: the keys of every earlier release
    prefix = "Okdesk" if legacy else f"Route {route.name}:"
    back = route.finish.fallback_status if route.returns_previous else route.finish.return_status
    where = f"routes.{route.name}"
    wanted = [
        (f"{prefix} handoff status", "okdesk.handoff_status" if legacy else f"{where}.trigger.status", route.status),
        (
            f"{prefix} return status",
            "okdesk.return_status"
            if legacy
            else f"{where}.finish.{'fallback' if route.returns_previous else 'return'}_status",
            back,
        ),
    ]
    known = ", ".join(sorted(statuses)) or "none"
    checks = []
    for name, key, code in wanted:
        if code in statuses:
            checks.append(Check(name, True, f"{key} {code!r} exists ({statuses[code]})"))
        else:
            checks.append(
                Check(
                    name,
                    False,
                    f"{key} {code!r} is not a status code of this Okdesk account (known codes: {known})",
                    f"set {key} to one of the codes above (Okdesk: Settings → Issues → Statuses shows the codes)",
                )
            )
    if all(code in statuses for _, _, code in wanted):
        goes = "the status each issue had before" if route.returns_previous else repr(back)
        manual = (
            f"whether Okdesk allows the change from {route.status!r} to {goes} is set in Okdesk's status "
            "settings (Settings → Issues → Statuses → transitions), which okbx cannot read: "
            "check it there, or returning issues will fail"
        )
        checks.append(Check(f"{prefix} return transition", True, f"both statuses exist and differ; {manual}"))
    return checks


def _okdesk_employee_checks(config: Config, okdesk: OkdeskClient) -> list[Check]:
    try:
        employees = {int(e["id"]): e for e in okdesk.list_employees() if "id" in e}
    except (OkbxError, ValueError, TypeError) as error:
        detail = f"cannot read the Okdesk employees: {fail_text(error)}"
        fix = _okdesk_fix(error)
        return [Check("Okdesk bot employee", False, detail, fix), Check("Okdesk time employees", False, detail, fix)]

    def problem(employee_id: int) -> str | None:
        employee = employees.get(employee_id)
        if employee is None:
            return "does not exist"
        if employee.get("active") is False:
            return "is deactivated"
        return None

    checks = []
    bot = config.okdesk.bot_employee_id
    if (trouble := problem(bot)) is None:
        checks.append(
            Check("Okdesk bot employee", True, f"employee {bot} exists and is active ({_name(employees[bot])})")
        )
    else:
        checks.append(
            Check(
                "Okdesk bot employee",
                False,
                f"okdesk.bot_employee_id {bot} {trouble} in Okdesk",
                "set okdesk.bot_employee_id to the active employee the API token belongs to "
                "(Okdesk: Settings → Employees shows the id in the employee's URL)",
            )
        )
    wanted = [("time.default_employee_id", config.time.default_employee_id)]
    wanted += [(f"time.users[{bx}]", ok) for bx, ok in sorted(config.time.users.items())]
    problems = [f"{key} → Okdesk employee {eid} {trouble}" for key, eid in wanted if (trouble := problem(eid))]
    if problems:
        checks.append(
            Check(
                "Okdesk time employees",
                False,
                "; ".join(problems) + " (time logged by such a user cannot be copied to Okdesk)",
                "point these keys at active Okdesk employees, or remove the mapping so the time goes to "
                "time.default_employee_id",
            )
        )
    else:
        checks.append(
            Check(
                "Okdesk time employees", True, f"all {len(wanted)} Okdesk employees used for time exist and are active"
            )
        )
    return checks


def _name(employee: dict[str, Any]) -> str:
    return " ".join(str(employee.get(k) or "") for k in ("first_name", "last_name")).strip() or "no name"
