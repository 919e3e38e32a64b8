"""Contract tests for the Okdesk emulator: real `requests` calls against it over loopback.

Each test states one behaviour of the real Okdesk API (see /work/shared/api/okdesk.md) that the
emulator must reproduce, including every rejection, so that the product cannot pass against a
lenient fake and then fail against a real account.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from okbx_emulator.http import EmulatorServer, Request, Response
from okbx_emulator.okdesk import OkdeskEmulator

TOKEN = "test-token"
START = datetime(2024, 8, 21, 11, 27, 53, 441000, tzinfo=UTC)  # 14:27:53.441 in Moscow (+03:00)
ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+03:00")
TOKEN_OWNER, COLLEAGUE, FORMER = 1, 2, 3
SUMMARY_KEYS = {
    "id", "title", "created_at", "updated_at", "completed_at", "deadline_at", "planned_reaction_at",
    "reacted_at", "delay_to", "status", "type", "priority", "company", "contact", "service_object",
    "agreement", "equipments",
}  # fmt: skip
FULL_KEYS = {
    "id", "title", "description", "created_at", "updated_at", "completed_at", "deadline_at",
    "start_execution_until", "planned_reaction_at", "reacted_at", "delayed_to", "source",
    "spent_time_total", "company_id", "group_id", "service_object_id", "equipment_ids", "parent_id",
    "child_ids", "type", "priority", "status", "old_status", "status_times", "rate", "assignee",
    "coexecutors", "author", "contact", "agreement", "observers", "observer_groups", "attachments",
    "parameters", "comments",
}  # fmt: skip


class Clock:
    """A hand-moved clock, so timestamps and `updated_since` windows are exact."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Api:
    """What the product's client does: `api_token` in the query, JSON bodies, `/api/v1` prefix."""

    def __init__(self, url: str, token: str = TOKEN) -> None:
        self.base, self.token, self.session = f"{url}/api/v1", token, requests.Session()

    def get(self, path: str, params: Any = (), token: str | None = None) -> requests.Response:
        query = list(params.items()) if isinstance(params, dict) else list(params)
        return self.session.get(self.base + path, params=[("api_token", token or self.token), *query], timeout=5)

    def post(self, path: str, body: Any, token: str | None = None) -> requests.Response:
        params = {"api_token": token or self.token}
        return self.session.post(self.base + path, params=params, json=body, timeout=5)


def seeded(clock: Clock, **options: Any) -> OkdeskEmulator:
    emulator = OkdeskEmulator(TOKEN, clock=clock, **options)
    emulator.add_employee("Иван", "Иванов", email="ivan@example.ru")  # the token's owner
    emulator.add_employee("Пётр", "Петров", email="petr@example.ru")
    emulator.add_employee("Бывший", "Сотрудник", active=False)
    company = emulator.add_company("ООО Ромашка")
    emulator.add_contact("Анна", "Клиентова", company_id=company)
    return emulator


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emulator(clock: Clock) -> OkdeskEmulator:
    # the flat time-entry body is still an option; most time-entry tests here exercise it
    return seeded(clock, time_entry_body="flat")


class Switchboard:
    """The app of one module-wide server (stopping a server takes half a second); tests plug emulators in."""

    def __init__(self) -> None:
        self.emulator = OkdeskEmulator()

    def handle(self, request: Request) -> Response:
        return self.emulator.handle(request)

    def operation_name(self, request: Request) -> str:
        return self.emulator.operation_name(request)


Serve = Callable[[OkdeskEmulator], Api]


@pytest.fixture(scope="module")
def switchboard() -> Iterator[tuple[Switchboard, EmulatorServer]]:
    board = Switchboard()
    with EmulatorServer(board) as running:
        yield board, running


@pytest.fixture
def serve(switchboard: tuple[Switchboard, EmulatorServer]) -> Serve:
    """Serve this emulator (fresh request log, no faults) and return a client for it."""
    board, running = switchboard

    def plug(emulator: OkdeskEmulator) -> Api:
        board.emulator = emulator
        running.reset_log()
        running.clear_faults()
        return Api(running.url)

    return plug


@pytest.fixture
def server(serve: Serve, switchboard: tuple[Switchboard, EmulatorServer], emulator: OkdeskEmulator) -> EmulatorServer:
    serve(emulator)
    return switchboard[1]


@pytest.fixture
def api(serve: Serve, emulator: OkdeskEmulator) -> Api:
    return serve(emulator)


@pytest.fixture
def issue_id(emulator: OkdeskEmulator) -> int:
    return emulator.create_issue("Принтер не печатает", "Текст<br>вторая строка", contact_id=1)


