"""Which issues a cycle reads, and what of each: the selection is pure, the reader spends requests.

`sync.select.select(links, Seen, Flags)` decides, from the links okbx holds and what the cycle's
listings showed, which issues are read in full, whose comments are read, and which are planned
without any read; every row of its docstring table has a literal story here (no HTTP, no SQLite).
A few stories then run the real listing and reader (`sync.listing.read_listing`,
`sync.reader.Reader.read_page`) through the real clients against the emulators and count the
requests: a cycle spends them on change, not on the number of links.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e import TestClock, start_world

from okbx_emulator.world import HANDOFF, World
from okbx_sync import keys
from okbx_sync.clients.bundle import Clients
from okbx_sync.clients.limits import RequestBudget
from okbx_sync.config import Config, load_config
from okbx_sync.cycle import sync_cycle
from okbx_sync.model import Task
from okbx_sync.secrets import Redactor
from okbx_sync.state.lifecycle import Health, Link, LinkState, Track
from okbx_sync.state.store import Store
from okbx_sync.sync.listing import Listing, Window, read_listing
from okbx_sync.sync.reader import Reader
from okbx_sync.sync.select import Flags, Seen, Selection, select
from okbx_sync.sync.snapshot import Snapshot

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
READ_AT = NOW - timedelta(hours=1)  # when okbx last read the issues' comments (their updated_at then)


# -- literals ------------------------------------------------------------------------------------
def link(issue_id: int, *, state: str = "active", fail_count: int = 0, **kw: Any) -> Link:
    retry_at, parked = kw.pop("next_retry_at", None), kw.pop("parked", False)
    health = Health(issue_id, Track.ROUTE, fail_count, "HTTP 502", retry_at, parked) if fail_count else None
    values: dict[str, Any] = {
        "task_id": 100 + issue_id,
        "cycle": 1,
        "issue_status": HANDOFF,
        "dirty": False,
        "created_at": NOW - timedelta(days=2),
        "updated_at": NOW - timedelta(days=1),
        "done_at": None,
        "issue_updated_at": READ_AT,
        "health": health,
    }
    return Link(issue_id=issue_id, state=LinkState(state), **{**values, **kw})


def task(issue_id: int, status: int = 2) -> Task:
    return Task(100 + issue_id, status, xml_id=keys.task_xml_id(issue_id))


def seen(links: dict[int, Link], *, handoff: set[int] | None = None, **kw: Any) -> Seen:
    """The listings of a quiet cycle: every active link's issue listed in the handoff status,
    unchanged, and its task open; `kw` overrides what differs."""
    active = {i for i, lk in links.items() if lk.state == LinkState.ACTIVE}
    listed = active if handoff is None else handoff
    values: dict[str, Any] = {
        "handoff": frozenset(listed),
        "seen_status": {i: HANDOFF for i in listed},
        "seen_updated": {i: READ_AT for i in listed},
        "tasks": {lk.task_id: task(i) for i, lk in links.items() if lk.task_id is not None},
        "now": NOW,
    }
    return Seen(**{**values, **kw})


def flags(**kw: Any) -> Flags:
    values: dict[str, Any] = {
        "handoff_status": HANDOFF,
        "done_statuses": frozenset({5}),
        "full_listing": True,
        "full_scan": False,
        "first_cycle": False,
    }
    return Flags(**{**values, **kw})


def reads(selection: Selection) -> dict[int, str]:
    """Per issue, in the selection's order: what is read ("no reads": planned all the same)."""
    found: dict[int, str] = {}
    for w in selection.work:
        words = [("issue", w.read_issue), ("comments", w.read_comments), ("completing", w.completing)]
        words.append(("scan", w.scan_only))
        found[w.issue_id] = " ".join(word for word, on in words if on) or "no reads"
    return found


def selected(links: list[Link], seen_kw: dict[str, Any] | None = None, **flag_kw: Any) -> dict[int, str]:
    by_id = {lk.issue_id: lk for lk in links}
    return reads(select(by_id, seen(by_id, **(seen_kw or {})), flags(**flag_kw)))


