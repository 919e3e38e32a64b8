"""What a page and a cycle leave behind, with literals: (snapshot, plan, results) in, store changes out.

`settle_page` is the page's bookkeeping (link flags, health, statuses seen, read marks) and
`cycle_meta` the cycle's (the watermarks of the change filters, the scan cursor, the late
elapsed item, the account's UTC offset).  Both are pure; the route wing writes what they return.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from okbx_sync.core.applier import ApplyReport
from okbx_sync.core.plan import Blocked, Plan
from okbx_sync.model import Comment, Issue, Person
from okbx_sync.state import lifecycle
from okbx_sync.state.lifecycle import Health, Link, LinkState, Track
from okbx_sync.sync.settle import CycleFacts, cycle_meta, settle_page
from okbx_sync.sync.snapshot import Snapshot
from okbx_sync.sync.task_writes import ForwardComment

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HANDOFF = "to_programmers"


def link(issue_id: int, *, fail_count: int = 0, parked: bool = False, **kw: Any) -> Link:
    health = Health(issue_id, Track.ROUTE, fail_count, "HTTP 502", None, parked) if fail_count else None
    values: dict[str, Any] = {
        "task_id": 100 + issue_id,
        "state": LinkState.ACTIVE,
        "cycle": 1,
        "issue_status": HANDOFF,
        "dirty": False,
        "created_at": NOW - timedelta(days=1),
        "updated_at": NOW - timedelta(days=1),
        "done_at": None,
        "health": health,
    }
    return Link(issue_id=issue_id, **{**values, **kw})


def forward(issue_id: int, comment_id: int) -> ForwardComment:
    author = Person(9, "Client", "contact")
    return ForwardComment(issue_id, comment=Comment(comment_id, issue_id, "<p>x</p>", True, NOW, author), text="x")


def page(links: dict[int, Link]) -> tuple[dict[int, Link], dict[int, Link]]:
    """(before, after): the links as the page planned with them and as they are now (unchanged)."""
    return links, links


def facts(**kw: Any) -> CycleFacts:
    values: dict[str, Any] = {
        "started": NOW,
        "complete": True,
        "full_scan": False,
        "full_listing": False,
        "scanned": frozenset(),
        "scan_deferred": frozenset(),
        "late_items": (),
        "copied_items": frozenset(),
        "elapsed_watermark": 0,
    }
    return CycleFacts(**{**values, **kw})


# -- a page ----------------------------------------------------------------------------------------
def test_a_quiet_page_touches_no_link_and_a_complete_cycle_moves_both_watermarks():
    changes = settle_page(Snapshot(), Plan(), ApplyReport(), *page({1: link(1)}))
    assert changes.links == [] and changes.healthy == set()
    assert changes.statuses == {} and changes.read_at == {}
    assert cycle_meta(facts()) == {
        "okdesk_watermark": NOW.isoformat(),
        "bitrix_watermark": NOW.isoformat(),
        "elapsed_watermark": "0",
    }


def test_an_issue_not_reached_by_a_stopped_cycle_is_read_fully_next_time_and_keeps_its_read_mark():
    action = forward(1, 51)
    snap = Snapshot(comments={1: []}, seen_updated={1: NOW - timedelta(minutes=1)}, seen_status={1: HANDOFF})
    report = ApplyReport(not_reached=[action], stopped_because="request budget of 4 per cycle used up")
    changes = settle_page(snap, Plan(actions=[action]), report, *page({1: link(1)}))
    assert changes.links == [lifecycle.marked_dirty(1)]
    assert changes.read_at == {}  # its comments were not all forwarded: the old mark stays
    assert changes.statuses == {1: HANDOFF}


def test_every_planned_action_through_makes_a_failing_link_healthy():
    action = forward(1, 51)
    before = link(1, dirty=True, fail_count=2)
    changes = settle_page(
        Snapshot(comments={1: []}), Plan(actions=[action]), ApplyReport(done=[action]), *page({1: before})
    )
    # Changed on purpose: failures live in the route track's health now; the wing heals the ones
    # named here (core.health.Failures.heal) and the link itself only loses its dirty flag
    assert changes.healthy == {1}
    assert changes.links == [lifecycle.marked_clean(1)]


def test_a_parked_link_is_not_healed_by_the_page_only_by_okbx_retry():
    action = forward(1, 51)
    parked = link(1, dirty=True, fail_count=5, parked=True)
    changes = settle_page(
        Snapshot(comments={1: []}), Plan(actions=[action]), ApplyReport(done=[action]), *page({1: parked})
    )
    assert changes.healthy == set() and changes.links == []


def test_a_route_failure_recorded_for_the_issue_keeps_it_failing():
    action = forward(1, 51)
    before = link(1, dirty=True, fail_count=1)
    plan = Plan(actions=[action], blocked=[Blocked(1, Track.ROUTE, "read", "reading task 101 failed")])
    changes = settle_page(Snapshot(comments={1: []}), plan, ApplyReport(done=[action]), *page({1: before}))
    assert changes.healthy == set() and changes.links == []


def test_a_deferred_issue_stays_dirty_and_its_status_is_not_recorded():
    snap = Snapshot(deferred={1}, seen_status={1: "opened", 2: HANDOFF})
    changes = settle_page(snap, Plan(), ApplyReport(), *page({1: link(1), 2: link(2)}))
    assert changes.links == [lifecycle.marked_dirty(1)]
    assert changes.statuses == {2: HANDOFF}


def test_okbx_own_comment_raises_the_read_mark_past_its_updated_at():
    listed, own = NOW - timedelta(minutes=3), NOW - timedelta(minutes=1)
    snap = Snapshot(comments={1: []}, seen_updated={1: listed})
    report = ApplyReport(own_writes={1: own})
    changes = settle_page(snap, Plan(), report, *page({1: link(1)}))
    assert changes.read_at == {1: own}


def test_a_read_failure_does_not_make_a_link_healthy_and_an_unlinked_issue_is_not_recorded():
    snap = Snapshot(
        comments={1: [], 3: []},
        errors={1: "reading comments failed"},
        issues={3: Issue(3, "Not ours", HANDOFF, NOW)},
    )
    changes = settle_page(snap, Plan(), ApplyReport(), *page({1: link(1, dirty=True, fail_count=1)}))
    assert changes.links == [] and changes.healthy == set()
    assert 3 not in changes.statuses and 3 not in changes.read_at


def test_a_failing_link_read_cleanly_with_nothing_to_do_is_healthy_again():
    # transient read errors must not add up to parking a link
    before = link(1, dirty=True, fail_count=1)
    changes = settle_page(Snapshot(comments={1: []}), Plan(), ApplyReport(), *page({1: before}))
    assert changes.healthy == {1} and changes.links == [lifecycle.marked_clean(1)]


# -- a cycle ---------------------------------------------------------------------------------------
def test_a_cycle_cut_short_keeps_its_watermarks_so_the_next_lists_the_same_window_again():
    # Changed on purpose: watermarks (and the full listing and scan schedules) move only when every
    # page was done; before, a cycle stopped by its budget moved them anyway (and marked what it
    # had not read dirty instead)
    meta = cycle_meta(facts(complete=False, full_scan=True, full_listing=True, scanned=frozenset({4, 9})))
    assert "okdesk_watermark" not in meta and "bitrix_watermark" not in meta
    assert "last_full_listing" not in meta and "last_full_scan" not in meta
    assert meta["full_scan_cursor"] == "9"  # the scan goes on from where it was cut


def test_the_elapsed_watermark_passes_only_copied_items_in_order():
    meta = cycle_meta(facts(late_items=(7, 5, 6), copied_items=frozenset({5, 7}), elapsed_watermark=4))
    assert meta["elapsed_watermark"] == "5"  # 6 failed: it and everything after it is read again


def test_schedules_and_the_learned_offset_are_remembered():
    meta = cycle_meta(
        facts(
            full_scan=True,
            full_listing=True,
            scanned=frozenset({4, 9}),
            scan_deferred=frozenset({12}),
            learned_offset="+07:00",
        )
    )
    assert meta["full_scan_cursor"] == "9" and "last_full_scan" not in meta
    assert meta["last_full_listing"] == NOW.isoformat()
    assert meta["okdesk_utc_offset"] == "+07:00"


def test_a_full_scan_that_reached_every_link_starts_over_next_time():
    meta = cycle_meta(facts(full_scan=True, scanned=frozenset({4, 9})))
    assert meta["last_full_scan"] == NOW.isoformat() and meta["full_scan_cursor"] == "0"
