"""Crash safety (issue 3, items 1 and 2): kill -9 at any point, and answers lost after a commit.

For every kind of remote write, a real `okbx sync` process is killed after the server committed
the write but before the answer arrived; for every state-store write point, the process kills
itself right after the commit.  Then for every kind of write the answer is lost instead (an HTML
error page, a dropped connection, an answer after the client's timeout).  In all cases the
following syncs must adopt or finish the work: nothing duplicated, nothing missing.

A *scenario* builds the world up to the point where one particular remote write is the next
thing `okbx sync` does; `Story` says what both systems must hold once everything converged, and
`check_converged` (e2e.py) proves it.

The coverage tests make sure a new write (an Action with a `side`, or a new `self.tx("...")`
point in the store) cannot be added without a crash test for it.
"""

from __future__ import annotations

import importlib
import json
import re
import signal
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from e2e import (
    STATUS_OP,
    SYNC,
    Okbx,
    Story,
    bot_markers,
    check_converged,
    hand_off,
    is_bot,
    kill_during,
    spawn_okbx,
    sync_ok,
    task_markers,
    task_of,
    tasks_of,
    wait_logged,
)

import okbx_sync.cycle  # noqa: F401  (every action kind is defined once the wings are imported)
from okbx_emulator.http import EmulatorServer, Fault, Response
from okbx_emulator.world import HANDOFF, World
from okbx_sync.core.action import Action

STORE_SOURCE = Path(__file__).resolve().parents[1] / "okbx_sync" / "state" / "store.py"


def configure(okbx: Okbx, *, timeout: float | None = None) -> None:
    overrides: dict[str, dict[str, Any]] = {"sync": dict(SYNC)}
    if timeout is not None:
        overrides["okdesk"] = {"timeout_seconds": timeout}
        overrides["bitrix24"] = {"timeout_seconds": timeout}
    okbx.reconfigure(**overrides)


def crash_at_point(okbx: Okbx, point: str) -> bool:
    """Run `okbx sync` with OKBX_CRASH_AFTER=point; True if it killed itself there."""
    proc = spawn_okbx(okbx, "sync", env={"OKBX_CRASH_AFTER": point})
    out, err = proc.communicate(timeout=60)
    if proc.returncode == -signal.SIGKILL:
        return True
    assert proc.returncode in (0, 1), (proc.returncode, out, err)
    return False


def store_points() -> set[str]:
    """Every write point of the state store, read from its source (`self.tx()` is "write": the migration)."""
    names = re.findall(r"""self\.tx\(\s*(?:["'](\w+)["'])?\s*\)""", STORE_SOURCE.read_text(encoding="utf-8"))
    return {name or "write" for name in names}


# -- scenarios: the world up to the write under test -------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    action: str  # the Action subclass whose write is next
    system: str  # "okdesk" | "bitrix"
    op: str
    prepare: Callable[[World, Okbx], Story]
    key: str  # how the key of the write under test starts (its op in the state store)

    def server(self, world: World) -> EmulatorServer:
        return world.okdesk_server if self.system == "okdesk" else world.bitrix_server

    def __str__(self) -> str:
        return self.name


def _fresh(world: World, okbx: Okbx) -> Story:
    ok, p = world.okdesk, world.people
    issue = hand_off(world, comment="Please look at the export code.")
    ok.add_comment(issue, "Any news?", author_id=p.client, author_type="contact")
    return Story(issue, final_status=HANDOFF)


def _linked(world: World, okbx: Okbx) -> Story:
    story = _fresh(world, okbx)
    sync_ok(okbx)
    story.task = task_of(world, story.issue)
    return story


def _new_comment(world: World, okbx: Okbx) -> Story:
    story = _linked(world, okbx)
    world.okdesk.add_comment(story.issue, "Checked on staging", author_id=world.people.consultant, public=False)
    return story


def _left_handoff(world: World, okbx: Okbx) -> Story:
    story = _linked(world, okbx)
    world.okdesk.set_status(story.issue, "in_progress", by_employee_id=world.people.consultant)
    story.notes.add(f"okbx:note:left:{story.issue}:1")
    story.final_status = "in_progress"
    return story


