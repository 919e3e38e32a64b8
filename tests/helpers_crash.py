"""Helpers for the crash-safety tests (issue 3, items 1 and 2).

A *scenario* builds the world up to the point where one particular remote write is the next
thing `okbx sync` does; `Story` says what both systems must hold once everything converged;
`check_converged` proves it: every marker okbx writes exists exactly once (nothing duplicated,
nothing missing), one task per handoff, one status change per completion, a clean journal.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okbx_sync.emulator.http import EmulatorServer, Fault
from okbx_sync.emulator.world import HANDOFF, World

# Retries come quickly, read retries do not crawl; a failed issue waits one second.
SYNC = {"retry_base_seconds": 1, "backoff_seconds": 0.05}
STATUS_OP = "POST /issues/{id}/statuses"
STORE_SOURCE = Path(__file__).resolve().parents[1] / "okbx_sync" / "state" / "store.py"


# -- world -------------------------------------------------------------------------------------
def start_world_fast() -> World:
    """`World.start()` whose servers answer without Nagle's delay (40 ms per request otherwise)."""
    world = World.start()
    for server in (world.okdesk_server, world.bitrix_server):
        server._httpd.RequestHandlerClass.disable_nagle_algorithm = True  # type: ignore[attr-defined]
    return world


def close_world_fast(world: World) -> None:
    """`World.close()`, without waiting out serve_forever's 0.5 s poll twice per test."""
    for server in (world.okdesk_server, world.bitrix_server):
        stopper = threading.Thread(target=server.stop, daemon=True)
        stopper.start()
        port = int(server.url.rsplit(":", 1)[1])
        while stopper.is_alive():
            try:  # wake the accept loop so it notices the shutdown request at once
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pass
            except OSError:
                pass
            stopper.join(0.02)


def configure(okbx: Any, *, timeout: float | None = None) -> None:
    overrides: dict[str, dict[str, Any]] = {"sync": dict(SYNC)}
    if timeout is not None:
        overrides["okdesk"] = {"timeout_seconds": timeout}
        overrides["bitrix24"] = {"timeout_seconds": timeout}
    okbx.reconfigure(**overrides)


def hand_off(world: World, title: str = "Report export fails", comment: str | None = None) -> int:
    ok, p = world.okdesk, world.people
    issue = ok.create_issue(title, "<p>Export <b>fails</b></p>", company_id=p.company, contact_id=p.client)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment=comment)
    return issue


def task_of(world: World, issue: int) -> int:
    tasks = [t for t in world.bitrix.tasks() if t.get("XML_ID") == f"okdesk:{issue}"]
    assert len(tasks) == 1, tasks
    return int(tasks[0]["ID"])


def sync_ok(okbx: Any) -> None:
    result = okbx.sync()
    assert result.exit_code == 0, result.output


def retry_failed(okbx: Any) -> None:
    """`okbx retry` for every link waiting after a failure (instead of waiting retry_base_seconds)."""
    store = okbx.store()
    try:
        waiting = [link.issue_id for link in store.links().values() if link.next_retry_at or link.parked]
    finally:
        store.close()
    for issue in waiting:
        assert okbx("retry", str(issue)).exit_code == 0


def wait_for_retry(okbx: Any, issue: int) -> None:
    """Sleep until the issue's next_retry_at has passed (the natural way back after a failure)."""
    store = okbx.store()
    try:
        link = store.link(issue)
        assert link is not None and link.next_retry_at is not None, link
        pause = (link.next_retry_at - store.now()).total_seconds() + 0.05
    finally:
        store.close()
    time.sleep(max(0.0, pause))


def wait_logged(server: EmulatorServer, op: str, count: int = 1) -> None:
    """A delayed answer is logged when the server finally sends it: wait for that."""
    deadline = time.monotonic() + 10
    while server.count(op) < count:
        assert time.monotonic() < deadline, f"{op} never answered"
        time.sleep(0.02)


