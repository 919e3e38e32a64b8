"""What okbx already wrote on the remote side, read before writing: the accounts are the truth.

Before any write of an issue, the applier asks here whether the write's marker is already on
the remote side, whatever the state store says (it may be lost, copied, or one of two
installations).  Each list is read at most once per cycle and only for issues with planned
writes, so a cycle without work reads nothing here:

  Okdesk comments of the issue   (free when the cycle's snapshot already read them)
  Bitrix24 comments of the task  (one request per task; none for a task created this cycle)
  Okdesk time entries of the issue (one request per issue that copies time)
  Drive folders and task files   (remote_files.py, for issues that move files)
  Bitrix24 timeline comments of a deal (the sales route; one request per deal)

Writes made in this cycle are added as they succeed, so the cache stays true.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .. import keys
from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_deals import DealsClient
from ..clients.bitrix24_deals_parse import TimelineComment
from ..clients.okdesk import OkdeskClient
from ..model import Comment, TaskComment, TimeEntry
from .remote_files import RemoteFiles


class RemoteMarkers:
    def __init__(
        self,
        okdesk: OkdeskClient,
        bitrix: Bitrix24Client,
        bot_employee_id: int,
        issue_comments: dict[int, list[Comment]] | None = None,
        *,
        max_file_bytes: int | None = None,
    ) -> None:
        self.okdesk = okdesk
        self.files = RemoteFiles(okdesk, bitrix, max_file_bytes=max_file_bytes)  # Drive and task files
        self.bitrix = bitrix
        self.bot_employee_id = bot_employee_id
        self._issue: dict[int, dict[str, str]] = {}
        self._task: dict[int, dict[str, str]] = {}
        self._deal: dict[int, dict[str, str]] = {}
        self._time: dict[int, dict[str, TimeEntry]] = {}
        self._items: dict[int, dict[str, list[int]]] = {}  # issue id -> report key -> items it lists
        self._posted: dict[int, dict[str, datetime]] = {}  # issue id -> key -> when Okdesk says it was posted
        for issue_id, comments in (issue_comments or {}).items():
            self._issue[issue_id] = self._from_comments(issue_id, comments)
        self.reads = 0  # requests spent here: reported by the benchmark

    def _from_comments(self, issue_id: int, comments: Iterable[Comment]) -> dict[str, str]:
        found: dict[str, str] = {}
        items: dict[str, list[int]] = {}
        for c in comments:
            # only the bot's own comments count: a person pasting a marker adopts nothing
            if c.author.kind != "employee" or c.author.id != self.bot_employee_id:
                continue
            key = keys.in_html(c.content_html)
            if key is None:
                continue
            found.setdefault(key.text, str(c.id))
            if c.published_at is not None:
                self._posted.setdefault(issue_id, {}).setdefault(key.text, c.published_at)
            if isinstance(key, keys.SummaryKey):  # a report posted while the return is owed is the report too
                found.setdefault(key.report.text, str(c.id))
            if isinstance(key, keys.LinkCommentKey):  # one naming the route is the handoff's link comment
                found.setdefault(keys.LinkCommentKey(key.issue_id, key.cycle).text, str(c.id))
            if isinstance(key, keys.SummaryKey):
                items.setdefault(key.report.text, keys.reported_items(c.content_html))
            elif isinstance(key, keys.LateKey):
                items.setdefault(key.text, keys.reported_items(c.content_html))
        self._items[issue_id] = items
        return found

    def read_issue(self, issue_id: int, comments: Iterable[Comment]) -> None:
        """The issue's comments as the cycle just read them: the first look at what okbx wrote
        there, so a write looks for its marker without reading them again (what is already
        known, with the writes of this cycle, stays)."""
        if issue_id not in self._issue:
            self._issue[issue_id] = self._from_comments(issue_id, comments)

    # -- the three lists ---------------------------------------------------------------------
    def issue(self, issue_id: int) -> dict[str, str]:
        """Keys of okbx's comments in the Okdesk issue -> comment id."""
        if issue_id not in self._issue:
            self.reads += 1
            self._issue[issue_id] = self._from_comments(issue_id, self.okdesk.list_comments(issue_id))
        return self._issue[issue_id]

    def posted_at(self, issue_id: int, key: str) -> datetime | None:
        """When okbx's comment with this key was posted in the issue, as Okdesk tells it."""
        self.issue(issue_id)
        return self._posted.get(issue_id, {}).get(key)

    def reports(self, issue_id: int) -> dict[str, list[int]]:
        """okbx's reports in the issue (summary and late-time keys) -> the elapsed items each lists."""
        self.issue(issue_id)
        return self._items.get(issue_id, {})

    def reported_items(self, issue_id: int) -> set[int]:
        """Elapsed items okbx's reports in the issue say were copied."""
        return {item for listed in self.reports(issue_id).values() for item in listed}

    def task(self, task_id: int) -> dict[str, str]:
        """Keys of okbx's comments in the Bitrix24 task -> comment id."""
        if task_id not in self._task:
            self.reads += 1
            self._task[task_id] = _task_markers(self.bitrix.list_comments(task_id))
        return self._task[task_id]

    def read_tasks(self, task_ids: Iterable[int]) -> None:
        """Read the comments of many tasks at once (50 per request) before their writes look."""
        wanted = sorted(set(task_ids) - set(self._task))
        if not wanted or self.bitrix.has_task_chats:  # the new task card: comments are in the chat
            return
        self.reads += 1
        listed = self.bitrix.comments_of_tasks(wanted)
        empty = [task_id for task_id, comments in listed.items() if not comments]
        # an empty list may be the new task card's (its comments are in the chat): those are read alone
        chats = self.bitrix.tasks_with_chats(empty) if empty else set()
        for task_id, comments in listed.items():
            if task_id not in chats:
                self._task[task_id] = _task_markers(comments)

    def time_entries(self, issue_id: int) -> dict[str, TimeEntry]:
        """okbx's time entries in the Okdesk issue, by key."""
        if issue_id not in self._time:
            self.reads += 1
            found: dict[str, TimeEntry] = {}
            for entry in self.okdesk.list_time_entries(issue_id):
                if key := keys.in_text(entry.comment):
                    found.setdefault(key.text, entry)
            self._time[issue_id] = found
        return self._time[issue_id]

    def deal(self, deal_id: int) -> dict[str, str]:
        """Keys of okbx's comments in a deal's timeline (the sales route) -> comment id."""
        if deal_id not in self._deal:
            self.reads += 1
            self._deal[deal_id] = _task_markers(self._deals().comments(deal_id))
        return self._deal[deal_id]

    def read_deals(self, deal_ids: Iterable[int]) -> None:
        """The timelines of many deals at once (first pages batched) before their writes look."""
        wanted = sorted(set(deal_ids) - set(self._deal))
        if not wanted:
            return
        self.reads += 1
        for deal_id, comments in self._deals().comments_of_deals(wanted).items():
            self._deal[deal_id] = _task_markers(comments)

    def _deals(self) -> DealsClient:
        return DealsClient(self.bitrix)

    # -- bookkeeping -------------------------------------------------------------------------
    def new_task(self, task_id: int) -> None:
        """A task okbx has just created has no comments: nothing to read."""
        self._task.setdefault(task_id, {})

    def new_deal(self, deal_id: int) -> None:
        self._deal.setdefault(deal_id, {})


def _task_markers(comments: Iterable[TaskComment | TimelineComment]) -> dict[str, str]:
    """Keys of okbx's comments among a task's (or a deal's) comments -> comment id (the first of each)."""
    found: dict[str, str] = {}
    for c in comments:
        if key := keys.in_bbcode(c.text):
            found.setdefault(key.text, str(c.id))
    return found
