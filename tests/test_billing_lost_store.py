"""Billing after a lost state store: the store's decisions that were never written anywhere
(billing switched on later, an invoice a manager deleted) must not be taken back by a new store."""

from __future__ import annotations

import pytest
from test_accounts_truth import lose_store
from test_billing_story import _complete, _configure


@pytest.mark.xfail(
    strict=True,
    reason="billing_since lives only in the store: a new store adopts the summaries of tasks completed "
    "within time.late_window_days (sync/adopt.py) as done now, sets billing_since to now, and "
    "store.unbilled_completions(since) then offers them for invoicing; nothing on the remote side "
    "tells a completion reported while billing was off from one whose invoice a crash cut off",
)
def test_a_completion_returned_before_billing_was_switched_on_is_not_invoiced_after_a_lost_store(world, okbx):
    world.bitrix.crm.add_company("Romashka LLC")
    _complete(world, okbx, "Old work")
    assert okbx.sync().exit_code == 0  # returned while billing was off
    _configure(okbx)
    assert okbx.sync().exit_code == 0
    assert world.bitrix.crm.invoices() == []
    lose_store(okbx)
    okbx.sync()
    okbx.sync()
    assert world.bitrix.crm.invoices() == []
