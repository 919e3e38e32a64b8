"""`routes:` in okbx.yaml: named routes, each a block of four parts, declared once like every key.

  - name: documents                     a word: it names the route in markers, status and report
    trigger: {status, issue_types, parameter}   which issues enter it (an Okdesk status code, and
                                        optionally only some issue types or issues with a parameter set)
    target:  {kind: task | deal, ...}   what is made in Bitrix24, and where
    flows:   {forward_public, forward_internal, copy_time, bill, summary_public}   what goes each way
    finish:  {return_status, fallback_status}   where the issue goes when the target is finished:
                                        a status code, or `previous` (the status it had before)

A configuration without `routes:` describes one route, "programmers", with the keys it always had
(okdesk.handoff_status and return_status, bitrix24.group_id and responsible_id, comments.*):
`legacy_route` builds it, so everything downstream sees routes only.

The loop guard is here, in the checks: okbx's own return never lands in a route's trigger status
(a fixed `return_status` that is one is refused; `previous` that is one falls back, see
sync/routing.py), so no two routes can hand an issue back and forth by themselves.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..keys import DEFAULT_ROUTE
from .convert import parse_block
from .spec import TEN_YEARS_DAYS, Key, in_range, not_negative, positive_id, setting

PREVIOUS = "previous"  # finish.return_status: back to the status the issue had before the route
DELAYED = "delayed"  # Okdesk's postponed status: it takes a date, so no route returns to it
NAME = re.compile(r"[a-z][a-z0-9_]{0,29}")


@dataclass(frozen=True)
class TriggerConfig:
    status: str = setting("str")  # the Okdesk status code that puts an issue on the route
    issue_types: tuple[str, ...] = setting("str_list", ())  # only these issue type codes ([] = any)
    parameter: str | None = setting("str", None)  # only issues whose parameter with this code is set


@dataclass(frozen=True)
class TargetConfig:
    kind: str = setting("str", "task", choices=("task", "deal"))
    # a task: in a workgroup, with its people
    group_id: int | None = setting("int", None, check=positive_id)
    responsible_id: int | None = setting("int", None, check=positive_id)
    accomplices: tuple[int, ...] = setting("id_list", ())
    auditors: tuple[int, ...] = setting("id_list", ())
    describe: str = setting("str", "issue", choices=("issue", "equipment"))  # what the description lists
    # a deal: in a pipeline, for the issue's client company
    pipeline_id: int | None = setting("int", None, check=not_negative)
    stage_id: str | None = setting("str", None)  # null: the pipeline's first stage
    assigned_by_id: int | None = setting("int", None, check=positive_id)  # null: the company's responsible
    currency: str = setting("str", "RUB")
    # both: the target's deadline (a task's DEADLINE, a deal's closedate)
    deadline: str = setting("str", "issue", choices=("issue", "none"))  # issue: follows the Okdesk deadline
    deadline_days: int | None = setting("int", None, check=in_range(1, TEN_YEARS_DAYS))  # when the issue has none


@dataclass(frozen=True)
class FlowsConfig:
    forward_public: bool = setting("bool", True)  # public Okdesk comments (client, consultant) into the target
    forward_internal: bool = setting("bool", True)  # internal ones (consultants)
    copy_time: bool = setting("bool", True)  # a task's elapsed time back as time entries
    bill: bool = setting("bool", False)  # billing invoices the route's completions (billing:)
    summary_public: bool = setting("bool", False)
    # the report quotes the last comment a person wrote in the task (the department's result)
    result_comment: bool = setting("bool", False)


@dataclass(frozen=True)
class FinishConfig:
    return_status: str = setting("str", "opened")  # a status code, or `previous`
    # `previous` when it cannot be known or is a route's own status (the loop guard)
    fallback_status: str = setting("str", "opened")


@dataclass(frozen=True)
class RouteConfig:
    name: str
    trigger: TriggerConfig
    target: TargetConfig
    flows: FlowsConfig
    finish: FinishConfig

    @property
    def status(self) -> str:
        return self.trigger.status

    @property
    def kind(self) -> str:
        return self.target.kind

    @property
    def returns_previous(self) -> bool:
        return self.finish.return_status == PREVIOUS

    def admits(self, type_code: str | None, parameters: Mapping[str, object]) -> bool:
        """Whether an issue in the trigger status is this route's (its type and parameter)."""
        trigger = self.trigger
        if trigger.issue_types and type_code not in trigger.issue_types:
            return False
        return not trigger.parameter or parameters.get(trigger.parameter) not in (None, "", False, [])


BLOCKS: dict[str, type] = {
    "trigger": TriggerConfig,
    "target": TargetConfig,
    "flows": FlowsConfig,
    "finish": FinishConfig,
}
TASK_ONLY = ("group_id", "responsible_id", "accomplices", "auditors", "describe")
DEAL_ONLY = ("pipeline_id", "stage_id", "assigned_by_id", "currency")


def block_keys(block: type) -> dict[str, Key]:
    return {f.name: f.metadata["key"] for f in fields(block)}


Problems = list[tuple[str, str]]


