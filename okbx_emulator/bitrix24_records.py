"""Stored records of the Bitrix24 emulator and how they print on the wire.

The emulator keeps plain dicts with UPPER_SNAKE keys and native values (int ids, aware
datetimes).  `PortalView` turns them into what the classic API answers: camelCase keys and
string values for `tasks.task.*`, UPPER_SNAKE strings for the legacy comment and time methods,
dates as `2025-09-09T12:11:30+03:00` in the portal's zone.  The status model lives here too,
because a task's `action` map is derived from it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from okbx_emulator import bitrix24_query as q

# action: (new status, statuses it is allowed from, error code on refusal, system comment).
# inferred: the allowed sets follow CTaskItem's action checks for an admin caller; the docs
# only say a disallowed action answers "Action on the task is not allowed".
TRANSITIONS: dict[str, tuple[int, frozenset[int], str, str]] = {
    "start": (3, frozenset({1, 2}), "0", "Task started"),
    "complete": (5, frozenset({1, 2, 3, 4, 6, 7}), "0", "Task completed"),
    "defer": (6, frozenset({1, 2, 3}), "1048582", "Task deferred"),
    "renew": (2, frozenset({4, 5, 6, 7}), "1048582", "Task renewed"),
}
ORDER_KEYS = frozenset(
    """ID TITLE TIME_SPENT_IN_LOGS DATE_START CREATED_DATE CHANGED_DATE CLOSED_DATE ACTIVITY_DATE
    START_DATE_PLAN END_DATE_PLAN DEADLINE REAL_STATUS STATUS STATUS_COMPLETE PRIORITY MARK
    CREATED_BY_LAST_NAME RESPONSIBLE_LAST_NAME GROUP_ID TIME_ESTIMATE ALLOW_CHANGE_DEADLINE
    ALLOW_TIME_TRACKING MATCH_WORK_TIME FAVORITE SORTING IS_PINNED IS_PINNED_IN_GROUP""".split()
)
TASK_DATES = frozenset(
    """CREATED_DATE CHANGED_DATE CLOSED_DATE ACTIVITY_DATE DATE_START DEADLINE START_DATE_PLAN
    END_DATE_PLAN STATUS_CHANGED_DATE""".split()
)
TASK_INTS = frozenset(
    "ID PARENT_ID GROUP_ID CREATED_BY RESPONSIBLE_ID CHANGED_BY STATUS_CHANGED_BY CLOSED_BY PRIORITY".split()
)
_CONSTANTS: dict[str, Any] = {
    "MARK": None, "MULTITASK": "N", "NOT_VIEWED": "N", "REPLICATE": "N", "STAGE_ID": "0",
    "ALLOW_CHANGE_DEADLINE": "Y", "ALLOW_TIME_TRACKING": "Y", "TASK_CONTROL": "N", "ADD_IN_REPORT": "N",
    "TIME_ESTIMATE": "0", "MATCH_WORK_TIME": "N", "SITE_ID": "s1", "DESCRIPTION_IN_BBCODE": "Y",
    "FAVORITE": "N",
}  # fmt: skip
# "without select: all fields except custom ones" (tasks.task.get doc); TAGS only on request
DEFAULT_SELECT = tuple(
    """ID PARENT_ID TITLE DESCRIPTION MARK PRIORITY MULTITASK NOT_VIEWED REPLICATE STAGE_ID CREATED_BY
    CREATED_DATE RESPONSIBLE_ID CHANGED_BY CHANGED_DATE STATUS_CHANGED_BY CLOSED_BY CLOSED_DATE
    ACTIVITY_DATE DATE_START DEADLINE START_DATE_PLAN END_DATE_PLAN GUID XML_ID COMMENTS_COUNT
    SERVICE_COMMENTS_COUNT ALLOW_CHANGE_DEADLINE ALLOW_TIME_TRACKING TASK_CONTROL ADD_IN_REPORT
    TIME_ESTIMATE TIME_SPENT_IN_LOGS MATCH_WORK_TIME FORUM_TOPIC_ID SITE_ID DURATION_FACT
    DESCRIPTION_IN_BBCODE STATUS STATUS_CHANGED_DATE FAVORITE GROUP_ID AUDITORS ACCOMPLICES CHAT_ID""".split()
)
_MISSING = object()
_YN = {True: "Y", False: "N"}


def camel(field: str) -> str:
    """`convertKeysToCamelCase`: TIME_SPENT_IN_LOGS -> timeSpentInLogs, UF_CRM_TASK -> ufCrmTask."""
    head, *rest = field.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


@dataclass
class PortalView:
    """Read-only wire rendering over the emulator's containers (shared, never copied)."""

    tz: timezone
    users: dict[int, dict[str, Any]]
    groups: dict[int, dict[str, Any]]
    comments: list[dict[str, Any]]
    elapsed: list[dict[str, Any]]
    tag_ids: dict[str, int]
    new_task_card: bool
    owner_id: int
    now: Callable[[], datetime]

    def fmt(self, value: datetime | None) -> str | None:
        return q.format_datetime(value, self.tz)

    def time_spent(self, task_id: int) -> int:
        return sum(e["SECONDS"] for e in self.elapsed if e["TASK_ID"] == task_id)

    def overdue(self, task: dict[str, Any]) -> bool:
        deadline = task["DEADLINE"]
        return deadline is not None and deadline < self.now() and task["STATUS"] in (1, 2, 3)

    def task(self, task: dict[str, Any], select: list[str] | None, *, listing: bool) -> dict[str, Any]:
        fields = list(DEFAULT_SELECT) if select is None else ["ID", *select]
        if select is not None and "*" in select:
            fields = [*DEFAULT_SELECT, "TAGS", *(k for k in task if k.startswith("UF_"))]
        out: dict[str, Any] = {}
        for field in dict.fromkeys(fields):
            if field in ("STATUS", "REAL_STATUS"):  # STATUS answers the real status
                out["status"] = str(task["STATUS"])
                if listing:
                    out["subStatus"] = "-1" if self.overdue(task) else str(task["STATUS"])
                continue
            value = self._task_value(task, field)
            if value is not _MISSING:
                out[camel(field)] = value
        group = self.groups.get(task["GROUP_ID"])
        out["group"] = self._group_brief(group) if group else []
        if "CREATED_BY" in fields:
            out["creator"] = self._user_brief(task["CREATED_BY"])
        if "RESPONSIBLE_ID" in fields:
            out["responsible"] = self._user_brief(task["RESPONSIBLE_ID"])
        if not listing:
            out["action"] = self._actions(task)
        return out

    def _task_value(self, task: dict[str, Any], field: str) -> Any:
        task_id = task["ID"]
        computed: dict[str, Callable[[], Any]] = {
            "TIME_SPENT_IN_LOGS": lambda: str(self.time_spent(task_id)),
            "DURATION_FACT": lambda: str(self.time_spent(task_id) // 60),
            "COMMENTS_COUNT": lambda: str(sum(c["TASK_ID"] == task_id for c in self.comments)),
            "SERVICE_COMMENTS_COUNT": lambda: str(sum(c["TASK_ID"] == task_id and c["SYSTEM"] for c in self.comments)),
            "FORUM_TOPIC_ID": lambda: str(task_id),
            "TAGS": lambda: {str(self.tag_ids[t]): {"id": self.tag_ids[t], "title": t} for t in task["TAGS"]},
            "CHAT_ID": lambda: task["CHAT_ID"] if self.new_task_card else _MISSING,  # no chat on the old card
        }
        if field in computed:
            return computed[field]()
        if field in _CONSTANTS:
            return copy.deepcopy(_CONSTANTS[field])
        if field in TASK_DATES:
            return self.fmt(task[field])
        if field in task:
            value = task[field]
            return value if value is None or isinstance(value, (list, dict)) else str(value)
        return None if field.startswith("UF_") else _MISSING  # unknown select fields are dropped

    def _actions(self, task: dict[str, Any]) -> dict[str, bool]:
        allowed = {action: task["STATUS"] in spec[1] for action, spec in TRANSITIONS.items()}
        fixed = ("delegate", "remove", "edit", "create", "changeDeadline", "elapsedtime.add")
        return {
            **dict.fromkeys(("accept", "decline", "approve", "disapprove"), False),
            "pause": task["STATUS"] == 3,
            **allowed,
            **dict.fromkeys(fixed, True),
        }

    def _user_brief(self, user_id: int) -> dict[str, str]:
        return {
            "id": str(user_id),
            "name": self.full_name(user_id),
            "link": f"/company/personal/user/{user_id}/",
            "icon": "/bitrix/images/tasks/default_avatar.png",
            "workPosition": "",
        }

    def full_name(self, user_id: int) -> str:
        user = self.users.get(user_id, {"NAME": "", "LAST_NAME": ""})
        return f"{user['NAME']} {user['LAST_NAME']}".strip()

    @staticmethod
    def _group_brief(group: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": str(group["ID"]),
            "name": group["NAME"],
            "opened": False,
            "membersCount": 1,
            "image": "",
        }

    def group(self, group: dict[str, Any]) -> dict[str, str]:
        return {
            "ID": str(group["ID"]), "NAME": group["NAME"], "ACTIVE": _YN[group["ACTIVE"]],
            "CLOSED": _YN[group["CLOSED"]], "PROJECT": "N", "OPENED": "N", "VISIBLE": "Y",
            "OWNER_ID": str(group.get("OWNER_ID") or self.owner_id), "DESCRIPTION": "",
        }  # fmt: skip

    @staticmethod
    def user(user: dict[str, Any]) -> dict[str, Any]:
        # ACTIVE stays a JSON boolean, as in the user.get sample
        return {
            "ID": str(user["ID"]), "ACTIVE": user["ACTIVE"], "NAME": user["NAME"],
            "LAST_NAME": user["LAST_NAME"], "EMAIL": user["EMAIL"], "USER_TYPE": "employee",
        }  # fmt: skip

    def comment(self, comment: dict[str, Any]) -> dict[str, Any]:
        return {
            "POST_MESSAGE_HTML": None,
            "ID": str(comment["ID"]),
            "AUTHOR_ID": str(comment["AUTHOR_ID"]),
            "AUTHOR_NAME": self.full_name(comment["AUTHOR_ID"]),
            "AUTHOR_EMAIL": self.users.get(comment["AUTHOR_ID"], {}).get("EMAIL", ""),
            "POST_DATE": self.fmt(comment["POST_DATE"]),
            "POST_MESSAGE": comment["POST_MESSAGE"],
            "ATTACHED_OBJECTS": {},
        }

    def comment_value(self, comment: dict[str, Any], field: str) -> Any:
        """Typed comment values for filters and ORDER."""
        if field == "AUTHOR_NAME":
            return self.full_name(comment["AUTHOR_ID"])
        if field == "AUTHOR_EMAIL":
            return self.users.get(comment["AUTHOR_ID"], {}).get("EMAIL", "")
        return comment.get(field)

    def elapsed_item(self, item: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        return {f: self.fmt(item[f]) if isinstance(item[f], datetime) else str(item[f]) for f in fields}