def _task_deleted(world: World, okbx: Okbx) -> Story:
    story = _linked(world, okbx)
    world.bitrix.delete_task(task_of(world, story.issue))
    story.task, story.task_deleted, story.link_state = None, True, "gone_task"
    story.issue_notes.add(f"okbx:inote:taskdeleted:{story.issue}:1")
    return story


def _completed(world: World, okbx: Okbx) -> Story:
    story = _linked(world, okbx)
    bx, p, task = world.bitrix, world.people, task_of(world, story.issue)
    bx.log_time(task, p.bx_ivan, 5400, "Fixed encoding")
    bx.log_time(task, p.bx_sergey, 1200, "")
    bx.complete_task(task)
    story.completed, story.returns, story.final_status, story.link_state = 1, 1, "opened", "done"
    return story


def _completed_elsewhere(world: World, okbx: Okbx) -> Story:
    """Completed while a person had moved the issue on: the summary goes alone, the status stays."""
    story = _left_handoff(world, okbx)
    sync_ok(okbx)  # the task learns that the issue left the handoff status
    bx, p, task = world.bitrix, world.people, task_of(world, story.issue)
    bx.log_time(task, p.bx_ivan, 5400, "Fixed encoding")
    bx.complete_task(task)
    story.completed, story.link_state = 1, "done"
    return story


def _closed(world: World, okbx: Okbx) -> Story:
    story = _completed(world, okbx)
    sync_ok(okbx)
    return story


def _handed_off_again(world: World, okbx: Okbx) -> Story:
    story = _closed(world, okbx)
    world.okdesk.set_status(story.issue, HANDOFF, by_employee_id=world.people.consultant, comment="Still broken")
    story.renews, story.final_status, story.link_state = 1, HANDOFF, "active"
    story.notes.add(f"okbx:note:renew:{story.issue}:2")
    return story


def _late_time(world: World, okbx: Okbx) -> Story:
    story = _closed(world, okbx)
    task = task_of(world, story.issue)
    story.late_after = max(int(e["ID"]) for e in world.bitrix.elapsed(task))
    world.bitrix.log_time(task, world.people.bx_olga, 900, "forgot to log this")
    return story


def _deadline_moved(world: World, okbx: Okbx) -> Story:
    story = _linked(world, okbx)
    world.okdesk.set_deadline(story.issue, datetime(2026, 12, 24, 18, 0, tzinfo=UTC))
    return story


COMMENTS = "POST /issues/{id}/comments"
TIME = "POST /issues/{id}/time_entries"
SCENARIOS = [
    Scenario("task", "CreateTask", "bitrix", "tasks.task.add", _fresh, "task:"),
    Scenario("link_comment", "PostLinkComment", "okdesk", COMMENTS, _fresh, "linkcomment:"),
    Scenario("comment", "ForwardComment", "bitrix", "task.commentitem.add", _new_comment, "comment:"),
    Scenario("task_note", "TaskNote", "bitrix", "task.commentitem.add", _left_handoff, "note:left:"),
    Scenario("issue_note", "IssueNote", "okdesk", COMMENTS, _task_deleted, "inote:"),
    Scenario("time", "CopyTimeEntry", "okdesk", TIME, _completed, "time:"),
    # the summary travels with the status change when the issue goes back, and alone otherwise
    Scenario("summary", "PostReport", "okdesk", COMMENTS, _completed_elsewhere, "summary:"),
    Scenario("status", "ReturnIssue", "okdesk", STATUS_OP, _completed, "return:"),
    Scenario("renew", "RenewTask", "bitrix", "tasks.task.renew", _handed_off_again, "renew:"),
    Scenario("late_time", "CopyTimeEntry", "okdesk", TIME, _late_time, "time:"),
    Scenario("late_note", "PostReport", "okdesk", COMMENTS, _late_time, "late:"),
    Scenario("deadline", "UpdateDeadline", "bitrix", "tasks.task.update", _deadline_moved, "deadline:"),
]


