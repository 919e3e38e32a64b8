"""The reads files planning needs, for the route's wing: what the tasks hold, at and after completion.

  a completing task        its attachments (`ufTaskWebdavFiles` of 50 tasks per `tasks.task.list`,
                           those lists batched), then their names and sizes (`disk.attachedObject.get`,
                           batched), for every completing task of the page at once
  a task completed lately  the same, once per cycle for all of them, but names are read only for
                           attachments the store does not know (a key per attachment okbx dealt
                           with: `FilesBackKey`), so a quiet cycle costs one request; only tasks
                           completed since files were switched on are looked at (`FILES_SINCE`),
                           so switching files on never sends old results as "late"
A file okbx may not read (`ACCESS_DENIED`) is named back in the issue, never retried; one gone
meanwhile is left out; any other failure is a failed read, tried again at the next run.
Download links are never kept from these reads: they are asked for right before each download.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ... import keys
from ...clients.bitrix24_disk import Bitrix24Drive
from ...clients.files_parse import TaskFile
from ...state.store import Link, LinkState, Store

log = logging.getLogger(__name__)
FILES_SINCE = "files_since"  # meta: when files were switched on (late files only for later completions)
UNREADABLE = ("ACCESS_DENIED",)
GONE = ("ERROR_NOT_FOUND",)


@dataclass(frozen=True)
class TaskFiles:
    """What the cycle read of a task's files: its attachments, and those okbx may not read."""

    files: tuple[TaskFile, ...] = ()
    unreadable: dict[int, str] = field(default_factory=dict, hash=False)  # attachment id -> why


def read_task_files(drive: Bitrix24Drive, task_ids: Iterable[int]) -> dict[int, TaskFiles]:
    """Every attachment of each task, with its name and size."""
    wanted = set(task_ids)
    return named(drive, drive.file_ids_of_tasks(wanted)) if wanted else {}


def named(drive: Bitrix24Drive, attachments: dict[int, list[int]]) -> dict[int, TaskFiles]:
    """Names and sizes of the tasks' attachments (task id -> attachment ids), in batches."""
    wanted = {a for listed in attachments.values() for a in listed}
    found, refused = drive.attached_objects(wanted) if wanted else ({}, {})
    for error in refused.values():
        if error.code not in UNREADABLE + GONE:
            raise error  # a failed read (a rate limit in the batch, say): the next run reads again
    return {
        task_id: TaskFiles(
            tuple(found[a] for a in listed if a in found),
            {a: refused[a].message for a in listed if a in refused and refused[a].code in UNREADABLE},
        )
        for task_id, listed in attachments.items()
    }


def new_attachments(
    attachments: dict[int, list[int]], issue_of: dict[int, int], known: set[str]
) -> dict[int, list[int]]:
    """Of each task's attachments (task -> ids), those okbx has not dealt with (`known` key texts)."""
    fresh = {
        task_id: [a for a in listed if keys.FilesBackKey(issue_of[task_id], a).text not in known]
        for task_id, listed in attachments.items()
        if task_id in issue_of
    }
    return {task_id: listed for task_id, listed in fresh.items() if listed}


def late_links(links: dict[int, Link], since: datetime | None, now: datetime, window: timedelta) -> dict[int, int]:
    """Task id -> issue id of the links completed since files were on, within the late window."""
    if since is None:
        return {}
    return {
        link.task_id: issue_id
        for issue_id, link in links.items()
        if link.state == LinkState.DONE
        and link.task_id
        and link.done_at is not None
        and since <= link.done_at
        and now - link.done_at <= window
    }


def read_late_files(drive: Bitrix24Drive, store: Store, recent: dict[int, int]) -> dict[int, TaskFiles]:
    """The attachments added to recently completed tasks that okbx has not dealt with (task ->)."""
    if not recent:
        return {}
    attachments = drive.file_ids_of_tasks(recent)
    candidates = [keys.FilesBackKey(recent[t], a).text for t, listed in attachments.items() for a in listed]
    known = {key for key, op in store.ops_by_keys(candidates).items() if op.done}
    fresh = new_attachments(attachments, recent, known)
    return named(drive, fresh) if fresh else {}


def files_since(store: Store) -> datetime | None:
    text = store.get_meta(FILES_SINCE)
    return datetime.fromisoformat(text) if text else None