# -- what is read --------------------------------------------------------------------------------
def test_an_unchanged_active_link_costs_no_read_of_its_own():
    assert selected([link(1), link(2)]) == {}


def test_a_new_handoff_is_read_in_full_with_its_comments():
    assert selected([link(1)], {"handoff": {1, 7}}) == {7: "issue comments"}


def test_a_done_link_handed_off_again_is_read_like_a_new_one():
    done = link(1, state="done", done_at=NOW - timedelta(days=40))
    assert selected([done], {"handoff": {1}}) == {1: "issue comments"}


def test_a_create_whose_answer_was_lost_is_looked_for_even_after_the_issue_left_the_handoff_status():
    lost = link(1, task_id=None)
    assert selected([lost], {"handoff": set()}) == {1: "issue comments"}


def test_an_active_link_whose_task_was_completed_has_its_issue_read():
    links = [link(1), link(2)]
    assert selected(links, {"tasks": {101: task(1, status=5), 102: task(2)}}) == {1: "issue comments completing"}


def test_an_issue_changed_since_its_comments_were_read_has_its_comments_read():
    changed = {1: READ_AT + timedelta(minutes=3), 2: READ_AT}
    assert selected([link(1), link(2)], {"seen_updated": changed}) == {1: "comments"}


def test_a_dirty_or_failing_link_has_its_comments_read_again():
    # failing and due again: its comments are read as the retry needs them
    assert selected([link(1, dirty=True), link(2, fail_count=1), link(3)]) == {1: "comments", 2: "comments"}


def test_an_issue_gone_from_the_full_handoff_listing_is_read_directly():
    left_while_seen, never_seen, known_to_have_left = (
        link(1),
        link(2, issue_status=None),
        link(3, issue_status="opened"),
    )
    links = [left_while_seen, never_seen, known_to_have_left, link(4)]
    # absence from the listing proves neither leaving the status nor deletion: read the issue itself
    assert selected(links, {"handoff": {4}}) == {1: "issue comments", 2: "issue comments"}
    assert selected([link(3, issue_status="opened", dirty=True)], {"handoff": set()}) == {3: "issue comments"}


def test_between_full_listings_an_issue_that_changed_and_left_the_status_is_read_directly():
    links = [link(1), link(2), link(3, dirty=True), link(4, issue_status=None)]
    # only issue 1 shows up in the changes listing (no longer in the handoff status); 2 did not change
    listings = {"handoff": set(), "seen_status": {1: "opened"}, "seen_updated": {1: READ_AT + timedelta(minutes=1)}}
    assert selected(links, listings, full_listing=False) == {
        1: "issue comments",
        3: "issue comments",
        4: "issue comments",
    }


def test_a_due_full_scan_reads_the_comments_of_every_quiet_active_link():
    links = [link(1), link(2), link(3, state="done"), link(4, state="gone_task")]
    assert selected(links, full_scan=True) == {1: "comments scan", 2: "comments scan"}


def test_the_scan_is_spread_over_cycles_from_its_cursor_and_a_real_change_is_read_beside_it():
    links = [link(i) for i in range(1, 7)]
    changed = {"seen_updated": {**{i: READ_AT for i in range(1, 7)}, 6: NOW}}
    selection = select(
        {lk.issue_id: lk for lk in links},
        seen({lk.issue_id: lk for lk in links}, **changed),
        flags(full_scan=True, scan_after=1, scan_quota=2),
    )
    # 1 was scanned by a cycle cut short; 2 and 3 now, 4 and 5 wait for later cycles; 6 changed
    assert reads(selection) == {6: "comments", 2: "comments scan", 3: "comments scan"}
    assert selection.scan_deferred == {4, 5}


def test_the_first_cycle_reads_every_active_link_whatever_the_scan_quota():
    links = [link(1), link(2), link(3)]
    expected = {1: "comments scan", 2: "comments scan", 3: "comments scan"}
    assert selected(links, first_cycle=True, scan_quota=1) == expected


