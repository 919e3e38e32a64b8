"""Bitrix24 REST client over an incoming webhook: a thin set of verbs returning our model.

Facts used (../shared/api/bitrix24.md): JSON POST to `<webhook>/<method>`; legacy `task.*`
methods take their parameters BY POSITION, so their dicts are built in documented order and
never carry an extra key; `batch` takes at most 50 commands, each a PHP query string, and
command keys must not be numeric; 503 QUERY_LIMIT_EXCEEDED is retried, 429 OPERATION_TIME_LIMIT
and 503 OVERLOAD_LIMIT stop the cycle; missing (or, for a non-administrator, unreachable) tasks
come back as `"result": []`; `user.get` pages by 50.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ..clock import REAL_CLOCK, Clock
from ..config import Bitrix24Config
from ..errors import ApiError, MalformedResponse
from ..model import Task
from ..secrets import Redactor
from .bitrix24_history import TaskHistory
from .bitrix24_parse import (
    parse_new_id,
    parse_task,
    parse_task_get,
    parse_task_list,
)
from .bitrix24_wire import as_map, classify, clean_error, php_query
from .http import (
    Downloaded,
    HttpAnswer,
    RateLimited,
    RequestBudget,
    RetryPolicy,
    Sink,
    Throttle,
    Transport,
)
from .multipart import MultipartBody
from .parse import ParseError, items, obj

log = logging.getLogger(__name__)
SYSTEM = "Bitrix24"
BATCH_MAX = 50
PAGE = 50
TASK_SELECT = ["ID", "TITLE", "STATUS", "XML_ID", "GROUP_ID", "CLOSED_DATE", "CHANGED_DATE", "DEADLINE"]


class Bitrix24Client(TaskHistory):
    def __init__(
        self,
        config: Bitrix24Config,
        redactor: Redactor,
        *,
        budget: RequestBudget | None = None,
        backoff_seconds: float = 1.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.config = config
        self.base = config.webhook_url.reveal().rstrip("/") + "/"
        self.transport = Transport(
            SYSTEM,
            throttle=Throttle(config.requests_per_second, config.burst, clock=clock.monotonic, sleep=clock.sleep),
            redactor=redactor,
            timeout=(5.0, config.timeout_seconds),
            classify=classify,
            policy=RetryPolicy(backoff_seconds=backoff_seconds),
            budget=budget,
            sleep=clock.sleep,
        )
        self._task_chats = False  # a task with a chat was seen: this portal has the new task card
        self._admin: bool | None = None  # user.admin, asked at most once per client (one cycle)

    @property
    def has_task_chats(self) -> bool:
        """A task with a chat was seen: this portal has the new task card (comments in the chat)."""
        return self._task_chats

    @property
    def requests_sent(self) -> int:
        return self.transport.requests_sent

    def close(self) -> None:
        self.transport.close()

    def portal_url(self) -> str:
        """https://portal (no secret), for links people click."""
        return self.base.split("/rest/")[0]

    def task_url(self, task_id: int, user_id: int | None = None) -> str:
        """The task's page, as seen in `user_id`'s task list (a route's responsible; else the webhook's user)."""
        user = user_id or self.config.responsible_id or self.webhook_user()
        return f"{self.portal_url()}/company/personal/user/{user}/tasks/task/view/{task_id}/"

    def deal_url(self, deal_id: int) -> str:
        return f"{self.portal_url()}/crm/deal/details/{deal_id}/"

    def server_skew(self, now: datetime) -> float | None:
        """Seconds the server's clock is ahead of `now` (negative: behind), from its last answer."""
        return self.transport.server_skew(now)

    # -- plumbing ------------------------------------------------------------------------
    def call(self, method: str, params: dict[str, Any] | None = None, *, write: bool = False) -> Any:
        answer = self.transport.request("POST", self.base + method, method, body=params or {}, write=write)
        return self._result(answer, method)

    def post_form(self, url: str, op: str, body: MultipartBody) -> Any:
        """A streamed multipart POST to a link a method gave (Drive's `uploadUrl`): a write, sent
        once; the answer is read like a method's."""
        headers = {"Content-Type": body.content_type}
        answer = self.transport.request("POST", url, op, write=True, data=body, headers=headers)
        return self._result(answer, op)

    def download(self, url: str, op: str, sink: Sink, *, max_bytes: int | None) -> Downloaded:
        """Stream a file from a Drive link.  The docs ask for a browser's headers: a download with
        a blank or technical User-Agent may fail even with a valid link (routes-files.md §3.5)."""
        headers = {"Accept": "*/*", "Accept-Language": "ru,en;q=0.8", "Referer": self.portal_url() + "/"}
        return self.transport.download(url, op, sink, max_bytes=max_bytes, headers=headers)

    def _result(self, answer: HttpAnswer, method: str) -> Any:
        body = answer.body
        if isinstance(body, dict) and "error" in body:
            error = body["error"]
            if isinstance(error, dict):  # REST 3.0 envelope
                raise ApiError(
                    SYSTEM,
                    method,
                    self.transport.redact(str(error.get("message", ""))),
                    status=answer.status,
                    code=str(error.get("code", "")),
                )
            raise ApiError(
                SYSTEM,
                method,
                self.transport.redact(clean_error(str(body.get("error_description") or error))),
                status=answer.status,
                code=str(error),
            )
        if answer.status >= 400:
            raise ApiError(SYSTEM, method, "request rejected", status=answer.status)
        if not isinstance(body, dict) or "result" not in body:
            raise MalformedResponse(SYSTEM, method, "answer has no 'result'", status=answer.status)
        return body["result"]

    def _parse(self, method: str, parser: Callable[..., Any], *args: Any) -> Any:
        try:
            return parser(*args)
        except ParseError as exc:
            raise MalformedResponse(SYSTEM, method, str(exc)) from None

    def batch(
        self, commands: dict[str, tuple[str, dict[str, Any]]], *, write: bool = False
    ) -> tuple[dict[str, Any], dict[str, ApiError]]:
        """Run commands in batches of 50; returns (results by key, errors by key).  `write`: the
        commands write, so a batch whose answer is lost is never sent again (its error is
        ambiguous and raised; the caller looks for the writes' markers next run)."""
        results: dict[str, Any] = {}
        errors: dict[str, ApiError] = {}
        keys = list(commands)
        for start in range(0, len(keys), BATCH_MAX):
            chunk = keys[start : start + BATCH_MAX]
            for key in chunk:
                if key.isdigit():
                    raise ValueError("batch keys must not be numeric (PHP would answer a list)")
            cmd = {key: f"{commands[key][0]}?{php_query(commands[key][1])}" for key in chunk}
            raw = obj(self.call("batch", {"halt": 0, "cmd": cmd}, write=write), "batch result")
            done = as_map(raw.get("result"))
            failed = as_map(raw.get("result_error"))
            for key in chunk:
                if key in failed:
                    err = failed[key] if isinstance(failed[key], dict) else {}
                    code = str(err.get("error", ""))
                    # a method blocked by its operating limit was not run: like a blocked request
                    # it stops the cycle (the write is looked for and made next run)
                    kind = RateLimited if code in ("OPERATION_TIME_LIMIT", "QUERY_LIMIT_EXCEEDED") else ApiError
                    errors[key] = kind(
                        SYSTEM,
                        commands[key][0],
                        self.transport.redact(clean_error(str(err.get("error_description", "")))),
                        code=code,
                    )
                elif key in done:
                    results[key] = done[key]
                else:
                    errors[key] = MalformedResponse(SYSTEM, commands[key][0], "missing from the batch answer")
        return results, errors

    # -- tasks ---------------------------------------------------------------------------
    def add_task(self, fields: dict[str, Any]) -> Task:
        raw = self.call("tasks.task.add", {"fields": fields}, write=True)
        task: Task = self._parse("tasks.task.add", lambda r: parse_task(obj(r, "result").get("task")), raw)
        return task

    def get_task(self, task_id: int) -> Task | None:
        raw = self.call("tasks.task.get", {"taskId": int(task_id), "select": TASK_SELECT})
        task: Task | None = self._parse("tasks.task.get", parse_task_get, raw)
        if task is not None and task.id != int(task_id):
            raise MalformedResponse(
                SYSTEM, "tasks.task.get", f"asked for task {task_id}, the answer is about {task.id}"
            )
        return task

    def find_tasks(self, filter_: dict[str, Any]) -> list[Task]:
        tasks: list[Task] = []
        last_id = 0
        while True:
            raw = self.call(
                "tasks.task.list",
                {"order": {"ID": "asc"}, "filter": {**filter_, ">ID": last_id}, "select": TASK_SELECT, "start": -1},
            )
            page: list[Task] = self._parse("tasks.task.list", parse_task_list, raw)
            tasks.extend(page)
            if len(page) < PAGE:
                return tasks
            last_id = max(t.id for t in page)

    def tasks_by_id(self, task_ids: Iterable[int]) -> tuple[dict[int, Task], dict[int, ApiError]]:
        """Current state of many tasks: one batched request per 2,500 ids."""
        ids = sorted(set(task_ids))
        commands = {
            f"ids{n}": ("tasks.task.list", {"filter": {"ID": ids[n : n + PAGE]}, "select": TASK_SELECT, "start": -1})
            for n in range(0, len(ids), PAGE)
        }
        results, errors = self.batch(commands)
        found: dict[int, Task] = {}
        for raw in results.values():
            for task in self._parse("tasks.task.list", parse_task_list, raw):
                found[task.id] = task
        chunks = {key: ids[n : n + PAGE] for n, key in zip(range(0, len(ids), PAGE), commands, strict=True)}
        failed = {task_id: err for key, err in errors.items() for task_id in chunks[key]}
        return found, failed

    def update_task(self, task_id: int, fields: dict[str, Any]) -> Task:
        raw = self.call("tasks.task.update", {"taskId": int(task_id), "fields": fields}, write=True)
        task: Task = self._parse("tasks.task.update", lambda r: parse_task(obj(r, "result").get("task")), raw)
        return task

    def crm_links(self, task_id: int) -> list[str] | None:
        """The task's CRM links (`UF_CRM_TASK`, e.g. ["CO_5", "SI_77"]); None for a task not found.
        The field comes back only when selected, as `ufCrmTask` (crm-billing.md 2.6)."""
        raw = self.call("tasks.task.get", {"taskId": int(task_id), "select": ["ID", "UF_CRM_TASK"]})
        if raw in ([], None, {}) or (isinstance(raw, dict) and raw.get("task") in ([], None)):
            return None
        task = obj(obj(raw, "tasks.task.get result").get("task"), "task")
        links = task.get("ufCrmTask")
        if links in (None, False, "", []):  # an empty user field may come back as false (inferred)
            return []
        if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
            raise MalformedResponse(SYSTEM, "tasks.task.get", f"ufCrmTask is not a list of strings: {links!r:.60}")
        return list(links)

    def tasks_by_xml_id(self, xml_ids: Iterable[str], group_id: int | None) -> dict[str, list[Task]]:
        """The tasks carrying each XML_ID (okbx's marker on a task): 50 lookups per request.
        The XML_ID filter is inferred (reference section 2); callers check `xml_id` themselves."""
        wanted = sorted(set(xml_ids))
        commands = {
            f"x{n}": ("tasks.task.list", {"filter": {"XML_ID": xml_id, "GROUP_ID": group_id}, "select": TASK_SELECT})
            for n, xml_id in enumerate(wanted)
        }
        results, _ = self.batch(commands)  # a lookup that failed is made again by its action alone
        return {
            xml_id: self._parse("tasks.task.list", parse_task_list, results[key])
            for key, xml_id in zip(commands, wanted, strict=True)
            if key in results
        }

    def add_tasks(self, fields: dict[str, dict[str, Any]]) -> tuple[dict[str, Task], dict[str, ApiError]]:
        """Create up to 50 tasks per request (`batch`); by the caller's key."""
        results, errors = self.batch({key: ("tasks.task.add", {"fields": f}) for key, f in fields.items()}, write=True)
        tasks = {
            key: self._parse("tasks.task.add", lambda r: parse_task(obj(r, "result").get("task")), raw)
            for key, raw in results.items()
        }
        return tasks, errors

    def renew_task(self, task_id: int) -> Task:
        raw = self.call("tasks.task.renew", {"taskId": int(task_id)}, write=True)
        task: Task = self._parse("tasks.task.renew", lambda r: parse_task(obj(r, "result").get("task")), raw)
        return task

    # -- comments (positional method: TASKID, FIELDS; nothing else) ---------------------
    def add_comment(self, task_id: int, text: str) -> int:
        raw = self.call("task.commentitem.add", {"TASKID": int(task_id), "FIELDS": {"POST_MESSAGE": text}}, write=True)
        new_id: int = self._parse("task.commentitem.add", parse_new_id, raw, "task.commentitem.add")
        return new_id

    def add_comments(self, comments: dict[str, tuple[int, str]]) -> tuple[dict[str, int], dict[str, ApiError]]:
        """(task id, text) by the caller's key: up to 50 comments per request (`batch`).  The
        positional method keeps its parameter order in the command's query string."""
        commands = {
            key: ("task.commentitem.add", {"TASKID": int(task_id), "FIELDS": {"POST_MESSAGE": text}})
            for key, (task_id, text) in comments.items()
        }
        results, errors = self.batch(commands, write=True)
        new_ids = {
            key: self._parse("task.commentitem.add", parse_new_id, raw, "task.commentitem.add")
            for key, raw in results.items()
        }
        return new_ids, errors

    # -- people and groups (doctor, init) ------------------------------------------------
    def users(self, ids: Iterable[int] | None = None) -> list[dict[str, Any]]:
        """Users by id (all users when `ids` is None).  `user.get` answers 50 a page (confirmed,
        ../shared/api/bitrix24.md section 9), so ids go 50 to a request and every page is read."""
        if ids is None:
            return self.list_all("user.get", {})
        wanted = sorted(set(ids))
        found: list[dict[str, Any]] = []
        for start in range(0, len(wanted), PAGE):
            found += self.list_all("user.get", {"FILTER": {"@ID": wanted[start : start + PAGE]}})
        return found

    def list_all(self, method: str, params: dict[str, Any], *, max_pages: int = 200) -> list[dict[str, Any]]:
        """Every row of a classic list method, paged by `start` and the answer's `next`."""
        rows: list[dict[str, Any]] = []
        start = 0
        for _ in range(max_pages):
            answer = self.transport.request(
                "POST", self.base + method, method, body={**params, "start": start}, write=False
            )
            page = items(self._result(answer, method), method)
            rows += [row for row in page if isinstance(row, dict)]
            following = answer.body.get("next") if isinstance(answer.body, dict) else None
            if not page or not str(following).isdigit() or int(str(following)) <= start:
                return rows
            start = int(str(following))
        raise MalformedResponse(SYSTEM, method, f"still paging after {max_pages} pages of {PAGE}")

    def is_admin(self) -> bool:
        """Is the webhook's user a portal administrator (`user.admin`, scope basic)?

        Only an administrator sees every task, so only its "no such task" proves a deletion.
        A "no" is remembered for the process (a stale "no" only makes okbx more careful); a "yes"
        only for this client, i.e. one cycle: `okbx run` lives for months, and rights taken away
        meanwhile must not turn a hidden task into a deleted one."""
        key = (self.portal_url(), self.webhook_user())
        if key in _ADMIN_CACHE:
            return _ADMIN_CACHE[key]
        if self._admin is None:
            result = self.call("user.admin")
            if not isinstance(result, bool):
                raise MalformedResponse(SYSTEM, "user.admin", f"expected true or false, got {str(result)[:30]!r}")
            self._admin = result
            if not result:
                _ADMIN_CACHE[key] = False
        return self._admin

    def webhook_user(self) -> int:
        """The user id in the webhook URL (/rest/<user>/<secret>/); not a secret."""
        parts = self.base.split("/rest/", 1)[-1].split("/")
        return int(parts[0]) if parts and parts[0].isdigit() else 0

    def group(self, group_id: int) -> dict[str, Any] | None:
        found = items(self.call("sonet_group.get", {"FILTER": {"ID": group_id}, "IS_ADMIN": "Y"}), "sonet_group.get")
        return found[0] if found and isinstance(found[0], dict) else None

    def scopes(self) -> list[str]:
        return [str(s) for s in items(self.call("scope"), "scope")]


_ADMIN_CACHE: dict[tuple[str, int], bool] = {}  # (portal, webhook user) -> False: not an administrator


def forget_admin_rights() -> None:
    """Ask `user.admin` again next time (tests start many portals in one process)."""
    _ADMIN_CACHE.clear()
