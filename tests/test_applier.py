"""The core's applier, one story each: literal actions in; requests, remote records and the journal out.

No planner here: every action is written out as a value, applied by the real applier
(`core.applier.Applier`, with the route's guard) through the real clients against the
emulators, with a fresh state store; each `apply` is one cycle (a fresh cache of the markers).
What each test checks is what the applier promises: intent before the request, the result with
its effect on the link, a lost answer looked for by its marker before anything is sent again, a
failure that stops only its own issue's track, a stop that leaves the rest for the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from e2e import TestClock, start_world

from okbx_emulator.http import Fault, Response
from okbx_emulator.world import HANDOFF, World
from okbx_sync import keys
from okbx_sync.billing.actions import NoteInvoicePaid, SkipInvoice
from okbx_sync.clients.bundle import Clients
from okbx_sync.config import Config, load_config
from okbx_sync.core.action import Action, Context
from okbx_sync.core.applier import Applier, ApplyReport
from okbx_sync.core.health import Failures
from okbx_sync.core.notes import stuck_note
from okbx_sync.core.remote import RemoteMarkers
from okbx_sync.model import Comment, Issue, Person
from okbx_sync.secrets import Redactor
from okbx_sync.state.store import Store, Track
from okbx_sync.sync import render
from okbx_sync.sync.drift import behind_the_accounts
from okbx_sync.sync.issue_writes import CloseLink, PostLinkComment
from okbx_sync.sync.task_writes import CreateTask, ForwardComment

WHEN = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Bench:
    """Emulators, clients and a state store; `apply` runs literal actions through the real applier."""

    def __init__(self, world: World, directory: Path, clock: TestClock, **sync: object) -> None:
        self.world = world
        self.config: Config = load_config(
            world.write_config(directory, sync={"backoff_seconds": 0.01, **sync}), env=world.env()
        )
        self.clients = Clients.build(self.config, Redactor(self.config.secrets()), clock.for_okbx)
        self.store = Store(self.config.state.path, clock=clock.now)

    def apply(self, *actions: Action, on_action: Callable[[Action, str], None] = lambda a, o: None) -> ApplyReport:
        """One cycle's apply, as the cycle builds it: a fresh context, the route's guard."""
        by_issue: dict[int, list[Action]] = {}
        for action in actions:
            by_issue.setdefault(action.issue_id, []).append(action)
        okdesk, bitrix = self.clients.okdesk, self.clients.bitrix
        remote = RemoteMarkers(okdesk, bitrix, self.config.okdesk.bot_employee_id)
        ctx = Context(okdesk, bitrix, self.clients.crm, self.store, self.config, remote)
        failures = Failures(self.store, self.config.sync)
        return Applier(ctx, failures, on_action=on_action, guards=(behind_the_accounts,)).apply(by_issue)

    def requests(self) -> int:
        return len(self.world.okdesk_server.log) + len(self.world.bitrix_server.log)

    def close(self) -> None:
        self.clients.close()
        self.store.close()


@pytest.fixture
def bench(tmp_path: Path, clock: TestClock) -> Iterator[Bench]:
    world = start_world(clock)
    b = Bench(world, tmp_path, clock)
    yield b
    b.close()
    world.close()


def handed_off(world: World, title: str = "Export fails") -> Issue:
    p = world.people
    issue_id = world.okdesk.create_issue(title, "<p>d</p>", company_id=p.company, contact_id=p.client)
    world.okdesk.set_status(issue_id, HANDOFF, by_employee_id=p.consultant)
    return Issue(issue_id, title, HANDOFF, WHEN)


def create_task(bench: Bench, issue: Issue) -> CreateTask:
    cfg = bench.config.bitrix24
    fields = {
        "TITLE": f"[Okdesk #{issue.id}] {issue.title}",
        "XML_ID": keys.task_xml_id(issue.id),
        "GROUP_ID": cfg.group_id,
        "RESPONSIBLE_ID": cfg.responsible_id,
        "CREATED_BY": cfg.created_by,
    }
    return CreateTask(issue.id, issue=issue, cycle=1, fields=fields)


def forward(issue: Issue, comment_id: int, words: str) -> ForwardComment:
    comment = Comment(comment_id, issue.id, f"<p>{words}</p>", True, WHEN, Person(5, "Pavel Orlov", "contact"))
    action = ForwardComment(issue.id, comment=comment, task_cycle=1, text="")
    return replace(action, text=render.forwarded_comment(comment, "Romashka LLC", action.marker))


def with_task(bench: Bench, title: str = "Export fails") -> tuple[Issue, int]:
    issue = handed_off(bench.world, title)
    report = bench.apply(create_task(bench, issue))
    assert len(report.done) == 1, report
    link = bench.store.link(issue.id)
    assert link is not None and link.task_id is not None
    return issue, link.task_id


def tasks_with_marker(world: World, issue_id: int) -> list[dict[str, object]]:
    return [t for t in world.bitrix.tasks() if t.get("XML_ID") == keys.task_xml_id(issue_id)]


def test_creating_a_task_records_the_link_and_the_task_carries_the_issue_marker(bench):
    issue = handed_off(bench.world)
    report = bench.apply(create_task(bench, issue))
    [task] = tasks_with_marker(bench.world, issue.id)
    assert [a.key for a in report.done] == [f"task:{issue.id}:1"] and not report.failed
    op = bench.store.op(f"task:{issue.id}:1")
    assert op is not None and op.state == "done" and op.remote_id == str(task["ID"])
    link = bench.store.link(issue.id)
    assert link is not None and link.task_id == int(str(task["ID"])) and link.state == "active"
    # a task create always looks first: one lookup, one create
    assert bench.world.bitrix_server.counts()["tasks.task.add"] == 1


def test_a_task_found_by_its_marker_is_adopted_instead_of_created_again(bench):
    issue, _ = with_task(bench)
    bench.store.begin_op(f"task:{issue.id}:1", issue.id, "task", cycle=1, report_key=None)  # as after a crash
    report = bench.apply(create_task(bench, issue))
    assert [a.key for a in report.adopted] == [f"task:{issue.id}:1"]
    assert len(tasks_with_marker(bench.world, issue.id)) == 1
    assert bench.world.bitrix_server.counts()["tasks.task.add"] == 1


def test_an_action_already_done_sends_nothing(bench):
    issue, _ = with_task(bench)
    before = bench.requests()
    bench.apply(create_task(bench, issue), PostLinkComment(issue.id, task_cycle=1))
    assert bench.requests() > before  # the task op is done; the link comment was posted...
    posted = bench.requests()
    seen: list[tuple[str, str]] = []
    report = bench.apply(PostLinkComment(issue.id, task_cycle=1), on_action=lambda a, o: seen.append((a.key, o)))
    assert bench.requests() == posted  # ...and not again
    # Changed on purpose: a done action is "skipped", no longer counted as done a second time
    # (the summary line counts the writes of this run)
    assert seen == [(f"linkcomment:{issue.id}:1", "skipped")]
    assert not report.done and not report.adopted and not report.failed and not report.not_reached


def test_a_comment_whose_answer_was_lost_is_looked_for_and_adopted_not_sent_twice(bench):
    issue, task_id = with_task(bench)
    action = forward(issue, 41, "Any news?")
    bench.world.bitrix_server.inject(Fault("task.commentitem.add", when="after", kind="drop"))
    lost = bench.apply(action)
    assert [a.key for a, _ in lost.failed] == [action.key]
    op = bench.store.op(action.key)
    assert op is not None and op.state == "failed" and op.ambiguous

    again = bench.apply(action)
    assert [a.key for a in again.adopted] == [action.key]
    texts = [c["POST_MESSAGE"] for c in bench.world.bitrix.comments(task_id)]
    assert sum("Any news?" in t for t in texts) == 1
    assert bench.world.bitrix_server.counts()["task.commentitem.add"] == 1


def test_a_comment_refused_before_it_was_written_is_written_on_the_next_try(bench):
    issue, task_id = with_task(bench)
    action = forward(issue, 42, "Still broken")
    bench.world.bitrix_server.inject(Fault("task.commentitem.add", when="before", kind="response"))
    assert len(bench.apply(action).failed) == 1
    assert [a.key for a in bench.apply(action).done] == [action.key]
    assert sum("Still broken" in c["POST_MESSAGE"] for c in bench.world.bitrix.comments(task_id)) == 1


def test_a_failure_stops_the_rest_of_its_issue_and_the_other_issues_go_on(bench):
    first, _ = with_task(bench, "First")
    second, second_task = with_task(bench, "Second")
    # the two issues' first comments go out in one batch; the portal refuses the first command only
    refusal = Response.json(400, {"error": "ERROR_CORE", "error_description": "Comment refused"})
    bench.world.bitrix_server.inject(Fault("task.commentitem.add", when="before", response=refusal))
    report = bench.apply(forward(first, 51, "first a"), forward(first, 52, "first b"), forward(second, 53, "second a"))
    assert [a.key for a, _ in report.failed] == [f"comment:{first.id}:1:51"]
    assert [a.key for a in report.not_reached] == [f"comment:{first.id}:1:52"]
    assert [a.key for a in report.done] == [f"comment:{second.id}:1:53"]
    link = bench.store.link(first.id)
    # a refusal was not applied: the link waits before it is tried again
    assert link is not None and link.fail_count == 1 and link.next_retry_at is not None and link.dirty
    assert "Comment refused" in (link.last_error or "")
    assert sum("second a" in c["POST_MESSAGE"] for c in bench.world.bitrix.comments(second_task)) == 1


def test_a_lost_batch_answer_fails_every_write_it_carried_and_the_next_run_finds_them(bench):
    first, first_task = with_task(bench, "First")
    second, second_task = with_task(bench, "Second")
    bench.world.bitrix_server.inject(Fault("task.commentitem.add", when="after", kind="response"))
    actions = (forward(first, 51, "first a"), forward(second, 53, "second a"))
    report = bench.apply(*actions)
    assert sorted(a.key for a, _ in report.failed) == sorted(a.key for a in actions)
    for issue in (first, second):
        # a 502 may have been applied: a first such failure is looked for and retried at the very next run
        link = bench.store.link(issue.id)
        assert link is not None and link.fail_count == 1 and link.next_retry_at is None
        assert "HTTP 502" in (link.last_error or "")
    again = bench.apply(*actions)
    assert sorted(a.key for a in again.adopted) == sorted(a.key for a in actions)
    for task_id, text in ((first_task, "first a"), (second_task, "second a")):
        assert sum(text in c["POST_MESSAGE"] for c in bench.world.bitrix.comments(task_id)) == 1


def test_a_spent_request_budget_stops_the_run_and_leaves_the_rest_for_the_next(tmp_path, clock):
    world = start_world(clock)
    try:
        issue = handed_off(world)
        bench = Bench(world, tmp_path, clock, max_requests_per_cycle=4)
        try:
            # the create looks first (1 request) and creates (1); the link comment looks at the issue's
            # comments (1: no snapshot here) and is posted (1); the comment after it finds the budget spent
            report = bench.apply(create_task(bench, issue), PostLinkComment(issue.id, 1), forward(issue, 61, "x"))
            assert report.stopped_because and "request budget of 4" in report.stopped_because
            assert [a.key for a in report.done] == [f"task:{issue.id}:1", f"linkcomment:{issue.id}:1"]
            assert [a.key for a in report.not_reached] == [f"comment:{issue.id}:1:61"]
            link = bench.store.link(issue.id)
            # not a failure; the end of the cycle (settle.py, test_settle.py) marks it to be read again
            assert link is not None and link.fail_count == 0
            assert bench.requests() == 4
        finally:
            bench.close()
    finally:
        world.close()


def test_closing_a_link_is_local_and_sends_nothing(bench):
    issue, _ = with_task(bench)
    before = bench.requests()
    report = bench.apply(CloseLink(issue.id, cycle=1))
    assert [a.kind for a in report.done] == ["close"] and bench.requests() == before
    link = bench.store.link(issue.id)
    assert link is not None and link.state == "done" and link.done_at is not None


def test_a_failure_halts_only_its_own_track_of_the_issue(bench):
    # new in the core: health is per (issue, track); a billing note Okdesk refuses does not keep
    # the programmers' route of the same issue from going on
    issue, _ = with_task(bench)
    refusal = Response.json(422, {"errors": ["Comment refused"]})
    bench.world.okdesk_server.inject(Fault("POST /issues/{id}/comments", when="before", response=refusal))
    paid = NoteInvoicePaid(issue.id, invoice_id=77, account_number="77", outcome="paid", on=date(2026, 11, 29))
    report = bench.apply(paid, PostLinkComment(issue.id, task_cycle=1))
    assert [a.key for a, _ in report.failed] == [f"paid:{issue.id}:77"]
    assert [a.key for a in report.done] == [f"linkcomment:{issue.id}:1"]
    billing = bench.store.health(issue.id, Track.BILLING)
    assert billing is not None and billing.fail_count == 1 and "Comment refused" in (billing.last_error or "")
    link = bench.store.link(issue.id)
    assert link is not None and link.health is None and not link.dirty  # the route is healthy


def test_work_that_keeps_failing_is_parked_with_one_note_in_the_issue(tmp_path, clock):
    world = start_world(clock)
    bench = Bench(world, tmp_path, clock, max_retries=2)
    try:
        issue, _ = with_task(bench)
        refusal = Response.json(400, {"error": "ERROR_CORE", "error_description": "Comment refused"})
        world.bitrix_server.inject(Fault("task.commentitem.add", when="before", response=refusal, times=3))
        action = forward(issue, 81, "hello")
        assert not bench.apply(action).parked  # the first failure waits
        second = bench.apply(action)
        [parked] = second.parked
        assert (parked.issue_id, parked.track, parked.fail_count, parked.parked) == (issue.id, Track.ROUTE, 2, True)
        link = bench.store.link(issue.id)
        assert link is not None and link.parked
        stuck = stuck_note(parked, 1)
        assert bench.store.op(stuck.key) is not None and bench.store.op(stuck.key).done  # type: ignore[union-attr]
        bench.apply(action)  # failing again while parked: no second note
        notes = [keys.in_html(c["content"]) for c in world.okdesk.comments(issue.id)]
        assert [n.text for n in notes if n is not None and n.kind == "inote"] == [stuck.key]
        assert "okbx retry" in world.okdesk.comments(issue.id)[-1]["content"]
    finally:
        bench.close()
        world.close()


def test_an_invoice_decision_waits_for_the_summary_it_bills(bench):
    issue, _ = with_task(bench)
    skip = SkipInvoice(issue.id, cycle=1, reason="not billable")
    report = bench.apply(skip, CloseLink(issue.id, cycle=1))
    assert [a.key for a in report.not_reached] == [f"invoice:{issue.id}:1"]  # the summary is not posted
    assert [a.key for a in report.done] == [f"close:{issue.id}:1"]  # the route goes on
    assert bench.store.op(f"invoice:{issue.id}:1") is None
    bench.store.begin_op(f"summary:{issue.id}:1", issue.id, "summary", cycle=1, report_key=None)
    bench.store.finish_op(f"summary:{issue.id}:1", issue.id, "summary", remote_id="1", outcome="done", summary="")
    assert [a.key for a in bench.apply(skip).done] == [f"invoice:{issue.id}:1"]
