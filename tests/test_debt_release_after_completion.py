"""The debt hold's release meets the programmers' completion: an issue held while handed off
whose task was completed must never be released back into the handoff status (that reopens
the finished task as a new handoff), even when the completion and the payment are seen by the
same run."""

from __future__ import annotations

from datetime import date, timedelta

from e2e import hand_off, sync_ok, task_of


def test_a_completion_and_the_payment_seen_by_the_same_run_do_not_reopen_the_task(world, okbx):
    crm, ok, bx, p = world.bitrix.crm, world.okdesk, world.bitrix, world.people
    okbx.reconfigure(debt={"status": "debt"})
    crm_company = crm.add_company("Romashka LLC")
    issue = hand_off(world)
    sync_ok(okbx)
    task = task_of(world, issue)
    debt = crm.add_invoice(crm_company, 900, closedate=date.today() - timedelta(days=2))
    sync_ok(okbx)
    assert ok.status_of(issue) == "debt"
    bx.log_time(task, p.bx_ivan, 600, "finished anyway")
    bx.complete_task(task)
    crm.move_invoice(debt, "P")  # paid before okbx saw the completion
    for _ in range(3):
        sync_ok(okbx)
    assert bx.task(task)["STATUS"] == 5  # still completed: nobody handed the issue off again
    assert not any("okbx:note:renew:" in c["POST_MESSAGE"] for c in bx.comments(task))
    assert ok.status_of(issue) == "opened"
