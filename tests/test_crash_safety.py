"""Crash safety (issue 3, items 1 and 2): kill -9 at any point, and answers lost after a commit.

For every kind of remote write, a real `okbx sync` process is killed after the server committed
the write but before the answer arrived; for every state-store write point, the process kills
itself right after the commit.  Then for every kind of write the answer is lost instead (an HTML
error page, a dropped connection, an answer after the client's timeout).  In all cases the
following syncs must adopt or finish the work: nothing duplicated, nothing missing.

The coverage tests at the top make sure a new write (an Action with a `side`, or a new
`self.tx("...")` point in the store) cannot be added without a crash test for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from okbx_sync.emulator.http import Fault, Response
from okbx_sync.emulator.world import HANDOFF, World
from okbx_sync.sync.actions import Action

pytest.register_assert_rewrite("helpers_crash")
from helpers_crash import (  # noqa: E402
    SCENARIOS,
    Scenario,
    Story,
    assert_recovered_by_looking,
    check_converged,
    close_world_fast,
    configure,
    crash_at_point,
    hand_off,
    kill_during,
    retry_failed,
    scenario_named,
    start_world_fast,
    store_points,
    sync_ok,
    task_of,
    wait_for_retry,
    wait_logged,
)


@pytest.fixture
def world() -> Iterator[World]:
    w = start_world_fast()
    yield w
    close_world_fast(w)


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
    "local_change:1",
    "local_change:2",
]


def _action_classes(base: type[Action] = Action) -> set[type[Action]]:
    direct = set(base.__subclasses__())
    return direct.union(*(_action_classes(cls) for cls in direct))


def test_every_remote_write_kind_has_a_crash_scenario():
    writes = {cls.__name__ for cls in _action_classes() if cls.side and not cls.__name__.startswith("_")}
    assert "CreateTask" in writes and "IssueNote" in writes
    assert writes == {s.action for s in SCENARIOS}


def test_every_state_store_write_point_has_a_crash_test():
    points = store_points()
    assert "finish_op" in points and "begin_op" in points  # the regex still reads the source
    assert points == {p.split(":")[0] for p in STORE_POINTS}


# -- item 1: kill -9 while the server holds the answer of a committed write ----------------------
@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_killed_after_the_server_committed_the_write(world, okbx, scenario: Scenario):
    configure(okbx)
    story = scenario.prepare(world, okbx)
    kill_during(world, okbx, scenario.server(world), scenario.op)
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
FIRST_STAGE = {"fail_op": 1, "update_link": 1, "local_change": 2}  # where each point is first written


@pytest.mark.parametrize("point", STORE_POINTS)
def test_killed_right_after_a_state_store_commit(world, okbx, point: str):
    configure(okbx)
    issues: list[int] = []
    crashed = False
    for index, stage in enumerate(STAGES):
        stage(world, issues)
        if not crashed and index >= FIRST_STAGE.get(point.split(":")[0], 0):
            crashed = settle = crash_at_point(world, okbx, point)
        else:
            settle = okbx.sync().exit_code != 0
        world.bitrix_server.clear_faults()
        if settle or index == 1:  # after a crash or the failing stage: retry, then sync until all is done
            retry_failed(okbx)
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


# -- item 2: the server commits, the answer is lost --------------------------------------------------
HTML_500 = (
    "<html><head><title>500 Internal Server Error</title></head><body><h1>Internal Server Error</h1></body></html>"
)
LOST = {
    "html502": lambda op: Fault(op, when="after", kind="response"),  # the default answer: nginx's 502 page
    "html500": lambda op: Fault(op, when="after", kind="response", response=Response.html(500, HTML_500)),
    "drop": lambda op: Fault(op, when="after", kind="drop"),
    "timeout": lambda op: Fault(op, when="after", kind="delay", delay_seconds=1.2),  # client gives up at 0.5 s
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
    retry_failed(okbx)
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
    wait_for_retry(okbx, story.issue)
    sync_ok(okbx)
    sync_ok(okbx)
    check_converged(world, okbx, [story])
