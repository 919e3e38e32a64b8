"""A lost state store in the awkward moments (issue 13 item 5): the markers of both systems say
what happened, and nothing is reopened, repeated or undone.

  * Okdesk refuses the status return, the store is lost (twice): the completion is recognised
    (not a new handoff), the task is not reopened, the one summary and the invoice carry the real
    time, and the issue returns once the transition is allowed.
  * A person deletes a time entry okbx copied, then the store is lost: the entry stays deleted,
    and no "more time was logged" note appears.
"""

from __future__ import annotations

from datetime import timedelta

from e2e import Okbx, hand_off, sync_ok
from test_accounts_truth import lose_store, marked, time_markers
from test_sync_story import only_task

from okbx_emulator.http import Fault, Response
from okbx_emulator.world import HANDOFF, World

STATUS = "POST /issues/{id}/statuses"
REFUSED = Response.json(422, {"errors": {"code": ["Переход из статуса запрещён"]}})
SYNC = {"retry_base_seconds": 1, "backoff_seconds": 0.05}
BILLING = {"default_rate": 3000, "currency": "RUB"}


def _completed_with_time(world: World, okbx: Okbx) -> tuple[int, int]:
    bx, p = world.bitrix, world.people
    issue = hand_off(world, "Report export fails", comment="Please look")
    sync_ok(okbx)
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 5400, "Fixed the CSV encoding")
    bx.log_time(task, p.bx_olga, 1800, "Review")
    bx.complete_task(task)
    return issue, task


def _let_time_pass(okbx: Okbx) -> None:
    assert okbx.clock is not None
    okbx.clock.advance(timedelta(minutes=10).total_seconds())


def test_a_return_okdesk_refuses_is_recognised_after_losing_the_store_twice(world: World, clock, tmp_path) -> None:
    okbx = Okbx(world, tmp_path, {"sync": SYNC, "billing": BILLING}, clock=clock)
    world.bitrix.crm.add_company("Romashka LLC")
    issue, task = _completed_with_time(world, okbx)
    world.okdesk_server.inject(Fault(STATUS, when="before", response=REFUSED, times=1000))
    for _ in range(3):  # the change carrying the summary is refused; then the summary goes alone
        okbx.sync()
        _let_time_pass(okbx)
    summaries = marked(world, issue, "okbx:summary:")
    assert summaries == [f"okbx:summary:{issue}:1:pending"], summaries  # posted alone: the return is owed
    for _ in range(2):  # lost twice, with syncs (still refused) in between
        lose_store(okbx)
        for _ in range(2):
            okbx.sync()
            _let_time_pass(okbx)
    bx_task = world.bitrix.task(task)
    assert int(bx_task["STATUS"]) == 5, bx_task  # completed, never reopened
    assert world.bitrix_server.count("tasks.task.renew") == 0
    notes = [c["POST_MESSAGE"] for c in world.bitrix.comments(task) if "okbx:note:" in c["POST_MESSAGE"]]
    assert notes == []  # no "handed to the programmers again"
    assert marked(world, issue, "okbx:summary:") == summaries  # still the one summary
    (summary,) = [c["content"] for c in world.okdesk.comments(issue) if "okbx:summary:" in c["content"]]
    assert "2 h" in summary and "2 entries" in summary, summary  # the real time, not "0 min in 0 entries"
    assert len(time_markers(world, issue)) == 2  # each item copied once
    (invoice,) = world.bitrix.crm.invoices()
    assert float(invoice["opportunity"]) == 6000.0, invoice  # 1.5 h + 0.5 h at 3000: the real time

    world.okdesk_server.clear_faults()  # an administrator allows the transition
    _let_time_pass(okbx)
    sync_ok(okbx)
    sync_ok(okbx)
    assert world.okdesk.status_of(issue) == "opened"
    assert marked(world, issue, "okbx:return:") == [f"okbx:return:{issue}:1"]
    assert marked(world, issue, "okbx:summary:") == summaries
    assert len(world.bitrix.crm.invoices()) == 1 and world.okdesk.status_of(issue) != HANDOFF


def test_a_time_entry_a_person_deleted_stays_deleted_after_the_store_is_lost(world: World, okbx: Okbx) -> None:
    issue, _ = _completed_with_time(world, okbx)
    sync_ok(okbx)
    assert world.okdesk.status_of(issue) == "opened" and len(time_markers(world, issue)) == 2
    first = min(world.okdesk.time_entries(issue), key=lambda e: e["id"])
    world.okdesk.delete_time_entry(first["id"])  # a consultant removes one from the bill by hand
    lose_store(okbx)
    sync_ok(okbx)
    sync_ok(okbx)
    assert len(world.okdesk.time_entries(issue)) == 1  # not copied back
    assert marked(world, issue, "okbx:late:") == []  # and no false "more time was logged" note
    assert len(marked(world, issue, "okbx:summary:")) == 1
