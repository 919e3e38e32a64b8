"""In-process emulator of the Bitrix24 classic REST API, incoming-webhook form.

It serves the subset okbx-sync uses (tasks.task.*, task.commentitem.*, task.elapseditem.*,
batch, user.get, user.admin, sonet_group.get, scope, server.time) with the answer shapes,
string-typed values and PHP quirks described in /work/shared/api/bitrix24.md.

Access rights: the webhook's user is an administrator unless `admins` says otherwise.  A user
who is not sees only the tasks it created, is responsible for, assists (ACCOMPLICES) or audits
(AUDITORS), and those of the workgroups it is a member of (`add_group(members=...)`):
`tasks.task.get` answers `[]` for the others exactly as for a deleted task, lists skip them and
`task.*` methods refuse with the errors their docs give for "no access".  `overloaded = True`
answers every call with 503 OVERLOAD_LIMIT (a portal blocked by Bitrix24 support).  It is strict on purpose:
what a real portal refuses (a wrong webhook secret, misordered or extra positional arguments
on legacy task.* methods, more than 50 batch commands, the rate and operating limits) is
refused here too, so the product cannot pass a test that a real portal would fail.

Where the reference only infers behaviour the code says `# inferred:`, and where a test may
want the other answer the choice is a constructor option.

Layout: `bitrix24_query` parses PHP-style parameters and filters, `bitrix24_records` prints
stored records, `bitrix24_limits` holds the rate and operating limits; this module owns the
state (behind one lock), the HTTP surface and the method semantics.

One clock drives everything: record dates, the leaky bucket and the operating budget.  With
a frozen clock the bucket never drains, so pass rate_per_second=None or advance the clock.
"""

from __future__ import annotations

import copy
import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import unquote

from okbx_emulator import bitrix24_query as q
from okbx_emulator.bitrix24_crm import CRM_METHODS, CrmPortal, Page
from okbx_emulator.bitrix24_deals import DEAL_METHODS, DealPortal
from okbx_emulator.bitrix24_disk import DISK_METHODS, Drive
from okbx_emulator.bitrix24_limits import LeakyBucket, OperatingBudget
from okbx_emulator.bitrix24_query import ApiError, core_error
from okbx_emulator.bitrix24_records import ORDER_KEYS, TASK_DATES, TASK_INTS, TRANSITIONS, PortalView
from okbx_emulator.bitrix24_timeline import TIMELINE_METHODS, Timeline
from okbx_emulator.http import Fault, Request, Response

_BATCH_LIMIT = 50
_STATUS_DENIED = "Action on the task is not allowed"
_TE_ACTION_FAILED = "TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED"
# inferred: code and text of CTaskItem's "not found" exception as it surfaces through REST
_TE_NOT_FOUND = "TASKS_ERROR_EXCEPTION_#1; Task not found or not accessible; 1/TE/TASK_NOT_FOUND_OR_NOT_ACCESSIBLE"
_POSITIVE, _NEGATIVE = ("", "=", "@"), ("!", "!=", "!@")


@dataclass
class _Outcome:
    result: Any
    total: int | None = None
    next: int | None = None


_Answer = tuple[_Outcome | ApiError, dict[str, Any] | None]  # outcome and its `time` block
_Coercers = dict[str, Callable[[Any], Any]]


