"""Pure parsers against answers recorded in ../shared/api/{okdesk,bitrix24}.md, plus the small
wire helpers: PHP query strings, Okdesk error bodies and the client-side throttle."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from okbx_sync.clients.bitrix24 import php_query
from okbx_sync.clients.bitrix24_parse import (
    parse_comments as parse_task_comments,
)
from okbx_sync.clients.bitrix24_parse import (
    parse_elapsed,
    parse_new_id,
    parse_task,
    parse_task_get,
    parse_task_list,
)
from okbx_sync.clients.http import flatten_errors
from okbx_sync.clients.limits import Throttle
from okbx_sync.clients.okdesk_parse import (
    parse_comment,
    parse_comments,
    parse_issue,
    parse_issue_list,
    parse_statuses,
    parse_time_entries,
)
from okbx_sync.clients.parse import ParseError
from okbx_sync.model import ElapsedItem, Task, TaskComment, TimeEntry

PLUS7 = timezone(timedelta(hours=7))
PLUS3 = timezone(timedelta(hours=3))
PLUS2 = timezone(timedelta(hours=2))

# -- Okdesk samples (okdesk.md §2b, §3, §5, §6) ----------------------------------------------------
OKDESK_LIST = json.loads("""
[
  {
    "id": 13,
    "title": "Printer does not work",
    "created_at": "2024-08-21T14:27:53.441+07:00",
    "updated_at": "2024-08-22T09:10:00.000+07:00",
    "completed_at": null,
    "deadline_at": "2024-08-26T19:40:01.000+07:00",
    "planned_reaction_at": "2024-08-21T16:27:00.000+07:00",
    "reacted_at": "2024-08-21T14:47:52.110+07:00",
    "delay_to": null,
    "status":   {"code": "opened", "name": "Открыта", "color": "#5cb85c"},
    "type":     {"code": "service", "name": "Обслуживание"},
    "priority": {"code": "normal", "name": "Важная", "color": "#f0ad4e"},
    "company":  {"id": 2058, "name": "ООО Ромашка"},
    "contact":  {"id": 11771, "name": "Иван Петров"},
    "service_object": {"id": 3160, "name": "Офис на Ленина"},
    "agreement": {"id": 5, "title": "Договор 12/24"},
    "equipments": []
  }
]
""")

OKDESK_ISSUE = json.loads("""
{
  "id": 153,
  "title": "Требуется мастер на выезд",
  "description": "Текст<br>вторая строка",
  "created_at": "2016-03-15T18:05:17.568+03:00",
  "updated_at": "2016-08-23T09:39:35.428+03:00",
  "completed_at": "2016-05-19T10:54:09.987+03:00",
  "deadline_at": "2019-09-24T14:35:00.000+03:00",
  "start_execution_until": "2016-03-16T09:05:17.568+03:00",
  "planned_execution_in_hours": 12,
  "planned_reaction_at": "2016-04-11T11:00:00.000+03:00",
  "reacted_at": "2016-04-10T18:43:44.951+03:00",
  "delayed_to": null,
  "source": "from_employee",
  "spent_time_total": 0,
  "company_id": 40,
  "group_id": 3,
  "service_object_id": null,
  "equipment_ids": [],
  "parent_id": null,
  "child_ids": [],
  "type":       {"id": 2, "code": "service", "name": "Обслуживание", "available_for_client": true},
  "priority":   {"code": "low", "name": "Низкий"},
  "status":     {"code": "opened", "name": "Открыта"},
  "old_status": {"code": "completed", "name": "Решена"},
  "status_times": {
    "opened":    {"total": "134 д., 14 ч., 57 м.", "on_schedule_total": "36 д., 0 ч., 39 м."},
    "completed": {"total": "0 д., 0 ч., 0 м.",     "on_schedule_total": "0 д., 0 ч., 0 м."}
  },
  "rate": {"id": 3, "value": "normal"},
  "address": {"coordinates": [53.2184321, 44.9998082], "value": "г Пенза ул Гагарина д 13"},
  "assignee": {"id": 1, "name": "Иванов Иван Викторович"},
  "coexecutors": [{"id": 3, "name": "Артамонов А. М.", "group": {"id": 1, "name": "Отдел планирования"}}],
  "author":   {"id": 3020, "name": "Егор Егоров"},
  "contact":  {"id": 3020, "name": "Егор Егоров"},
  "agreement": null,
  "observers": [{"id": 113, "type": "employee", "name": "Антонов П. З."}],
  "observer_groups": [{"id": 5, "name": "Отдел контроля качества"}],
  "attachments": [{"id": 8, "attachment_file_name": "photo.jpg", "description": "", "attachment_file_size": 4149,
                   "is_public": false, "created_at": "2016-09-30T09:28:50.499+03:00"}],
  "parameters": [{"code": "address", "name": "Адрес вызова", "field_type": "ftstring", "value": "ул. Ленина 44"}],
  "comments": {"count": 5, "last_at": "2018-07-05T16:06:10.000+03:00"}
}
""")

OKDESK_COMMENTS = json.loads("""
[
  {
    "id": 48883009,
    "content": "В ближайшее время к Вам отправится инженер.<br>Спасибо!",
    "public": true,
    "published_at": "2024-08-21T15:02:11.000+07:00",
    "author": {"id": 10, "name": "Иванов Сергей Петрович", "type": "employee"},
    "attachments": [{"id": 22, "attachment_file_name": "image.jpg", "description": "", "attachment_file_size": 7955,
                     "is_public": true, "created_at": "2019-10-29T17:31:30.675+03:00"}]
  }
]
""")

OKDESK_TIME_ENTRIES = json.loads("""
{
  "spent_time_total": 1.25,
  "time_entries": [
    {
      "id": 5844846,
      "comment": "Упаковка",
      "spent_time": 0.25,
      "logged_at": "2018-10-16T11:14:00.000+03:00",
      "employee": {"id": 1, "login": "andrey@okdesk.ru", "name": "Елизаров Андрей Валерьевич"},
      "parameters": [{"code": "address", "name": "Адрес вызова", "field_type": "ftstring", "value": "ул. Ленина 44"}]
    }
  ]
}
""")

# -- Bitrix24 samples (bitrix24.md §2, §3.1, §3.2, §4.1, §5), already unwrapped from "result" ------
B24_TASK_ADD = json.loads("""
{"task": {
  "id": "3711", "title": "[Okdesk #4711] Printer", "status": "2", "groupId": "17",
  "responsibleId": "123", "createdBy": "45",
  "createdDate": "2024-11-02T10:06:08+02:00", "changedDate": "2024-11-02T10:06:08+02:00",
  "closedDate": null, "deadline": null, "xmlId": null,
  "guid": "{c2794da9-0000}", "descriptionInBbcode": "Y",
  "creator": {"id": "1", "name": "Viola", "link": "/company/personal/user/1/", "icon": "", "workPosition": ""},
  "responsible": {"id": "123"},
  "action": {"complete": true, "edit": true, "elapsedtime.add": true}
}}
""")

B24_TASK_GET = json.loads("""
{"task": {"id": "3711", "title": "Printer", "status": "5", "changedDate": "2025-09-09T12:11:30+02:00",
  "closedDate": "2025-09-09T12:11:30+02:00", "groupId": "17", "responsibleId": "123",
  "xmlId": "okdesk:4711", "timeSpentInLogs": "69963", "chatId": 2537, "favorite": "N",
  "group": {"id": "17", "name": "Support"}, "action": {"complete": true}}}
