"""Which issues a cycle reads, one story each: literal links in; reads and requests out.

`fetch_snapshot` spends requests on change, not on the number of links.  Each test writes the
links okbx would hold as literal values, sets up both systems to match (plus one change), runs
the real fetch through the real clients against the emulators, and checks exactly which issues
were read in full, whose comments were read, and what that cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from e2e import TestClock, start_world
from okbx_sync.sync.fetch import fetch_snapshot

from okbx_emulator.world import HANDOFF, World
from okbx_sync.clients.bundle import Clients
from okbx_sync.clients.limits import RequestBudget
from okbx_sync.config import Config, load_config
from okbx_sync.secrets import Redactor
from okbx_sync.state.store import Link
from okbx_sync.sync.snapshot import Snapshot

ISSUE_READ = "GET /issues/{id}"
COMMENTS_READ = "GET /issues/{id}/comments"


@dataclass
class Scene:
    world: World
    config: Config
    clients: Clients
    clock: TestClock
    links: dict[int, Link]
    watermark: datetime

    def fetch(
        self, *, full_scan: bool = False, budget: RequestBudget | None = None, scan_quota: int | None = None
    ) -> Snapshot:
        self.world.okdesk_server.reset_log()
        self.world.bitrix_server.reset_log()
        return fetch_snapshot(
            self.clients.okdesk,
            self.clients.bitrix,
            self.config,
            self.links,
            watermark=self.watermark,
            elapsed_after=0,
            full_scan=full_scan,
            now=self.clock.now(),
            budget=budget,
            scan_quota=scan_quota,
        )

    def reads(self, op: str) -> int:
        return self.world.okdesk_server.count(op)

    # -- building the scene: an issue in a given state, and the link okbx would hold for it --------
    def linked(self, title: str, **link: Any) -> int:
        """Handed off, its task created, its comments read: okbx has nothing to do for it."""
        ok, bx, p = self.world.okdesk, self.world.bitrix, self.world.people
        issue = ok.create_issue(title, "<p>d</p>", company_id=p.company, contact_id=p.client)
        ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
        task = bx.create_task(title, responsible_id=p.bx_ivan, group_id=42)
        values: dict[str, Any] = {
            "task_id": task,
            "state": "active",
            "cycle": 1,
            "issue_status": HANDOFF,
            "dirty": False,
            "fail_count": 0,
            "last_error": None,
            "next_retry_at": None,
            "parked": False,
            "created_at": self.watermark,
            "updated_at": self.watermark,
            "done_at": None,
            "issue_updated_at": datetime.fromisoformat(ok.issue(issue)["updated_at"]),
        }
        values.update(link)
        self.links[issue] = Link(issue_id=issue, **values)
        return issue


@pytest.fixture
def scene(tmp_path: Path, clock: TestClock) -> Iterator[Scene]:
    world = start_world(clock)
    config = load_config(world.write_config(tmp_path), env=world.env())
    clients = Clients.build(config, Redactor(config.secrets()), clock.for_okbx)
    yield Scene(world, config, clients, clock, {}, clock.now() - timedelta(minutes=5))
    clients.close()
    world.close()


def test_an_unchanged_link_costs_no_read_of_its_own(scene):
    quiet = scene.linked("Quiet")
    snap = scene.fetch()
    assert quiet not in snap.issues and quiet not in snap.comments
    assert scene.reads(ISSUE_READ) == scene.reads(COMMENTS_READ) == 0
    # two listings (the handoff status, updated since the watermark) and one batched task listing
    assert scene.world.okdesk_server.count("GET /issues/list") == 2
    assert scene.world.bitrix_server.count() == 1


def test_a_new_comment_makes_only_that_issues_comments_read(scene):
    quiet, talked = scene.linked("Quiet"), scene.linked("Talked")
    scene.clock.advance(2)
    scene.world.okdesk.add_comment(talked, "Any news?", author_id=scene.world.people.client, author_type="contact")
    snap = scene.fetch()
    assert set(snap.comments) == {talked} and quiet not in snap.issues
    assert [c.content_html for c in snap.comments[talked]][-1].endswith("Any news?")
    assert scene.reads(COMMENTS_READ) == 1 and scene.reads(ISSUE_READ) == 0


def test_a_new_handoff_is_read_in_full_with_its_comments(scene):
    scene.linked("Quiet")
    ok, p = scene.world.okdesk, scene.world.people
    fresh = ok.create_issue("Fresh", "<p>d</p>", company_id=p.company, contact_id=p.client)
    ok.set_status(fresh, HANDOFF, by_employee_id=p.consultant, comment="Please look")
    snap = scene.fetch()
    assert set(snap.issues) == {fresh} and set(snap.comments) == {fresh}
    issue = snap.issues[fresh]
    assert issue is not None and issue.company == "Romashka LLC"  # names from the listing
    assert scene.reads(ISSUE_READ) == 1 and scene.reads(COMMENTS_READ) == 1


def test_a_link_marked_dirty_has_its_comments_read_again(scene):
    dirty = scene.linked("Dirty", dirty=True)
    scene.linked("Quiet")
    snap = scene.fetch()
    assert set(snap.comments) == {dirty} and snap.issues == {}


def test_an_issue_gone_from_the_handoff_listing_is_read_directly(scene):
    left, deleted = scene.linked("Left"), scene.linked("Deleted")
    scene.linked("Quiet")
    scene.world.okdesk.set_status(left, "in_progress", by_employee_id=scene.world.people.consultant)
    scene.world.okdesk.delete_issue(deleted)
    snap = scene.fetch()
    assert set(snap.issues) == {left, deleted}
    assert snap.issues[deleted] is None  # a direct "not found": deleted
    issue = snap.issues[left]
    assert issue is not None and issue.status == "in_progress"  # left the status, still there


def test_a_completed_task_has_its_issue_and_elapsed_time_read(scene):
    done = scene.linked("Done")
    scene.linked("Quiet")
    bx, p = scene.world.bitrix, scene.world.people
    task = scene.links[done].task_id
    assert task is not None
    bx.log_time(task, p.bx_ivan, 1800, "fixed")
    bx.complete_task(task)
    snap = scene.fetch()
    assert set(snap.issues) == {done} and set(snap.comments) == {done}
    assert [item.seconds for item in snap.elapsed[task]] == [1800]


def test_the_full_scan_reads_every_active_links_comments_and_says_which(scene):
    first, second = scene.linked("First"), scene.linked("Second")
    snap = scene.fetch(full_scan=True)
    assert set(snap.comments) == {first, second} and snap.scanned == {first, second}
    assert snap.issues == {} and scene.reads(COMMENTS_READ) == 2


def test_the_scan_is_spread_over_cycles_and_a_real_change_is_read_beside_it(scene):
    quiet = [scene.linked(f"Quiet {n}") for n in range(3)]
    talked = scene.linked("Talked")
    scene.clock.advance(2)
    scene.world.okdesk.add_comment(talked, "news", author_id=scene.world.people.client, author_type="contact")
    snap = scene.fetch(full_scan=True, scan_quota=2)
    assert snap.scanned == set(quiet[:2]) and snap.scan_deferred == {quiet[2]}
    assert set(snap.comments) == {*quiet[:2], talked} and scene.reads(COMMENTS_READ) == 3
    assert snap.deferred == set()  # waiting for the scan's next slice is not a deferral: nothing turns dirty


def test_a_short_budget_defers_the_scan_before_real_changes(scene):
    quiet = [scene.linked(f"Quiet {n}") for n in range(3)]
    talked = scene.linked("Talked")
    scene.clock.advance(2)
    scene.world.okdesk.add_comment(talked, "news", author_id=scene.world.people.client, author_type="contact")
    # per-issue reads may use 60% of the budget: up to 4 of 7, and the 3 listings come first
    budget = scene.clients.budget  # the one both clients spend
    budget.limit = 7
    snap = scene.fetch(full_scan=True, budget=budget)
    assert talked in snap.comments  # the real change is read first
    assert snap.scan_deferred and snap.scan_deferred <= set(quiet)
    assert snap.deferred == snap.scan_deferred
    assert set(snap.comments) | snap.deferred == {*quiet, talked}