class Bitrix24Emulator:
    """One Bitrix24 portal with one incoming webhook; implements the harness `EmulatorApp`.

    Beyond the documented options: `strict_status_transitions=False` lets every status method
    succeed from any status, `reject_extra_positional_args=False` lets legacy task.* methods
    ignore trailing extra arguments (what the corp source we could read does).
    """

    def __init__(
        self,
        *,
        user_id: int = 1,
        secret: str = "demo-webhook-secret",
        utc_offset: str = "+03:00",
        clock: Callable[[], datetime] | None = None,
        rate_per_second: float | None = 2.0,
        bucket_size: int = 50,
        operating_limit_seconds: float | None = None,
        operating_cost_seconds: float = 0.05,
        new_task_card: bool = False,
        scopes: tuple[str, ...] = ("task", "tasks", "user", "sonet", "im"),
        strict_status_transitions: bool = True,
        reject_extra_positional_args: bool = True,
        admins: Iterable[int] | None = None,
        drive_options: dict[str, Any] | None = None,  # Drive and task files: see bitrix24_disk.Drive
        deal_options: dict[str, Any] | None = None,  # bitrix24_deals.DealPortal options
        timeline_options: dict[str, Any] | None = None,  # bitrix24_timeline.Timeline options
    ) -> None:
        self._lock = threading.Lock()
        self.user_id, self.secret, self.scopes = user_id, secret, tuple(scopes)
        self.new_task_card = new_task_card
        # faults injected for a method answer its command inside a batch (set by EmulatorServer)
        self.command_fault: Callable[[str], Fault | None] = lambda method: None
        self.strict_status_transitions = strict_status_transitions
        self.reject_extra_positional_args = reject_extra_positional_args
        # Bitrix24 support blocked the portal's REST API by hand: every call answers 503 OVERLOAD_LIMIT
        self.overloaded = False
        # Portal administrators see every task; everyone else only the tasks they take part in
        # (see `_readable`).  By default the webhook's user is one of them.
        self.admins: set[int] = {user_id} if admins is None else set(admins)
        self._members: dict[int, set[int]] = {}  # workgroup id -> member user ids
        self._clock = clock or (lambda: datetime.now(UTC))
        self._bucket = LeakyBucket(rate_per_second, bucket_size) if rate_per_second is not None else None
        self._budget = OperatingBudget(operating_limit_seconds, operating_cost_seconds)
        self._tz = q.parse_offset(utc_offset)
        self._users: dict[int, dict[str, Any]] = {}
        self._groups: dict[int, dict[str, Any]] = {}
        self._tasks: dict[int, dict[str, Any]] = {}
        self._comments: list[dict[str, Any]] = []
        self._elapsed: list[dict[str, Any]] = []
        self._tag_ids: dict[str, int] = {}
        self._counters = {"task": 0, "comment": 0, "elapsed": 0, "chat": 0}
        self._view = PortalView(
            self._tz, self._users, self._groups, self._comments, self._elapsed, self._tag_ids,
            new_task_card, user_id, self._now,
        )  # fmt: skip
        self.add_user(user_id, "Webhook", "Admin")  # the webhook's owner must exist to create tasks
        self.crm = CrmPortal(self._lock, self._now, self._tz)  # companies and invoices (issue 10)
        self.drive = Drive(self, **(drive_options or {}))  # Drive, task files, chat files
        # deals, pipelines, contacts and their timeline comments (the sales and document routes)
        self.deals = DealPortal(self._lock, self._now, self._tz, self.crm, lambda: self.user_id, **(deal_options or {}))
        self.timeline = Timeline(
            self._lock, self._now, self._tz, self.deals, lambda: self.user_id, self._view.full_name,
            **(timeline_options or {}),
        )  # fmt: skip

    @property
    def webhook_path(self) -> str:
        return f"/rest/{self.user_id}/{self.secret}/"

    # -- seeding and human actions (plain Python) -------------------------------------------

    def add_user(self, id: int, name: str, last_name: str = "", email: str = "", active: bool = True) -> None:
        """Adds or replaces a portal user (replacing lets tests rename the webhook owner)."""
        if not isinstance(id, int) or id <= 0 or not name:
            raise ValueError("a user needs a positive int id and a name")
        with self._lock:
            self._users[id] = {
                "ID": id,
                "NAME": name,
                "LAST_NAME": last_name,
                "EMAIL": email,
                "ACTIVE": active,
            }

    def add_group(
        self,
        id: int,
        name: str,
        active: bool = True,
        closed: bool = False,
        members: Iterable[int] = (),
        owner_id: int | None = None,
    ) -> None:
        if not isinstance(id, int) or id <= 0 or not name:
            raise ValueError("a group needs a positive int id and a name")
        with self._lock:
            self._groups[id] = {"ID": id, "NAME": name, "ACTIVE": active, "CLOSED": closed}
            if owner_id is not None:  # sonet_group.get answers OWNER_ID (bitrix24.md)
                self._groups[id]["OWNER_ID"] = owner_id
            self._members[id] = set(members)

    def set_group_members(self, group_id: int, members: Iterable[int]) -> None:
        with self._lock:
            if group_id not in self._groups:
                raise ValueError(f"no group {group_id}")
            self._members[group_id] = set(members)

    def move_task(self, task_id: int, group_id: int) -> None:
        """A person moves the task to another workgroup (0: none)."""
        with self._lock:
            task = self._existing_task(task_id)
            if group_id and group_id not in self._groups:
                raise ValueError(f"no group {group_id}")
            task.update(GROUP_ID=group_id, CHANGED_DATE=self._now())

    def set_deadline(self, task_id: int, deadline: datetime | None) -> None:
        """A programmer changes the task's deadline in the UI."""
        with self._lock:
            self._existing_task(task_id).update(DEADLINE=deadline, CHANGED_DATE=self._now())

    def set_task_people(
        self,
        task_id: int,
        *,
        created_by: int | None = None,
        responsible_id: int | None = None,
        accomplices: Iterable[int] | None = None,
        auditors: Iterable[int] | None = None,
    ) -> None:
        """A person changes who takes part in the task (which changes who may see it)."""
        with self._lock:
            task = self._existing_task(task_id)
            for key, user in (("CREATED_BY", created_by), ("RESPONSIBLE_ID", responsible_id)):
                if user is not None:
                    task[key] = user
            for key, users in (("ACCOMPLICES", accomplices), ("AUDITORS", auditors)):
                if users is not None:
                    task[key] = [str(u) for u in users]
            task["CHANGED_DATE"] = self._now()

    def create_task(self, title: str, *, responsible_id: int, group_id: int = 0, created_by: int | None = None) -> int:
        """A person creates a task in the UI; the creator defaults to the responsible person."""
        fields = {"TITLE": title, "RESPONSIBLE_ID": responsible_id, "GROUP_ID": group_id}
        with self._lock, _as_value_error():
            return int(self._insert_task(fields, created_by or responsible_id)["ID"])

    def add_comment(self, task_id: int, author_id: int, text: str) -> int:
        with self._lock:
            self._existing_task(task_id)
            if author_id not in self._users or not text:
                raise ValueError("a comment needs a known author and text")
            return self._insert_comment(task_id, author_id, text, self._now())

    def log_time(
        self,
        task_id: int,
        user_id: int,
        seconds: int,
        comment: str = "",
        created_date: datetime | None = None,
    ) -> int:
        with self._lock:
            self._existing_task(task_id)
            if user_id not in self._users or not isinstance(seconds, int) or seconds <= 0:
                raise ValueError("time needs a known user and a positive number of seconds")
            now = self._now()
            return self._insert_elapsed(task_id, user_id, seconds, comment, created_date or now, now, now, 2)

    def edit_time(self, item_id: int, seconds: int | None) -> None:
        """A programmer edits (seconds) or deletes (None) a time record afterwards."""
        with self._lock:
            item = next((e for e in self._elapsed if e["ID"] == item_id), None)
            if item is None:
                raise ValueError(f"no time record {item_id}")
            if seconds is None:
                self._elapsed.remove(item)
            else:
                item.update(SECONDS=seconds, MINUTES=(seconds + 30) // 60)

    def complete_task(self, task_id: int) -> None:
        self._human_status(task_id, "complete")

    def start_task(self, task_id: int) -> None:
        self._human_status(task_id, "start")

    def renew_task(self, task_id: int) -> None:
        self._human_status(task_id, "renew")

    def defer_task(self, task_id: int) -> None:
        self._human_status(task_id, "defer")

    def delete_task(self, task_id: int) -> None:
        """Deleted tasks vanish with their comments and time records; their ids are not reused."""
        with self._lock:
            self._existing_task(task_id)
            del self._tasks[task_id]
            self._comments[:] = [c for c in self._comments if c["TASK_ID"] != task_id]
            self._elapsed[:] = [e for e in self._elapsed if e["TASK_ID"] != task_id]

    def _human_status(self, task_id: int, action: str) -> None:
        # the UI only offers allowed actions and tests want the resulting state: no check here
        with self._lock:
            task = self._existing_task(task_id)
            self._apply_status(task, action, task["RESPONSIBLE_ID"])

    def _readable(self, task: dict[str, Any] | None) -> bool:
        """May the webhook's user read this task?  tasks.task.get doc: "administrators see all
        tasks, managers see their employees' tasks, others see only the tasks available to them";
        available = creator, responsible, accomplice, auditor, or member of the task's workgroup
        (the task roles of the task docs).  Managers' view of their employees is not emulated."""
        if task is None:
            return False
        user = self.user_id
        if user in self.admins or user in (task["CREATED_BY"], task["RESPONSIBLE_ID"]):
            return True
        if str(user) in task.get("ACCOMPLICES", []) or str(user) in task.get("AUDITORS", []):
            return True
        return bool(task["GROUP_ID"]) and user in self._members.get(task["GROUP_ID"], set())

    def _visible_task(self, task_id: Any) -> dict[str, Any] | None:
        task = self._tasks.get(task_id) if isinstance(task_id, int) else None
        return task if self._readable(task) else None

    def _existing_task(self, task_id: int) -> dict[str, Any]:
        if task_id not in self._tasks:
            raise ValueError(f"no task {task_id}")
        return self._tasks[task_id]

    # -- inspection ------------------------------------------------------------------------

    def task(self, task_id: int) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._tasks.get(task_id))

    def tasks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(t) for _, t in sorted(self._tasks.items())]

    def comments(self, task_id: int) -> list[dict[str, Any]]:
        """All comments of a task, oldest first, system ones (SYSTEM=True) included."""
        with self._lock:
            return [copy.deepcopy(c) for c in self._comments if c["TASK_ID"] == task_id]

    def elapsed(self, task_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._elapsed if e["TASK_ID"] == task_id]

    # -- HTTP ------------------------------------------------------------------------------

    def operation_name(self, request: Request) -> str:
        if self.drive.is_url(request):
            return request.path.rsplit("/", 1)[-1]  # upload.json, download.json, uf.php
        found = q.route(request.path)
        return found[2] if found else q.method_name(request.path.rstrip("/").rsplit("/", 1)[-1])

    def carried_operations(self, request: Request) -> list[str]:
        """The methods a `batch` request carries: a fault injected for one of them hits the
        whole request that carries it (a lost answer loses the whole batch's answer)."""
        if self.operation_name(request) != "batch":
            return []
        try:
            commands = q.as_mapping(q.as_mapping(q.request_params(request)).get("cmd"))
        except ValueError:
            return []
        return [q.method_name(c.partition("?")[0]) for c in commands.values() if isinstance(c, str)]

    def handle(self, request: Request) -> Response:
        if (served := self.drive.serve_url(request)) is not None:  # upload and download links
            return served
        with self._lock:
            return self._handle_locked(request)

    def _handle_locked(self, request: Request) -> Response:
        found = q.route(request.path)
        if found is None:  # includes /rest/api/...: this portal predates REST 3.0
            return _error(ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!"))
        if self._bucket is not None and not self._bucket.admit(self._clock().timestamp()):
            return _error(ApiError(503, "QUERY_LIMIT_EXCEEDED", "Too many requests"))
        user, secret, method = found
        self.drive.origin = f"http://{request.headers.get('host', '127.0.0.1')}"  # for the links it makes
        if user != str(self.user_id) or secret != self.secret:
            return _error(ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data"))
        if self.overloaded:  # inferred wording; the code and status are documented (limits.md)
            return _error(
                ApiError(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload: contact Bitrix24 support")
            )
        try:
            params = q.request_params(request)
        except ValueError:
            return _error(core_error("Request body is not valid JSON"))  # inferred: undocumented
        if method == "batch":
            return self._batch(params)
        outcome, timing = self._call(method, params)
        if isinstance(outcome, ApiError):
            return _error(outcome)
        payload: dict[str, Any] = {"result": q.phpize(outcome.result)}
        if outcome.next is not None:
            payload["next"] = outcome.next
        if outcome.total is not None:
            payload["total"] = outcome.total
        return Response.json(200, {**payload, "time": timing})

    def _call(self, method: str, params: Any) -> _Answer:
        """One method call, alone or inside a batch: lookup, scope, operating budget, run."""
        entry = _METHODS.get(method)
        if entry is None:
            return ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!"), None
        scopes, handler = entry
        if scopes and not set(scopes) & set(self.scopes):
            text = "The request requires higher privileges than provided by the webhook token"
            return ApiError(403, "insufficient_scope", text), None
        started = self._clock().timestamp()
        if self._budget.blocked(method, started):
            return ApiError(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."), None
        self._budget.charge(method, started)  # failed calls took time too
        try:
            result = handler(self, params)
            outcome: _Outcome | ApiError = result if isinstance(result, _Outcome) else _Outcome(result)
        except ApiError as error:
            outcome = error
        return outcome, self._timing(method, started)

    def _timing(self, method: str | None, started: float) -> dict[str, Any]:
        finish = self._clock().timestamp()
        return {
            "start": started,
            "finish": finish,
            "duration": finish - started,
            "processing": finish - started,
            "date_start": self._view.fmt(datetime.fromtimestamp(started, UTC)),
            "date_finish": self._view.fmt(datetime.fromtimestamp(finish, UTC)),
            "operating_reset_at": self._budget.reset_at(method, finish),
            "operating": self._budget.used(method, finish) if method else 0,
        }

    def _batch(self, params: Any) -> Response:
        """Runs commands in order.  The batch counts once against the rate limit and not at all
        against the operating budget; each command is charged to its own method (doc section 6)."""
        started = self._clock().timestamp()
        named = q.as_mapping(params)
        commands = q.as_mapping(named.get("cmd"))
        if len(commands) > _BATCH_LIMIT:
            return _error(ApiError(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded"))
        halt = q.php_truthy(named.get("halt", 0))
        names = ("result", "result_error", "result_total", "result_next", "result_time")
        maps: dict[str, dict[str, Any]] = {name: {} for name in names}
        blocked: dict[str, _Answer] = {}  # an injected block lasts: the method's later commands meet it too
        for key, command in commands.items():
            method = q.method_name(command.partition("?")[0]) if isinstance(command, str) else ""
            outcome, timing = blocked.get(method) or self._batch_command(command)
            if isinstance(outcome, ApiError) and outcome.status == 429:
                blocked[method] = (outcome, None)
            if timing is not None:
                maps["result_time"][key] = timing
            if isinstance(outcome, ApiError):
                maps["result_error"][key] = outcome.payload()
                if halt:
                    break
                continue
            maps["result"][key] = q.phpize(outcome.result)
            if outcome.total is not None:
                maps["result_total"][key] = outcome.total
            if outcome.next is not None:
                maps["result_next"][key] = outcome.next
        # PHP prints each map as a JSON list when its keys are 0..n-1: numeric command keys bite
        result = {name: q.php_array(values) if values else [] for name, values in maps.items()}
        return Response.json(200, {"result": result, "time": self._timing(None, started)})

    def _batch_command(self, command: Any) -> _Answer:
        if not isinstance(command, str):
            return ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!"), None
        path, _, query = command.partition("?")
        method = q.method_name(path)
        if method == "batch":
            return ApiError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage"), None
        if "$result[" in unquote(query):
            # references to earlier results are not emulated; fail loudly rather than filter on
            # the literal text
            return core_error("emulator: $result[...] references are not supported"), None
        fault = self.command_fault(method)
        if fault is None:
            return self._call(method, q.parse_query_string(query))
        fault.hit.set()
        if fault.when == "after":
            self._call(method, q.parse_query_string(query))
        assert fault.response is not None  # only refusals are per command (Fault.per_command)
        body = json.loads(fault.response.body)
        return ApiError(fault.response.status, str(body.get("error")), str(body.get("error_description", ""))), None

    # -- tasks.task.* ----------------------------------------------------------------------

    def _m_task_add(self, params: Any) -> _Outcome:
        fields = q.as_mapping(params).get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ApiError(400, "100", "Could not find value for parameter {fields} (internal error)")
        files = fields.pop("UF_TASK_WEBDAV_FILES", None)  # n<Drive id> values, attached after the insert
        task = self._insert_task(fields, self.user_id)
        if files is not None:
            self.drive.set_task_files(task, files, replace=False)
        return _Outcome({"task": self._view.task(task, None, listing=False)})

    def _m_task_get(self, params: Any) -> _Outcome:
        named = q.as_mapping(params)
        task_id = _task_id_param(named)
        select = self.drive.expand_select(q.select_param(named))
        task = self._visible_task(task_id)
        if task is None:
            return _Outcome([])  # missing or inaccessible: HTTP 200 with an empty array
        return _Outcome({"task": self._view.task(task, select, listing=False)})

    def _m_task_update(self, params: Any) -> _Outcome:
        """Only the fields okbx changes are emulated (DEADLINE, TITLE, DESCRIPTION, UF_*); the portal
        ignores keys it does not know, and so does the emulator."""
        named = q.as_mapping(params)
        task_id = _task_id_param(named)
        fields = named.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ApiError(400, "100", "Could not find value for parameter {fields} (internal error)")
        task = self._visible_task(task_id)
        if task is None:  # doc: "no permission to update the task or no access to the task"
            raise ApiError(400, "0", "Action on the task is not allowed (internal error)")
        if "DEADLINE" in fields:
            task["DEADLINE"] = self._date_field(fields, "DEADLINE")  # an empty value clears it
        for name in ("TITLE", "DESCRIPTION"):
            if name in fields:
                task[name] = str(fields[name])
        if "UF_TASK_WEBDAV_FILES" in fields:  # replaced whole: attachment ids kept, n<Drive id> added
            self.drive.set_task_files(task, fields.pop("UF_TASK_WEBDAV_FILES"), replace=True)
        task.update({k: copy.deepcopy(v) for k, v in fields.items() if str(k).startswith("UF_")})  # replaced whole
        task["CHANGED_DATE"] = self._now()
        return _Outcome({"task": self._view.task(task, None, listing=False)})

    def _m_task_list(self, params: Any) -> _Outcome:
        named = q.as_mapping(params)
        order = q.as_mapping(named.get("order")) or {"ID": "desc"}
        if any(key.upper() not in ORDER_KEYS for key in order):
            raise ApiError(400, "0", "Invalid sorting key (internal error)")
        select = self.drive.expand_select(q.select_param(named))
        filters = q.as_mapping(named.get("filter"))
        rows = [t for _, t in sorted(self._tasks.items()) if self._readable(t) and self._task_matches(t, filters)]
        rows = q.sort_rows(rows, order, self._task_sort_value)
        chunk, total, following = q.page(rows, named.get("start", 0))
        return _Outcome({"tasks": [self._view.task(t, select, listing=True) for t in chunk]}, total, following)

    def _status_method(self, action: str, params: Any) -> _Outcome:
        task_id = _task_id_param(q.as_mapping(params))
        _, allowed_from, code, _ = TRANSITIONS[action]
        task = self._visible_task(task_id)
        if task is None or (self.strict_status_transitions and task["STATUS"] not in allowed_from):
            raise ApiError(400, code, _STATUS_DENIED)
        self._apply_status(task, action, self.user_id)
        return _Outcome({"task": self._view.task(task, None, listing=False)})

    # -- legacy positional task.* methods --------------------------------------------------

    def _legacy(self, signature: q.LegacySignature, values: list[Any]) -> list[Any]:
        return q.legacy_args(signature, values, reject_extra=self.reject_extra_positional_args)

    def _m_comment_add(self, params: Any) -> int:
        task_id, fields = self._legacy(q.COMMENT_ADD, q.positional_values(params))
        if self._visible_task(task_id) is None:
            raise core_error("Insufficient permissions to add a comment.")
        message = fields.get("POST_MESSAGE")
        if not isinstance(message, str) or not message.strip():
            raise core_error("Comment text not specified")
        author = q.lax_int(fields.get("AUTHOR_ID", self.user_id))
        if author not in self._users:
            raise core_error("User not found")  # inferred: the forum refuses unknown authors
        files = self.drive.comment_files(fields.get("UF_FORUM_MESSAGE_DOC"), author)  # "File not found"
        posted = self._date_field(fields, "POST_DATE") or self._now()
        comment_id = self._insert_comment(task_id, author, message, posted)
        self.drive.attach_comment_files(comment_id, files, author)
        return comment_id

    def _m_im_dialog_messages_get(self, params: Any) -> dict[str, Any]:
        """The task chat of the new task card (bitrix24.md 4.2): `DIALOG_ID` "chat<CHAT_ID>", at
        most `LIMIT` (<= 50) messages; `FIRST_ID` pages forward (ids above it, oldest first),
        `LAST_ID` backward (ids below it), neither gives the newest.  Comments added with
        task.commentitem.add are the chat's messages; system ones have author_id 0 and a
        params.CODE.  Inferred: the error code and text for a dialog the user cannot open."""
        named = q.as_mapping(params)
        dialog = str(named.get("DIALOG_ID") or "")
        if not dialog:
            raise ApiError(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty")
        chat_id = q.php_intval(dialog[4:]) if dialog.startswith("chat") else 0
        task = next((t for t in self._tasks.values() if chat_id and t.get("CHAT_ID") == chat_id), None)
        if task is None or not self._readable(task):
            raise ApiError(400, "ACCESS_ERROR", "You do not have access to the specified dialog")
        limit = min(max(q.php_intval(named.get("LIMIT", 20)), 1), 50)
        first, last = q.php_intval(named.get("FIRST_ID", 0)), q.php_intval(named.get("LAST_ID", 0))
        rows = sorted((c for c in self._comments if c["TASK_ID"] == task["ID"]), key=lambda c: c["ID"])
        if first > 0:
            rows = [c for c in rows if c["ID"] > first][:limit]
        else:
            rows = [c for c in rows if last <= 0 or c["ID"] < last][-limit:][::-1]
        messages = [
            {
                "id": c["ID"],
                "chat_id": chat_id,
                "author_id": 0 if c["SYSTEM"] else c["AUTHOR_ID"],
                "date": self._view.fmt(c["POST_DATE"]),
                "text": c["POST_MESSAGE"],
                "params": {"CODE": "TASK_SYSTEM"} if c["SYSTEM"] else [],
            }
            for c in rows
        ]
        return {"chat_id": chat_id, "messages": messages, "users": []} | self.drive.chat_payload(messages, chat_id)

    def _m_comment_getlist(self, params: Any) -> list[dict[str, Any]]:
        if self.new_task_card:
            raise core_error(_TE_ACTION_FAILED)  # inferred: the docs only say it "does not work"
        args = self._legacy(q.COMMENT_GETLIST, q.positional_values(params))
        task_id, order, filters = args[0], q.arg(args, 1), q.arg(args, 2)
        if self._visible_task(task_id) is None:  # doc: "incorrect parameter or no access to the task"
            raise core_error(_TE_ACTION_FAILED)
        coercers: _Coercers = {"ID": q.php_intval, "AUTHOR_ID": q.php_intval, "AUTHOR_NAME": str}
        coercers["POST_DATE"] = self._filter_date
        rows = [c for c in self._comments if c["TASK_ID"] == task_id]
        value_of = self._view.comment_value
        rows = [c for c in rows if q.row_matches(filters, q.LEGACY_PREFIXES, coercers, partial(value_of, c))]
        # the docs give "descending by ID" as the default order
        rows = q.sort_rows(rows, order or {"ID": "desc"}, self._view.comment_value)
        return [self.drive.comment_row(self._view.comment(c)) for c in rows]

    def _m_elapsed_getlist(self, params: Any) -> _Outcome:
        values = q.positional_values(params)
        if values and isinstance(values[0], (dict, list)):
            values.insert(0, 0)  # the server's array_unshift: no task id means every visible task
        args = self._legacy(q.ELAPSED_GETLIST, values)
        task_id = args[0] if args else 0
        order, filters, select, extra = q.arg(args, 1), q.arg(args, 2), q.arg(args, 3, []), q.arg(args, 4)
        if any(field in q.ELAPSED_AGGREGATES for field in select):
            raise core_error("emulator: aggregate SELECT fields are not supported")
        if task_id and self._visible_task(task_id) is None:
            raise core_error(_TE_NOT_FOUND)
        ints = dict.fromkeys(("ID", "TASK_ID", "USER_ID"), q.php_intval)
        coercers: _Coercers = {**ints, "CREATED_DATE": self._filter_date}
        # time records of deleted tasks are gone, and rows are filtered by task read rights
        rows = [e for e in self._elapsed if not task_id or e["TASK_ID"] == task_id]
        rows = [e for e in rows if self._visible_task(e["TASK_ID"]) is not None]
        rows = [e for e in rows if q.row_matches(filters, q.LEGACY_PREFIXES, coercers, e.get)]
        rows = q.sort_rows(rows, order or {"ID": "asc"}, lambda e, f: e.get(f))
        size, offset = q.nav_params(extra.get("NAV_PARAMS"), by_task=bool(task_id))
        chunk = rows[offset : offset + size] if size else rows[offset:]
        # inferred: `next` follows the generic navigation even though this method ignores `start`
        following = offset + len(chunk) if size and offset + len(chunk) < len(rows) else None
        fields = [f for f in select if f in q.ELAPSED_FIELDS] or list(q.ELAPSED_FIELDS)
        return _Outcome([self._view.elapsed_item(e, fields) for e in chunk], len(rows), following)

    def _m_elapsed_add(self, params: Any) -> int:
        task_id, fields = self._legacy(q.ELAPSED_ADD, q.positional_values(params))
        if self._visible_task(task_id) is None:
            raise core_error(_TE_NOT_FOUND)
        seconds = q.lax_int(fields.get("SECONDS"))
        user = q.lax_int(fields.get("USER_ID")) or self.user_id
        if seconds is None or seconds <= 0 or user not in self._users:
            raise core_error(_TE_ACTION_FAILED)  # inferred: CTaskElapsedTime::Add refuses these
        now = self._now()
        created, start, stop = (self._date_field(fields, f) or now for f in ("CREATED_DATE", "DATE_START", "DATE_STOP"))
        text, source = str(fields.get("COMMENT_TEXT") or ""), q.lax_int(fields.get("SOURCE")) or 2
        return self._insert_elapsed(task_id, user, seconds, text, created, start, stop, source)

    # -- users, groups, misc -----------------------------------------------------------------

    def _m_user_get(self, params: Any) -> _Outcome:
        named = q.as_mapping(params)
        filters = next((q.as_mapping(named[k]) for k in ("FILTER", "filter") if k in named), None)
        if filters is None:  # the legacy form puts filter fields at the top level
            control = ("SORT", "ORDER", "START", "ADMIN_MODE", "SELECT")
            filters = {k: v for k, v in named.items() if k.upper() not in control}
        # inferred: EMAIL matches exactly and case-sensitively; clients normalise on their side
        coercers: _Coercers = {"ID": q.php_intval, "EMAIL": str, "NAME": str, "LAST_NAME": str}
        coercers["ACTIVE"] = q.php_truthy
        prefixes = ("!@", "!", "@", "%", ">=", "<=", ">", "<", "=")
        users = [u for _, u in sorted(self._users.items())]
        rows = [u for u in users if q.row_matches(filters, prefixes, coercers, u.get)]
        chunk, total, following = q.page(rows, named.get("start", 0))
        return _Outcome([self._view.user(u) for u in chunk], total, following)

    def _m_sonet_group_get(self, params: Any) -> _Outcome:
        # the webhook owner is treated as an admin who sees every group, so IS_ADMIN is moot
        named = q.as_mapping(params)
        filters = next((q.as_mapping(named[k]) for k in ("FILTER", "filter") if k in named), {})
        coercers: _Coercers = {"ID": q.php_intval, "NAME": str, "ACTIVE": str, "CLOSED": str, "PROJECT": str}
        rows = [self._view.group(g) for _, g in sorted(self._groups.items())]
        rows = [r for r in rows if q.row_matches(filters, q.TASK_PREFIXES, coercers, partial(_typed, r))]
        chunk, total, following = q.page(rows, named.get("start", 0))
        return _Outcome(chunk, total, following)

    def _m_user_admin(self, params: Any) -> bool:
        return self.user_id in self.admins  # user.admin doc: true for a portal administrator

    def _m_scope(self, params: Any) -> list[str]:
        return list(self.scopes)

    def _m_server_time(self, params: Any) -> str | None:
        return self._view.fmt(self._clock())

    # -- state changes ---------------------------------------------------------------------

    def _insert_task(self, fields: dict[str, Any], actor: int) -> dict[str, Any]:
        responsible, creator, group_id, priority, parent = self._validate_task(fields, actor)
        dates = {name: self._date_field(fields, name) for name in ("DEADLINE", "START_DATE_PLAN", "END_DATE_PLAN")}
        now = self._now()
        self._counters["task"] += 1
        task_id = self._counters["task"]
        task: dict[str, Any] = {
            "ID": task_id, "TITLE": str(fields["TITLE"]).strip(), "STATUS": 2,
            "DESCRIPTION": str(fields.get("DESCRIPTION") or ""), "GROUP_ID": group_id,
            "RESPONSIBLE_ID": responsible, "CREATED_BY": creator,
            "CHANGED_BY": creator, "STATUS_CHANGED_BY": creator, "CLOSED_BY": None, "CREATED_DATE": now,
            "CHANGED_DATE": now, "STATUS_CHANGED_DATE": now, "ACTIVITY_DATE": now, "CLOSED_DATE": None,
            "DATE_START": None, **dates, "PRIORITY": priority, "PARENT_ID": parent or None,
            "XML_ID": str(fields["XML_ID"]) if fields.get("XML_ID") else None,
            "TAGS": q.tag_list(fields.get("TAGS")), "CHAT_ID": self._new_chat_id(),
            "ACCOMPLICES": _user_ids(fields.get("ACCOMPLICES")), "AUDITORS": _user_ids(fields.get("AUDITORS")),
            "GUID": "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, f"okbx-emulator-task-{task_id}")) + "}",
        }  # fmt: skip
        # custom fields are stored as given; other unknown keys are ignored, as the portal does
        task.update({k: copy.deepcopy(v) for k, v in fields.items() if str(k).startswith("UF_")})
        for tag in task["TAGS"]:
            self._tag_ids.setdefault(tag, len(self._tag_ids) + 1)
        self._tasks[task_id] = task
        return task

    def _validate_task(self, fields: dict[str, Any], actor: int) -> tuple[int, int, int, int, int]:
        if not str(fields.get("TITLE") or "").strip():
            raise core_error("Task title is not specified")
        responsible = q.lax_int(fields.get("RESPONSIBLE_ID"))
        if not responsible:
            raise core_error("Responsible person not specified")
        if not self._users.get(responsible, {}).get("ACTIVE"):
            raise core_error('User specified in the "Responsible" field not found')
        creator = q.lax_int(fields.get("CREATED_BY", actor))
        if creator not in self._users:
            raise core_error('User specified in the "Created by" field not found')  # inferred wording
        group_id = q.php_intval(fields.get("GROUP_ID", 0))
        group = self._groups.get(group_id)
        if group_id and (group is None or not group["ACTIVE"] or group["CLOSED"]):
            raise core_error("Workgroup not found or archived")  # inferred wording
        priority = q.lax_int(fields.get("PRIORITY", 1))
        if priority not in (0, 1, 2):
            raise core_error("Incorrect priority")  # inferred: refused rather than silently cast
        parent = q.php_intval(fields.get("PARENT_ID", 0))
        if parent and parent not in self._tasks:
            raise core_error('Task specified in the "Parent Task" field not found')
        return responsible, creator, group_id, priority, parent

    def _new_chat_id(self) -> int | None:
        if not self.new_task_card:
            return None
        self._counters["chat"] += 1
        return self._counters["chat"]

    def _apply_status(self, task: dict[str, Any], action: str, actor: int) -> None:
        status, _, _, note = TRANSITIONS[action]
        now = self._now()
        task.update(STATUS=status, CHANGED_DATE=now, CHANGED_BY=actor, STATUS_CHANGED_DATE=now)
        task.update(STATUS_CHANGED_BY=actor, ACTIVITY_DATE=now)
        if action == "complete":
            task.update(CLOSED_DATE=now, CLOSED_BY=actor)
        elif action == "renew":
            task.update(CLOSED_DATE=None, CLOSED_BY=None)
        elif action == "start" and task["DATE_START"] is None:
            task["DATE_START"] = now
        # real portals log status changes as service comments; consumers must not rely on them
        self._insert_comment(task["ID"], actor, note, now, system=True)

    def _insert_comment(self, task_id: int, author: int, text: str, posted: datetime, system: bool = False) -> int:
        self._counters["comment"] += 1
        comment_id = self._counters["comment"]
        comment = {"ID": comment_id, "TASK_ID": task_id, "AUTHOR_ID": author, "POST_DATE": posted}
        self._comments.append({**comment, "POST_MESSAGE": text, "SYSTEM": system})
        # inferred: comments move ACTIVITY_DATE, not CHANGED_DATE (reference section 3.2)
        self._tasks[task_id]["ACTIVITY_DATE"] = self._now()
        return comment_id

    def _insert_elapsed(
        self,
        task_id: int,
        user: int,
        seconds: int,
        text: str,
        created: datetime,
        start: datetime,
        stop: datetime,
        source: int,
    ) -> int:
        self._counters["elapsed"] += 1
        item_id = self._counters["elapsed"]
        item = {
            "ID": item_id, "TASK_ID": task_id, "USER_ID": user, "COMMENT_TEXT": text, "SECONDS": seconds,
            "MINUTES": (seconds + 30) // 60, "SOURCE": source, "CREATED_DATE": created.replace(microsecond=0),
            "DATE_START": start, "DATE_STOP": stop,
        }  # fmt: skip
        self._elapsed.append(item)  # inferred: time records change neither CHANGED_DATE nor ACTIVITY_DATE
        return item_id

    # -- reading ---------------------------------------------------------------------------

    def clock_now(self) -> datetime:
        """The emulated server's clock (its HTTP Date header follows it)."""
        return self._clock()

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the emulator clock must return aware datetimes")
        return now.replace(microsecond=0)  # the portal stores seconds

    def _filter_date(self, value: Any) -> datetime:
        try:
            return q.parse_datetime(value, self._tz)
        except ValueError:
            raise core_error(f"Wrong date format: {value}") from None  # inferred wording

    def _date_field(self, fields: dict[str, Any], name: str) -> datetime | None:
        if not fields.get(name):
            return None
        try:
            return q.parse_datetime(fields[name], self._tz)
        except ValueError:
            raise core_error(f'Incorrect value in the field "{name}"') from None  # inferred wording

    def _task_matches(self, task: dict[str, Any], filters: dict[str, Any]) -> bool:
        for key, expected in filters.items():
            op, field = q.split_prefix(key, q.TASK_PREFIXES)
            if not self._task_condition(task, op, field.upper(), expected):
                return False
        return True

    def _task_condition(self, task: dict[str, Any], op: str, field: str, expected: Any) -> bool:
        if field in ("STATUS", "REAL_STATUS") and op in _POSITIVE + _NEGATIVE:
            # positive values are real statuses; STATUS=-1 is "overdue", -2/-3 are not emulated
            wanted = [q.php_intval(v) for v in q.listed(expected)]
            hit = any(task["STATUS"] == w if w > 0 else w == -1 and self._view.overdue(task) for w in wanted)
            return hit if op in _POSITIVE else not hit
        if field in ("STATUS", "REAL_STATUS"):
            return q.match(op, task["STATUS"], expected, q.php_intval)
        if field in TASK_INTS:
            return q.match(op, task[field] or 0, expected, q.php_intval)
        if field in TASK_DATES:
            return q.match(op, task[field], expected, self._filter_date)
        if field == "TITLE" and op in ("", "="):
            return any(q.like(str(v), task["TITLE"]) for v in q.listed(expected))  # [%_] patterns
        if field in ("TITLE", "XML_ID") or field.startswith("UF_"):
            actual = task.get(field)  # inferred for XML_ID and UF_*: exact string match
            return q.match(op, None if actual is None else str(actual), expected, str)
        if field == "TAG":
            hit = any(tag in [str(v) for v in q.listed(expected)] for tag in task["TAGS"])
            return hit if op in _POSITIVE else (not hit if op in _NEGATIVE else True)
        return True  # the portal ignores filter keys it does not know

    def _task_sort_value(self, task: dict[str, Any], field: str) -> Any:
        if field in ("STATUS", "REAL_STATUS"):
            return task["STATUS"]
        if field == "TIME_SPENT_IN_LOGS":
            return self._view.time_spent(task["ID"])
        if field in ("CREATED_BY_LAST_NAME", "RESPONSIBLE_LAST_NAME"):
            owner = task["CREATED_BY"] if field.startswith("CREATED") else task["RESPONSIBLE_ID"]
            return self._users.get(owner, {}).get("LAST_NAME")
        value = task.get(field)
        return None if isinstance(value, (list, dict)) else value


def _error(error: ApiError) -> Response:
    return Response.json(error.status, error.payload())


def _user_ids(value: Any) -> list[str]:
    """ACCOMPLICES / AUDITORS on write: an array of user ids; stored and answered as strings."""
    return [str(q.php_intval(v)) for v in q.listed(value) if q.php_intval(v) > 0] if value else []


def _task_id_param(named: dict[str, Any]) -> int:
    if "taskId" not in named:  # controller parameters are bound by their exact name
        raise ApiError(
            400,
            "100",
            "CTaskItem All parameters in the constructor must have real class type (internal error)",
        )
    task_id = q.lax_int(named["taskId"])
    if task_id is None:
        raise ApiError(400, "0", "wrong task id")
    return task_id


def _typed(row: dict[str, Any], field: str) -> Any:
    """A rendered row's value with numeric ids back as ints, for filters."""
    value = row.get(field)
    return int(value) if field in ("ID", "OWNER_ID") and value is not None else value


@contextmanager
def _as_value_error() -> Iterator[None]:
    """Seeding helpers share the REST validation; a Python caller gets ValueError."""
    try:
        yield
    except ApiError as error:
        raise ValueError(error.description.removesuffix("<br>")) from error


def _status_handler(action: str) -> Callable[[Bitrix24Emulator, Any], Any]:
    def handler(emulator: Bitrix24Emulator, params: Any) -> _Outcome:
        return emulator._status_method(action, params)

    return handler


def _crm_handler(name: str) -> Callable[[Bitrix24Emulator, Any], Any]:
    def handler(emulator: Bitrix24Emulator, params: Any) -> Any:
        result = getattr(emulator.crm, name)(params)
        return _Outcome(result.result, result.total, result.next) if isinstance(result, Page) else result

    return handler


def _part_handler(part: str, name: str) -> Callable[[Bitrix24Emulator, Any], Any]:
    def handler(emulator: Bitrix24Emulator, params: Any) -> Any:
        result = getattr(getattr(emulator, part), name)(params)
        return _Outcome(result.result, result.total, result.next) if isinstance(result, Page) else result

    return handler


_TASK = ("task",)
_METHODS: dict[str, tuple[tuple[str, ...], Callable[[Bitrix24Emulator, Any], Any]]] = {
    "tasks.task.add": (_TASK, Bitrix24Emulator._m_task_add),
    "tasks.task.get": (_TASK, Bitrix24Emulator._m_task_get),
    "tasks.task.list": (_TASK, Bitrix24Emulator._m_task_list),
    "tasks.task.update": (_TASK, Bitrix24Emulator._m_task_update),
    **{f"tasks.task.{action}": (_TASK, _status_handler(action)) for action in TRANSITIONS},
    "task.commentitem.add": (_TASK, Bitrix24Emulator._m_comment_add),
    "task.commentitem.getlist": (_TASK, Bitrix24Emulator._m_comment_getlist),
    "task.elapseditem.getlist": (_TASK, Bitrix24Emulator._m_elapsed_getlist),
    "im.dialog.messages.get": (("im",), Bitrix24Emulator._m_im_dialog_messages_get),
    "task.elapseditem.add": (_TASK, Bitrix24Emulator._m_elapsed_add),
    "user.get": (("user", "user_brief", "user_basic"), Bitrix24Emulator._m_user_get),
    "sonet_group.get": (("sonet",), Bitrix24Emulator._m_sonet_group_get),
    "user.admin": ((), Bitrix24Emulator._m_user_admin),  # scope `basic`: every webhook has it
    **{method: (("crm",), _crm_handler(name)) for method, name in CRM_METHODS.items()},
    **{method: (("crm",), _part_handler("deals", name)) for method, name in DEAL_METHODS.items()},  # on to crm
    **{method: (("crm",), _part_handler("timeline", name)) for method, name in TIMELINE_METHODS.items()},
    **{method: (scopes, _part_handler("drive", name)) for method, (scopes, name) in DISK_METHODS.items()},
    "scope": ((), Bitrix24Emulator._m_scope),
    "server.time": ((), Bitrix24Emulator._m_server_time),
}
