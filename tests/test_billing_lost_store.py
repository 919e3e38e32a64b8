"""Billing after a lost state store: the store's decisions that were never written anywhere
(billing switched on later, an invoice a manager deleted) must not be taken back by a new store.

A new store dates the completion reports it finds by Okdesk's `published_at`, and its billing
starts at its first run: what was reported before is not invoiced.  The price, chosen knowingly: a
crash between a summary and its invoice followed by a lost store leaves that one invoice unmade
(the completion is in `okbx report`; an invoice can be made by hand), never one made twice."""

from __future__ import annotations

from test_accounts_truth import lose_store
from test_billing_story import _complete, _configure


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
