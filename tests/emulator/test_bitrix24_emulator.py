"""Contract tests for the Bitrix24 emulator, over real HTTP on loopback.

Each test states one behaviour of the classic REST API (reference: /work/shared/api/bitrix24.md)
that okbx-sync relies on or must survive, and checks it with plain `requests` calls, the way
the product's client talks to a real portal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from okbx_emulator.bitrix24 import Bitrix24Emulator
from okbx_emulator.http import EmulatorServer

START = datetime(2025, 10, 1, 9, 0, 0, tzinfo=UTC)
IVAN, MARIA, GONE = 503, 547, 600
SUPPORT, ARCHIVE = 17, 18


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


Call = Callable[..., requests.Response]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def _seeded(**options: Any) -> Bitrix24Emulator:
    portal = Bitrix24Emulator(**{"rate_per_second": None, **options})
    portal.add_user(IVAN, "Ivan", "Petrov", "ivan.petrov@example.com")
    portal.add_user(MARIA, "Maria", "Johnson", "maria@example.com")
    portal.add_user(GONE, "Fired", "Person", "gone@example.com", active=False)
    portal.add_group(SUPPORT, "Support")
    portal.add_group(ARCHIVE, "Old project", closed=True)
    return portal


@pytest.fixture
def portal(clock: FakeClock) -> Bitrix24Emulator:
    return _seeded(clock=clock)


@pytest.fixture
def serve() -> Iterator[Callable[[Bitrix24Emulator], Call]]:
    """Serves any emulator and returns `call(method, json=..., **requests kwargs)`."""
    servers: list[EmulatorServer] = []
    session = requests.Session()

    def start(emulator: Bitrix24Emulator) -> Call:
        server = EmulatorServer(emulator).start()
        servers.append(server)

        def call(method: str, json: Any = None, *, http: str = "POST", **kwargs: Any) -> requests.Response:
            url = server.url + emulator.webhook_path + method
            body = {} if json is None and http == "POST" and "data" not in kwargs else json
            return session.request(http, url, json=body, timeout=5, **kwargs)

        return call

    yield start
    for server in servers:
        server.stop()
    session.close()


@pytest.fixture
def api(serve: Callable[[Bitrix24Emulator], Call], portal: Bitrix24Emulator) -> Call:
    return serve(portal)


def ok(response: requests.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["result"]


def fails(response: requests.Response, status: int, code: str, text: str = "") -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code, body
    assert text in body["error_description"], body
    return str(body["error_description"])


def add_task(api: Call, **fields: Any) -> int:
    payload = {"TITLE": "[OKD-4711] Printer jammed", "RESPONSIBLE_ID": IVAN, **fields}
    return int(ok(api("tasks.task.add", {"fields": payload}))["task"]["id"])


# -- authentication, routing, envelope -------------------------------------------------------


def test_a_wrong_webhook_secret_or_user_is_refused(portal: Bitrix24Emulator) -> None:
    with EmulatorServer(portal) as server:
        for path in ("/rest/1/wrong-secret/scope", "/rest/2/demo-webhook-secret/scope"):
            fails(
                requests.post(server.url + path, json={}, timeout=5),
                401,
                "NO_AUTH_FOUND",
                "Wrong authorization",
            )


def test_unknown_methods_and_rest_v3_paths_answer_method_not_found(api: Call, portal: Bitrix24Emulator) -> None:
    fails(api("tasks.task.frobnicate"), 404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
    with EmulatorServer(portal) as server:
        url = f"{server.url}/rest/api/1/{portal.secret}/tasks.task.chat.message.send"
        fails(requests.post(url, json={}, timeout=5), 404, "ERROR_METHOD_NOT_FOUND")


def test_a_method_outside_the_webhook_scopes_is_forbidden(serve: Callable[[Bitrix24Emulator], Call]) -> None:
    api = serve(_seeded(scopes=("task",)))
    fails(api("user.get", {"FILTER": {"ID": IVAN}}), 403, "insufficient_scope")
    assert ok(api("scope")) == ["task"]


def test_success_answers_carry_the_time_block_and_string_values(api: Call) -> None:
    body = api("tasks.task.add.json", {"fields": {"TITLE": "x", "RESPONSIBLE_ID": IVAN}}).json()
    expected = "start finish duration processing date_start date_finish operating_reset_at operating"
    assert set(body["time"]) == set(expected.split())
    assert body["time"]["date_start"] == "2025-10-01T12:00:00+03:00"
    task = body["result"]["task"]
    assert task["id"] == "1" and task["status"] == "2" and task["responsibleId"] == str(IVAN)


def test_the_request_log_names_operations_without_the_json_suffix(portal: Bitrix24Emulator) -> None:
    with EmulatorServer(portal) as server:
        requests.post(server.url + portal.webhook_path + "Tasks.Task.List.json", json={}, timeout=5)
        assert server.count("tasks.task.list") == 1


def test_php_array_syntax_works_in_query_strings_and_form_bodies(api: Call, portal: Bitrix24Emulator) -> None:
    first, second = add_task(api), add_task(api, XML_ID="okdesk:2")
    query = {
        "filter[ID][]": [str(first), str(second)],
        "filter[XML_ID]": "okdesk:2",
        "select[]": ["ID", "XML_ID"],
    }
    assert ok(api("tasks.task.list", None, http="GET", params=query))["tasks"][0]["id"] == str(second)
    form = {"TASKID": str(first), "FIELDS[POST_MESSAGE]": "from a form"}
    assert isinstance(ok(api("task.commentitem.add", None, data=form)), int)
    assert [c["POST_MESSAGE"] for c in portal.comments(first)] == ["from a form"]


def test_an_unreadable_json_body_is_a_bad_request(api: Call) -> None:
    response = api("scope", None, data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


# -- tasks.task.add ------------------------------------------------------------------------------


def test_add_stores_the_documented_fields_and_answers_camel_case_strings(api: Call, portal: Bitrix24Emulator) -> None:
    fields = {
        "TITLE": "[OKD-4711] Printer jammed",
        "DESCRIPTION": "[URL=https://acme.okdesk.ru/issues/4711]Open[/URL]",
        "RESPONSIBLE_ID": str(IVAN),
        "CREATED_BY": MARIA,
        "GROUP_ID": SUPPORT,
        "DEADLINE": "2025-12-31T18:00:00+03:00",
        "PRIORITY": 2,
        "TAGS": ["okdesk"],
        "XML_ID": "okdesk:4711",
        "UF_OKDESK_ISSUE_ID": "4711",
        "NOT_A_FIELD": "ignored",
    }
    task = ok(api("tasks.task.add", {"fields": fields}))["task"]
    assert task["title"] == fields["TITLE"] and task["description"] == fields["DESCRIPTION"]
    assert (task["createdBy"], task["groupId"], task["priority"]) == (str(MARIA), str(SUPPORT), "2")
    assert task["xmlId"] == "okdesk:4711" and task["closedDate"] is None
    assert task["deadline"] == "2025-12-31T18:00:00+03:00"
    assert task["group"]["name"] == "Support" and "ufOkdeskIssueId" not in task  # custom fields need select
    stored = portal.task(int(task["id"]))
    assert stored is not None and stored["UF_OKDESK_ISSUE_ID"] == "4711" and "NOT_A_FIELD" not in stored


def test_add_defaults_the_creator_to_the_webhook_user(api: Call) -> None:
    task = ok(api("tasks.task.add", {"fields": {"TITLE": "x", "RESPONSIBLE_ID": IVAN}}))["task"]
    assert task["createdBy"] == "1" and task["xmlId"] is None and task["group"] == []


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"RESPONSIBLE_ID": IVAN}, "Task title is not specified<br>"),
        ({"TITLE": "  "}, "Task title is not specified"),
        ({"TITLE": "x"}, "Responsible person not specified"),
        ({"TITLE": "x", "RESPONSIBLE_ID": 999}, 'User specified in the "Responsible" field not found'),
        ({"TITLE": "x", "RESPONSIBLE_ID": GONE}, 'User specified in the "Responsible" field not found'),
        ({"TITLE": "x", "RESPONSIBLE_ID": IVAN, "CREATED_BY": 999}, "Created by"),
        ({"TITLE": "x", "RESPONSIBLE_ID": IVAN, "GROUP_ID": 99}, "Workgroup"),
        ({"TITLE": "x", "RESPONSIBLE_ID": IVAN, "GROUP_ID": ARCHIVE}, "Workgroup"),
        ({"TITLE": "x", "RESPONSIBLE_ID": IVAN, "DEADLINE": "next friday-ish"}, "DEADLINE"),
        ({"TITLE": "x", "RESPONSIBLE_ID": IVAN, "PRIORITY": 7}, "priority"),
        ({"TITLE": "x", "RESPONSIBLE_ID": IVAN, "PARENT_ID": 999}, "Parent Task"),
    ],
)
def test_add_refuses_invalid_fields(api: Call, portal: Bitrix24Emulator, fields: dict[str, Any], text: str) -> None:
    fails(api("tasks.task.add", {"fields": fields}), 400, "ERROR_CORE", text)
    assert portal.tasks() == []


def test_add_without_fields_is_an_internal_error(api: Call) -> None:
    fails(api("tasks.task.add", {"FIELDS": {"TITLE": "x"}}), 400, "100", "{fields}")


# -- tasks.task.get --------------------------------------------------------------------------------


def test_get_of_a_missing_or_deleted_task_is_an_empty_array(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api)
    portal.delete_task(task_id)
    assert ok(api("tasks.task.get", {"taskId": task_id})) == []
    assert ok(api("tasks.task.get", {"taskId": 4242})) == []


def test_update_sets_the_deadline_with_its_offset_and_answers_the_task(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api)
    task = ok(api("tasks.task.update", {"taskId": task_id, "fields": {"DEADLINE": "2026-12-24T18:00:00+03:00"}}))[
        "task"
    ]
    assert task["id"] == str(task_id) and task["deadline"] == "2026-12-24T18:00:00+03:00"
    assert portal.task(task_id)["DEADLINE"] == datetime(2026, 12, 24, 15, 0, tzinfo=UTC)


def test_update_refuses_empty_fields_and_tasks_out_of_reach(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api)
    fails(api("tasks.task.update", {"taskId": task_id, "fields": {}}), 400, "100", "Could not find value")
    fails(api("tasks.task.update", {"taskId": task_id}), 400, "100", "Could not find value")
    portal.delete_task(task_id)
    fails(api("tasks.task.update", {"taskId": task_id, "fields": {"TITLE": "x"}}), 400, "0", "not allowed")


def test_get_rejects_a_bad_or_missing_task_id(api: Call) -> None:
    fails(api("tasks.task.get", {"taskId": "abc"}), 400, "0", "wrong task id")
    fails(api("tasks.task.get", {"taskId": 1.5}), 400, "0", "wrong task id")
    fails(api("tasks.task.get", {"TASKID": 1}), 400, "100")
    fails(api("tasks.task.get", {"taskId": 1, "select": "ID"}), 400, "100", "{select}")


def test_get_with_select_answers_real_status_time_spent_and_custom_fields(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api, UF_OKDESK_ISSUE_ID="4711")
    portal.log_time(task_id, IVAN, 3600)
    portal.log_time(task_id, MARIA, 363)
    select = ["ID", "STATUS", "TIME_SPENT_IN_LOGS", "UF_OKDESK_ISSUE_ID", "CHAT_ID", "NO_SUCH_FIELD"]
    task = ok(api("tasks.task.get", {"taskId": str(task_id), "select": select}))["task"]
    assert task["status"] == "2" and task["timeSpentInLogs"] == "3963" and task["ufOkdeskIssueId"] == "4711"
    assert "chatId" not in task and "noSuchField" not in task  # no task chat on the old card


def test_new_card_tasks_have_a_chat_id(serve: Callable[[Bitrix24Emulator], Call]) -> None:
    api = serve(_seeded(new_task_card=True))
    task_id = add_task(api)
    assert isinstance(ok(api("tasks.task.get", {"taskId": task_id, "select": ["CHAT_ID"]}))["task"]["chatId"], int)


# -- tasks.task.list -------------------------------------------------------------------------------


def test_list_filters_by_change_date_ids_status_group_xml_id_and_title(
    api: Call, portal: Bitrix24Emulator, clock: FakeClock
) -> None:
    old = add_task(api, XML_ID="okdesk:1", TITLE="[OKD-1] Printer")
    clock.advance(3600)
    fresh = add_task(api, XML_ID="okdesk:2", GROUP_ID=SUPPORT, TITLE="[OKD-2] Scanner")
    done = add_task(api, XML_ID="okdesk:3")
    portal.complete_task(done)

    def ids(filters: dict[str, Any]) -> list[int]:
        body = {"filter": filters, "select": ["ID"], "order": {"ID": "asc"}}
        return [int(t["id"]) for t in ok(api("tasks.task.list", body))["tasks"]]

    assert ids({">=CHANGED_DATE": "2025-10-01T12:30:00+03:00"}) == [fresh, done]
    assert ids({"<CHANGED_DATE": "2025-10-01 12:30:00"}) == [old]  # no offset: portal time
    assert ids({"ID": [old, str(done)]}) == [old, done]
    assert ids({"!REAL_STATUS": 5}) == [old, fresh]
    assert ids({"REAL_STATUS": [5, 6]}) == [done] == ids({"STATUS": 5})
    assert ids({"GROUP_ID": SUPPORT}) == [fresh]
    assert ids({"XML_ID": "okdesk:2"}) == [fresh] and ids({"XML_ID": "okdesk"}) == []
    assert ids({"%TITLE": "scan"}) == [fresh] and ids({"TITLE": "[OKD-1]%"}) == [old]
    assert ids({">ID": old, "::SUBFILTER-PARAMS": {"FAVORITE": "Y"}, "NO_SUCH_FIELD": 1}) == [fresh, done]
    fails(api("tasks.task.list", {"filter": {">=CHANGED_DATE": "yesterday-ish"}}), 400, "ERROR_CORE")


def test_list_answers_status_and_sub_status_for_an_overdue_task(api: Call, clock: FakeClock) -> None:
    task_id = add_task(api, DEADLINE="2025-10-01T13:00:00+03:00")
    clock.advance(7200)
    task = ok(api("tasks.task.list", {"filter": {"STATUS": -1}, "select": ["ID", "STATUS"]}))["tasks"][0]
    assert (task["id"], task["status"], task["subStatus"]) == (str(task_id), "2", "-1")


def test_list_pages_by_fifty_with_next_and_total(api: Call, portal: Bitrix24Emulator) -> None:
    for number in range(120):
        portal.create_task(f"task {number}", responsible_id=IVAN)
    body = {"order": {"ID": "asc"}, "select": ["ID"]}
    first = api("tasks.task.list", {**body, "start": 0}).json()
    assert (len(first["result"]["tasks"]), first["next"], first["total"]) == (50, 50, 120)
    last = api("tasks.task.list", {**body, "start": 100}).json()
    assert len(last["result"]["tasks"]) == 20 and "next" not in last and last["total"] == 120
    fast = api("tasks.task.list", {**body, "filter": {">ID": 60}, "start": -1}).json()
    assert fast["result"]["tasks"][0]["id"] == "61" and "total" not in fast and "next" not in fast


def test_list_orders_by_allowed_keys_only(api: Call) -> None:
    first, second = add_task(api), add_task(api)
    tasks = ok(api("tasks.task.list", {"select": ["ID"]}))["tasks"]
    assert [t["id"] for t in tasks] == [str(second), str(first)]  # default: ID descending
    fails(api("tasks.task.list", {"order": {"XML_ID": "asc"}}), 400, "0", "Invalid sorting key")


# -- status methods -----------------------------------------------------------------------------------


def test_complete_and_renew_move_status_dates_and_log_system_comments(
    api: Call, portal: Bitrix24Emulator, clock: FakeClock
) -> None:
    task_id = add_task(api)
    clock.advance(60)
    task = ok(api("tasks.task.complete", {"taskId": task_id}))["task"]
    assert task["status"] == "5" and task["closedDate"] == task["changedDate"] == "2025-10-01T12:01:00+03:00"
    assert task["action"]["renew"] is True and task["action"]["complete"] is False
    clock.advance(60)
    task = ok(api("tasks.task.renew", {"taskId": task_id}))["task"]
    assert task["status"] == "2" and task["closedDate"] is None and task["changedDate"].endswith("12:02:00+03:00")
    system = [c["POST_MESSAGE"] for c in portal.comments(task_id) if c["SYSTEM"]]
    assert system == ["Task completed", "Task renewed"]


def test_start_and_defer(api: Call) -> None:
    task_id = add_task(api)
    assert ok(api("tasks.task.start", {"taskId": task_id}))["task"]["status"] == "3"
    assert ok(api("tasks.task.defer", {"taskId": task_id}))["task"]["status"] == "6"


def test_status_methods_refuse_missing_tasks_and_disallowed_transitions(api: Call) -> None:
    task_id = add_task(api)
    fails(api("tasks.task.complete", {"taskId": 999}), 400, "0", "Action on the task is not allowed")
    fails(api("tasks.task.renew", {"taskId": task_id}), 400, "1048582", "Action on the task is not allowed")
    fails(api("tasks.task.complete", {"taskId": "x"}), 400, "0", "wrong task id")
    ok(api("tasks.task.complete", {"taskId": task_id}))
    fails(api("tasks.task.complete", {"taskId": task_id}), 400, "0")


def test_lenient_transitions_make_status_methods_idempotent(
    serve: Callable[[Bitrix24Emulator], Call],
) -> None:
    api = serve(_seeded(strict_status_transitions=False))
    task_id = add_task(api)
    assert ok(api("tasks.task.renew", {"taskId": task_id}))["task"]["status"] == "2"


def test_comments_and_time_records_do_not_bump_changed_date(
    api: Call, portal: Bitrix24Emulator, clock: FakeClock
) -> None:
    task_id = add_task(api)
    clock.advance(600)
    ok(api("task.commentitem.add", {"TASKID": task_id, "FIELDS": {"POST_MESSAGE": "hello"}}))
    ok(api("task.elapseditem.add", {"TASKID": task_id, "ARFIELDS": {"SECONDS": 60, "COMMENT_TEXT": "x"}}))
    task = ok(api("tasks.task.get", {"taskId": task_id, "select": ["CHANGED_DATE"]}))["task"]
    assert task["changedDate"] == "2025-10-01T12:00:00+03:00"


# -- task.commentitem.* ----------------------------------------------------------------------------------


def test_comment_add_takes_positional_values_and_answers_an_int_id(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api)
    fields = {
        "POST_MESSAGE": "[B]Okdesk[/B]: hi",
        "AUTHOR_ID": IVAN,
        "POST_DATE": "2025-10-01T10:00:00+02:00",
    }
    comment_id = ok(api("task.commentitem.add", {"TASKID": str(task_id), "FIELDS": fields}))
    assert isinstance(comment_id, int)
    assert ok(api("task.commentitem.add", {"whatever": task_id, "names": {"POST_MESSAGE": "names ignored"}}))
    stored = portal.comments(task_id)[0]
    assert stored["AUTHOR_ID"] == IVAN and stored["POST_DATE"] == datetime(2025, 10, 1, 8, 0, tzinfo=UTC)


def test_an_extra_key_in_front_shifts_the_task_id_and_is_refused(api: Call) -> None:
    task_id = add_task(api)
    body = {"__order": "order0000000000", "TASKID": task_id, "FIELDS": {"POST_MESSAGE": "hi"}}
    fails(
        api("task.commentitem.add", body),
        400,
        "ERROR_CORE",
        'Param #0 (taskId) for method ctaskcommentitem::add() expected to be of type "integer", '
        "but given something else.",
    )


def test_an_extra_trailing_argument_is_refused_unless_lenient(
    serve: Callable[[Bitrix24Emulator], Call],
) -> None:
    body = {"TASKID": 1, "FIELDS": {"POST_MESSAGE": "hi"}, "requestId": "abc"}
    strict = serve(_seeded())
    add_task(strict)
    fails(strict("task.commentitem.add", body), 400, "ERROR_CORE", "Too much params(3)")
    lenient = serve(_seeded(reject_extra_positional_args=False))
    add_task(lenient)
    assert isinstance(ok(lenient("task.commentitem.add", body)), int)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"TASKID": 1}, "Param #1 (arFields) expected by method ctaskcommentitem::add(), but not given."),
        (
            {"TASKID": 1, "FIELDS": "hi"},
            'Param #1 (arFields) for method ctaskcommentitem::add() expected to be of type "array"',
        ),
        ({"TASKID": 1, "FIELDS": {"POST_MESSAGE": "hi", "TASK_ID": 1}}, 'must not contain key "TASK_ID"'),
        ({"TASKID": 1, "FIELDS": {"POST_MESSAGE": ""}}, "Comment text not specified"),
        ({"TASKID": 1, "FIELDS": {"AUTHOR_ID": IVAN}}, "Comment text not specified"),
        ({"TASKID": 1, "FIELDS": {"POST_MESSAGE": "hi", "AUTHOR_ID": 999}}, "User not found"),
        ({"TASKID": 99, "FIELDS": {"POST_MESSAGE": "hi"}}, "Insufficient permissions to add a comment."),
    ],
)
def test_comment_add_refusals(api: Call, body: dict[str, Any], text: str) -> None:
    add_task(api)
    fails(api("task.commentitem.add", body), 400, "ERROR_CORE", text)


def test_comment_add_still_works_on_the_new_card(serve: Callable[[Bitrix24Emulator], Call]) -> None:
    api = serve(_seeded(new_task_card=True))
    task_id = add_task(api)
    assert isinstance(ok(api("task.commentitem.add", {"TASKID": task_id, "FIELDS": {"POST_MESSAGE": "x"}})), int)


def test_comment_getlist_answers_upper_snake_strings_filtered_and_ordered(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api)
    first = portal.add_comment(task_id, IVAN, "first")
    second = portal.add_comment(task_id, MARIA, "second")
    comments = ok(api("task.commentitem.getlist", {"TASKID": task_id}))
    assert [c["ID"] for c in comments] == [str(second), str(first)]  # default: ID descending
    assert comments[1] == {
        "POST_MESSAGE_HTML": None, "ID": str(first), "AUTHOR_ID": str(IVAN), "AUTHOR_NAME": "Ivan Petrov",
        "AUTHOR_EMAIL": "ivan.petrov@example.com", "POST_DATE": "2025-10-01T12:00:00+03:00",
        "POST_MESSAGE": "first", "ATTACHED_OBJECTS": [],
    }  # fmt: skip
    newer = ok(api("task.commentitem.getlist", {"TASKID": task_id, "ORDER": {"ID": "asc"}, "FILTER": {">ID": first}}))
    assert [c["POST_MESSAGE"] for c in newer] == ["second"]
    by_author = ok(api("task.commentitem.getlist", {"TASKID": task_id, "ORDER": [""], "FILTER": {"AUTHOR_ID": IVAN}}))
    assert [c["ID"] for c in by_author] == [str(first)]


def test_comment_getlist_refuses_misordered_arguments_and_missing_tasks(api: Call) -> None:
    task_id = add_task(api)
    swapped = {"TASKID": task_id, "FILTER": {">=POST_DATE": "2025-01-01"}}  # filter where ORDER belongs
    fails(api("task.commentitem.getlist", swapped), 400, "ERROR_CORE", "Param #1 (arOrder) for method")
    bad_prefix = {"TASKID": task_id, "ORDER": {}, "FILTER": {"%POST_DATE": "2025"}}
    fails(api("task.commentitem.getlist", bad_prefix), 400, "ERROR_CORE", 'must not contain key "%POST_DATE"')
    fails(api("task.commentitem.getlist", {"TASKID": 99}), 400, "ERROR_CORE", "ACTION_FAILED_TO_BE_PROCESSED")


def test_comment_getlist_does_not_work_on_the_new_card(serve: Callable[[Bitrix24Emulator], Call]) -> None:
    api = serve(_seeded(new_task_card=True))
    task_id = add_task(api)
    fails(api("task.commentitem.getlist", {"TASKID": task_id}), 400, "ERROR_CORE")


# -- task.elapseditem.* --------------------------------------------------------------------------------


def test_elapsed_add_answers_an_int_id_and_feeds_time_spent(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api)
    fields = {"SECONDS": 3600, "COMMENT_TEXT": "from Okdesk", "USER_ID": IVAN, "CREATED_DATE": "2025-09-30"}
    item_id = ok(api("task.elapseditem.add", {"TASKID": task_id, "ARFIELDS": fields}))
    assert isinstance(item_id, int)
    item = portal.elapsed(task_id)[0]
    assert (item["SECONDS"], item["MINUTES"], item["USER_ID"]) == (3600, 60, IVAN)
    spent = ok(api("tasks.task.get", {"taskId": task_id, "select": ["TIME_SPENT_IN_LOGS"]}))["task"]
    assert spent["timeSpentInLogs"] == "3600"


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"TASKID": 1, "ARFIELDS": {"SECONDS": 60, "MINUTES": 1}}, 'must not contain key "MINUTES"'),
        ({"TASKID": 1, "ARFIELDS": {"COMMENT_TEXT": "no time"}}, "ACTION_FAILED"),
        ({"TASKID": 99, "ARFIELDS": {"SECONDS": 60}}, "TASK_NOT_FOUND"),
        ({"ARFIELDS": {"SECONDS": 60}, "TASKID": 1}, "Param #0 (taskId)"),
    ],
)
def test_elapsed_add_refusals(api: Call, body: dict[str, Any], text: str) -> None:
    add_task(api)
    fails(api("task.elapseditem.add", body), 400, "ERROR_CORE", text)


@pytest.fixture
def logged(api: Call, portal: Bitrix24Emulator) -> tuple[int, int]:
    """Two tasks: the first with 60 time records, the second with 5."""
    busy, quiet = add_task(api), add_task(api)
    for _ in range(60):
        portal.log_time(busy, IVAN, 60)
    for _ in range(5):
        portal.log_time(quiet, MARIA, 120)
    return busy, quiet


def test_elapsed_getlist_for_one_task_returns_every_row(api: Call, logged: tuple[int, int]) -> None:
    body = api("task.elapseditem.getlist", {"TASKID": logged[0], "ORDER": {"ID": "asc"}}).json()
    assert len(body["result"]) == 60 and body["total"] == 60
    row = body["result"][0]
    assert row["TASK_ID"] == str(logged[0]) and row["SECONDS"] == "60" and row["MINUTES"] == "1"


def test_elapsed_getlist_without_a_task_id_returns_only_the_first_fifty(api: Call, logged: tuple[int, int]) -> None:
    body = api("task.elapseditem.getlist", [{"ID": "asc"}, {}]).json()  # first value an array: TASKID=0 inserted
    assert len(body["result"]) == 50 and body["total"] == 65
    named = api("task.elapseditem.getlist", {"ORDER": {"ID": "desc"}, "FILTER": {"TASK_ID": [logged[1]]}}).json()
    assert [r["TASK_ID"] for r in named["result"]] == [str(logged[1])] * 5
    explicit_zero = api("task.elapseditem.getlist", {"TASKID": 0, "ORDER": {}, "FILTER": {">ID": 60}}).json()
    assert [r["ID"] for r in explicit_zero["result"]] == ["61", "62", "63", "64", "65"]


def test_elapsed_getlist_pages_with_nav_params_capped_at_fifty(api: Call, logged: tuple[int, int]) -> None:
    def page(number: int) -> list[dict[str, str]]:
        nav = {"NAV_PARAMS": {"nPageSize": 100, "iNumPage": number}}
        args = {"TASKID": 0, "ORDER": {"ID": "asc"}, "FILTER": {}, "SELECT": ["ID", "SECONDS"], "PARAMS": nav}
        return list(ok(api("task.elapseditem.getlist", args)))

    first, second = page(1), page(2)
    assert len(first) == 50 and len(second) == 15 and second[0] == {"ID": "51", "SECONDS": "60"}


def test_elapsed_getlist_refusals(api: Call, logged: tuple[int, int]) -> None:
    six = [logged[0], {}, {}, [], {}, {"extra": 1}]
    fails(api("task.elapseditem.getlist", six), 400, "ERROR_CORE", "Too much params(6)")
    fails(api("task.elapseditem.getlist", {"__order": "x", "TASKID": 1}), 400, "ERROR_CORE", "Param #0 (taskId)")
    fails(
        api("task.elapseditem.getlist", [1, {}, {"COMMENT_TEXT": "x"}]),
        400,
        "ERROR_CORE",
        "Param #2 (filter)",
    )
    fails(
        api("task.elapseditem.getlist", [1, {}, {}, ["NOPE"]]),
        400,
        "ERROR_CORE",
        'must not contain value "NOPE"',
    )
    fails(api("task.elapseditem.getlist", [999, {}]), 400, "ERROR_CORE", "TASK_NOT_FOUND")


# -- batch ----------------------------------------------------------------------------------------------


def test_batch_runs_commands_and_reports_results_errors_totals_and_times(api: Call) -> None:
    task_id = add_task(api)
    commands = {
        "get": f"tasks.task.get?taskId={task_id}&select[]=ID&select[]=STATUS",
        "comment": f"task.commentitem.add?TASKID={task_id}&FIELDS[POST_MESSAGE]=Hello%20world",
        "list": "tasks.task.list?filter[>=CHANGED_DATE]=2025-10-01T00:00:00%2B03:00&select[]=ID",
        "missing": "tasks.task.get?taskId=abc",
        "users": "user.get?FILTER[EMAIL]=ivan.petrov%40example.com",
    }
    response = api("batch", {"halt": 0, "cmd": commands})
    batch = ok(response)
    assert batch["result"]["get"]["task"]["status"] == "2"
    assert isinstance(batch["result"]["comment"], int)
    assert [t["id"] for t in batch["result"]["list"]["tasks"]] == [str(task_id)]
    assert batch["result"]["users"][0]["ID"] == str(IVAN)
    assert batch["result_error"] == {"missing": {"error": "0", "error_description": "wrong task id"}}
    assert batch["result_total"] == {"list": 1, "users": 1} and batch["result_next"] == []
    assert set(batch["result_time"]) == set(commands)


def test_batch_of_more_than_fifty_commands_is_refused(api: Call) -> None:
    commands = {f"c{i}": "scope" for i in range(51)}
    fails(api("batch", {"cmd": commands}), 400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")


def test_nested_batch_and_unknown_methods_fail_per_command(api: Call) -> None:
    batch = ok(api("batch", {"cmd": {"inner": "batch?cmd[a]=scope", "typo": "tasks.task.gett?taskId=1"}}))
    assert batch["result_error"]["inner"]["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert batch["result_error"]["typo"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert batch["result"] == [] and batch["result_time"] == []


def test_numeric_command_keys_turn_result_maps_into_lists(api: Call) -> None:
    task_id = add_task(api)
    batch = ok(api("batch", {"cmd": {"0": f"tasks.task.get?taskId={task_id}", "1": "scope"}}))
    assert isinstance(batch["result"], list) and batch["result"][1] == [
        "task",
        "tasks",
        "user",
        "sonet",
        "im",
    ]


def test_halt_stops_at_the_first_error(api: Call, portal: Bitrix24Emulator) -> None:
    task_id = add_task(api)
    commands = {
        "bad": "tasks.task.get?taskId=nope",
        "later": f"task.commentitem.add?TASKID={task_id}&FIELDS[POST_MESSAGE]=never",
    }
    batch = ok(api("batch", {"halt": 1, "cmd": commands}))
    assert list(batch["result_error"]) == ["bad"] and batch["result"] == []
    assert portal.comments(task_id) == []


def test_positional_methods_in_batch_keep_query_order(api: Call) -> None:
    task_id = add_task(api)
    good = f"task.commentitem.add?TASKID={task_id}&FIELDS[POST_MESSAGE]=hi"
    shifted = f"task.commentitem.add?__order=order0000000000&TASKID={task_id}&FIELDS[POST_MESSAGE]=hi"
    batch = ok(api("batch", {"cmd": {"good": good, "shifted": shifted}}))
    assert isinstance(batch["result"]["good"], int)
    assert "Param #0 (taskId)" in batch["result_error"]["shifted"]["error_description"]


# -- users, groups, misc ----------------------------------------------------------------------------------


def test_user_get_filters_by_exact_email_lists_and_activity(api: Call) -> None:
    body = api("user.get", {"FILTER": {"EMAIL": "ivan.petrov@example.com", "ACTIVE": True}}).json()
    assert body["result"] == [
        {
            "ID": str(IVAN), "ACTIVE": True, "NAME": "Ivan", "LAST_NAME": "Petrov",
            "EMAIL": "ivan.petrov@example.com", "USER_TYPE": "employee",
        }
    ] and body["total"] == 1  # fmt: skip
    assert ok(api("user.get", {"FILTER": {"EMAIL": "Ivan.Petrov@example.com"}})) == []
    many = ok(api("user.get", {"FILTER": {"@EMAIL": ["maria@example.com", "gone@example.com"]}}))
    assert [u["ID"] for u in many] == [str(MARIA), str(GONE)] and many[1]["ACTIVE"] is False
    assert [u["ID"] for u in ok(api("user.get", {"FILTER": {"@EMAIL": ["gone@example.com"], "ACTIVE": True}}))] == []
    assert [u["NAME"] for u in ok(api("user.get", {"ID": MARIA}))] == ["Maria"]


def test_sonet_group_get_reports_active_and_closed_flags(api: Call) -> None:
    groups = ok(api("sonet_group.get", {"FILTER": {"ID": ARCHIVE}, "IS_ADMIN": "Y"}))
    assert groups == [
        {
            "ID": str(ARCHIVE), "NAME": "Old project", "ACTIVE": "Y", "CLOSED": "Y", "PROJECT": "N",
            "OPENED": "N", "VISIBLE": "Y", "OWNER_ID": "1", "DESCRIPTION": "",
        }
    ]  # fmt: skip
    assert ok(api("sonet_group.get", {"FILTER": {"ID": 12345}})) == []


def test_scope_and_server_time(api: Call) -> None:
    assert ok(api("scope")) == ["task", "tasks", "user", "sonet", "im"]
    assert ok(api("server.time")) == "2025-10-01T12:00:00+03:00"


# -- limits ------------------------------------------------------------------------------------------------


def test_the_leaky_bucket_refuses_bursts_and_drains_over_time(
    serve: Callable[[Bitrix24Emulator], Call],
) -> None:
    clock = FakeClock(START)
    api = serve(_seeded(clock=clock, rate_per_second=2.0, bucket_size=3))
    statuses = [api("scope").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 503]
    fails(api("scope"), 503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
    clock.advance(1)  # drains two requests
    assert [api("scope").status_code for _ in range(3)] == [200, 200, 503]
    clock.advance(10)
    commands = {f"c{i}": "scope" for i in range(50)}
    assert api("batch", {"cmd": commands}).status_code == 200  # a batch is one request
    assert [api("scope").status_code for _ in range(2)] == [200, 200]


def test_the_operating_limit_blocks_one_method_until_its_window_passes(
    serve: Callable[[Bitrix24Emulator], Call],
) -> None:
    clock = FakeClock(START)
    api = serve(_seeded(clock=clock, operating_limit_seconds=0.1, operating_cost_seconds=0.05))
    task_id = add_task(api)
    times = [api("tasks.task.get", {"taskId": task_id}).json()["time"] for _ in range(3)]
    assert [t["operating"] for t in times] == [0.05, 0.1, 0.15]  # the call crossing the limit still runs
    assert times[0]["operating_reset_at"] == int(START.timestamp()) + 600
    fails(api("tasks.task.get", {"taskId": task_id}), 429, "OPERATION_TIME_LIMIT", "operation time limit")
    assert api("tasks.task.list", {}).status_code == 200  # other methods keep their own budget
    batch = ok(api("batch", {"cmd": {"again": f"tasks.task.get?taskId={task_id}"}}))
    assert batch["result_error"]["again"]["error"] == "OPERATION_TIME_LIMIT"
    clock.advance(601)
    assert api("tasks.task.get", {"taskId": task_id}).status_code == 200


def test_batch_commands_are_charged_to_their_own_methods(serve: Callable[[Bitrix24Emulator], Call]) -> None:
    api = serve(_seeded(clock=FakeClock(START), operating_limit_seconds=0.1, operating_cost_seconds=0.05))
    task_id = add_task(api)
    commands = {f"g{i}": f"tasks.task.get?taskId={task_id}" for i in range(3)}
    batch = api("batch", {"cmd": commands}).json()
    assert batch["time"]["operating"] == 0  # the outer batch is not counted
    assert batch["result"]["result_time"]["g2"]["operating"] == 0.15
    fails(api("tasks.task.get", {"taskId": task_id}), 429, "OPERATION_TIME_LIMIT")


# -- seeding API ---------------------------------------------------------------------------------------------


def test_seeding_helpers_validate_like_the_api(portal: Bitrix24Emulator) -> None:
    with pytest.raises(ValueError, match="Responsible"):
        portal.create_task("x", responsible_id=GONE)
    task_id = portal.create_task("x", responsible_id=IVAN, group_id=SUPPORT)
    stored = portal.task(task_id)
    assert stored is not None and stored["CREATED_BY"] == IVAN and stored["STATUS"] == 2
    with pytest.raises(ValueError):
        portal.add_comment(task_id, 999, "who?")
    with pytest.raises(ValueError):
        portal.log_time(task_id, IVAN, 0)
    with pytest.raises(ValueError):
        portal.complete_task(999)
    portal.complete_task(task_id)
    done = portal.task(task_id)
    assert done is not None and done["STATUS"] == 5 and done["CLOSED_DATE"] == START
    portal.renew_task(task_id)
    renewed = portal.task(task_id)
    assert renewed is not None and renewed["STATUS"] == 2 and renewed["CLOSED_DATE"] is None
    portal.delete_task(task_id)
    assert portal.task(task_id) is None and portal.tasks() == [] and portal.comments(task_id) == []
