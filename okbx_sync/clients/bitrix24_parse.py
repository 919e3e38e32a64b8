"""Pure parsers from Bitrix24 JSON (../shared/api/bitrix24.md) to our model.

Quirks handled here: numbers arrive as strings, `tasks.task.*` answers are camelCase while
legacy `task.*` answers are UPPER_SNAKE, and empty objects arrive as `[]`.
"""

from __future__ import annotations

from typing import Any

from ..model import ElapsedItem, Task, TaskComment
from .parse import integer, items, obj, opt_integer, text, timestamp


def parse_task(raw: Any) -> Task:
    data = obj(raw, "task")
    what = f"task {data.get('id', '?')}"
    return Task(
        id=integer(data, "id", what),
        status=integer(data, "status", what),
        xml_id=(text(data, "xmlId", what, default="") or None),
        title=text(data, "title", what, default=""),
        group_id=opt_integer(data, "groupId", what),
        closed_at=timestamp(data, "closedDate", what),
        deadline_at=timestamp(data, "deadline", what),
    )


def parse_task_get(raw: Any) -> Task | None:
    """`tasks.task.get` answers `[]` for a missing task: the one direct "not found" signal."""
    if raw in ([], None, {}):
        return None
    data = obj(raw, "tasks.task.get result")
    task = data.get("task")
    if task in ([], None):
        return None
    return parse_task(task)


def parse_task_list(raw: Any) -> list[Task]:
    data = obj(raw, "tasks.task.list result")
    return [parse_task(t) for t in items(data.get("tasks", []), "tasks")]


def parse_elapsed(raw: Any) -> list[ElapsedItem]:
    result = []
    for item in items(raw, "elapsed items"):
        data = obj(item, "elapsed item")
        what = f"elapsed item {data.get('ID', '?')}"
        result.append(
            ElapsedItem(
                id=integer(data, "ID", what),
                task_id=integer(data, "TASK_ID", what),
                user_id=integer(data, "USER_ID", what),
                seconds=integer(data, "SECONDS", what),
                comment=text(data, "COMMENT_TEXT", what, default=""),
                created_at=timestamp(data, "CREATED_DATE", what),
            )
        )
    return result


def parse_comments(raw: Any, task_id: int) -> list[TaskComment]:
    result = []
    for item in items(raw, f"task {task_id} comments"):
        data = obj(item, "comment")
        what = f"task {task_id} comment {data.get('ID', '?')}"
        result.append(
            TaskComment(
                id=integer(data, "ID", what),
                task_id=task_id,
                author_id=integer(data, "AUTHOR_ID", what),
                text=text(data, "POST_MESSAGE", what, default=""),
                posted_at=timestamp(data, "POST_DATE", what),
            )
        )
    return result


def parse_chat_messages(raw: Any, task_id: int) -> list[TaskComment]:
    """`im.dialog.messages.get`: `result.messages[]` with `id`, `author_id` (0 = system), `text` (BB-code)."""
    result = []
    for item in items(obj(raw, "im.dialog.messages.get result").get("messages"), f"task {task_id} chat messages"):
        data = obj(item, "message")
        what = f"task {task_id} chat message {data.get('id', '?')}"
        result.append(
            TaskComment(
                id=integer(data, "id", what),
                task_id=task_id,
                author_id=integer(data, "author_id", what),
                text=text(data, "text", what, default=""),
                posted_at=timestamp(data, "date", what),
            )
        )
    return result


def parse_new_id(raw: Any, what: str) -> int:
    return integer({"result": raw}, "result", what)