def assert_recovered_by_looking(okbx: Okbx, scenario: Scenario) -> None:
    """The write under test was found by its marker and adopted, not sent again.

    A status change is the exception: once the issue left the handoff status the planner does
    not plan it again at all (`check_converged` counts the status requests instead).
    """
    if scenario.action == "ReturnIssue":
        return
    store = okbx.store()
    try:
        adopted = [row["key"] for row in store.journal() if row["outcome"] == "adopted"]
    finally:
        store.close()
    assert any(key.startswith(scenario.key) for key in adopted), adopted


def scenario_named(name: str) -> Scenario:
    (scenario,) = [s for s in SCENARIOS if s.name == name]
    return scenario


# -- every write point is listed -----------------------------------------------------------------
STORE_POINTS = [
    "write:1",  # the schema migration of a new state store
    "create_link:1",
    "create_link:2",
    "begin_op:1",
    "begin_op:4",
    "finish_op:1",
    "finish_op:3",
    "observe_statuses:1",
    "set_meta:1",
    "set_meta:2",
    "fail_op:1",
    "fail_op:2",
    "update_link:1",
    "update_link:2",
    "set_health:1",
]
# journaled link steps outside a write (a handoff of a known link, a rebuild): their own story below
OWN_STORY_POINTS = ["local_change:1"]


def _action_classes(base: type[Action] = Action) -> set[type[Action]]:
    direct = set(base.__subclasses__())
    return direct.union(*(_action_classes(cls) for cls in direct))


def test_every_remote_write_kind_has_a_crash_scenario():
    importlib.import_module("okbx_sync.cycle")  # every wing's kinds, whatever ran before this test
    route = ("okbx_sync.sync", "okbx_sync.core")  # billing's kinds have their own (test_billing_crash.py)
    own = ("okbx_sync.sync.files", "okbx_sync.sync.targets")  # test_files_crash.py, test_routes_crash.py
    writes = {
        c.__name__
        for c in _action_classes()
        if c.side and "kind" in vars(c) and c.__module__.startswith(route) and not c.__module__.startswith(own)
    }
    assert "CreateTask" in writes and "IssueNote" in writes
    assert writes == {s.action for s in SCENARIOS}


def test_every_state_store_write_point_has_a_crash_test():
    points = store_points()
    assert "finish_op" in points and "begin_op" in points  # the regex still reads the source
    assert points == {p.split(":")[0] for p in STORE_POINTS + OWN_STORY_POINTS}


# -- item 1: kill -9 while the server holds the answer of a committed write ----------------------
@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_killed_after_the_server_committed_the_write(world, okbx, scenario: Scenario):
    configure(okbx)
    story = scenario.prepare(world, okbx)
    kill_during(okbx, scenario.server(world), scenario.op)
    for _ in range(3):
        sync_ok(okbx)
    if story.task is None and not story.task_deleted:
        story.task = task_of(world, story.issue)
    check_converged(world, okbx, [story])
    assert_recovered_by_looking(okbx, scenario)


# -- item 1: kill -9 right after each state-store commit ------------------------------------------
def _stage_hand_off(world: World, issues: list[int]) -> None:
    issues.append(hand_off(world, "A: export fails", comment="A: please look"))
    issues.append(hand_off(world, "B: import fails", comment="B: please look"))


def _stage_comments_whose_answers_are_lost(world: World, issues: list[int]) -> None:
    for issue in issues:
        world.okdesk.add_comment(issue, f"more about #{issue}", author_id=world.people.client, author_type="contact")
    world.bitrix_server.inject(Fault("task.commentitem.add", kind="response", times=2))


def _stage_complete(world: World, issues: list[int]) -> None:
    p = world.people
    for issue in issues:
        task = task_of(world, issue)
        world.bitrix.log_time(task, p.bx_ivan, 1800, f"work on #{issue}")
        world.bitrix.log_time(task, p.bx_olga, 600, "")
        world.bitrix.complete_task(task)


def _stage_hand_off_a_again(world: World, issues: list[int]) -> None:
    world.okdesk.set_status(issues[0], HANDOFF, by_employee_id=world.people.consultant, comment="A: still broken")


STAGES = [_stage_hand_off, _stage_comments_whose_answers_are_lost, _stage_complete, _stage_hand_off_a_again]
FIRST_STAGE = {"fail_op": 1, "update_link": 1, "set_health": 1}  # where each point is first written


