"""The billing planner, tested with literals: no HTTP, no SQLite (issue 10).

`build_billing_plan(snap, config, now)` returns the core's Plan: actions, and `blocked` for work
that cannot be done (a failure of that issue's billing or debt track, never a guess).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from test_route_plan import make_config

from okbx_sync.billing.actions import CreateInvoice, LinkInvoiceToTask, NoteInvoice, NoteInvoicePaid, SkipInvoice
from okbx_sync.billing.debt_actions import HoldIssue, LeaveAlone, ReleaseIssue
from okbx_sync.billing.plan import build_billing_plan, invoice_lines
from okbx_sync.billing.snapshot import BilledInvoice, BillingSnapshot, Completion, Debt, Hold
from okbx_sync.config import Config
from okbx_sync.core.action import WorkLine
from okbx_sync.core.plan import Blocked, Plan, Safety
from okbx_sync.errors import ConfigError
from okbx_sync.model import Issue
from okbx_sync.state.lifecycle import Track

TODAY = date(2026, 11, 30)
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
BILLING = {"default_rate": 3000, "rates": {8: 4000}, "round_minutes": 15, "pay_days": 10}
CONFIG = make_config(billing=BILLING, debt={"status": "debt", "exempt_types": ["consult"], "max_changes": 3})
WORK = (WorkLine(7, "Ivan Petrov", 5400), WorkLine(8, "Olga Sidorova", 2000), WorkLine(7, "Ivan Petrov", 600))


def issue(issue_id: int = 10, *, status: str = "opened", company: int | None = 3, **kw: Any) -> Issue:
    values: dict[str, Any] = {"type_code": "service", "priority_code": "normal", "company": "Romashka LLC"}
    return Issue(issue_id, f"Issue {issue_id}", status, None, company_id=company, **(values | kw))


def snapshot(**kw: Any) -> BillingSnapshot:
    return BillingSnapshot(today=TODAY, **kw)


def plan_for(snap: BillingSnapshot, config: Config = CONFIG) -> Plan:
    return build_billing_plan(snap, config, NOW)


def test_a_completion_becomes_an_invoice_with_a_line_per_programmer_and_then_a_note():
    snap = snapshot(completions=[Completion(10, 1, 100, WORK)], issues={10: issue()}, crm_company={3: 55})
    invoice, note, link = plan_for(snap).actions
    assert isinstance(invoice, CreateInvoice) and isinstance(note, NoteInvoice)
    assert isinstance(link, LinkInvoiceToTask) and (link.task_id, link.key) == (100, "tasklink:10:1")
    assert invoice.needs == ("summary:10:1",)  # the invoice waits for the summary it bills
    assert all(a.track == Track.BILLING for a in (invoice, note, link))
    assert invoice.company_id == 55 and invoice.pay_by == date(2026, 12, 10)
    # Ivan 1 h 40 min -> 1.75 h (up to 15 min) x 3000; Olga 33:20 -> 45 min = 0.75 h x 4000
    assert [(line.quantity, line.price) for line in invoice.lines] == [
        (Decimal("1.75"), Decimal("3000")),
        (Decimal("0.75"), Decimal("4000")),
    ]
    assert invoice.total == Decimal("8250.00") and note.total == invoice.total
    assert invoice.fields()["xmlId"] == "okbx:invoice:10:1" and invoice.key == "invoice:10:1"


def test_hours_round_up_to_the_configured_step_and_rates_fall_back_to_the_default():
    config = make_config(billing={"default_rate": 1000, "round_minutes": 30})
    (line,) = invoice_lines(Completion(1, 1, 1, (WorkLine(9, "Sergey", 61),)), config.billing)  # type: ignore[arg-type]
    assert (line.quantity, line.price) == (Decimal("0.50"), Decimal("1000"))


def test_an_unmatched_company_blocks_the_invoice_and_says_why():
    snap = snapshot(completions=[Completion(10, 1, 100, WORK)], issues={10: issue()}, unmatched={3: "no CRM company"})
    plan = plan_for(snap)
    assert plan.actions == []
    assert plan.blocked == [Blocked(10, Track.BILLING, "invoice", "Okdesk company 3 (Romashka LLC): no CRM company")]


def test_a_completion_whose_issue_could_not_be_read_waits_for_the_next_run():
    snap = snapshot(completions=[Completion(10, 1, 100, WORK)], errors={10: "reading the issue failed: HTTP 503"})
    plan = plan_for(snap)
    assert plan.actions == []
    # new in the core: a failed read counts as a transient failure (tried again at the very next run),
    # while an unmatched company waits out the backoff like any refusal
    assert plan.blocked == [Blocked(10, Track.BILLING, "invoice", "reading the issue failed: HTTP 503", transient=True)]


@pytest.mark.parametrize(
    ("billing", "kw", "billed"),
    [
        ({"billable_types": ["incident"]}, {"type_code": "service"}, False),
        ({"billable_types": ["incident"]}, {"type_code": "incident"}, True),
        ({"billable_parameter": "paid"}, {"parameters": (("paid", False),)}, False),
        ({"billable_parameter": "paid"}, {"parameters": (("paid", True),)}, True),
    ],
)
def test_which_issues_are_billable_is_configurable(billing, kw, billed):
    config = make_config(billing=BILLING | billing)
    snap = snapshot(completions=[Completion(10, 1, 100, WORK)], issues={10: issue(**kw)}, crm_company={3: 55})
    first = plan_for(snap, config).actions[0]
    assert isinstance(first, CreateInvoice if billed else SkipInvoice)


def test_a_done_invoice_without_its_note_gets_only_the_note():
    snap = snapshot(
        completions=[Completion(10, 1, 100, WORK)],
        done=frozenset({"invoice:10:1", "tasklink:10:1"}),
        invoiced={"invoice:10:1": (Decimal("100"), "RUB")},
    )
    (note,) = plan_for(snap).actions
    assert isinstance(note, NoteInvoice) and note.total == Decimal("100")


def test_a_done_invoice_not_yet_linked_to_its_task_gets_only_the_link():
    snap = snapshot(
        completions=[Completion(10, 1, 100, WORK)],
        done=frozenset({"invoice:10:1", "invnote:10:1"}),
        invoiced={"invoice:10:1": (Decimal("100"), "RUB")},
    )
    (link,) = plan_for(snap).actions
    assert isinstance(link, LinkInvoiceToTask) and link.key == "tasklink:10:1" and link.task_id == 100


def test_paid_and_declined_invoices_get_one_note_each():
    billed = [
        BilledInvoice(10, 77, "77", "S", date(2026, 11, 29)),
        BilledInvoice(11, 78, "78", "F", date(2026, 11, 28)),
        BilledInvoice(12, 79, "79", "", None),
        BilledInvoice(13, 80, "80", "S", None),
    ]
    plan = plan_for(snapshot(billed=billed, done=frozenset({"paid:13:80"})))
    assert [(a.issue_id, a.outcome) for a in plan.actions if isinstance(a, NoteInvoicePaid)] == [
        (10, "paid"),
        (11, "declined"),
    ]


def _debt(company: int = 3) -> Debt:
    return Debt(company, 500, "500", Decimal("1200"), "RUB", date(2026, 11, 1))


def test_a_debtor_s_open_issues_are_held_except_exempt_finished_and_already_paused_ones():
    issues = [
        issue(1, status="in_progress"),
        issue(2, type_code="consult"),
        issue(3, status="closed"),
        issue(4, status="debt"),
        issue(5),
    ]
    snap = snapshot(debts={3: _debt()}, debtor_issues={3: issues}, holds=[Hold(5, 400, 3, "opened")])
    (hold,) = plan_for(snap).actions
    assert isinstance(hold, HoldIssue) and hold.issue_id == 1 and hold.from_status == "in_progress"
    assert hold.key == "hold:1:500" and "invoice No. 500" in hold.reason


def test_an_issue_a_person_moved_out_is_not_held_again_for_the_same_debt():
    snap = snapshot(debts={3: _debt()}, debtor_issues={3: [issue(1)]}, done=frozenset({"hold:1:500"}))
    assert plan_for(snap).actions == []


def test_when_the_debt_clears_held_issues_return_and_moved_ones_are_left_alone():
    snap = snapshot(
        holds=[Hold(1, 500, 3, "in_progress"), Hold(2, 500, 3, "opened")],
        issues={1: issue(1, status="debt"), 2: issue(2, status="completed")},
    )
    release, alone = plan_for(snap).actions
    assert isinstance(release, ReleaseIssue) and release.to_status == "in_progress"
    assert isinstance(alone, LeaveAlone) and alone.key == "release:2:500"


def test_a_delayed_issue_is_held_with_the_date_it_was_postponed_to():
    until = NOW + timedelta(days=20)
    snap = snapshot(debts={3: _debt()}, debtor_issues={3: [issue(1, status="delayed", delayed_to=until)]})
    (hold,) = plan_for(snap).actions
    assert isinstance(hold, HoldIssue) and (hold.from_status, hold.delayed_to) == ("delayed", until)
    assert hold.op_record().detail["delayed_to"] == until.isoformat()  # kept for the release
    other = snapshot(debts={3: _debt()}, debtor_issues={3: [issue(1, status="in_progress", delayed_to=until)]})
    (plain,) = plan_for(other).actions
    assert isinstance(plain, HoldIssue) and plain.delayed_to is None  # only `delayed` carries a date


def released(hold: Hold, config: Config = CONFIG) -> ReleaseIssue:
    """The release planned for a hold whose company paid, the issue still in the debt status."""
    snap = snapshot(holds=[hold], issues={hold.issue_id: issue(hold.issue_id, status="debt")})
    (release,) = plan_for(snap, config).actions
    assert isinstance(release, ReleaseIssue) and release.key == f"release:{hold.issue_id}:500"
    return release


def test_a_hold_of_a_delayed_issue_releases_it_to_delayed_with_its_date_while_that_is_ahead():
    until = NOW + timedelta(days=3)
    release = released(Hold(1, 500, 3, "delayed", delayed_to=until))
    assert (release.to_status, release.delay_to, release.why) == ("delayed", until, "")
    assert release.detail == f"release: debt -> delayed until {until:%d.%m.%Y %H:%M}"


def test_a_hold_of_a_delayed_issue_whose_date_passed_releases_it_to_the_expired_delay_status():
    passed = NOW - timedelta(days=1)
    release = released(Hold(1, 500, 3, "delayed", delayed_to=passed))
    assert (release.to_status, release.delay_to) == ("opened", None)  # debt.expired_delay_status by default
    assert release.why == f"it was postponed until a date that passed during the hold on {passed:%d.%m.%Y}"
    assert released(Hold(1, 500, 3, "delayed", delayed_to=NOW)).to_status == "opened"  # the date must be ahead


def test_the_status_for_an_expired_delay_is_configurable_and_an_unknown_date_counts_as_passed():
    config = make_config(billing=BILLING, debt={"status": "debt", "expired_delay_status": "in_progress"})
    release = released(Hold(1, 500, 3, "delayed", delayed_to=None), config)
    assert (release.to_status, release.delay_to) == ("in_progress", None)
    assert release.why == "it was postponed until a date that passed during the hold (its date is unknown)"


def test_a_held_issue_handed_to_the_programmers_whose_task_was_completed_meanwhile_returns_instead():
    snap = snapshot(holds=[Hold(1, 500, 3, "to_programmers")], issues={1: issue(1, status="debt")})
    (back,) = plan_for(snap).actions
    assert isinstance(back, ReleaseIssue) and back.to_status == "to_programmers"
    done = snapshot(
        holds=[Hold(1, 500, 3, "to_programmers")], issues={1: issue(1, status="debt")}, completed_links=frozenset({1})
    )
    (returned,) = plan_for(done).actions
    assert isinstance(returned, ReleaseIssue) and returned.to_status == "opened"
    assert returned.why == "the programmers completed the task meanwhile"


def test_a_release_while_a_debtor_cannot_be_matched_is_blocked_not_guessed():
    snap = snapshot(
        holds=[Hold(1, 500, 3, "opened")], issues={1: issue(1, status="debt")}, unmatched_debtors={77: "CRM company 77"}
    )
    plan = plan_for(snap)
    assert plan.actions == []
    [blocked] = plan.blocked
    assert (blocked.issue_id, blocked.track, blocked.what) == (1, Track.DEBT, "release")
    assert "CRM company 77" in blocked.why


def test_mass_holds_are_unusual_unless_forced():
    snap = snapshot(debts={3: _debt()}, debtor_issues={3: [issue(n) for n in range(1, 5)]})
    plan = plan_for(snap)
    assert len(plan.actions) == 4
    # the cycle's one safety policy holds back the issues that would move (debt.max_changes is 3)
    kept = Safety(CONFIG, 0, force=False).admit(plan)
    assert "4 issues would be held or released" in (kept.refused or "")
    assert kept.actions == [] and kept.held_back == plan.actions
    forced = Safety(CONFIG, 0, force=True).admit(plan)
    assert forced.refused is None and forced.actions == plan.actions


def test_billing_keys_are_validated_like_every_other_section():
    with pytest.raises(ConfigError) as bad:
        make_config(billing={"default_rate": -1, "rates": {7: "a lot"}, "colour": "red"}, debt={"grace_days": 1})
    message = str(bad.value)
    for expected in (
        "billing.default_rate",
        "billing.rates",
        "billing.colour: unknown key",
        "debt.status: is required",
    ):
        assert expected in message


def test_an_unmatched_company_is_named_once_and_without_a_missing_name():
    words = "no CRM company for Okdesk company 3: not in billing.company_map"
    nameless = dataclasses.replace(issue(), company=None)  # Okdesk gave no company name
    snap = snapshot(completions=[Completion(10, 1, 100, WORK)], issues={10: nameless}, unmatched={3: words})
    assert plan_for(snap).blocked == [Blocked(10, Track.BILLING, "invoice", words)]
    snap = snapshot(completions=[Completion(10, 1, 100, WORK)], issues={10: nameless}, unmatched={3: "x"})
    assert plan_for(snap).blocked == [Blocked(10, Track.BILLING, "invoice", "Okdesk company 3: x")]