# -- the real CLI in a process we can kill -----------------------------------------------------
def spawn_sync(world: World, okbx: Any, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OKBX_")}
    env.update(world.env())
    env.update(extra_env or {})
    command = [sys.executable, "-m", "okbx_sync", "sync", "--config", str(okbx.config_path)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_during(world: World, okbx: Any, server: EmulatorServer, op: str) -> None:
    """Run `okbx sync` until the server has committed `op` and holds its answer; then kill -9."""
    fault = server.inject(Fault(op, when="after", kind="hang"))
    proc = spawn_sync(world, okbx)
    try:
        deadline = time.monotonic() + 30
        while not fault.hit.wait(0.02):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate()
                raise AssertionError(f"{op} was never sent (exit {proc.returncode}):\n{out}\n{err}")
        proc.kill()
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        fault.release()
        server.clear_faults()


def crash_at_point(world: World, okbx: Any, point: str) -> bool:
    """Run `okbx sync` with OKBX_CRASH_AFTER=point; True if it killed itself there."""
    proc = spawn_sync(world, okbx, {"OKBX_CRASH_AFTER": point})
    out, err = proc.communicate(timeout=60)
    if proc.returncode == -signal.SIGKILL:
        return True
    assert proc.returncode in (0, 1), (proc.returncode, out, err)
    return False


def store_points() -> set[str]:
    """Every write point of the state store, read from its source (`self.tx()` is "write": the migration)."""
    names = re.findall(r"""self\.tx\(\s*(?:["'](\w+)["'])?\s*\)""", STORE_SOURCE.read_text(encoding="utf-8"))
    return {name or "write" for name in names}


# -- what the world must look like -------------------------------------------------------------
_BB_MARK = re.compile(r"\[I\](okbx:[^\[\]]+)\[/I\]\s*$")
_HTML_MARK = re.compile(r"(okbx:[\w:]+)\s*$")
_TIME_MARK = re.compile(r"\[(okbx:time:\d+)\]\s*$")


def task_markers(world: World) -> Counter[str]:
    found: Counter[str] = Counter()
    for task in world.bitrix.tasks():
        for comment in world.bitrix.comments(int(task["ID"])):
            if m := _BB_MARK.search(comment.get("POST_MESSAGE") or ""):
                found[m.group(1)] += 1
    return found


def issue_markers(world: World, issue: int) -> Counter[str]:
    found: Counter[str] = Counter()
    for comment in world.okdesk.comments(issue):
        text = re.sub(r"<[^>]*>", "", comment["content"])
        if m := _HTML_MARK.search(text):
            assert _by_bot(world, comment), comment
            found[m.group(1)] += 1
    return found


def time_markers(world: World, issue: int) -> Counter[str]:
    found: Counter[str] = Counter()
    for entry in world.okdesk.time_entries(issue):
        if m := _TIME_MARK.search(entry.get("comment") or ""):
            found[m.group(1)] += 1
    return found


def _by_bot(world: World, comment: dict[str, Any]) -> bool:
    return comment["author"]["type"] == "employee" and comment["author"]["id"] == world.people.bot


@dataclass
class Story:
    """What one issue must end with, once all syncs converged."""

    issue: int
    task: int | None = None
    completed: int = 0  # task cycles completed (one summary each)
    returns: int = 0  # status changes by okbx
    renews: int = 0
    task_deleted: bool = False
    notes: set[str] = field(default_factory=set)  # okbx notes in the task (markers)
    issue_notes: set[str] = field(default_factory=set)  # okbx notes in the issue (markers)
    late_after: int | None = None  # elapsed items above this id were logged after completion: a late note
    final_status: str | None = None
    link_state: str = "active"


def expected(world: World, story: Story) -> tuple[Counter[str], Counter[str], Counter[str]]:
    issue = story.issue
    in_task = set(story.notes)
    if not story.task_deleted:
        in_task |= {f"okbx:comment:{issue}:1:{c['id']}" for c in world.okdesk.comments(issue) if not _by_bot(world, c)}
    in_issue = {f"okbx:linkcomment:{issue}:1", *story.issue_notes}
    in_issue |= {f"okbx:summary:{issue}:{cycle}" for cycle in range(1, story.completed + 1)}
    items = sorted(int(e["ID"]) for e in world.bitrix.elapsed(story.task)) if story.task else []
    if story.late_after is not None:
        in_issue.add(f"okbx:late:{issue}:{min(i for i in items if i > story.late_after)}")
    times = {f"okbx:time:{i}" for i in items} if story.completed else set()
    return Counter(in_task), Counter(in_issue), Counter(times)


def check_converged(world: World, okbx: Any, stories: list[Story]) -> None:
    all_task_markers = task_markers(world)
    assert all(n == 1 for n in all_task_markers.values()), f"duplicated in a task: {all_task_markers}"
    want_task: Counter[str] = Counter()
    for story in stories:
        in_task, in_issue, times = expected(world, story)
        want_task += in_task
        tasks = [t for t in world.bitrix.tasks() if t.get("XML_ID") == f"okdesk:{story.issue}"]
        assert len(tasks) == (0 if story.task_deleted else 1), tasks
        assert issue_markers(world, story.issue) == in_issue
        assert time_markers(world, story.issue) == times
        if story.final_status:
            assert world.okdesk.status_of(story.issue) == story.final_status
    assert all_task_markers == want_task
    assert world.okdesk_server.count(STATUS_OP) == sum(s.returns for s in stories)
    assert world.bitrix_server.count("tasks.task.renew") == sum(s.renews for s in stories)
    store = okbx.store()
    try:
        # A status change whose answer was lost stays "intent"/"failed" in the journal: the planner
        # reads the issue's status instead (the issue left the handoff status: nothing to do).
        unfinished = {
            k: (op.state, op.error)
            for k, op in store.ops_for().items()
            if op.state != "done" and not k.startswith("return:")
        }
        assert not unfinished, unfinished
        for story in stories:
            link = store.link(story.issue)
            assert link is not None and link.state == story.link_state, link
            assert link.fail_count == 0 and link.next_retry_at is None and not link.parked, link
    finally:
        store.close()


# -- scenarios: the world up to the write under test -------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    action: str  # the Action subclass whose write is next
    system: str  # "okdesk" | "bitrix"
    op: str
    prepare: Callable[[World, Any], Story]
    key: str  # how the key of the write under test starts (its op in the state store)

    def server(self, world: World) -> EmulatorServer:
        return world.okdesk_server if self.system == "okdesk" else world.bitrix_server

    def __str__(self) -> str:
        return self.name


def _fresh(world: World, okbx: Any) -> Story:
    ok, p = world.okdesk, world.people
    issue = hand_off(world, comment="Please look at the export code.")
    ok.add_comment(issue, "Any news?", author_id=p.client, author_type="contact")
    return Story(issue, final_status=HANDOFF)


def _linked(world: World, okbx: Any) -> Story:
    story = _fresh(world, okbx)
    sync_ok(okbx)
    story.task = task_of(world, story.issue)
    return story


def _new_comment(world: World, okbx: Any) -> Story:
    story = _linked(world, okbx)
    world.okdesk.add_comment(story.issue, "Checked on staging", author_id=world.people.consultant, public=False)
    return story


def _left_handoff(world: World, okbx: Any) -> Story:
    story = _linked(world, okbx)
    world.okdesk.set_status(story.issue, "in_progress", by_employee_id=world.people.consultant)
    story.notes.add(f"okbx:note:left:{story.issue}:1")
    story.final_status = "in_progress"
    return story


def _task_deleted(world: World, okbx: Any) -> Story:
    story = _linked(world, okbx)
    world.bitrix.delete_task(task_of(world, story.issue))
    story.task, story.task_deleted, story.link_state = None, True, "gone_task"
    story.issue_notes.add(f"okbx:inote:taskdeleted:{story.issue}:1")
    return story


def _completed(world: World, okbx: Any) -> Story:
    story = _linked(world, okbx)
    bx, p, task = world.bitrix, world.people, task_of(world, story.issue)
    bx.log_time(task, p.bx_ivan, 5400, "Fixed encoding")
    bx.log_time(task, p.bx_sergey, 1200, "")
    bx.complete_task(task)
    story.completed, story.returns, story.final_status, story.link_state = 1, 1, "opened", "done"
    return story


def _completed_elsewhere(world: World, okbx: Any) -> Story:
    """Completed while a person had moved the issue on: the summary goes alone, the status stays."""
    story = _left_handoff(world, okbx)
    sync_ok(okbx)  # the task learns that the issue left the handoff status
    bx, p, task = world.bitrix, world.people, task_of(world, story.issue)
    bx.log_time(task, p.bx_ivan, 5400, "Fixed encoding")
    bx.complete_task(task)
    story.completed, story.link_state = 1, "done"
    return story


def _closed(world: World, okbx: Any) -> Story:
    story = _completed(world, okbx)
    sync_ok(okbx)
    return story


def _handed_off_again(world: World, okbx: Any) -> Story:
    story = _closed(world, okbx)
    world.okdesk.set_status(story.issue, HANDOFF, by_employee_id=world.people.consultant, comment="Still broken")
    story.renews, story.final_status, story.link_state = 1, HANDOFF, "active"
    story.notes.add(f"okbx:note:renew:{story.issue}:2")
    return story


def _late_time(world: World, okbx: Any) -> Story:
    story = _closed(world, okbx)
    task = task_of(world, story.issue)
    story.late_after = max(int(e["ID"]) for e in world.bitrix.elapsed(task))
    world.bitrix.log_time(task, world.people.bx_olga, 900, "forgot to log this")
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
]


def assert_recovered_by_looking(okbx: Any, scenario: Scenario) -> None:
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
