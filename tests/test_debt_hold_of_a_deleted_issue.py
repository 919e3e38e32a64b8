"""A held issue deleted in Okdesk: its hold cannot be released, which must be seen (a counted
failure, or the hold ends) rather than read again silently every run for ever, counted by the
safety policy as a release each time."""

from __future__ import annotations

from datetime import date, timedelta

from e2e import Okbx, sync_ok

from okbx_emulator.world import World


def _held_then_deleted(world: World, okbx: Okbx) -> tuple[int, int]:
    crm, ok, p = world.bitrix.crm, world.okdesk, world.people
    okbx.reconfigure(debt={"status": "debt"})
    debt = crm.add_invoice(crm.add_company("Romashka LLC"), 900, closedate=date.today() - timedelta(days=2))
    issue = ok.create_issue("Printer", "<p>x</p>", company_id=p.company)
    sync_ok(okbx)
    assert ok.status_of(issue) == "debt"
    ok.delete_issue(issue)
    return issue, debt


def test_the_hold_of_a_deleted_issue_does_not_stay_open_unseen(world: World, okbx: Okbx) -> None:
    _, debt = _held_then_deleted(world, okbx)
    world.bitrix.crm.move_invoice(debt, "P")
    first = okbx.sync()
    store = okbx.store()
    try:
        still_open = [op.issue_id for op in store.open_holds()]
    finally:
        store.close()
    # the issue is gone: nothing is left to release, the hold ends and the run is clean
    assert still_open == [] and first.exit_code == 0, (still_open, first.output)


def test_the_hold_of_a_deleted_issue_does_not_make_later_debt_moves_unusual(world: World, okbx: Okbx) -> None:
    crm, ok = world.bitrix.crm, world.okdesk
    _, debt = _held_then_deleted(world, okbx)
    crm.move_invoice(debt, "P")
    okbx.reconfigure(debt={"status": "debt", "max_changes": 1})
    okbx.sync()
    other = ok.add_company("Lutik LLC")
    crm.add_invoice(crm.add_company("Lutik LLC"), 400, closedate=date.today() - timedelta(days=2))
    issue = ok.create_issue("Scanner", "<p>x</p>", company_id=other)
    result = okbx.sync()  # one hold: a usual change
    assert result.exit_code == 0 and "--force" not in result.output, result.output
    assert ok.status_of(issue) == "debt"