def test_work_waiting_for_a_retry_or_parked_is_not_read_but_still_planned():
    # Changed on purpose: the old fetch read such issues and the planner then skipped them; now
    # nothing is read until the retry is due (the planner still says why, or posts the stuck note)
    waiting = link(1, dirty=True, fail_count=1, next_retry_at=NOW + timedelta(minutes=5))
    parked = link(2, dirty=True, fail_count=5, parked=True)
    due = link(3, dirty=True, fail_count=1, next_retry_at=NOW - timedelta(seconds=1))
    assert selected([waiting, parked, due]) == {3: "comments", 1: "no reads", 2: "no reads"}


def test_links_with_work_but_nothing_to_read_are_planned_without_reads():
    late = link(1, state="done", done_at=NOW - timedelta(days=1))
    unposted = link(2, state="done", done_at=NOW - timedelta(days=1))
    gone, unreadable = link(3), link(4)
    listings = {
        "handoff": {3, 4},
        "tasks": {101: task(1, 5), 102: task(2, 5), 103: None, 104: task(4)},
        "late_tasks": frozenset({101}),  # time logged on task 101 after its completion
        "unposted_late": frozenset({2}),  # a late-time note of issue 2 waits to be posted
        "task_errors": frozenset({4}),
    }
    assert selected([late, unposted, gone, unreadable], listings) == {
        1: "no reads",
        2: "no reads",
        3: "no reads",
        4: "no reads",
    }


def test_a_link_stopped_by_a_deleted_task_starts_again_only_after_the_issue_left_the_handoff_status():
    left_and_back = link(1, state="gone_task", issue_status="opened")
    never_left = link(2, state="gone_task", issue_status=HANDOFF)
    issue_deleted = link(3, state="gone_issue")
    assert selected([left_and_back, never_left, issue_deleted], {"handoff": {1, 2, 3}}) == {1: "issue comments"}


def test_completions_come_first_then_real_changes_then_the_scan_then_what_needs_no_read():
    links = [link(1), link(2, dirty=True), link(3), link(4, fail_count=5, parked=True), link(5)]
    listings = {"tasks": {101: task(1), 102: task(2), 103: task(3), 104: task(4), 105: task(5, status=5)}}
    selection = select(
        {lk.issue_id: lk for lk in links}, seen({lk.issue_id: lk for lk in links}, **listings), flags(full_scan=True)
    )
    assert selection.ids() == [5, 2, 1, 3, 4]


# -- what it costs: the listing and the reader against the emulators --------------------------------
ISSUE_READ = "GET /issues/{id}"
COMMENTS_READ = "GET /issues/{id}/comments"


@dataclass
class Scene:
    """Both emulators, the real clients, and the links okbx would hold, as literal values."""

    world: World
    config: Config
    clients: Clients
    clock: TestClock
    links: dict[int, Link] = field(default_factory=dict)

    def cycle(
        self,
        *,
        full_listing: bool = True,
        full_scan: bool = False,
        scan_quota: int | None = None,
        budget: RequestBudget | None = None,
    ) -> tuple[Listing, Selection, Snapshot]:
        """The route wing's reads of one cycle: listings, the pure selection, then one page."""
        self.world.okdesk_server.reset_log()
        self.world.bitrix_server.reset_log()
        since = self.clock.now() - timedelta(minutes=5)
        window = Window(okdesk_since=since, tasks_since=since, elapsed_after=0, full_listing=full_listing)
        clients, now = self.clients, self.clock.now()
        listing = read_listing(
            clients.okdesk, clients.bitrix, self.config, self.links, window, now=now, load_links=lambda ids: {}
        )
        observed = Seen(
            handoff=frozenset(listing.handoff),
            seen_status=listing.seen_status,
            seen_updated=listing.seen_updated,
            tasks=listing.tasks,
            task_errors=frozenset(listing.errors),
            now=now,
        )
        cycle_flags = flags(full_listing=listing.full, full_scan=full_scan, scan_quota=scan_quota)
        selection = select(self.links, observed, cycle_flags)
        reader = Reader(clients.okdesk, clients.bitrix, self.config, listing, budget)
        return listing, selection, reader.read_page(selection.work, self.links)

    def requests(self) -> tuple[int, int]:
        return self.world.okdesk_server.count(), self.world.bitrix_server.count()

    def reads(self, op: str) -> int:
        return self.world.okdesk_server.count(op)

    def linked(self, title: str, **kw: Any) -> int:
        """Handed off, its task created, its comments read: okbx has nothing to do for it."""
        ok, bx, p = self.world.okdesk, self.world.bitrix, self.world.people
        issue = ok.create_issue(title, "<p>d</p>", company_id=p.company, contact_id=p.client)
        ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
        task_id = bx.create_task(title, responsible_id=p.bx_ivan, group_id=42)
        read_at = datetime.fromisoformat(ok.issue(issue)["updated_at"])
        self.links[issue] = link(issue, task_id=task_id, issue_updated_at=read_at, **kw)
        return issue


