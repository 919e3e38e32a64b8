"""What okbx reads of a task's history: its comments (classic or in the new card's chat) and the
time logged on it.  A part of `Bitrix24Client` (a mixin): it uses the client's `call`, `batch`
and parsing, and the client's knowledge of whether the portal has the new task card."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ApiError
from ..model import ElapsedItem, TaskComment
from .bitrix24_parse import parse_chat_messages, parse_comments, parse_elapsed
from .parse import items, obj

PAGE = 50


class TaskHistory:
    _task_chats: bool

    def call(self, method: str, params: dict[str, Any] | None = None, *, write: bool = False) -> Any:
        raise NotImplementedError

    def batch(
        self, commands: dict[str, tuple[str, dict[str, Any]]], *, write: bool = False
    ) -> tuple[dict[str, Any], dict[str, ApiError]]:
        raise NotImplementedError

    def _parse(self, method: str, parser: Callable[..., Any], *args: Any) -> Any:
        raise NotImplementedError

    def comments_of_tasks(self, task_ids: Iterable[int]) -> dict[int, list[TaskComment]]:
        """Every comment of each task, 50 tasks per request (`batch`)."""
        ids = sorted(set(task_ids))
        commands = {f"t{t}": ("task.commentitem.getlist", {"TASKID": t, "ORDER": {"ID": "asc"}}) for t in ids}
        results, _ = self.batch(commands)  # a task that failed is read again by its action alone
        return {
            t: self._parse("task.commentitem.getlist", parse_comments, results[f"t{t}"], t)
            for t in ids
            if f"t{t}" in results
        }

    def list_comments(self, task_id: int) -> list[TaskComment]:
        """Every comment of the task, wherever the portal keeps them.

        On the new task card (bitrix24.md 4.2) `task.commentitem.getlist` "does not work" (how it
        fails is not documented: an error or, inferred, an empty list), and the comments are the
        messages of the task's chat.  So an empty or refused list is checked against the task's
        `chatId` before it is believed: okbx looks for its markers here before every write."""
        failure: ApiError | None = None
        comments: list[TaskComment] = []
        if not self._task_chats:
            try:
                comments = self._comment_items(task_id)
            except ApiError as error:
                if error.ambiguous:
                    raise
                failure = error
            if comments:
                return comments
        chat_id = self._task_chat_id(task_id)
        if chat_id:
            self._task_chats = True
            return self._chat_messages(task_id, chat_id)
        if failure is not None:
            raise failure
        return self._comment_items(task_id) if self._task_chats else comments

    def _comment_items(self, task_id: int) -> list[TaskComment]:
        raw = self.call("task.commentitem.getlist", {"TASKID": int(task_id), "ORDER": {"ID": "asc"}})
        comments: list[TaskComment] = self._parse("task.commentitem.getlist", parse_comments, raw, int(task_id))
        return comments

    def tasks_with_chats(self, task_ids: Iterable[int]) -> set[int]:
        """Which of these tasks have a chat (the new task card): one request per 50 tasks.  Their
        comments are in the chat, whatever `task.commentitem.getlist` answered for them."""
        with_chat: set[int] = set()
        ids = sorted(set(task_ids))
        for n in range(0, len(ids), PAGE):
            params = {"filter": {"ID": ids[n : n + PAGE]}, "select": ["ID", "CHAT_ID"], "start": -1}
            raw = self.call("tasks.task.list", params)
            data = self._parse("tasks.task.list", lambda r: obj(r, "tasks.task.list result"), raw)
            for task in items(data.get("tasks", []), "tasks"):
                row = obj(task, "task")
                chat = str(row.get("chatId", row.get("CHAT_ID")) or "")
                if chat.isdigit() and int(chat) > 0 and str(row.get("id", "")).isdigit():
                    with_chat.add(int(str(row["id"])))
        if with_chat:
            self._task_chats = True
        return with_chat

    def _task_chat_id(self, task_id: int) -> int | None:
        raw = self.call("tasks.task.get", {"taskId": int(task_id), "select": ["ID", "CHAT_ID"]})

        def chat(value: Any) -> int | None:
            task = obj(value, "tasks.task.get result").get("task") if value not in ([], None, {}) else None
            found = (
                obj(task, "task").get("chatId", obj(task, "task").get("CHAT_ID")) if task not in ([], None) else None
            )
            return int(str(found)) if str(found or "").isdigit() and int(str(found)) > 0 else None

        chat_id: int | None = self._parse("tasks.task.get", chat, raw)
        return chat_id

    def _chat_messages(self, task_id: int, chat_id: int) -> list[TaskComment]:
        """The task chat, newest page first, then backward by `LAST_ID` (`LIMIT` at most 50)."""
        method = "im.dialog.messages.get"
        found: dict[int, TaskComment] = {}
        last_id: int | None = None
        while True:
            params: dict[str, Any] = {"DIALOG_ID": f"chat{chat_id}", "LIMIT": PAGE}
            if last_id is not None:
                params["LAST_ID"] = last_id
            page: list[TaskComment] = self._parse(method, parse_chat_messages, self.call(method, params), task_id)
            fresh = [m for m in page if m.id not in found]
            found.update((m.id, m) for m in fresh)
            if len(page) < PAGE or not fresh:
                return sorted(found.values(), key=lambda m: m.id)
            last_id = min(m.id for m in page)

    # -- elapsed time (positional: TASKID, ORDER, FILTER, SELECT, PARAMS) ----------------
    def elapsed_for_tasks(self, task_ids: Iterable[int]) -> dict[int, list[ElapsedItem]]:
        """All elapsed items of each task, the first page of each batched together."""
        pending = {int(t): 1 for t in task_ids}
        found: dict[int, list[ElapsedItem]] = {t: [] for t in pending}
        while pending:
            commands = {
                f"t{task_id}": ("task.elapseditem.getlist", self._elapsed_params(task_id, page))
                for task_id, page in pending.items()
            }
            results, errors = self.batch(commands)
            if errors:
                raise next(iter(errors.values()))
            next_pending = {}
            for task_id, page in pending.items():
                rows: list[ElapsedItem] = self._parse("task.elapseditem.getlist", parse_elapsed, results[f"t{task_id}"])
                found[task_id].extend(rows)
                if len(rows) >= PAGE:
                    next_pending[task_id] = page + 1
            pending = next_pending
        return found

    @staticmethod
    def _elapsed_params(task_id: int, page: int) -> dict[str, Any]:
        # Positional method inside a batch query string: an empty FILTER would vanish from the
        # query and shift SELECT into its place, so the filter always names the task.
        return {
            "TASKID": task_id,
            "ORDER": {"ID": "asc"},
            "FILTER": {"TASK_ID": task_id},
            "SELECT": ["*"],
            "PARAMS": {"NAV_PARAMS": {"nPageSize": PAGE, "iNumPage": page}},
        }

    def elapsed_since(self, after_id: int, task_ids: Iterable[int]) -> list[ElapsedItem]:
        """Items newer than `after_id` across the given tasks (first argument omitted = all tasks)."""
        ids = sorted(set(task_ids))
        if not ids:
            return []
        result: list[ElapsedItem] = []
        while True:
            raw = self.call(
                "task.elapseditem.getlist",
                {
                    "ORDER": {"ID": "asc"},
                    "FILTER": {">ID": after_id, "TASK_ID": ids},
                    "SELECT": ["*"],
                    "PARAMS": {"NAV_PARAMS": {"nPageSize": PAGE, "iNumPage": 1}},
                },
            )
            rows: list[ElapsedItem] = self._parse("task.elapseditem.getlist", parse_elapsed, raw)
            result.extend(rows)
            if len(rows) < PAGE:
                return result
            after_id = max(r.id for r in rows)