def errors_of(response: requests.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()["errors"]


# -- authentication, routing, bodies ------------------------------------------------------------
def test_every_call_needs_the_right_api_token(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    missing = api.session.get(f"{api.base}/issues/{issue_id}", timeout=5)
    assert errors_of(missing, 401) == "Unauthorized: invalid api_token"
    assert errors_of(api.get("/issues/list", token="wrong"), 401) == "Unauthorized: invalid api_token"
    body = {"comment": {"content": "x", "author_id": TOKEN_OWNER}}
    assert errors_of(api.post(f"/issues/{issue_id}/comments", body, token="wrong"), 401)
    assert emulator.comments(issue_id) == []


def test_unknown_paths_and_methods_are_404(api: Api, issue_id: int) -> None:
    assert errors_of(api.get("/issues/list/comments"), 404) == "Заявка не найдена"  # `list` read as an id
    assert errors_of(api.get(f"/issues/{issue_id}/extra"), 404) == "Not found"
    assert errors_of(api.get("/nothing"), 404) == "Not found"
    patch = api.session.patch(f"{api.base}/issues/{issue_id}/statuses", params={"api_token": TOKEN}, timeout=5)
    assert errors_of(patch, 404) == "Not found"  # go-okdesk's PATCH for statuses does not exist


def test_a_body_that_is_not_json_is_400(api: Api, issue_id: int) -> None:
    url, params = f"{api.base}/issues/{issue_id}/comments", {"api_token": TOKEN}
    broken = api.session.post(url, params=params, data=b"{not json", headers={"Content-Type": "application/json"})
    assert isinstance(errors_of(broken, 400), str)
    form = api.session.post(url, params=params, data={"comment[content]": "x"})
    assert isinstance(errors_of(form, 400), str)


def test_operation_names_group_requests_by_endpoint(api: Api, server: EmulatorServer, issue_id: int) -> None:
    api.get("/issues/list")
    api.get(f"/issues/{issue_id}")
    api.get("/issues/abc")
    api.get(f"/issues/{issue_id}/comments")
    api.post(f"/issues/{issue_id}/comments", {"comment": {"content": "x", "author_id": 1}})
    api.post(f"/issues/{issue_id}/statuses", {"code": "in_progress"})
    api.get(f"/issues/{issue_id}/time_entries")
    api.post(f"/issues/{issue_id}/time_entries", {})
    api.get("/issues/statuses")
    api.get("/employees/list")
    api.get("/issues/count")
    api.get("/elsewhere")
    assert server.counts() == {
        "GET /issues/list": 1,
        "GET /issues/{id}": 2,
        "GET /issues/{id}/comments": 1,
        "POST /issues/{id}/comments": 1,
        "POST /issues/{id}/statuses": 1,
        "GET /issues/{id}/time_entries": 1,
        "POST /issues/{id}/time_entries": 1,
        "GET /issues/statuses": 1,
        "GET /employees/list": 1,
        "GET /issues/count": 1,
        "GET /api/v1/elsewhere": 1,
    }


def test_operation_name_of_an_unrouted_request_is_method_and_path(emulator: OkdeskEmulator) -> None:
    request = Request("DELETE", "/api/v1/issues/5", [], {}, b"")
    assert emulator.operation_name(request) == "DELETE /api/v1/issues/5"


# -- dictionaries --------------------------------------------------------------------------------
def test_status_dictionary_lists_code_name_and_colour(api: Api) -> None:
    statuses = api.get("/issues/statuses").json()
    assert [s["code"] for s in statuses] == [
        "opened", "in_progress", "delayed", "completed", "closed", "to_programmers",
    ]  # fmt: skip
    assert statuses[0] == {"code": "opened", "name": "Открыта", "color": "#5cb85c"}
    assert all(set(s) == {"code", "name", "color"} for s in statuses)


def test_custom_statuses_replace_the_defaults(serve: Serve, clock: Clock) -> None:
    emulator = seeded(clock, statuses=[("new", "Новая"), ("done", "Готово")])
    api = serve(emulator)
    statuses = api.get("/issues/statuses").json()
    assert [(s["code"], s["name"]) for s in statuses] == [("new", "Новая"), ("done", "Готово")]


# -- GET /issues/list ----------------------------------------------------------------------------
def test_list_items_are_summary_objects(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    response = api.get("/issues/list")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    [item] = response.json()
    assert set(item) == SUMMARY_KEYS  # no description, no assignee: the list is only for finding changes
    assert item["created_at"] == item["updated_at"] == "2024-08-21T14:27:53.441+03:00"
    assert item["status"] == {"code": "opened", "name": "Открыта", "color": "#5cb85c"}
    assert item["priority"] == {"code": "normal", "name": "Обычный", "color": "#f0ad4e"}
    assert item["type"] == {"code": "service", "name": "Обслуживание"}
    assert item["company"] == {"id": 1, "name": "ООО Ромашка"}  # filled in from the contact
    assert item["contact"] == {"id": 1, "name": "Анна Клиентова"}
    assert item["equipments"] == [] and item["service_object"] is None and item["delay_to"] is None


def test_list_filters_by_status_codes(api: Api, emulator: OkdeskEmulator) -> None:
    opened, working, done = (emulator.create_issue(t) for t in ("a", "b", "c"))
    emulator.set_status(working, "in_progress", by_employee_id=TOKEN_OWNER)
    emulator.set_status(done, "completed", by_employee_id=TOKEN_OWNER)

    def ids(params: list[tuple[str, str]]) -> list[int]:
        return [item["id"] for item in api.get("/issues/list", params).json()]

    assert ids([("status_codes[]", "opened"), ("status_codes[]", "completed")]) == [opened, done]
    assert ids([("status_codes_not[]", "completed")]) == [opened, working]
    assert ids([("status_codes", "opened")]) == [opened, working, done]  # no brackets: an unknown param


def test_updated_since_is_inclusive_at_minute_precision(api: Api, issue_id: int) -> None:
    # the issue was updated at 14:27:53.441+03:00
    def matches(**params: str) -> bool:
        return [i["id"] for i in api.get("/issues/list", params).json()] == [issue_id]

    assert matches(updated_since="21-08-2024 14:27")
    assert matches(updated_since="21-08-2024 14:27:59")
    assert not matches(updated_since="21-08-2024 14:28")
    assert matches(updated_until="21-08-2024 14:27")
    assert not matches(updated_until="21-08-2024 14:26")
    assert matches(updated_since="21-08-2024", updated_until="21-08-2024")
    assert not matches(updated_since="22-08-2024")
    assert matches(created_since="21-08-2024 14:00", created_until="21-08-2024 15:00")


def test_filter_dates_are_read_in_the_account_offset(serve: Serve, clock: Clock) -> None:
    clock.now = datetime(2024, 8, 21, 22, 30, tzinfo=UTC)  # already 22 August in Novosibirsk
    emulator = seeded(clock, utc_offset="+07:00")
    issue = emulator.create_issue("late")
    api = serve(emulator)
    [item] = api.get("/issues/list", {"updated_since": "22-08-2024 05:30"}).json()
    assert item["updated_at"] == "2024-08-22T05:30:00.000+07:00" and item["id"] == issue
    assert api.get("/issues/list", {"updated_since": "22-08-2024 05:31"}).json() == []


@pytest.mark.parametrize("value", ["2024-08-21", "21.08.2024", "21-08-2024T14:27", "32-08-2024", "", "вчера"])
def test_a_filter_date_in_another_format_is_400(api: Api, value: str) -> None:
    assert errors_of(api.get("/issues/list", {"updated_since": value}), 400) == {
        "updated_since": ["Неверный формат даты"]
    }
    assert errors_of(api.get("/issues/count", {"created_until": value}), 400) == {
        "created_until": ["Неверный формат даты"]
    }


def test_list_pages_hold_at_most_fifty_issues(api: Api, emulator: OkdeskEmulator) -> None:
    ids = [emulator.create_issue(f"issue {n}") for n in range(55)]
    assert [i["id"] for i in api.get("/issues/list").json()] == ids[:50]  # default size 50, by id
    second = api.get("/issues/list", {"page[number]": "2", "page[size]": "50"}).json()
    assert [i["id"] for i in second] == ids[50:]
    assert api.get("/issues/list", {"page[number]": "3"}).json() == []
    small = api.get("/issues/list", {"page[number]": "2", "page[size]": "10"}).json()
    assert [i["id"] for i in small] == ids[10:20]


def test_page_size_above_fifty_is_400(api: Api) -> None:
    assert errors_of(api.get("/issues/list", {"page[size]": "51"}), 400) == {
        "page": {"size": ["должно быть меньше или равно 50"]}
    }


@pytest.mark.parametrize(("param", "value"), [("size", "0"), ("size", "-5"), ("size", "ten"), ("number", "0")])
def test_page_parameters_must_be_positive_integers(api: Api, param: str, value: str) -> None:
    errors = errors_of(api.get("/issues/list", {f"page[{param}]": value}), 400)
    assert list(errors["page"]) == [param]


def test_list_sorting_by_updated_at_in_reverse(api: Api, emulator: OkdeskEmulator, clock: Clock) -> None:
    first, second = emulator.create_issue("a"), emulator.create_issue("b")
    clock.advance(minutes=5)
    emulator.add_comment(first, "bump", author_id=COLLEAGUE)
    params = {"sorting[field]": "updated_at", "sorting[direction]": "reverse"}
    assert [i["id"] for i in api.get("/issues/list", params).json()] == [first, second]
    params = {"sorting[field]": "created_at", "sorting[direction]": "forward"}
    assert [i["id"] for i in api.get("/issues/list", params).json()] == [first, second]
    assert errors_of(api.get("/issues/list", {"sorting[field]": "title"}), 400) == {
        "sorting": {"field": ["должен быть одним из: created_at, updated_at"]}
    }
    assert "direction" in errors_of(api.get("/issues/list", {"sorting[direction]": "up"}), 400)["sorting"]


def test_unknown_query_parameters_are_ignored(api: Api, issue_id: int) -> None:
    assert len(api.get("/issues/list", {"fields[issue]": "id,title", "whatever": "1"}).json()) == 1


def test_deleted_issues_leave_every_listing(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    emulator.delete_issue(issue_id)
    assert api.get("/issues/list").json() == [] and api.get("/issues/count").json() == []


# -- GET /issues/count ---------------------------------------------------------------------------
def test_count_returns_an_array_of_ids_not_a_number(api: Api, emulator: OkdeskEmulator, clock: Clock) -> None:
    first, second, third = (emulator.create_issue(t) for t in ("a", "b", "c"))
    clock.advance(hours=1)
    emulator.set_status(third, "in_progress", by_employee_id=TOKEN_OWNER)
    assert api.get("/issues/count").json() == [third, second, first]
    assert api.get("/issues/count", [("status[]", "opened")]).json() == [second, first]
    assert api.get("/issues/count", [("status_not[]", "opened")]).json() == [third]
    assert api.get("/issues/count", {"updated_since": "21-08-2024 15:27"}).json() == [third]
    # `status_codes[]` belongs to /list; on /count it is an unknown parameter
    assert api.get("/issues/count", [("status_codes[]", "in_progress")]).json() == [third, second, first]


# -- GET /issues/{id} ----------------------------------------------------------------------------
def test_full_issue_object(api: Api, emulator: OkdeskEmulator, clock: Clock) -> None:
    deadline = datetime(2024, 8, 26, 16, 40, 1, tzinfo=UTC)
    issue = emulator.create_issue(
        "Требуется выезд",
        "Текст<br>ещё",
        contact_id=1,
        priority="high",
        deadline_at=deadline,
        author_employee_id=2,
    )
    body = api.get(f"/issues/{issue}").json()
    assert set(body) == FULL_KEYS
    assert body["description"] == "Текст<br>ещё" and body["company_id"] == 1
    assert ISO_MS.fullmatch(body["created_at"]) and body["created_at"] == body["updated_at"]
    assert body["deadline_at"] == "2024-08-26T19:40:01.000+03:00"
    assert body["priority"] == {"code": "high", "name": "Высокий"}
    assert body["status"] == {"code": "opened", "name": "Открыта"} and body["old_status"] is None
    assert body["type"] == {"id": 1, "code": "service", "name": "Обслуживание", "available_for_client": True}
    assert body["author"] == {"id": 2, "name": "Петров Пётр"}
    assert body["contact"] == {"id": 1, "name": "Анна Клиентова"}
    assert body["assignee"] is None and body["parameters"] == [] and body["status_times"] == {}
    assert body["comments"] == {"count": 0, "last_at": None} and body["spent_time_total"] == 0
    assert body == emulator.issue(issue)


@pytest.mark.parametrize("ref", ["999", "abc", "-1", "1.0"])
def test_unknown_issue_is_404(api: Api, issue_id: int, ref: str) -> None:
    for path in (f"/issues/{ref}", f"/issues/{ref}/comments", f"/issues/{ref}/time_entries"):
        assert errors_of(api.get(path), 404) == "Заявка не найдена"
    assert errors_of(api.post(f"/issues/{ref}/statuses", {"code": "closed"}), 404) == "Заявка не найдена"


def test_deleted_issue_is_404(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    emulator.delete_issue(issue_id)
    assert errors_of(api.get(f"/issues/{issue_id}"), 404) == "Заявка не найдена"
    with pytest.raises(ValueError, match="deleted"):
        emulator.issue(issue_id)


# -- comments ------------------------------------------------------------------------------------
def test_comments_come_oldest_first(api: Api, emulator: OkdeskEmulator, clock: Clock, issue_id: int) -> None:
    emulator.add_comment(issue_id, "первый", author_id=COLLEAGUE, public=False)
    clock.advance(seconds=30)
    emulator.add_comment(issue_id, "от клиента", author_id=1, author_type="contact")
    first, second = api.get(f"/issues/{issue_id}/comments").json()
    assert first == {
        "id": 1,
        "content": "первый",
        "public": False,
        "published_at": "2024-08-21T14:27:53.441+03:00",
        "author": {"id": COLLEAGUE, "name": "Петров Пётр", "type": "employee"},
        "attachments": [],
    }
    assert second["author"] == {"id": 1, "name": "Анна Клиентова", "type": "contact"} and second["public"]
    summary = api.get(f"/issues/{issue_id}").json()["comments"]
    assert summary == {"count": 2, "last_at": "2024-08-21T14:28:23.441+03:00"}


def test_posting_a_wrapped_comment(api: Api, emulator: OkdeskEmulator, clock: Clock, issue_id: int) -> None:
    clock.advance(minutes=3)
    body = {"comment": {"content": "Ответ из Битрикс24:<br>текст", "author_id": COLLEAGUE}}
    created = api.post(f"/issues/{issue_id}/comments", body).json()
    assert created["content"] == "Ответ из Битрикс24:<br>текст"
    assert created["public"] is False  # the default
    assert created["author"] == {"id": COLLEAGUE, "name": "Петров Пётр", "type": "employee"}
    assert emulator.comments(issue_id) == [created]
    assert emulator.issue(issue_id)["updated_at"] == "2024-08-21T14:30:53.441+03:00"
    assert emulator.webhooks[-1] == {
        "event_type": "new_comment",
        "issue_id": issue_id,
        "comment_id": created["id"],
        "author_id": COLLEAGUE,
        "author_type": "employee",
    }


def test_an_unwrapped_comment_is_accepted_too(api: Api, issue_id: int) -> None:
    body = {"content": "без обёртки", "author_id": "2", "public": True}
    created = api.post(f"/issues/{issue_id}/comments", body).json()
    assert created["public"] is True and created["author"]["id"] == COLLEAGUE


def test_a_contact_may_comment(api: Api, issue_id: int) -> None:
    body = {"comment": {"content": "спасибо", "author_id": 1, "author_type": "contact"}}
    assert api.post(f"/issues/{issue_id}/comments", body).json()["author"]["type"] == "contact"


@pytest.mark.parametrize(
    ("comment", "field"),
    [
        ({"author_id": 1}, "content"),
        ({"content": "   ", "author_id": 1}, "content"),
        ({"content": 5, "author_id": 1}, "content"),
        ({"content": "x"}, "author_id"),
        ({"content": "x", "author_id": 99}, "author_id"),
        ({"content": "x", "author_id": FORMER}, "author_id"),
        ({"content": "x", "author_id": "one"}, "author_id"),
        ({"content": "x", "author_id": 2, "author_type": "contact"}, "author_id"),
        ({"content": "x", "author_id": 1, "author_type": "robot"}, "author_type"),
        ({"content": "x", "author_id": 1, "public": "maybe"}, "public"),
    ],
)
def test_invalid_comments_are_422(
    api: Api, emulator: OkdeskEmulator, issue_id: int, comment: dict[str, Any], field: str
) -> None:
    errors = errors_of(api.post(f"/issues/{issue_id}/comments", {"comment": comment}), 422)
    assert field in errors and isinstance(errors[field], list)
    assert emulator.comments(issue_id) == [] and emulator.webhooks == []


def test_comment_touching_the_issue_is_an_option(serve: Serve, clock: Clock) -> None:
    emulator = seeded(clock, comment_touches_issue=False)
    issue = emulator.create_issue("x")
    clock.advance(minutes=1)
    api = serve(emulator)
    api.post(f"/issues/{issue}/comments", {"comment": {"content": "x", "author_id": 1}})
    assert emulator.issue(issue)["updated_at"] == "2024-08-21T14:27:53.441+03:00"


# -- POST /issues/{id}/statuses ------------------------------------------------------------------
def test_status_change_answers_with_the_full_issue(
    api: Api, emulator: OkdeskEmulator, clock: Clock, issue_id: int
) -> None:
    clock.advance(minutes=10)
    body = {"code": "completed", "comment": "Готово", "comment_public": True}
    answer = api.post(f"/issues/{issue_id}/statuses", body).json()
    assert set(answer) == FULL_KEYS
    assert answer["status"] == {"code": "completed", "name": "Решена"}
    assert answer["old_status"] == {"code": "opened", "name": "Открыта"}
    assert answer["updated_at"] == answer["completed_at"] == "2024-08-21T14:37:53.441+03:00"
    [comment] = emulator.comments(issue_id)
    assert comment["author"]["id"] == TOKEN_OWNER and comment["public"] and comment["content"] == "Готово"
    assert emulator.webhooks == [{"event_type": "new_ticket_status", "issue_id": issue_id, "new_status": "completed"}]


def test_skip_webhooks_suppresses_the_echo(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    body = {"code": "in_progress", "skip_options": ["skip_webhooks", "skip_notifications"]}
    assert api.post(f"/issues/{issue_id}/statuses", body).status_code == 200
    assert emulator.status_of(issue_id) == "in_progress" and emulator.webhooks == []


def test_postponing_needs_a_date_and_a_comment(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    path = f"/issues/{issue_id}/statuses"
    assert set(errors_of(api.post(path, {"code": "delayed"}), 422)) == {"delay_to", "comment"}
    bad_date = {"code": "delayed", "delay_to": "скоро", "comment": "ждём"}
    assert errors_of(api.post(path, bad_date), 422) == {"delay_to": ["имеет неверный формат"]}
    body = {"code": "delayed", "delay_to": "2024-08-30T10:00:00+07:00", "comment": "Ждём запчасть"}
    assert api.post(path, body).json()["delayed_to"] == "2024-08-30T06:00:00.000+03:00"
    assert api.get("/issues/list").json()[0]["delay_to"] == "2024-08-30T06:00:00.000+03:00"
    assert api.post(path, {"code": "in_progress"}).json()["delayed_to"] is None


def test_the_comment_requirement_is_configurable(serve: Serve, clock: Clock) -> None:
    emulator = seeded(clock, comment_required_for=())
    issue = emulator.create_issue("x")
    api = serve(emulator)
    body = {"code": "delayed", "delay_to": "2024-08-30 10:00"}
    assert api.post(f"/issues/{issue}/statuses", body).status_code == 200


def test_reopening_clears_completed_at(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    path = f"/issues/{issue_id}/statuses"
    assert api.post(path, {"code": "completed"}).json()["completed_at"] is not None
    assert api.post(path, {"code": "closed"}).json()["completed_at"] is not None
    assert api.post(path, {"code": "opened"}).json()["completed_at"] is None


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({}, {"code": ["не может быть пустым"]}),
        ({"issue": {"code": "completed"}}, {"code": ["не может быть пустым"]}),  # statuses take a flat body
        ({"code": "done"}, {"code": ["Статус не найден"]}),
        ({"code": "opened"}, "Заявка уже находится в этом статусе"),
        # a set: only which fields are blamed matters, the wording is ours
        ({"code": "closed", "skip_options": ["skip_everything"]}, {"skip_options"}),
        ({"code": "closed", "skip_options": "skip_webhooks"}, {"skip_options"}),
        ({"code": "closed", "comment_public": "yes"}, {"comment_public"}),
        ({"code": "closed", "custom_parameters": []}, {"custom_parameters"}),
        ({"code": "closed", "time_entry": {"formatted_spent_time": "0:30"}}, {"time_entry"}),
    ],
)
def test_invalid_status_changes_are_422(
    api: Api, emulator: OkdeskEmulator, issue_id: int, body: dict[str, Any], errors: Any
) -> None:
    answer = errors_of(api.post(f"/issues/{issue_id}/statuses", body), 422)
    assert (set(answer) if isinstance(errors, set) else answer) == errors
    assert emulator.status_of(issue_id) == "opened" and emulator.webhooks == []


def test_forbidden_transitions_are_422_with_a_list(serve: Serve, clock: Clock) -> None:
    emulator = seeded(clock, transitions={"opened": {"in_progress"}, "in_progress": {"completed"}})
    issue = emulator.create_issue("x")
    api = serve(emulator)
    answer = api.post(f"/issues/{issue}/statuses", {"code": "completed"})
    assert errors_of(answer, 422) == ["Переход из статуса «Открыта» в статус «Решена» запрещён"]
    assert api.post(f"/issues/{issue}/statuses", {"code": "in_progress"}).status_code == 200
    assert errors_of(api.post(f"/issues/{issue}/statuses", {"code": "opened"}), 422) == [
        "Переход из статуса «В работе» в статус «Открыта» запрещён"
    ]
    with pytest.raises(ValueError, match="запрещён"):
        emulator.set_status(issue, "closed", by_employee_id=TOKEN_OWNER)


def test_a_status_change_can_log_time(api: Api, emulator: OkdeskEmulator, issue_id: int) -> None:
    body = {
        "code": "completed",
        "time_entry": [{"formatted_spent_time": "0:30"}, {"formatted_spent_time": "1:00", "employee_id": 2}],
    }
    assert api.post(f"/issues/{issue_id}/statuses", body).json()["spent_time_total"] == 1.5
    entries = emulator.time_entries(issue_id)
    assert [(e["employee"]["id"], e["spent_time"]) for e in entries] == [(TOKEN_OWNER, 0.5), (COLLEAGUE, 1.0)]
    bad = {"code": "closed", "time_entry": [{"formatted_spent_time": "полчаса"}]}
    assert errors_of(api.post(f"/issues/{issue_id}/statuses", bad), 422) == {
        "time_entry[0][formatted_spent_time]": ["имеет неверный формат"]
    }


def test_the_token_owner_must_exist_to_comment_on_a_status_change(serve: Serve, clock: Clock) -> None:
    emulator = seeded(clock, token_employee_id=42)
    issue = emulator.create_issue("x")
    api = serve(emulator)
    answer = api.post(f"/issues/{issue}/statuses", {"code": "closed"})
    assert answer.status_code == 500 and "token employee 42" in answer.json()["errors"]


# -- time entries --------------------------------------------------------------------------------
def new_entry(**fields: Any) -> dict[str, Any]:
    return {
        "employee_id": COLLEAGUE,
        "formatted_spent_time": "1:00",
        "logged_at": "2024-08-21 10:00",
    } | fields


@pytest.mark.parametrize(
    ("duration", "hours"),
    [
        ("2:30", 2.5),
        ("0:05", 0.08),
        ("2,5", 2.5),
        ("2.5", 2.5),
        ("2 ч. 30 мин.", 2.5),
        ("45 мин.", 0.75),
        ("2,5 часа", 2.5),
        ("1 ч.", 1.0),
        (" 0:15 ", 0.25),
    ],
)
def test_logging_time_with_a_formatted_duration(api: Api, issue_id: int, duration: str, hours: float) -> None:
    entry = api.post(f"/issues/{issue_id}/time_entries", new_entry(formatted_spent_time=duration)).json()
    assert entry["spent_time"] == hours


@pytest.mark.parametrize(
    ("logged_at", "shown"),
    [
        ("2024-08-20 10:15", "2024-08-20T10:15:00.000+03:00"),
        ("2024-08-20", "2024-08-20T00:00:00.000+03:00"),
        ("2024-08-20T10:15:00+07:00", "2024-08-20T06:15:00.000+03:00"),
        ("2024-08-20T10:15:00.250Z", "2024-08-20T13:15:00.250+03:00"),
    ],
)
def test_logged_at_formats(api: Api, issue_id: int, logged_at: str, shown: str) -> None:
    entry = api.post(f"/issues/{issue_id}/time_entries", new_entry(logged_at=logged_at)).json()
    assert entry["logged_at"] == shown


def test_time_entries_list_and_total(api: Api, emulator: OkdeskEmulator, clock: Clock, issue_id: int) -> None:
    clock.advance(minutes=2)
    created = api.post(f"/issues/{issue_id}/time_entries", new_entry(comment="Упаковка")).json()
    api.post(f"/issues/{issue_id}/time_entries", new_entry(formatted_spent_time="0:15"))
    assert created == {
        "id": 1,
        "comment": "Упаковка",
        "spent_time": 1.0,
        "logged_at": "2024-08-21T10:00:00.000+03:00",
        "employee": {"id": COLLEAGUE, "login": "petr@example.ru", "name": "Петров Пётр"},
        "parameters": [],
    }
    listing = api.get(f"/issues/{issue_id}/time_entries").json()
    assert listing["spent_time_total"] == 1.25 and listing["time_entries"][0] == created
    assert listing["time_entries"][1]["comment"] is None
    assert emulator.issue(issue_id)["updated_at"] == "2024-08-21T14:29:53.441+03:00"
    assert emulator.issue(issue_id)["spent_time_total"] == 1.25


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"formatted_spent_time": "90"}, "formatted_spent_time", "имеет неверный формат"),
        ({"formatted_spent_time": "полтора часа"}, "formatted_spent_time", "имеет неверный формат"),
        ({"formatted_spent_time": "2:75"}, "formatted_spent_time", "имеет неверный формат"),
        ({"formatted_spent_time": "-1:00"}, "formatted_spent_time", "имеет неверный формат"),
        ({"formatted_spent_time": 1.5}, "formatted_spent_time", "имеет неверный формат"),
        ({"formatted_spent_time": "0:00"}, "formatted_spent_time", "должно быть больше 0"),
        ({"formatted_spent_time": ""}, "formatted_spent_time", "не может быть пустым"),
        ({"logged_at": "20.08.2024"}, "logged_at", "имеет неверный формат"),
        ({"logged_at": "20240820"}, "logged_at", "имеет неверный формат"),
        ({"logged_at": None}, "logged_at", "не может быть пустым"),
        ({"employee_id": 99}, "employee_id", "Сотрудник не найден"),
        ({"employee_id": FORMER}, "employee_id", "Сотрудник заблокирован"),
        ({"employee_id": None}, "employee_id", "не может быть пустым"),
        ({"comment": 7}, "comment", "должен быть строкой"),
    ],
)
def test_invalid_time_entries_are_422(
    api: Api, emulator: OkdeskEmulator, issue_id: int, fields: dict[str, Any], field: str, message: str
) -> None:
    answer = api.post(f"/issues/{issue_id}/time_entries", new_entry(**fields))
    assert errors_of(answer, 422) == {field: [message]}
    assert emulator.time_entries(issue_id) == []


@pytest.mark.parametrize("body", [{"time_entries": [new_entry()]}, {"time_entry": new_entry()}, {}])
def test_flat_mode_rejects_a_wrapped_time_entry(
    api: Api, emulator: OkdeskEmulator, issue_id: int, body: dict[str, Any]
) -> None:
    assert errors_of(api.post(f"/issues/{issue_id}/time_entries", body), 422) == {
        "employee_id": ["не может быть пустым"],
        "formatted_spent_time": ["не может быть пустым"],
        "logged_at": ["не может быть пустым"],
    }
    assert emulator.time_entries(issue_id) == []


def test_wrapped_mode_takes_only_a_time_entries_list(serve: Serve, clock: Clock) -> None:
    emulator = seeded(clock)  # the default: the form the only public client that posts time sends
    assert emulator.time_entry_body == "wrapped"
    issue = emulator.create_issue("x")
    api = serve(emulator)
    path = f"/issues/{issue}/time_entries"
    assert errors_of(api.post(path, new_entry()), 422) == {"time_entries": ["не может быть пустым"]}
    answer = api.post(path, {"time_entries": [new_entry(), new_entry(formatted_spent_time="0:30")]}).json()
    assert [e["spent_time"] for e in answer["time_entries"]] == [1.0, 0.5]
    bad = {"time_entries": [new_entry(), new_entry(employee_id=99)]}
    assert errors_of(api.post(path, bad), 422) == {"time_entries[1][employee_id]": ["Сотрудник не найден"]}
    assert len(emulator.time_entries(issue)) == 2  # the rejected batch logged nothing


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(hours=st.integers(min_value=0, max_value=99), minutes=st.integers(min_value=0, max_value=59))
def test_h_mm_durations_become_decimal_hours(api: Api, issue_id: int, hours: int, minutes: int) -> None:
    answer = api.post(f"/issues/{issue_id}/time_entries", new_entry(formatted_spent_time=f"{hours}:{minutes:02d}"))
    if hours == minutes == 0:
        assert answer.status_code == 422
    else:
        assert answer.json()["spent_time"] == round(hours + minutes / 60, 2)


# -- employees -----------------------------------------------------------------------------------
def test_employee_list_items(api: Api) -> None:
    employees = api.get("/employees/list").json()
    assert [e["id"] for e in employees] == [3, 2, 1]  # reverse (the default): highest id first
    assert employees[1] == {
        "id": 2,
        "first_name": "Пётр",
        "last_name": "Петров",
        "patronymic": "",
        "position": "",
        "active": True,
        "email": "petr@example.ru",
        "login": "petr@example.ru",
        "phone": "",
        "telephony_number": "",
        "comment": "",
        "groups": [],
        "roles": [],
    }
    assert employees[0]["active"] is False


def test_employee_list_pages_by_cursor(api: Api, emulator: OkdeskEmulator) -> None:
    for n in range(7):
        emulator.add_employee("Сотрудник", f"Номер{n}")

    def ids(**params: str) -> list[int]:
        return [e["id"] for e in api.get("/employees/list", {f"page[{k}]": v for k, v in params.items()}).json()]

    assert ids(size="4") == [10, 9, 8, 7]
    assert ids(size="4", from_id="7") == [6, 5, 4, 3]
    assert ids(size="4", from_id="3", direction="forward") == [4, 5, 6, 7]
    assert ids(direction="forward") == list(range(1, 11))


def test_employee_paging_rejections(api: Api) -> None:
    assert errors_of(api.get("/employees/list", {"page[size]": "101"}), 400) == {
        "page": {"size": ["должно быть меньше или равно 100"]}
    }
    assert errors_of(api.get("/employees/list", {"page[direction]": "up"}), 400) == {
        "page": {"direction": ["должен быть одним из: reverse, forward"]}
    }
    assert "from_id" in errors_of(api.get("/employees/list", {"page[from_id]": "x"}), 400)["page"]
    assert len(api.get("/employees/list", {"page[size]": "100"}).json()) == 3


# -- rate limit, concurrency, clock --------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after(serve: Serve, clock: Clock) -> None:
    api = serve(seeded(clock, rate_limit_per_second=2))
    answers = [api.get("/issues/statuses") for _ in range(8)]
    assert [a.status_code for a in answers[:4]] == [200] * 4  # a burst of twice the rate passes
    limited = [a for a in answers if a.status_code == 429]
    assert limited and limited[0].headers["Retry-After"] == "1" and isinstance(limited[0].json()["errors"], str)


def test_concurrent_comments_all_land(
    api: Api, emulator: OkdeskEmulator, server: EmulatorServer, issue_id: int
) -> None:
    def post_many() -> None:
        client = Api(server.url)
        for n in range(10):
            client.post(f"/issues/{issue_id}/comments", {"comment": {"content": f"c{n}", "author_id": 2}})

    threads = [threading.Thread(target=post_many) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    comments = emulator.comments(issue_id)
    assert len(comments) == 60 and len({c["id"] for c in comments}) == 60


def test_timestamps_use_the_account_offset_with_milliseconds(clock: Clock) -> None:
    clock.now = datetime(2024, 8, 21, 7, 27, 53, 441999, tzinfo=UTC)
    emulator = seeded(clock, utc_offset="+07:00")
    issue = emulator.create_issue("x")
    assert emulator.issue(issue)["created_at"] == "2024-08-21T14:27:53.441+07:00"


def test_the_default_clock_is_real_time() -> None:
    emulator = OkdeskEmulator()
    before = datetime.now(UTC).replace(microsecond=0)
    created = datetime.fromisoformat(emulator.issue(emulator.create_issue("x"))["created_at"])
    assert before <= created <= datetime.now(UTC)


# -- human actions -------------------------------------------------------------------------------
def test_set_status_by_a_consultant(emulator: OkdeskEmulator, clock: Clock, issue_id: int) -> None:
    clock.advance(minutes=1)
    emulator.set_status(issue_id, "to_programmers", by_employee_id=COLLEAGUE, comment="Баг", comment_public=True)
    assert emulator.status_of(issue_id) == "to_programmers"
    [comment] = emulator.comments(issue_id)
    assert comment["author"]["id"] == COLLEAGUE and comment["public"]
    assert emulator.webhooks == [
        {"event_type": "new_ticket_status", "issue_id": issue_id, "new_status": "to_programmers"}
    ]
    assert emulator.issue(issue_id)["updated_at"] == "2024-08-21T14:28:53.441+03:00"


@pytest.mark.parametrize(
    "action",
    [
        lambda e, i: e.set_status(i, "opened", by_employee_id=1),
        lambda e, i: e.set_status(i, "nope", by_employee_id=1),
        lambda e, i: e.set_status(i, "closed", by_employee_id=FORMER),
        lambda e, i: e.set_status(999, "closed", by_employee_id=1),
        lambda e, i: e.add_comment(i, "x", author_id=99),
        lambda e, i: e.add_comment(i, " ", author_id=1),
        lambda e, i: e.add_comment(i, "x", author_id=1, author_type="robot"),
        lambda e, i: e.create_issue("x", priority="urgent"),
        lambda e, i: e.create_issue("x", status="nope"),
        lambda e, i: e.create_issue(""),
        lambda e, i: e.create_issue("x", company_id=99),
        lambda e, i: e.create_issue("x", author_employee_id=99),
        lambda e, i: e.create_issue("x", deadline_at=datetime(2024, 9, 1)),  # naive on purpose
        lambda e, i: e.add_employee("A", "B", id=1),
        lambda e, i: e.add_contact("A", "B", company_id=99),
        lambda e, i: e.add_company(""),
        lambda e, i: (e.delete_issue(i), e.delete_issue(i)),
    ],
)
def test_human_actions_reject_what_the_ui_would(emulator: OkdeskEmulator, issue_id: int, action: Any) -> None:
    with pytest.raises(ValueError):
        action(emulator, issue_id)


@pytest.mark.parametrize(
    "options",
    [
        {"utc_offset": "MSK"},
        {"statuses": []},
        {"statuses": [("a", "A"), ("a", "B")]},
        {"transitions": {"opened": {"nowhere"}}},
        {"time_entry_body": "nested"},
        {"rate_limit_per_second": 0},
    ],
)
def test_constructor_rejects_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        OkdeskEmulator(**options)


def test_ids_auto_increment_and_may_be_chosen(emulator: OkdeskEmulator) -> None:
    assert emulator.add_employee("A", "B", id=50) == 50
    assert emulator.add_employee("C", "D") == 51
    assert emulator.add_contact("E", "F") == 2 and emulator.add_company("G") == 2
