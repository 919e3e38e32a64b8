"""Billing and the debt hold (opt-in: the `billing:` and `debt:` sections), a wing of the core.

`wing.BillingWing` plugs into the cycle like the routes: fetch -> plan (pure) -> the core's
applier.  `report` is the time ledger (`okbx report`).
"""