@pytest.mark.parametrize("point", STORE_POINTS)
def test_killed_right_after_a_state_store_commit(world, okbx, point: str):
    configure(okbx)
    issues: list[int] = []
    crashed = False
    for index, stage in enumerate(STAGES):
        stage(world, issues)
        if not crashed and index >= FIRST_STAGE.get(point.split(":")[0], 0):
            crashed = settle = crash_at_point(okbx, point)
        else:
            settle = okbx.sync().exit_code != 0
        world.bitrix_server.clear_faults()
        if settle or index == 1:  # after a crash or the failing stage: retry, then sync until all is done
            okbx.retry_failed()
            sync_ok(okbx)
            sync_ok(okbx)
    assert crashed, f"no run reached {point}"
    a, b = issues
    stories = [
        Story(a, task_of(world, a), completed=1, returns=1, renews=1, final_status=HANDOFF,
              notes={f"okbx:note:renew:{a}:2"}),
        Story(b, task_of(world, b), completed=1, returns=1, final_status="opened", link_state="done"),
    ]  # fmt: skip
    check_converged(world, okbx, stories)


def test_killed_right_after_a_link_whose_task_was_deleted_is_handed_off_again(world, okbx):
    """The link's new handoff is committed (local_change), then okbx dies before creating the task:
    the next run creates exactly one task, and nothing of the first handoff is repeated."""
    configure(okbx)
    issue = hand_off(world, "C: printer", comment="C: please look")
    sync_ok(okbx)
    world.bitrix.delete_task(task_of(world, issue))
    okbx.sync()
    okbx.sync()
    consultant = world.people.consultant
    world.okdesk.set_status(issue, "opened", by_employee_id=consultant)
    sync_ok(okbx)
    world.okdesk.set_status(issue, HANDOFF, by_employee_id=consultant, comment="C: back to you")
    assert crash_at_point(okbx, OWN_STORY_POINTS[0])
    sync_ok(okbx)
    sync_ok(okbx)
    (task,) = tasks_of(world, issue)
    markers = task_markers(world)
    assert all(n == 1 for n in markers.values()), markers
    wanted = {f"okbx:comment:{issue}:2:{c['id']}" for c in world.okdesk.comments(issue) if not is_bot(world, c)}
    assert set(markers) == wanted
    assert Counter(bot_markers(world, issue)) == Counter(
        {f"okbx:linkcomment:{issue}:1": 1, f"okbx:inote:taskdeleted:{issue}:1": 1, f"okbx:linkcomment:{issue}:2": 1}
    )
    store = okbx.store()
    try:
        link = store.link(issue)
        assert link is not None and link.task_id == int(task["ID"]) and link.cycle == 2 and link.state == "active"
    finally:
        store.close()


# -- item 2: the server commits, the answer is lost --------------------------------------------------
HTML_500 = (
    "<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>"
)
LOST = {
    "html502": lambda op: Fault(op, when="after", kind="response"),  # the default answer: nginx's 502 page
    "html500": lambda op: Fault(op, when="after", kind="response", response=Response.html(500, HTML_500)),
    "drop": lambda op: Fault(op, when="after", kind="drop"),
    # the answer is held until the client gave up (at 0.5 s), then sent into the closed connection
    "timeout": lambda op: Fault(op, when="after", kind="hang", hang_seconds=10),
}
# Each write kind loses its answer in three ways; the two HTML pages alternate between the kinds.
LOST_CASES = [
    pytest.param(s, lost, id=f"{s}-{lost}")
    for i, s in enumerate(SCENARIOS)
    for lost in ("html500" if i % 2 else "html502", "drop", "timeout")
]


@pytest.mark.parametrize(("scenario", "lost"), LOST_CASES)
def test_a_lost_answer_fails_the_sync_and_the_next_syncs_adopt_the_write(world, okbx, scenario: Scenario, lost: str):
    configure(okbx, timeout=0.5 if lost == "timeout" else None)
    story = scenario.prepare(world, okbx)
    fault = scenario.server(world).inject(LOST[lost](scenario.op))
    first = okbx.sync()
    fault.release()
    assert fault.hit.is_set()
    assert first.exit_code == 1, first.output
    wait_logged(scenario.server(world), scenario.op)
    assert okbx("retry", str(story.issue)).exit_code == 0  # instead of waiting retry_base_seconds
    sync_ok(okbx)
    sync_ok(okbx)
    if story.task is None and not story.task_deleted:
        story.task = task_of(world, story.issue)
    check_converged(world, okbx, [story])
    assert_recovered_by_looking(okbx, scenario)


