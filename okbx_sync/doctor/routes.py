"""`okbx doctor` checks of the routes beyond statuses, groups and users (okdesk.py, bitrix24.py):

a deal route   the webhook's crm scope; the pipeline exists and the webhook user may read it;
               its stages are readable, the configured first stage is one of them, and there are
               final stages (semantics S and F) for okbx to notice the deal's end
billing on     at least one route bills (flows.bill): otherwise nothing is ever invoiced
"""

from __future__ import annotations

from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_deals import DealsClient
from ..config import Config, RouteConfig
from ..errors import OkbxError
from .base import Check, Context, check_group, fail_text


@check_group(
    45, "Routes", applies=lambda ctx: any(r.kind == "deal" for r in ctx.config.routes) or bool(ctx.config.billing)
)
def route_group(ctx: Context) -> list[Check]:
    return route_checks(ctx.config, ctx.bitrix)


def route_checks(config: Config, bitrix: Bitrix24Client) -> list[Check]:
    checks: list[Check] = []
    deal_routes = [r for r in config.routes if r.kind == "deal"]
    if deal_routes:
        try:
            scopes = set(bitrix.scopes())
        except OkbxError as error:
            return [Check("Routes: crm scope", False, f"cannot read the webhook's scopes: {fail_text(error)}")]
        if "crm" not in scopes:
            names = ", ".join(r.name for r in deal_routes)
            return [
                Check(
                    "Routes: crm scope",
                    False,
                    f"the webhook lacks the crm scope the deal route(s) {names} need (it has: "
                    f"{', '.join(sorted(scopes)) or 'none'}); their checks were skipped",
                    "edit the incoming webhook in Bitrix24 (Developer resources) and tick CRM (crm)",
                )
            ]
        checks += [_pipeline_check(route, DealsClient(bitrix)) for route in deal_routes]
    if config.billing is not None and not any(r.flows.bill for r in config.routes):
        checks.append(
            Check(
                "Routes: billing",
                True,
                "billing: is on, but no route says flows.bill: true, so no completion is ever invoiced",
                "set flows.bill: true on the routes whose time is billed (e.g. the programmers')",
                warn=True,
            )
        )
    return checks


def _pipeline_check(route: RouteConfig, deals: DealsClient) -> Check:
    name, key = f"Route {route.name}: pipeline", f"routes.{route.name}.target.pipeline_id"
    pipeline = route.target.pipeline_id or 0
    try:
        pipelines = {p.id: p for p in deals.pipelines()}
        stages = deals.stages(pipeline) if pipeline in pipelines else []
    except OkbxError as error:
        return Check(name, False, f"cannot read the deal pipelines: {fail_text(error)}", "check the webhook's rights")
    if pipeline not in pipelines:
        known = ", ".join(f"{p.id} ({p.name})" for p in pipelines.values()) or "none"
        return Check(
            name,
            False,
            f"{key} {pipeline}: no such deal pipeline, or the webhook user may not read it (readable: {known})",
            f"set {key} to one of the pipelines above, or give the webhook's user access to it in the CRM settings",
        )
    first = next((s.id for s in stages if not s.semantics), None)
    wanted = route.target.stage_id or first
    finals = {s.semantics for s in stages if s.semantics}
    title = pipelines[pipeline].name
    if wanted is None or wanted not in {s.id for s in stages}:
        return Check(
            name,
            False,
            f"pipeline {pipeline} ({title}): stage {wanted!r} is not one of its stages "
            f"({', '.join(s.id for s in stages) or 'none'})",
            f"set routes.{route.name}.target.stage_id to one of them, or leave it out for the first stage",
        )
    if any(s.id == wanted and s.semantics for s in stages):
        return Check(
            name,
            False,
            f"pipeline {pipeline} ({title}): stage {wanted!r} is a final stage (won or lost): every deal would be over "
            "the moment it is made",
            f"set routes.{route.name}.target.stage_id to a stage in progress, or leave it out for the first stage",
        )
    if not {"S", "F"} <= finals:
        lacking = "S (won)" if "S" not in finals else "F (lost)"
        return Check(
            name,
            False,
            f"pipeline {pipeline} ({title}) has no stage whose semantics is {lacking}: okbx would never see a deal end",
            "add the final stages to the pipeline in the CRM settings",
        )
    return Check(
        name, True, f"pipeline {pipeline} ({title}) exists; new deals start in {wanted}; it has won and lost stages"
    )
