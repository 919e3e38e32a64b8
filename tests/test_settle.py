"""The end of a cycle, with literals: (snapshot, plan, results) in, the changes to the store out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from okbx_sync.sync.actions import ForwardComment
from okbx_sync.sync.apply import ApplyReport

from okbx_sync.model import Comment, ElapsedItem, Issue, Person
from okbx_sync.state.store import Link, LinkState
from okbx_sync.sync.plan import Plan
from okbx_sync.sync.settle import CycleFacts, settle
from okbx_sync.sync.snapshot import Snapshot

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
HANDOFF = "to_programmers"


def link(issue_id: int, **kw: Any) -> Link:
    values: dict[str, Any] = {
        "task_id": 100 + issue_id,
        "state": LinkState.ACTIVE,
        "cycle": 1,
        "issue_status": HANDOFF,
        "dirty": False,
        "fail_count": 0,
        "last_error": None,
        "next_retry_at": None,
        "parked": False,
        "created_at": NOW - timedelta(days=1),
        "updated_at": NOW - timedelta(days=1),
        "done_at": None,
    }
    return Link(issue_id=issue_id, **{**values, **kw})


def forward(issue_id: int, comment_id: int) -> ForwardComment:
    author = Person(9, "Client", "contact")
    return ForwardComment(issue_id, comment=Comment(comment_id, issue_id, "<p>x</p>", True, NOW, author), text="x")


def facts(links: dict[int, Link], after: dict[int, Link] | None = None, **kw: Any) -> CycleFacts:
    values: dict[str, Any] = {
        "started": NOW,
        "links": links,
        "after": links if after is None else after,
        "full_scan": False,
        "full_listing": False,
        "copied_items": frozenset(),
        "elapsed_watermark": 0,
    }
    return CycleFacts(**{**values, **kw})


def test_a_quiet_cycle_moves_both_watermarks_and_touches_no_link():
    changes = settle(Snapshot(), Plan(), ApplyReport(), facts({1: link(1)}))
    assert changes.link_updates == {} and changes.statuses == {} and changes.read_at == {}
    assert changes.meta == {
        "okdesk_watermark": NOW.isoformat(),
        "bitrix_watermark": NOW.isoformat(),
        "elapsed_watermark": "0",
    }


def test_an_issue_not_reached_by_a_stopped_cycle_is_read_fully_next_time_and_keeps_its_read_mark():
    action = forward(1, 51)
    snap = Snapshot(comments={1: []}, seen_updated={1: NOW - timedelta(minutes=1)}, seen_status={1: HANDOFF})
    report = ApplyReport(not_reached=[action], stopped_because="request budget of 4 per cycle used up")
    changes = settle(snap, Plan(actions=[action]), report, facts({1: link(1)}))
    assert changes.link_updates == {1: {"dirty": True}}
    assert changes.read_at == {}  # its comments were not all forwarded: the old mark stays
    assert changes.statuses == {1: HANDOFF}


def test_every_planned_action_through_makes_a_failing_link_healthy():
    action = forward(1, 51)
    before = link(1, dirty=True, fail_count=2, last_error="HTTP 502")
    changes = settle(Snapshot(comments={1: []}), Plan(actions=[action]), ApplyReport(done=[action]), facts({1: before}))
    assert changes.link_updates == {
        1: {"dirty": False, "fail_count": 0, "last_error": None, "next_retry_at": None, "parked": False}
    }


def test_a_deferred_issue_stays_dirty_and_its_status_is_not_recorded():
    snap = Snapshot(deferred={1}, seen_status={1: "opened", 2: HANDOFF})
    changes = settle(snap, Plan(), ApplyReport(), facts({1: link(1), 2: link(2)}))
    assert changes.link_updates == {1: {"dirty": True}}
    assert changes.statuses == {2: HANDOFF}


def test_okbx_own_comment_raises_the_read_mark_past_its_updated_at():
    listed, own = NOW - timedelta(minutes=3), NOW - timedelta(minutes=1)
    snap = Snapshot(comments={1: []}, seen_updated={1: listed})
    report = ApplyReport(own_writes={1: own})
    changes = settle(snap, Plan(), report, facts({1: link(1)}))
    assert changes.read_at == {1: own}


def test_a_read_failure_does_not_make_a_link_healthy_and_an_unlinked_issue_is_not_recorded():
    snap = Snapshot(
        comments={1: [], 3: []},
        errors={1: "reading comments failed"},
        issues={3: Issue(3, "Not ours", HANDOFF, NOW)},
    )
    changes = settle(snap, Plan(), ApplyReport(), facts({1: link(1, dirty=True, fail_count=1)}))
    assert changes.link_updates == {}
    assert 3 not in changes.statuses and 3 not in changes.read_at


def test_the_elapsed_watermark_passes_only_copied_items_in_order():
    items = [ElapsedItem(i, 101, 7, 60, "", NOW) for i in (5, 6, 7)]
    changes = settle(
        Snapshot(late_elapsed=items),
        Plan(),
        ApplyReport(),
        facts({}, copied_items=frozenset({5, 7}), elapsed_watermark=4),
    )
    assert changes.meta["elapsed_watermark"] == "5"  # 6 failed: it and everything after it is read again


def test_schedules_and_the_learned_offset_are_remembered():
    snap = Snapshot(scanned={4, 9}, scan_deferred={12})
    changes = settle(snap, Plan(), ApplyReport(), facts({}, full_scan=True, full_listing=True, learned_offset="+07:00"))
    assert changes.meta["full_scan_cursor"] == "9" and "last_full_scan" not in changes.meta
    assert changes.meta["last_full_listing"] == NOW.isoformat()
    assert changes.meta["okdesk_utc_offset"] == "+07:00"