""")

B24_TASK_LIST = json.loads("""
{"tasks": [{"id": "8017", "title": "Printer", "status": "3", "subStatus": "-1",
  "changedDate": "2025-10-21T16:45:22+02:00", "closedDate": null, "xmlId": "okdesk:4711"}]}
""")

B24_ELAPSED = json.loads("""
[{"ID": "1201", "TASK_ID": "3711", "USER_ID": "1", "COMMENT_TEXT": "on site",
  "SECONDS": "3600", "MINUTES": "60", "SOURCE": "2",
  "CREATED_DATE": "2024-05-16T10:33:00+02:00", "DATE_START": "2024-05-16T10:33:15+02:00",
  "DATE_STOP": "2024-05-16T10:33:15+02:00"}]
""")

B24_COMMENTS = json.loads("""
[{"ID": "3157", "AUTHOR_ID": "503", "AUTHOR_NAME": "John Smith", "AUTHOR_EMAIL": "",
  "POST_DATE": "2025-07-15T14:31:00+02:00", "POST_MESSAGE": "Photos attached",
  "POST_MESSAGE_HTML": null, "ATTACHED_OBJECTS": {}}]
""")


# -- Okdesk ---------------------------------------------------------------------------------------
def test_okdesk_list_item_gives_an_issue_with_company_and_contact_names():
    (issue,) = parse_issue_list(OKDESK_LIST)
    assert issue.id == 13 and issue.title == "Printer does not work"
    assert issue.status == "opened"
    assert issue.updated_at == datetime(2024, 8, 22, 9, 10, tzinfo=PLUS7)
    assert issue.deadline_at == datetime(2024, 8, 26, 19, 40, 1, tzinfo=PLUS7)
    assert issue.company == "ООО Ромашка" and issue.contact == "Иван Петров"
    assert issue.priority == "Важная"
    assert issue.description_html == ""


def test_okdesk_full_issue_gives_description_html_and_no_company_name():
    issue = parse_issue(OKDESK_ISSUE)
    assert issue.id == 153 and issue.title == "Требуется мастер на выезд"
    assert issue.description_html == "Текст<br>вторая строка"
    assert issue.status == "opened"
    assert issue.updated_at == datetime(2016, 8, 23, 9, 39, 35, 428000, tzinfo=PLUS3)
    assert issue.updated_at is not None and issue.updated_at.astimezone(UTC).hour == 6
    assert issue.company is None  # the full issue only has company_id
    assert issue.contact == "Егор Егоров" and issue.priority == "Низкий"


def test_okdesk_issue_tolerates_nulls_and_empty_objects():
    issue = parse_issue(
        {
            "id": "7",
            "status": {"code": "opened"},
            "title": None,
            "company": [],
            "contact": None,
            "priority": {},
            "deadline_at": "",
            "updated_at": None,
            "description": None,
        }
    )
    assert issue == parse_issue({"id": 7, "status": {"code": "opened"}})
    assert (issue.id, issue.title, issue.company, issue.priority, issue.deadline_at) == (7, "", None, None, None)


def test_okdesk_comments_keep_html_visibility_and_author_kind():
    (comment,) = parse_comments(OKDESK_COMMENTS, 153)
    assert comment.id == 48883009 and comment.issue_id == 153
    assert comment.content_html == "В ближайшее время к Вам отправится инженер.<br>Спасибо!"
    assert comment.public is True
    assert comment.published_at == datetime(2024, 8, 21, 15, 2, 11, tzinfo=PLUS7)
    assert (comment.author.id, comment.author.name, comment.author.kind) == (10, "Иванов Сергей Петрович", "employee")
    contact = parse_comment({"id": 1, "public": False, "author": {"id": 5, "name": "Client", "type": "contact"}}, 9)
    assert contact.author.kind == "contact" and contact.content_html == "" and contact.published_at is None


def test_okdesk_time_entries_come_wrapped_in_an_object():
    (entry,) = parse_time_entries(OKDESK_TIME_ENTRIES, 153)
    assert entry == TimeEntry(id=5844846, issue_id=153, employee_id=1, spent_hours=0.25, comment="Упаковка")
    assert parse_time_entries({"spent_time_total": 0, "time_entries": []}, 153) == []
    assert parse_time_entries({"spent_time_total": 0}, 153) == []


def test_okdesk_time_entries_as_a_bare_list_are_tolerated():
    assert parse_time_entries(OKDESK_TIME_ENTRIES["time_entries"], 153) == parse_time_entries(OKDESK_TIME_ENTRIES, 153)
    (entry,) = parse_time_entries([{"id": 1, "spent_time": "1.5", "employee": None}], 2)
    assert entry.employee_id is None and entry.spent_hours == 1.5 and entry.comment == ""


def test_okdesk_statuses_give_code_and_name():
    raw = [{"code": "opened", "name": "Открыта"}, {"code": "to_programmers", "name": "У программистов"}, {"code": "x"}]
    assert parse_statuses(raw) == [("opened", "Открыта"), ("to_programmers", "У программистов"), ("x", "")]


@pytest.mark.parametrize(
    ("parser", "raw", "field"),
    [
        (parse_issue, "<html><body>502 Bad Gateway</body></html>", "issue: expected an object, got str"),
        (parse_issue_list, "<html>", "issue list: expected a list, got str"),
        (parse_issue, [], "issue ?.status: expected an object"),
        (parse_issue, {"status": {"code": "opened"}}, "issue ?.id: missing or not a number"),
        (parse_issue, {"id": "abc", "status": {"code": "opened"}}, "issue abc.id: not a number: 'abc'"),
        (parse_issue, {"id": True, "status": {"code": "opened"}}, ".id: missing or not a number"),
        (
            parse_issue,
            {"id": 1, "status": {"code": "opened"}, "updated_at": "yesterday"},
            "issue 1.updated_at: not an ISO-8601 timestamp: 'yesterday'",
        ),
        (
            parse_issue,
            {"id": 1, "status": {"code": "opened"}, "updated_at": "2024-08-21T14:27:53"},
            "issue 1.updated_at",
        ),  # no UTC offset: the moment is ambiguous
        (
            parse_issue,
            {"id": 1, "status": {"code": "opened"}, "deadline_at": 1724232473},
            "issue 1.deadline_at: expected a timestamp, got int",
        ),
        (parse_issue, {"id": 1, "status": "opened"}, "issue 1.status: expected an object, got str"),
        (parse_issue, {"id": 1, "status": {}}, "issue 1.status.code: missing"),
        (
            parse_issue,
            {"id": 1, "status": {"code": "opened"}, "title": {"ru": "x"}},
            "issue 1.title: expected text, got dict",
        ),
        (parse_issue, {"id": 1, "status": {"code": "o"}, "company": "ACME"}, "issue 1.company: expected an object"),
    ],
)
def test_malformed_okdesk_issues_raise_parse_error_naming_the_field(parser, raw, field):
    with pytest.raises(ParseError) as caught:
        parser(raw)
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("<html>", "issue 9 comments: expected a list, got str"),
        ([{"id": 1, "public": "yes", "author": {"id": 1}}], "issue 9 comment 1.public: expected true or false"),
        # no author at all is a system comment (tests/test_api_facts.py); a garbled one is an error
        ([{"id": 1, "public": True, "author": "Anna"}], "issue 9 comment 1.author: expected an object, got str"),
        ([{"id": 1, "public": True, "author": {"id": "a1"}}], "issue 9 comment 1.author.id: not a number"),
        ([{"public": True, "author": {"id": 1}}], "issue 9 comment ?.id: missing or not a number"),
        ([{"id": "x1", "public": True, "author": {"id": 1}}], "comment x1.id: not a number: 'x1'"),
        (
            [{"id": 1, "public": True, "author": {"id": 1}, "published_at": "21.08.2024"}],
            "issue 9 comment 1.published_at: not an ISO-8601 timestamp",
        ),
    ],
)
def test_malformed_okdesk_comments_raise_parse_error_naming_the_field(raw, field):
    with pytest.raises(ParseError) as caught:
        parse_comments(raw, 9)
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("<html>", "time entries: expected an object, got str"),
        ({"time_entries": "none"}, "issue 9 time_entries: expected a list, got str"),
        ({"time_entries": [{"spent_time": 1}]}, "issue 9 time entry ?.id: missing or not a number"),
        ({"time_entries": [{"id": 1, "spent_time": "1 ч."}]}, "issue 9 time entry 1.spent_time: not a number"),
        ({"time_entries": [{"id": 1}]}, "issue 9 time entry 1.spent_time: not a number: 'None'"),
        ({"time_entries": [{"id": 1, "spent_time": 1, "employee": {"id": "me"}}]}, "time entry 1.id: not a number"),
    ],
)
def test_malformed_okdesk_time_entries_raise_parse_error_naming_the_field(raw, field):
    with pytest.raises(ParseError) as caught:
        parse_time_entries(raw, 9)
    assert field in str(caught.value)


# -- Bitrix24 ------------------------------------------------------------------------------------
def test_bitrix24_task_add_answer_with_string_numbers_and_camel_case():
    task = parse_task(B24_TASK_ADD["task"])
    assert task == Task(id=3711, status=2, xml_id=None, title="[Okdesk #4711] Printer", group_id=17, closed_at=None)


def test_bitrix24_task_get_answer():
    task = parse_task_get(B24_TASK_GET)
    assert task == Task(
        id=3711,
        status=5,
        xml_id="okdesk:4711",
        title="Printer",
        group_id=17,
        closed_at=datetime(2025, 9, 9, 12, 11, 30, tzinfo=PLUS2),
    )


@pytest.mark.parametrize("raw", [[], None, {}, {"task": []}, {"task": None}])
def test_bitrix24_missing_task_is_none_not_an_error(raw):
    assert parse_task_get(raw) is None


def test_bitrix24_task_list_answer():
    (task,) = parse_task_list(B24_TASK_LIST)
    assert (task.id, task.status, task.xml_id, task.group_id, task.closed_at) == (8017, 3, "okdesk:4711", None, None)
    assert parse_task_list({"tasks": []}) == [] and parse_task_list([]) == [] and parse_task_list({}) == []


def test_bitrix24_group_id_zero_or_empty():
    assert parse_task({"id": "1", "status": "2", "groupId": "0"}).group_id == 0
    assert parse_task({"id": "1", "status": "2", "groupId": ""}).group_id is None
    assert parse_task({"id": "1", "status": "2", "xmlId": ""}).xml_id is None


def test_bitrix24_elapsed_items_are_upper_snake():
    (item,) = parse_elapsed(B24_ELAPSED)
    assert item == ElapsedItem(
        id=1201,
        task_id=3711,
        user_id=1,
        seconds=3600,
        comment="on site",
        created_at=datetime(2024, 5, 16, 10, 33, tzinfo=PLUS2),
    )
    assert parse_elapsed([]) == [] and parse_elapsed({}) == []


def test_bitrix24_task_comments_and_new_ids():
    posted = datetime(2025, 7, 15, 14, 31, tzinfo=PLUS2)  # POST_DATE: the routes read the result before completion
    assert parse_task_comments(B24_COMMENTS, 8017) == [TaskComment(3157, 8017, 503, "Photos attached", posted)]
    assert parse_new_id(3141, "task.commentitem.add") == 3141
    assert parse_new_id("1202", "task.elapseditem.add") == 1202


@pytest.mark.parametrize(
    ("parser", "raw", "field"),
    [
        (parse_task_get, "<!DOCTYPE html><html>503</html>", "tasks.task.get result: expected an object, got str"),
        (parse_task_get, {"task": "3711"}, "task: expected an object, got str"),
        (parse_task_get, {"task": {"title": "x", "status": "2"}}, "task ?.id: missing or not a number"),
        (parse_task_get, {"task": {"id": "37a", "status": "2"}}, "task 37a.id: not a number: '37a'"),
        (parse_task_get, {"task": {"id": "1", "status": "done"}}, "task 1.status: not a number: 'done'"),
        (
            parse_task_get,
            {"task": {"id": "1", "status": "5", "closedDate": "09.09.2025 12:11"}},
            "task 1.closedDate: not an ISO-8601 timestamp",
        ),
        (parse_task_list, {"tasks": "none"}, "tasks: expected a list, got str"),
        (parse_task_list, "<html>", "tasks.task.list result: expected an object, got str"),
        (parse_task_list, {"tasks": [{"id": "1"}]}, "task 1.status: missing or not a number"),
        (parse_elapsed, "<html>", "elapsed items: expected a list, got str"),
        (parse_elapsed, [{"TASK_ID": "1", "USER_ID": "1", "SECONDS": "60"}], "elapsed item ?.ID: missing"),
        (
            parse_elapsed,
            [{"ID": "5", "TASK_ID": "1", "USER_ID": "1", "SECONDS": "1.5h"}],
            "elapsed item 5.SECONDS: not a number: '1.5h'",
        ),
        (
            parse_elapsed,
            [{"ID": "5", "TASK_ID": "1", "USER_ID": "1", "SECONDS": "60", "CREATED_DATE": "yesterday"}],
            "elapsed item 5.CREATED_DATE: not an ISO-8601 timestamp",
        ),
        (parse_elapsed, [{"id": "5", "taskId": "1"}], "elapsed item ?.ID: missing"),  # camelCase is not this method
        (parse_new_id, True, "x.result: missing or not a number"),
        (parse_new_id, "abc", "x.result: not a number: 'abc'"),
    ],
)
def test_malformed_bitrix24_answers_raise_parse_error_naming_the_field(parser, raw, field):
    with pytest.raises(ParseError) as caught:
        parser(raw, "x") if parser is parse_new_id else parser(raw)
    assert field in str(caught.value)


def test_malformed_bitrix24_comments_name_the_field():
    with pytest.raises(ParseError, match=r"task 8017 comment 3157\.AUTHOR_ID: missing or not a number"):
        parse_task_comments([{"ID": "3157", "POST_MESSAGE": "x"}], 8017)


# -- php_query -----------------------------------------------------------------------------------
def test_php_query_keeps_order_nests_keys_and_repeats_list_items():
    query = php_query(
        {
            "taskId": 3711,
            "filter": {">=CHANGED_DATE": "2025-10-01T00:00:00+03:00", "ID": [1, 2, 3]},
            "select": ["ID", "STATUS"],
            "start": -1,
        }
    )
    assert query == (
        "taskId=3711"
        "&filter[%3E%3DCHANGED_DATE]=2025-10-01T00%3A00%3A00%2B03%3A00"
        "&filter[ID][]=1&filter[ID][]=2&filter[ID][]=3"
        "&select[]=ID&select[]=STATUS"
        "&start=-1"
    )


def test_php_query_positional_elapsed_params_stay_in_documented_order():
    query = php_query(
        {
            "TASKID": 7,
            "ORDER": {"ID": "asc"},
            "FILTER": {"TASK_ID": 7},
            "SELECT": ["*"],
            "PARAMS": {"NAV_PARAMS": {"nPageSize": 50, "iNumPage": 2}},
        }
    )
    names = [pair.split("=")[0] for pair in query.split("&")]
    assert names == [
        "TASKID",
        "ORDER[ID]",
        "FILTER[TASK_ID]",
        "SELECT[]",
        "PARAMS[NAV_PARAMS][nPageSize]",
        "PARAMS[NAV_PARAMS][iNumPage]",
    ]
    assert "SELECT[]=%2A" in query


def test_php_query_encodes_values_booleans_and_nulls():
    assert php_query({"text": "a b&c=d/é", "yes": True, "no": False, "none": None}) == (
        "text=a%20b%26c%3Dd%2F%C3%A9&yes=Y&no=N&none="
    )
    assert php_query({"FIELDS": {"POST_MESSAGE": "[B]x[/B]"}}) == "FIELDS[POST_MESSAGE]=%5BB%5Dx%5B%2FB%5D"


def test_php_query_leaves_out_empty_lists_and_mappings():
    # PHP has no way to say "empty array" in a query; callers of positional methods must avoid them
    assert php_query({"a": [], "b": {}, "c": 1}) == "c=1"


def test_php_query_list_of_mappings_keeps_each_mapping_together():
    assert php_query({"a": [{"x": 1, "y": 2}]}) == "a[0][x]=1&a[0][y]=2"


# -- Okdesk error bodies -------------------------------------------------------------------------
def test_okdesk_error_as_a_string():
    assert flatten_errors("Заявка не найдена") == "Заявка не найдена"


def test_okdesk_error_as_a_list():
    assert flatten_errors(["Статус не найден", "Переход запрещён"]) == "Статус не найден; Переход запрещён"


def test_okdesk_error_as_nested_fields():
    errors = {
        "created_until": ["Неверный формат даты"],
        "page": {"size": ["должно быть меньше или равно 100"], "direction": ["должен быть одним из: reverse, forward"]},
    }
    assert flatten_errors(errors) == (
        "created_until: Неверный формат даты; page.size: должно быть меньше или равно 100; "
        "page.direction: должен быть одним из: reverse, forward"
    )


def test_okdesk_error_of_an_unexpected_shape_is_still_text():
    assert flatten_errors({"code": 42}) == "code: 42"
    assert flatten_errors(None) == "None"


# -- Throttle with a fake clock ------------------------------------------------------------------
class FakeTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


def throttle(rate: float, burst: int, fake: FakeTime) -> Throttle:
    return Throttle(rate, burst, clock=fake.clock, sleep=fake.sleep)


def test_throttle_lets_a_burst_through_then_holds_to_the_rate():
    fake = FakeTime()
    bucket = throttle(2.0, 5, fake)
    for _ in range(5):
        bucket.acquire()
    assert fake.sleeps == []
    for _ in range(10):
        bucket.acquire()
    assert fake.sleeps == pytest.approx([0.5] * 10)
    assert fake.now - 1000.0 == pytest.approx(5.0)  # 10 more requests at 2 per second


@pytest.mark.parametrize(("rate", "burst", "count"), [(2.0, 1, 21), (3.0, 40, 100), (0.5, 3, 7)])
def test_throttle_never_exceeds_rate_plus_burst(rate, burst, count):
    fake = FakeTime()
    bucket = throttle(rate, burst, fake)
    for _ in range(count):
        bucket.acquire()
    assert fake.now - 1000.0 >= (count - burst) / rate - 1e-9


def test_throttle_refills_while_idle_but_never_beyond_the_burst():
    fake = FakeTime()
    bucket = throttle(1.0, 3, fake)
    for _ in range(3):
        bucket.acquire()
    fake.now += 100.0  # idle
    for _ in range(3):
        bucket.acquire()
    assert fake.sleeps == []
    bucket.acquire()
    assert fake.sleeps == pytest.approx([1.0])


def test_cool_down_holds_every_request_for_the_given_time():
    fake = FakeTime()
    bucket = throttle(2.0, 40, fake)
    bucket.acquire()
    bucket.cool_down(8.0)
    bucket.acquire()
    assert fake.sleeps[0] == pytest.approx(8.0)
    assert fake.now - 1000.0 >= 8.0


def test_a_shorter_cool_down_never_shortens_a_longer_one():
    fake = FakeTime()
    bucket = throttle(2.0, 40, fake)
    bucket.cool_down(10.0)
    bucket.cool_down(1.0)
    bucket.acquire()
    assert fake.now - 1000.0 == pytest.approx(10.0)


def test_cool_down_that_has_passed_no_longer_holds():
    fake = FakeTime()
    bucket = throttle(2.0, 40, fake)
    bucket.cool_down(3.0)
    fake.now += 5.0
    bucket.acquire()
    assert fake.sleeps == []


def test_cool_down_after_a_slow_request_does_not_allow_a_full_burst():
    fake = FakeTime()
    bucket = throttle(2.0, 40, fake)
    bucket.acquire()
    fake.now += 30.0  # the request took 30 s and came back 503 QUERY_LIMIT_EXCEEDED
    bucket.cool_down(1.0)
    start = fake.now
    for _ in range(10):
        bucket.acquire()
    # emptied at cool_down and refilled at 2/s: about 2 requests after the 1 s hold, then 0.5 s each
    assert fake.now - start >= 1.0 + (10 - 2) / 2.0 - 1e-9


def test_throttle_burst_is_at_least_one():
    fake = FakeTime()
    bucket = throttle(1.0, 0, fake)
    bucket.acquire()
    bucket.acquire()
    assert fake.sleeps == pytest.approx([1.0])
