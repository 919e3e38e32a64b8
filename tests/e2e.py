"""The one end-to-end harness: both emulators on loopback, one clock, and the real `okbx` CLI.

- `TestClock` is real time plus an offset the test moves forward.  The emulators, the state
  store and every place where okbx waits (retry backoff, the throttle, the lock, the run loop)
  read it, so "wait until the retry time" is `clock.advance(seconds)` and a backoff costs
  nothing.  It follows real time so that a real `okbx` process (kill -9 tests) started at the
  same time agrees with it; a test that advances it must not mix in such processes afterwards.
- `Okbx` runs the real CLI in-process with the environment a user would set; `spawn_okbx`
  runs it as a real process (the real clock) for signals and kill -9.
- Readers of both systems the way a person would look at them (`task_of`, `bot_comments`,
  the `okbx:` markers), output checks (`clean`, `summary`), and `check_converged`, which
  proves that every marker okbx writes exists exactly once after the syncs settled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from okbx_emulator.bitrix24 import Bitrix24Emulator
from okbx_emulator.http import EmulatorServer, Fault, Response
from okbx_emulator.okdesk import OkdeskEmulator
from okbx_emulator.world import HANDOFF, People, World
from okbx_sync.cli import app
from okbx_sync.clock import Clock
from okbx_sync.config import Config, load_config
from okbx_sync.state.store import Store

# Retries come at once and a failed issue waits one (virtual) second.
FAST = {"backoff_seconds": 0.01, "retry_base_seconds": 1}
OKDESK_WRITES = ("POST /issues/{id}/comments", "POST /issues/{id}/statuses", "POST /issues/{id}/time_entries")
BITRIX_WRITES = ("tasks.task.add", "task.commentitem.add", "tasks.task.renew")
STATUS_OP = "POST /issues/{id}/statuses"
SUMMARY = re.compile(
    r"okbx sync: (\d+) done, (\d+) adopted, (\d+) failed, (\d+) left for the next run; "
    r"requests: Okdesk (\d+), Bitrix24 (\d+)"
)


# -- the clock -------------------------------------------------------------------------------------
class TestClock:
    """Real time plus an offset; sleeping moves the offset instead of waiting (and is recorded)."""

    __test__ = False  # not a test class, despite the name

    def __init__(self) -> None:
        self.offset = 0.0
        self.slept: list[float] = []
        self.on_sleep: Callable[[], None] | None = None  # e.g. a signal that arrives while okbx waits
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def __call__(self) -> datetime:  # the emulators take a plain callable
        return self.now()

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.offset += max(0.0, seconds)
        if self.on_sleep is not None:
            self.on_sleep()

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0) -> None:
        with self._lock:
            self.offset += seconds + 60 * minutes

    def advance_to(self, moment: datetime) -> None:
        """Move just past `moment` (a retry time okbx recorded)."""
        self.advance(max(0.0, (moment - self.now()).total_seconds()) + 0.01)

    @property
    def for_okbx(self) -> Clock:
        return Clock(now=self.now, monotonic=self.monotonic, sleep=self.sleep)


class OnWorld:
    """Shortcuts for a story played on `self.world`: its Okdesk, its Bitrix24, its people."""

    world: World

    @property
    def ok(self) -> OkdeskEmulator:
        return self.world.okdesk

    @property
    def bx(self) -> Bitrix24Emulator:
        return self.world.bitrix

    @property
    def people(self) -> People:
        return self.world.people

    p = people


def start_world(clock: TestClock | None = None, **options: Any) -> World:
    """Both emulators; on `clock` unless the test wants the real one (real rate limiters)."""
    if clock is not None:
        options.setdefault("okdesk_clock", clock)
        options.setdefault("bitrix_clock", clock)
    return World.start(**options)


# -- the CLI -----------------------------------------------------------------------------------------
@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Okbx:
    """The real CLI, in-process, with the environment a user would set and the test's clock."""

    def __init__(
        self,
        world: World,
        directory: Path,
        overrides: dict[str, dict[str, Any]] | None = None,
        clock: TestClock | None = None,
    ) -> None:
        self.world = world
        self.directory = directory
        self.clock = clock
        self.config_path = world.write_config(directory, **(overrides or {}))
        self.env = {**world.env(), "OKBX_CONFIG": str(self.config_path)}

    def __call__(self, *args: str) -> CliResult:
        obj = self.clock.for_okbx if self.clock is not None else None
        result = CliRunner().invoke(app, list(args), env=self.env, catch_exceptions=False, obj=obj)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    def sync(self, *args: str) -> CliResult:
        result = self("sync", *args)
        assert result.exit_code in (0, 1), result.output
        return result

    def config(self) -> Config:
        return load_config(self.config_path, env=self.env)

    def store(self) -> Store:
        return Store(self.config().state.path, clock=self.clock.now if self.clock else None)

    def reconfigure(self, **overrides: dict[str, Any]) -> None:
        self.config_path = self.world.write_config(self.directory, **overrides)

    def spawn_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a real `okbx` process: this one's, without stray OKBX_ settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OKBX_")}
        return {**env, **self.env, **(extra or {})}

    def status_rows(self) -> dict[int, dict[str, Any]]:
        result = self("status", "--json")
        data = json.loads(result.stdout)
        rows = {row["issue"]: row for row in data["links"]}
        unhealthy = any(row["failures"] or row["state"] == "parked" for row in rows.values())
        assert not unhealthy or data["problems"], data  # a failing link is always a problem
        assert result.exit_code == (1 if data["problems"] else 0), result.output  # for monitoring checks
        return rows

    def retry_failed(self) -> None:
        """`okbx retry` for every link waiting after a failure (instead of waiting out the retry time)."""
        for issue, row in self.status_rows().items():
            if row["next_retry_at"] or row["state"] == "parked":
                assert self("retry", str(issue)).exit_code == 0

    def wait_for_retry(self, issue: int) -> None:
        """Let the clock pass the issue's next retry time (the natural way back after a failure)."""
        assert self.clock is not None, "only a test clock can be moved"
        store = self.store()
        try:
            link = store.link(issue)
            assert link is not None and link.next_retry_at is not None, link
            self.clock.advance_to(link.next_retry_at)
        finally:
            store.close()