# -- garbled answers and retry bookkeeping (bugs found while writing the above, now fixed) ----------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_a_garbled_200_answer_after_the_commit_is_looked_for_before_sending_again(world, okbx, scenario: Scenario):
    configure(okbx)
    story = scenario.prepare(world, okbx)
    garbled = Response.json(200, {"unexpected": True})
    fault = scenario.server(world).inject(Fault(scenario.op, when="after", kind="response", response=garbled))
    okbx.sync()
    assert fault.hit.is_set()
    okbx.retry_failed()
    sync_ok(okbx)
    sync_ok(okbx)
    if story.task is None and not story.task_deleted:
        story.task = task_of(world, story.issue)
    check_converged(world, okbx, [story])


def test_after_okbx_retry_a_completed_link_shows_no_old_error(world, okbx):
    configure(okbx)
    story = scenario_named("summary").prepare(world, okbx)
    world.okdesk_server.inject(Fault("POST /issues/{id}/comments", when="after", kind="drop"))
    assert okbx.sync().exit_code == 1
    assert okbx("retry", str(story.issue)).exit_code == 0
    sync_ok(okbx)
    (row,) = json.loads(okbx("status", "--json").stdout)["links"]
    assert row["state"] == "done" and row["failures"] == 0
    assert row["last_error"] is None, row["last_error"]


@pytest.mark.parametrize(("name", "refused"), [("task_note", False), ("link_comment", True)])
def test_a_failed_write_is_done_after_the_retry_wait_even_when_a_sync_ran_during_the_wait(world, okbx, name, refused):
    # A sync during the wait skips the issue; it must keep it marked for a full read afterwards.
    okbx.reconfigure(sync={"retry_base_seconds": 4, "backoff_seconds": 0.05})
    scenario = scenario_named(name)
    story = scenario.prepare(world, okbx)
    if refused:  # a clear refusal: nothing was written, and the wait starts at once
        response = Response.json(422, {"errors": "refused for the test"})
        scenario.server(world).inject(Fault(scenario.op, when="before", response=response))
        assert okbx.sync().exit_code == 1
    else:  # lost answers: the first is looked up and retried at the very next run, the second waits
        scenario.server(world).inject(Fault(scenario.op, when="before", kind="drop", times=2))
        assert okbx.sync().exit_code == 1
        assert okbx.sync().exit_code == 1
    assert okbx.sync().exit_code == 0  # cron runs again while the issue waits: it is skipped
    okbx.wait_for_retry(story.issue)
    sync_ok(okbx)
    sync_ok(okbx)
    check_converged(world, okbx, [story])


# -- kill -9 inside a batch: the server committed several writes, okbx never saw the answer -----------
@pytest.mark.parametrize(("carried", "key"), [("tasks.task.add", "task:"), ("task.commentitem.add", "comment:")])
def test_killed_inside_a_batch_every_write_it_carried_is_found_by_its_marker(world, okbx, carried: str, key: str):
    configure(okbx)
    stories = [Story(hand_off(world, f"Issue {n}", comment=f"words {n}"), final_status=HANDOFF) for n in range(3)]
    kill_during(okbx, world.bitrix_server, carried)  # the batch carrying these writes hangs after committing
    for _ in range(3):
        sync_ok(okbx)
    batched = [entry for entry in world.bitrix_server.log if carried in entry.carried]
    assert batched and len(batched[0].carried) == 3  # all three went out in one request
    for story in stories:
        story.task = task_of(world, story.issue)
    check_converged(world, okbx, stories)
    store = okbx.store()
    try:
        adopted = {
            row["issue_id"] for row in store.journal() if row["outcome"] == "adopted" and row["key"].startswith(key)
        }
    finally:
        store.close()
    assert adopted == {story.issue for story in stories}  # each found by its marker, none written twice
