"""Every API payload either parses into our model or is reported as malformed, never anything else."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okbx_sync.clients import bitrix24_parse as bx
from okbx_sync.clients import okdesk_parse as ok
from okbx_sync.clients.parse import ParseError

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

ISSUE = {
    "id": 13,
    "title": "Printer",
    "updated_at": "2024-08-22T09:10:00.000+07:00",
    "description": "<p>x</p>",
    "status": {"code": "opened", "name": "Открыта"},
    "priority": {"code": "normal", "name": "Обычный"},
    "company": {"id": 2, "name": "ООО"},
    "contact": None,
    "deadline_at": None,
}
COMMENT = {
    "id": 5,
    "content": "<b>hi</b>",
    "public": True,
    "published_at": "2024-08-21T15:02:11.000+07:00",
    "author": {"id": 10, "name": "Иванов", "type": "employee"},
}
ENTRIES = {
    "spent_time_total": 0.25,
    "time_entries": [{"id": 1, "comment": "x", "spent_time": 0.25, "employee": {"id": 1, "name": "A"}}],
}
TASK = {
    "task": {
        "id": "3711",
        "status": "5",
        "xmlId": "okdesk:13",
        "title": "t",
        "groupId": "42",
        "closedDate": "2025-09-09T12:11:30+02:00",
    }
}
ELAPSED = [
    {
        "ID": "1201",
        "TASK_ID": "3711",
        "USER_ID": "1",
        "COMMENT_TEXT": "on site",
        "SECONDS": "3600",
        "CREATED_DATE": "2024-05-16T10:33:00+02:00",
    }
]
TASK_COMMENTS = [{"ID": "3157", "AUTHOR_ID": "503", "POST_MESSAGE": "Photos attached"}]

PARSERS: list[tuple[str, Any, Any]] = [
    ("issue", ok.parse_issue, ISSUE),
    ("issue list", ok.parse_issue_list, [ISSUE]),
    ("comments", lambda raw: ok.parse_comments(raw, 13), [COMMENT]),
    ("time entries", lambda raw: ok.parse_time_entries(raw, 13), ENTRIES),
    ("statuses", ok.parse_statuses, [{"code": "opened", "name": "Открыта"}]),
    ("task get", bx.parse_task_get, TASK),
    ("task list", bx.parse_task_list, {"tasks": [TASK["task"]]}),
    ("elapsed", bx.parse_elapsed, ELAPSED),
    ("task comments", lambda raw: bx.parse_comments(raw, 3711), TASK_COMMENTS),
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, sub in value.items():
            found += paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            found += paths(sub, (*prefix, index))
    return found


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    value = copy.deepcopy(value)
    target = value
    for step in path[:-1]:
        target = target[step]
    if new is DELETE and isinstance(target, dict):
        del target[path[-1]]
    else:
        target[path[-1]] = None if new is DELETE else new
    return value


DELETE = object()


@pytest.mark.parametrize(("name", "parser", "sample"), PARSERS, ids=[p[0] for p in PARSERS])
def test_the_recorded_sample_parses(name, parser, sample):
    assert parser(copy.deepcopy(sample)) is not None


@pytest.mark.parametrize(("name", "parser", "sample"), PARSERS, ids=[p[0] for p in PARSERS])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_mutation_of_a_sample_parses_or_is_reported_as_malformed(name, parser, sample, data):
    where = data.draw(st.sampled_from(paths(sample)), label="field")
    new = data.draw(st.just(DELETE) | JSON, label="new value")
    payload = replaced(sample, where, new)
    try:
        parser(payload)
    except ParseError as error:
        assert str(error)  # names what is wrong
    # anything else (TypeError, KeyError, AttributeError...) fails the test


@pytest.mark.parametrize(("name", "parser", "sample"), PARSERS, ids=[p[0] for p in PARSERS])
@settings(max_examples=40, deadline=None)
@given(payload=JSON)
def test_any_json_at_all_parses_or_is_reported_as_malformed(name, parser, sample, payload):
    try:
        parser(payload)
    except ParseError as error:
        assert str(error)
