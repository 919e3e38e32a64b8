"""A new state store next to accounts where okbx already worked: bring in what it did.

Issues in the handoff status are adopted by the ordinary path (their task is found by its
`XML_ID` before any create).  Tasks completed recently are not in any listing okbx reads, yet
time logged on them late must still be copied and a completion not yet reported must still
be: so once, when the store is new, the tasks of the group closed within the late-time window
are read and their links rebuilt from the markers on both sides (`rebuild.py`).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ..clients.bitrix24 import Bitrix24Client
from ..clients.okdesk import OkdeskClient
from ..config import Config
from ..errors import ApiError, NotFound
from ..state.store import Store
from . import keys, rebuild
from .remote import RemoteMarkers

log = logging.getLogger(__name__)
XML_PREFIX = "okdesk:"
META = "recent_tasks_adopted_at"


def adopt_recent_tasks(
    okdesk: OkdeskClient, bitrix: Bitrix24Client, store: Store, config: Config, now: datetime
) -> list[int]:
    """Rebuild the links of recently completed tasks, once per new store; the issue ids adopted."""
    if store.get_meta(META) is not None:
        return []
    if store.links():  # a store that already worked knows its links
        store.set_meta(META, now.isoformat())
        return []
    since = now - timedelta(days=config.time.late_window_days)
    tasks = bitrix.find_tasks({"GROUP_ID": config.bitrix24.group_id, ">=CLOSED_DATE": since.isoformat()})
    remote = RemoteMarkers(okdesk, bitrix, config.okdesk.bot_employee_id)
    adopted: list[int] = []
    for task in sorted(tasks, key=lambda t: t.id):
        xml_id = task.xml_id or ""
        if not xml_id.startswith(XML_PREFIX) or not xml_id[len(XML_PREFIX) :].isdigit():
            continue
        issue_id = int(xml_id[len(XML_PREFIX) :])
        if store.link(issue_id) is not None:
            continue
        try:
            found = rebuild.link_from_remote(
                issue_id, task, remote.issue(issue_id), remote.task(task.id), config.bitrix24.done_statuses
            )
            copied = remote.time_entries(issue_id)
        except NotFound:
            continue  # the issue was deleted: nothing to copy time into
        except ApiError as error:
            # not adopted now, and not marked as done: the next run of a new store tries again
            log.warning("could not rebuild the link of task %s: %s", task.id, error)
            return adopted
        store.create_link(issue_id, task.id, status=None, origin="rebuilt from the markers")
        key = keys.task(issue_id, found.task_cycle)
        store.begin_op(key.text, issue_id, "task", cycle=found.task_cycle, report_key=None)
        store.finish_op(
            key.text,
            issue_id,
            "task",
            remote_id=str(task.id),
            outcome="adopted",
            summary=f"found task {task.id}: handoff {found.cycle}, {found.state}",
            link_update={**found.link_update(), "dirty": True},
        )
        for text, entry in copied.items():  # time copied before: never planned again, not even as "late"
            # its line in the ledger, as far as the Okdesk entry tells it
            row = {"seconds": round(entry.spent_hours * 3600), "employee_id": entry.employee_id, "adopted": True}
            store.begin_op(text, issue_id, "time", cycle=found.cycle, report_key=None, detail=row)
            store.finish_op(
                text, issue_id, "time", remote_id=str(entry.id), outcome="adopted", summary="time entry found"
            )
        adopted.append(issue_id)
    store.set_meta(META, now.isoformat())
    if adopted:
        log.info("new state store: adopted %s recently completed task(s) from the markers", len(adopted))
    return adopted
