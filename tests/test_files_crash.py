"""Files exactly once (issue 15 item 3): kill -9 and lost answers for every new write kind.

For each write kind that moves a file (the Drive upload, the attach to the task, the forwarded
comment carrying files, the chat message carrying them on the new card, the note about a file over
the cap, the Okdesk comment carrying the task's files back) a real `okbx sync` is killed after the
server committed the write and before its answer arrived; then the answer is lost instead (an HTML
error page, a dropped connection, a timeout).  The next syncs must find the write by its marker
(the Drive name, the task's attachments, the comment's marker) and adopt it: no file twice, none
missing, nothing left unfinished.  A crash between the upload and the attach completes the attach
and uploads nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e import SYNC, Okbx, TestClock, bot_markers, hand_off, kill_during, start_world, task_markers, task_of
from files_support import copies_of, files_in_task_comments, okdesk_files_from_bot, task_file_names
from test_crash_safety import LOST, _action_classes, crash_at_point

from okbx_emulator.http import EmulatorServer
from okbx_emulator.world import World
from okbx_sync.sync.files import to_issue, to_task  # noqa: F401  (their kinds are counted below)

MB = 1024 * 1024
COMMENTS = "POST /issues/{id}/comments"


def configure(okbx: Okbx, *, timeout: float | None = None) -> None:
    overrides: dict[str, dict[str, Any]] = {"sync": dict(SYNC), "files": {"max_file_mb": 1}}
    if timeout is not None:
        overrides["okdesk"] = {"timeout_seconds": timeout}
        overrides["bitrix24"] = {"timeout_seconds": timeout}
    okbx.reconfigure(**overrides)


def sync_ok(okbx: Okbx) -> None:
    result = okbx.sync()
    assert result.exit_code == 0, result.output


# -- scenarios: the world up to the write under test -------------------------------------------------
@dataclass
class Story:
    issue: int
    in_task: tuple[str, ...] = ()  # files the task ends with (attached, or carried by a comment)
    back: tuple[str, ...] = ()  # files okbx carries back to the issue
    notes: int = 0  # notes about files over the cap, in the task


def _issue_file(world: World, okbx: Okbx) -> Story:
    issue = hand_off(world)
    world.okdesk.files.add(issue, "spec.pdf", b"%PDF the spec", is_public=True)
    return Story(issue, in_task=(f"spec [okbx-file-{issue}-1].pdf",))


def _big_issue_file(world: World, okbx: Okbx) -> Story:
    issue = hand_off(world)
    world.okdesk.files.add(issue, "base.cf", size=2 * MB, is_public=True)
    return Story(issue, notes=1)


def _comment_file(world: World, okbx: Okbx) -> Story:
    issue = hand_off(world)
    sync_ok(okbx)
    ok, p = world.okdesk, world.people
    comment = ok.add_comment(issue, "Here it is", author_id=p.client, author_type="contact")
    ok.files.add(issue, "screen.png", b"\x89PNG shot", comment_id=comment, is_public=True)
    return Story(issue, in_task=(f"screen [okbx-file-{issue}-1].png",))


def _result_file(world: World, okbx: Okbx) -> Story:
    issue = hand_off(world)
    sync_ok(okbx)
    bx, p, task = world.bitrix, world.people, task_of(world, issue)
    root = bx.drive.storage_of("user", p.bx_ivan)["root_id"]
    bx.drive.attach_to_task(task, bx.drive.add_file(root, "fixed.xlsx", b"PK fixed", created_by=p.bx_ivan), p.bx_ivan)
    bx.log_time(task, p.bx_ivan, 900, "fix")
    bx.complete_task(task)
    return Story(issue, back=("fixed.xlsx",))


@dataclass(frozen=True)
class Scenario:
    name: str
    action: str  # the Action class whose write is under test
    system: str  # "okdesk" | "bitrix"
    op: str
    prepare: Callable[[World, Okbx], Story]
    key: str  # how the key of the write under test starts
    new_card: bool = False

    def server(self, world: World) -> EmulatorServer:
        return world.okdesk_server if self.system == "okdesk" else world.bitrix_server

    def __str__(self) -> str:
        return self.name


SCENARIOS = [
    Scenario("upload", "UploadFile", "bitrix", "upload.json", _issue_file, "file:"),
    Scenario("attach", "AttachFileToTask", "bitrix", "tasks.task.files.attach", _issue_file, "attach:"),
    Scenario("comment", "ForwardCommentWithFiles", "bitrix", "task.commentitem.add", _comment_file, "comment:"),
    Scenario("chat", "ForwardCommentWithFiles", "bitrix", "im.disk.file.commit", _comment_file, "comment:", True),
    Scenario("note", "NoteBigFile", "bitrix", "task.commentitem.add", _big_issue_file, "note:bigfile:"),
    Scenario("back", "PostFilesBack", "okdesk", COMMENTS, _result_file, "files:"),
]


@pytest.fixture
def card_world(request: pytest.FixtureRequest, clock: TestClock) -> Iterator[World]:
    world = start_world(clock, bitrix_new_task_card=bool(request.param))
    yield world
    world.close()


def converged(world: World, okbx: Okbx, story: Story) -> None:
    """Each file once where it belongs, each marker once, nothing unfinished in the store."""
    issue, task = story.issue, task_of(world, story.issue)
    assert all(n == 1 for n in task_markers(world).values()), task_markers(world)
    assert all(n == 1 for n in Counter(bot_markers(world, issue)).values()), bot_markers(world, issue)
    in_task = task_file_names(world, task) + files_in_task_comments(world, task)
    assert sorted(n for n in in_task if "[okbx-" in n) == sorted(story.in_task)
    for name in story.in_task:
        assert len(copies_of(world, name.split(" [okbx-")[0] + ".x")) == 1
    assert sorted(n for n, _, _ in okdesk_files_from_bot(world, issue)) == sorted(story.back)
    notes = [c for c in world.bitrix.comments(task) if "okbx:note:bigfile:" in c["POST_MESSAGE"]]
    assert len(notes) == story.notes
    store = okbx.store()
    try:
        unfinished = {
            k: op.state for k, op in store.ops_for().items() if op.state != "done" and not k.startswith("return:")
        }
        assert not unfinished, unfinished
    finally:
        store.close()


def adopted(okbx: Okbx, prefix: str) -> None:
    store = okbx.store()
    try:
        keys = [row["key"] for row in store.journal() if row["outcome"] == "adopted"]
    finally:
        store.close()
    assert any(key.startswith(prefix) for key in keys), keys


def test_every_file_write_kind_has_a_crash_scenario():
    kinds = {c.__name__ for c in _action_classes() if c.side and c.__module__.startswith("okbx_sync.sync.files")}
    assert kinds == {s.action for s in SCENARIOS}


@pytest.mark.parametrize(
    ("scenario", "card_world"), [(s, s.new_card) for s in SCENARIOS], ids=str, indirect=["card_world"]
)
def test_killed_after_the_server_committed_a_file_write(card_world, tmp_path: Path, clock, scenario: Scenario):
    world = card_world
    okbx = Okbx(world, tmp_path, clock=clock)
    configure(okbx)
    story = scenario.prepare(world, okbx)
    kill_during(okbx, scenario.server(world), scenario.op)
    for _ in range(3):
        sync_ok(okbx)
    converged(world, okbx, story)
    adopted(okbx, scenario.key)


# one way of losing the answer per kind, each way for two kinds (the suite keeps to its time)
LOST_CASES = [
    pytest.param(s, lost, id=f"{s}-{lost}")
    for s, lost in zip(SCENARIOS, ("html502", "drop", "timeout", "html500", "timeout", "drop"), strict=True)
]


@pytest.mark.parametrize(("scenario", "lost"), LOST_CASES)
def test_a_lost_answer_to_a_file_write_is_adopted_by_the_next_syncs(
    tmp_path: Path, clock, scenario: Scenario, lost: str
):
    world = start_world(clock, bitrix_new_task_card=scenario.new_card)
    try:
        okbx = Okbx(world, tmp_path, clock=clock)
        configure(okbx, timeout=0.5 if lost == "timeout" else None)
        story = scenario.prepare(world, okbx)
        fault = scenario.server(world).inject(LOST[lost](scenario.op))
        first = okbx.sync()
        fault.release()
        assert fault.hit.is_set() and first.exit_code == 1, first.output
        assert okbx("retry", str(story.issue)).exit_code == 0
        for _ in range(2):
            sync_ok(okbx)
        converged(world, okbx, story)
        adopted(okbx, scenario.key)
    finally:
        world.close()


def test_a_crash_between_the_upload_and_the_attach_attaches_and_uploads_nothing_again(world, okbx):
    configure(okbx)
    story = _issue_file(world, okbx)
    assert crash_at_point(okbx, "finish_op:3")  # the task, the link comment, then the upload
    store = okbx.store()
    try:
        ops = store.ops_for([story.issue])
    finally:
        store.close()
    assert ops[f"file:{story.issue}:1"].done and f"attach:{story.issue}:1:1" not in ops
    uploads = world.bitrix_server.count("upload.json")
    for _ in range(2):
        sync_ok(okbx)
    assert world.bitrix_server.count("upload.json") == uploads == 1
    converged(world, okbx, story)