@pytest.fixture
def scene(tmp_path: Path, clock: TestClock) -> Iterator[Scene]:
    world = start_world(clock)
    config = load_config(world.write_config(tmp_path), env=world.env())
    clients = Clients.build(config, Redactor(config.secrets()), clock.for_okbx)
    yield Scene(world, config, clients, clock)
    clients.close()
    world.close()


def test_a_cycle_without_changes_costs_one_request_per_system(scene):
    quiet = [scene.linked(f"Quiet {n}") for n in range(5)]
    scene.clock.advance(2)
    _, selection, snap = scene.cycle(full_listing=False)
    # between full listings: the issues updated since the last cycle, the tasks changed since it
    assert scene.requests() == (1, 1)
    assert selection.work == [] and snap.issues == {} and snap.comments == {}
    _, selection, _ = scene.cycle(full_listing=True)
    # a full listing adds the handoff status and lists the linked tasks (batched), whatever their number
    assert scene.requests() == (2, 1) and selection.work == []
    assert scene.reads(ISSUE_READ) == scene.reads(COMMENTS_READ) == 0 and len(quiet) == 5


def test_a_new_comment_makes_only_that_issues_comments_read(scene):
    quiet, talked = scene.linked("Quiet"), scene.linked("Talked")
    scene.clock.advance(2)
    scene.world.okdesk.add_comment(talked, "Any news?", author_id=scene.world.people.client, author_type="contact")
    _, _, snap = scene.cycle(full_listing=False)
    assert set(snap.comments) == {talked} and quiet not in snap.issues
    assert [c.content_html for c in snap.comments[talked]][-1].endswith("Any news?")
    assert scene.reads(COMMENTS_READ) == 1 and scene.reads(ISSUE_READ) == 0


def test_a_new_handoff_is_read_in_full_with_the_names_from_the_listing(scene):
    scene.linked("Quiet")
    ok, p = scene.world.okdesk, scene.world.people
    fresh = ok.create_issue("Fresh", "<p>d</p>", company_id=p.company, contact_id=p.client)
    ok.set_status(fresh, HANDOFF, by_employee_id=p.consultant, comment="Please look")
    _, _, snap = scene.cycle()
    assert set(snap.issues) == {fresh} and set(snap.comments) == {fresh}
    issue = snap.issues[fresh]
    assert issue is not None and issue.company == "Romashka LLC"  # names from the listing
    assert scene.reads(ISSUE_READ) == 1 and scene.reads(COMMENTS_READ) == 1