def parse_routes(raw: Any, env: Mapping[str, str], base_dir: Path) -> tuple[tuple[RouteConfig, ...], Problems]:
    if not isinstance(raw, list) or not raw:
        return (), [("routes", "must be a list of routes (each a mapping with name, trigger, target, flows, finish)")]
    routes: list[RouteConfig] = []
    problems: Problems = []
    for number, entry in enumerate(raw):
        route, found = _route(f"routes[{number}]", entry, env, base_dir)
        problems += found
        if route is not None:
            routes.append(route)
    if not problems:
        problems += route_problems(routes)
    return tuple(routes), problems


def _route(where: str, entry: Any, env: Mapping[str, str], base_dir: Path) -> tuple[RouteConfig | None, Problems]:
    if not isinstance(entry, dict):
        return None, [(where, "must be a mapping with name, trigger, target, flows, finish")]
    problems: Problems = []
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        problems.append((f"{where}.name", "must be a word of a-z, 0-9 and _ (up to 30, starting with a letter)"))
    else:
        where = f"routes.{name}"
    problems += [(f"{where}.{k}", "unknown key") for k in entry if k != "name" and k not in BLOCKS]
    built: dict[str, Any] = {}
    for block, cls in BLOCKS.items():
        values = entry.get(block)
        if values is None and block == "trigger":
            problems.append((f"{where}.trigger", "is required (trigger: {status: <Okdesk status code>})"))
            continue
        if values is not None and not isinstance(values, dict):
            problems.append((f"{where}.{block}", "must be a mapping"))
            continue
        kwargs, found = parse_block(f"{where}.{block}", block_keys(cls), values or {}, env, base_dir)
        problems += found
        if not found:
            built[block] = cls(**kwargs)
    if problems:
        return None, problems
    route = RouteConfig(str(name), **built)
    problems += _target_problems(where, route, entry.get("target") or {}, entry.get("flows") or {})
    return (route if not problems else None), problems


def _target_problems(where: str, route: RouteConfig, target: dict[str, Any], flows: dict[str, Any]) -> Problems:
    kind, problems = route.kind, []
    other = DEAL_ONLY if kind == "task" else TASK_ONLY
    defaults = block_keys(TargetConfig)
    for key in other:  # shown with its default (as config.example.yaml does) is no problem
        if target.get(key) is not None and getattr(route.target, key) != defaults[key].default:
            problems.append((f"{where}.target.{key}", f"does not apply to a target of kind {kind}"))
    needed = ("group_id", "responsible_id") if kind == "task" else ("pipeline_id",)
    for key in needed:
        if getattr(route.target, key) is None:
            problems.append((f"{where}.target.{key}", f"is required for a target of kind {kind}"))
    if kind == "deal" and (flows.get("bill") or flows.get("copy_time")):
        key = "bill" if flows.get("bill") else "copy_time"
        problems.append((f"{where}.flows.{key}", "a deal carries no time: leave it out for a deal route"))
    if route.flows.bill and not route.flows.copy_time:
        problems.append((f"{where}.flows.bill", "needs flows.copy_time: true (an invoice bills the copied time)"))
    return problems


def route_problems(routes: list[RouteConfig]) -> Problems:
    """Across routes: unique names, a status with two routes only when the first filters, and the
    loop guard: no fixed return status (or fallback) is a route's trigger status."""
    problems: Problems = []
    seen: dict[str, RouteConfig] = {}
    for route in routes:
        if route.name in seen:
            problems.append((f"routes.{route.name}.name", "is used by two routes"))
        seen[route.name] = route
    triggers: dict[str, RouteConfig] = {}
    for route in routes:
        first = triggers.setdefault(route.status, route)
        if first is not route and not (first.trigger.issue_types or first.trigger.parameter):
            problems.append(
                (
                    f"routes.{route.name}.trigger.status",
                    f"route {first.name} takes every issue in {route.status!r} first: "
                    "give it issue_types or a parameter",
                )
            )
    for route in routes:
        for key in ("return_status", "fallback_status"):
            status = getattr(route.finish, key)
            if key == "fallback_status" and not route.returns_previous:
                continue
            if key == "fallback_status" and status == PREVIOUS:
                why = "must be a status code: it is where the issue goes when `previous` cannot be used"
                problems.append((f"routes.{route.name}.finish.{key}", why))
            if status == DELAYED:
                why = "Okdesk refuses 'delayed' without a date (delay_to), which okbx cannot pick: name another status"
                problems.append((f"routes.{route.name}.finish.{key}", why))
            if status in triggers:
                problems.append(
                    (
                        f"routes.{route.name}.finish.{key}",
                        f"{status!r} is the trigger of route {triggers[status].name}: okbx's own return would "
                        "start a route by itself (routes could hand an issue back and forth for ever)",
                    )
                )
    return problems


def legacy_route(okdesk: Any, bitrix24: Any, comments: Any) -> RouteConfig:
    """The one route of a configuration without `routes:`: the programmers' of every earlier release."""
    return RouteConfig(
        DEFAULT_ROUTE,
        TriggerConfig(status=okdesk.handoff_status),
        TargetConfig(kind="task", group_id=bitrix24.group_id, responsible_id=bitrix24.responsible_id),
        FlowsConfig(
            forward_public=comments.forward_public,
            forward_internal=comments.forward_internal,
            copy_time=True,
            bill=True,
            summary_public=comments.summary_public,
        ),
        FinishConfig(return_status=okdesk.return_status),
    )