def okbx_command() -> list[str]:
    found = shutil.which("okbx")
    return [found] if found else [sys.executable, "-m", "okbx_sync"]


def spawn_okbx(okbx: Okbx, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The real CLI in its own process (real clock), for signals and kill -9."""
    return subprocess.Popen(
        [*okbx_command(), *args], env=okbx.spawn_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


# -- output ------------------------------------------------------------------------------------------
# The emulator's server threads print a traceback when a client drops a connection (a SIGKILL, a
# timeout); in-process runs capture it with okbx's stderr, but it is not okbx's output.
_THREAD_TRACEBACK = re.compile(r"Traceback \(most recent call last\):\n(?:[ \t].*\n)+\S.*\n?")


def own_output(text: str) -> str:
    return _THREAD_TRACEBACK.sub(lambda m: "" if "socketserver.py" in m.group(0) else m.group(0), text)


def clean(result: CliResult) -> CliResult:
    own = own_output(result.output)
    assert "Traceback" not in own and "internal error" not in own, result.output
    return result


def summary(result: CliResult) -> dict[str, int]:
    match = SUMMARY.search(result.stdout + result.stderr)
    assert match, result.output
    keys = ("done", "adopted", "failed", "left", "okdesk", "bitrix24")
    return dict(zip(keys, map(int, match.groups()), strict=True))


def wait_logged(server: EmulatorServer, op: str, count: int = 1) -> None:
    """A held answer is logged when the server finally sends it: wait for that (real time)."""
    deadline = time.monotonic() + 10
    while server.count(op) < count:
        assert time.monotonic() < deadline, f"{op} never answered"
        time.sleep(0.01)


def query_limit() -> Response:
    return Response.json(503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})


# -- both systems, the way a person would look at them ------------------------------------------------
TASK_MARKER = re.compile(r"\[I\](okbx:[^\[\]\s]+)\[/I\]\s*$")  # the last line of a comment okbx wrote to a task
ISSUE_MARKER = re.compile(r"(okbx:[\w:]+)\s*$")  # the last line of a comment okbx wrote to an issue (tags removed)
TIME_MARKER = re.compile(r"\[okbx:time:(\d+)\]\s*$")
HTML_TAG = re.compile(r"<[^>]*>")


def hand_off(world: World, title: str = "Report export fails", comment: str | None = None) -> int:
    """A consultant creates an issue for the client and hands it to the programmers."""
    ok, p = world.okdesk, world.people
    issue = ok.create_issue(title, "<p>Export <b>fails</b></p>", company_id=p.company, contact_id=p.client)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment=comment)
    return issue


def tasks_of(world: World, issue: int) -> list[dict[str, Any]]:
    return [t for t in world.bitrix.tasks() if t.get("XML_ID") == f"okdesk:{issue}"]


def task_of(world: World, issue: int) -> int:
    """The one task of an issue."""
    tasks = tasks_of(world, issue)
    assert len(tasks) == 1, tasks
    return int(tasks[0]["ID"])


def in_task(world: World, issue: int, phrase: str) -> int:
    """How many comments of the issue's task contain `phrase`."""
    return sum(phrase in c["POST_MESSAGE"] for c in world.bitrix.comments(task_of(world, issue)))


def is_bot(world: World, comment: dict[str, Any]) -> bool:
    return comment["author"]["type"] == "employee" and comment["author"]["id"] == world.people.bot


def bot_comments(world: World, issue: int, marker: str = "") -> list[str]:
    return [c["content"] for c in world.okdesk.comments(issue) if is_bot(world, c) and marker in c["content"]]


def writes(world: World) -> int:
    counts = world.okdesk_server.counts() + world.bitrix_server.counts()
    return sum(counts[op] for op in OKDESK_WRITES + BITRIX_WRITES)


def expected_hours(seconds: int) -> float:
    """Okdesk's spent_time for an elapsed item: whole minutes (at least one), in hours, two places."""
    return round(max(1, round(seconds / 60)) / 60, 2)


def comment_markers(world: World, task: int) -> list[str]:
    """The markers of the comments okbx wrote to one task, in order."""
    found = []
    for comment in world.bitrix.comments(task):
        if m := TASK_MARKER.search(comment.get("POST_MESSAGE") or ""):
            found.append(m.group(1))
    return found


def task_markers(world: World) -> Counter[str]:
    """The markers of okbx's comments in every task."""
    return Counter(m for task in world.bitrix.tasks() for m in comment_markers(world, int(task["ID"])))


def unstamped(marker: str) -> str:
    """A renew note's marker without the task's closedDate it names (`okbx:note:renew:<issue>:<handoff>`)."""
    parts = marker.split(":")
    return ":".join(parts[:5]) if parts[1:3] == ["note", "renew"] else marker


def bot_markers(world: World, issue: int) -> list[str]:
    """The markers of okbx's comments in one issue; every comment by the bot carries one."""
    found = []
    for comment in world.okdesk.comments(issue):
        if is_bot(world, comment):
            match = ISSUE_MARKER.search(HTML_TAG.sub("", comment["content"]))
            assert match, f"a bot comment in issue {issue} carries no marker: {comment['content']!r}"
            found.append(match.group(1))
    return found


def time_markers(world: World, issue: int) -> list[int]:
    """The elapsed item ids the time entries of an issue were copied from."""
    found = []
    for entry in world.okdesk.time_entries(issue):
        match = TIME_MARKER.search(entry.get("comment") or "")
        assert match, f"a time entry in issue {issue} carries no marker: {entry.get('comment')!r}"
        found.append(int(match.group(1)))
    return found


# -- what a converged world holds ---------------------------------------------------------------------
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


def expected(world: World, story: Story) -> tuple[Counter[str], Counter[str], Counter[int]]:
    issue = story.issue
    in_task_ = set(story.notes)
    if not story.task_deleted:
        in_task_ |= {f"okbx:comment:{issue}:1:{c['id']}" for c in world.okdesk.comments(issue) if not is_bot(world, c)}
    in_issue = {f"okbx:linkcomment:{issue}:1", *story.issue_notes}
    in_issue |= {f"okbx:summary:{issue}:{cycle}" for cycle in range(1, story.completed + 1)}
    items = sorted(int(e["ID"]) for e in world.bitrix.elapsed(story.task)) if story.task else []
    if story.late_after is not None:
        in_issue.add(f"okbx:late:{issue}:{min(i for i in items if i > story.late_after)}")
    times = set(items) if story.completed else set()
    return Counter(in_task_), Counter(in_issue), Counter(times)


def check_converged(world: World, okbx: Okbx, stories: list[Story]) -> None:
    """Every marker okbx writes exists exactly once, one task per handoff, one status change per return."""
    all_task_markers = Counter(unstamped(m) for m in task_markers(world).elements())
    assert all(n == 1 for n in all_task_markers.values()), f"duplicated in a task: {all_task_markers}"
    want_task: Counter[str] = Counter()
    for story in stories:
        in_task_, in_issue, times = expected(world, story)
        want_task += in_task_
        assert len(tasks_of(world, story.issue)) == (0 if story.task_deleted else 1), tasks_of(world, story.issue)
        assert Counter(bot_markers(world, story.issue)) == in_issue
        assert Counter(time_markers(world, story.issue)) == times
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


# -- crash tests: the real CLI in a process we can kill -----------------------------------------------
# Read retries do not crawl; a failed issue waits one second (okbx retry or the test clock skip it).
SYNC = {"retry_base_seconds": 1, "backoff_seconds": 0.05}


def sync_ok(okbx: Okbx) -> None:
    result = okbx.sync()
    assert result.exit_code == 0, result.output


# -- the real CLI in a process we can kill -----------------------------------------------------
def kill_during(okbx: Okbx, server: EmulatorServer, op: str) -> None:
    """Run `okbx sync` until the server has committed `op` and holds its answer; then kill -9."""
    fault = server.inject(Fault(op, when="after", kind="hang"))
    proc = spawn_okbx(okbx, "sync")
    try:
        while not fault.hit.wait(0.02):
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"{op} was never sent (exit {proc.returncode}):\n{out}\n{err}")
        proc.kill()
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        fault.release()
        server.clear_faults()
