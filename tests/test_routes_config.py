"""`routes:` in okbx.yaml (issue 14 item 1): today's configuration means one route, "programmers";
every problem of a route is named with its key path, and the loop guard refuses returns that would
start a route by themselves."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from okbx_sync.config import Config, parse_config
from okbx_sync.errors import ConfigError

BASE = Path("/etc/okbx")
ENV = {"TOKEN": "t0ken-secret-value", "HOOK": "https://portal.example/rest/1/s3cret-code/"}
LEGACY: dict[str, Any] = {
    "okdesk": {"url": "https://x.okdesk.ru", "api_token": "${TOKEN}", "bot_employee_id": 1, "handoff_status": "to_dev"},
    "bitrix24": {"webhook_url": "${HOOK}", "group_id": 42, "responsible_id": 7},
    "time": {"default_employee_id": 1},
}
ROUTES = [
    {"name": "programmers", "trigger": {"status": "to_dev"}, "target": {"group_id": 42, "responsible_id": 7}},
    {
        "name": "documents",
        "trigger": {"status": "waiting_docs"},
        "target": {"group_id": 43, "responsible_id": 8, "describe": "equipment", "accomplices": [9]},
        "flows": {"copy_time": False, "result_comment": True},
        "finish": {"return_status": "previous"},
    },
    {"name": "sales", "trigger": {"status": "to_sales"}, "target": {"kind": "deal", "pipeline_id": 10}},
]


def with_routes(routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    raw = copy.deepcopy(LEGACY)
    del raw["okdesk"]["handoff_status"]
    del raw["bitrix24"]["group_id"], raw["bitrix24"]["responsible_id"]
    raw["routes"] = copy.deepcopy(ROUTES if routes is None else routes)
    return raw


def parse(raw: dict[str, Any]) -> Config:
    return parse_config(raw, env=ENV, base_dir=BASE)


def problems(raw: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse(raw)
    return dict(caught.value.problems)


def test_todays_configuration_means_one_route_the_programmers():
    (route,) = parse(copy.deepcopy(LEGACY)).routes
    assert (route.name, route.status, route.kind, route.target.group_id, route.target.responsible_id) == (
        "programmers",
        "to_dev",
        "task",
        42,
        7,
    )
    assert route.finish.return_status == "opened" and route.flows.bill and route.flows.copy_time


def test_three_routes_each_a_block():
    config = parse(with_routes())
    programmers, documents, sales = config.routes
    assert documents.returns_previous and documents.target.accomplices == (9,) and not documents.flows.bill
    assert (sales.kind, sales.target.pipeline_id, sales.target.currency) == ("deal", 10, "RUB")
    assert config.route("sales") is sales and config.route("nope") is None
    assert not programmers.flows.bill  # a declared route bills only when it says so


def test_the_one_routes_keys_are_refused_next_to_routes():
    raw = with_routes()
    raw["okdesk"]["handoff_status"] = "to_dev"
    raw["comments"] = {"summary_public": True}
    found = problems(raw)
    assert set(found) == {"okdesk.handoff_status", "comments.summary_public"}
    assert "say it in a route instead" in found["okdesk.handoff_status"]


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda r: r[1]["finish"].update(return_status="to_sales"), "routes.documents.finish.return_status", "trigger"),
        (lambda r: r[1]["finish"].update(fallback_status="to_dev"), "routes.documents.finish.fallback_status", "ever"),
        (lambda r: r[2]["target"].update(group_id=5), "routes.sales.target.group_id", "does not apply"),
        (lambda r: r[0]["target"].pop("group_id"), "routes.programmers.target.group_id", "is required"),
        (lambda r: r[2]["target"].pop("pipeline_id"), "routes.sales.target.pipeline_id", "is required"),
        (lambda r: r[2].update(flows={"bill": True}), "routes.sales.flows.bill", "no time"),
        (lambda r: r[1]["flows"].update(bill=True), "routes.documents.flows.bill", "copy_time"),
        (lambda r: r[2].update(name="programmers"), "routes.programmers.name", "two routes"),
        (lambda r: r[2].update(name="Sales!"), "routes[2].name", "a word"),
        (lambda r: r[2]["trigger"].update(status="to_dev"), "routes.sales.trigger.status", "first"),
        (lambda r: r[1]["target"].update(describe="everything"), "routes.documents.target.describe", "one of"),
        (lambda r: r[1].update(colour="red"), "routes.documents.colour", "unknown key"),
        (lambda r: r[1].pop("trigger"), "routes.documents.trigger", "is required"),
        (lambda r: r[1]["target"].update(accomplices=[0]), "routes.documents.target.accomplices", "from 1"),
        (
            lambda r: r[1]["finish"].update(fallback_status="previous"),
            "routes.documents.finish.fallback_status",
            "status code",
        ),
        (lambda r: r[2].update(finish={"return_status": "delayed"}), "routes.sales.finish.return_status", "date"),
        (lambda r: r[1]["finish"].update(fallback_status="delayed"), "routes.documents.finish.fallback_status", "date"),
    ],
)
def test_every_problem_of_a_route_names_its_key(change, path, words):
    raw = with_routes()
    change(raw["routes"])
    found = problems(raw)
    assert path in found and words in found[path], found


def test_a_status_two_routes_share_needs_the_first_to_filter():
    routes = copy.deepcopy(ROUTES)
    routes[2]["trigger"]["status"] = "waiting_docs"
    routes[1]["trigger"]["issue_types"] = ["service"]
    assert [r.name for r in parse(with_routes(routes)).routes] == ["programmers", "documents", "sales"]


def test_the_debt_status_is_no_routes_status_or_return():
    raw = with_routes()
    raw["debt"] = {"status": "to_sales"}
    assert "debt.status" in problems(raw)


def test_routes_must_be_a_list_of_mappings():
    assert "routes" in problems(with_routes([]))
    raw = with_routes()
    raw["routes"] = ["programmers"]
    assert "routes[0]" in problems(raw)