def test_an_issue_gone_from_the_handoff_listing_is_read_directly(scene):
    left, deleted = scene.linked("Left"), scene.linked("Deleted")
    scene.linked("Quiet")
    scene.world.okdesk.set_status(left, "in_progress", by_employee_id=scene.world.people.consultant)
    scene.world.okdesk.delete_issue(deleted)
    _, _, snap = scene.cycle()
    assert set(snap.issues) == {left, deleted}
    assert snap.issues[deleted] is None  # a direct "not found": deleted
    issue = snap.issues[left]
    assert issue is not None and issue.status == "in_progress"  # left the status, still there


def test_a_completed_task_has_its_issue_and_elapsed_time_read(scene):
    done = scene.linked("Done")
    scene.linked("Quiet")
    bx, p = scene.world.bitrix, scene.world.people
    task_id = scene.links[done].task_id
    assert task_id is not None
    bx.log_time(task_id, p.bx_ivan, 1800, "fixed")
    bx.complete_task(task_id)
    _, selection, snap = scene.cycle()
    assert selection.ids() == [done] and selection.work[0].completing
    assert set(snap.issues) == {done} and set(snap.comments) == {done}
    assert [item.seconds for item in snap.elapsed[task_id]] == [1800]
    assert snap.user_names  # the programmers' names for the report


def test_a_full_scan_reads_every_active_links_comments_and_says_which(scene):
    first, second = scene.linked("First"), scene.linked("Second")
    _, _, snap = scene.cycle(full_scan=True)
    assert set(snap.comments) == {first, second} and snap.scanned == {first, second}
    assert snap.issues == {} and scene.reads(COMMENTS_READ) == 2


def test_the_scan_is_spread_over_cycles_and_a_real_change_is_read_beside_it(scene):
    quiet = [scene.linked(f"Quiet {n}") for n in range(3)]
    talked = scene.linked("Talked")
    scene.clock.advance(2)
    scene.world.okdesk.add_comment(talked, "news", author_id=scene.world.people.client, author_type="contact")
    _, selection, snap = scene.cycle(full_scan=True, scan_quota=2)
    assert snap.scanned == set(quiet[:2]) and selection.scan_deferred == {quiet[2]}
    assert set(snap.comments) == {*quiet[:2], talked} and scene.reads(COMMENTS_READ) == 3
    assert snap.deferred == set()  # waiting for the scan's next slice is not a deferral: nothing turns dirty


def test_reads_past_their_share_of_the_budget_are_deferred_real_changes_first(scene):
    quiet = [scene.linked(f"Quiet {n}") for n in range(3)]
    talked = scene.linked("Talked")
    scene.clock.advance(2)
    scene.world.okdesk.add_comment(talked, "news", author_id=scene.world.people.client, author_type="contact")
    budget = scene.clients.budget  # the one both clients spend
    assert budget is not None
    # per-issue reads may use 60% of the budget: up to 4 of 7, and the 3 listings come first
    budget.limit = 7
    _, _, snap = scene.cycle(full_scan=True, budget=budget)
    assert talked in snap.comments  # the real change is read first
    assert snap.scan_deferred and snap.scan_deferred <= set(quiet)
    assert snap.deferred == snap.scan_deferred  # waiting for the budget: read fully next cycle
    assert set(snap.comments) | snap.deferred == {*quiet, talked}


def test_a_cycle_reads_an_issues_comments_once_and_finds_its_own_writes_among_them(scene):
    ok, p = scene.world.okdesk, scene.world.people
    fresh = ok.create_issue("Fresh", "<p>d</p>", company_id=p.company, contact_id=p.client)
    ok.set_status(fresh, HANDOFF, by_employee_id=p.consultant, comment="Please look")
    scene.world.okdesk_server.reset_log()
    store = Store(scene.config.state.path, clock=scene.clock.now)
    try:
        result = sync_cycle(scene.config, scene.clients, store)
    finally:
        store.close()
    assert result.applied is not None
    written = {a.key for a in result.applied.done}
    assert {f"task:{fresh}:1", f"linkcomment:{fresh}:1"} <= written
    # the comments the page read are where the link comment's marker is looked for before it is
    # posted: one read of them per cycle, not one more per write
    assert scene.reads(COMMENTS_READ) == 1
