"""Which files travel now, as a pure function: literals in, actions out (okbx_sync/sync/files/plan.py).

Every row of the table at the top of that module has a story here; no HTTP, no database, no clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from okbx_sync import keys
from okbx_sync.clients.files_parse import TaskFile
from okbx_sync.config import Config, parse_config
from okbx_sync.core.plan import Plan
from okbx_sync.filenames import key_in_name, tagged_name
from okbx_sync.model import Attachment, Comment, ElapsedItem, Issue, Person, Task
from okbx_sync.state.lifecycle import LinkState
from okbx_sync.state.store import Link, Op, OpState
from okbx_sync.sync.files.plan import comment_files, files_back, fit_cycle_cap, issue_files
from okbx_sync.sync.files.reads import TaskFiles, new_attachments
from okbx_sync.sync.files.route import DriveTarget, cycle_files, files_line, reported_files, size_text
from okbx_sync.sync.files.to_issue import PostFilesBack, TaskFilesSeen
from okbx_sync.sync.files.to_task import (
    AttachFileToTask,
    ForwardCommentWithFiles,
    NoteBigFile,
    UploadFile,
)
from okbx_sync.sync.plan import build_plan
from okbx_sync.sync.snapshot import Snapshot, StateView
from okbx_sync.sync.task_writes import CreateTask, ForwardComment

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ISSUE, TASK, BOT, CLIENT = 10, 100, 1, 5
MB = 1024 * 1024


def config(**files: Any) -> Config:
    raw: dict[str, Any] = {
        "okdesk": {"url": "https://acme.okdesk.ru", "api_token": "t", "bot_employee_id": BOT,
                   "handoff_status": "to_programmers"},
        "bitrix24": {"webhook_url": "http://127.0.0.1:1/rest/1/s/", "group_id": 42, "responsible_id": 7},
        "time": {"default_employee_id": BOT},
        "files": {"max_file_mb": 10, "max_cycle_mb": 25, **files},
    }  # fmt: skip
    return parse_config(raw, env={}, base_dir=Path("/nonexistent"))


ROUTE = cycle_files(config())
assert ROUTE is not None


def file(att_id: int, name: str = "screen.png", size: int = 1000, *, public: bool = True, comment: int | None = None):
    return Attachment(att_id, name, size, public, comment_id=comment)


def issue(*files: Attachment, status: str = "to_programmers") -> Issue:
    return Issue(ISSUE, "Printer", status, NOW, attachments=tuple(files))


def comment(comment_id: int, *files: Attachment, author: Person | None = None, html: str = "look") -> Comment:
    who = author or Person(CLIENT, "Pavel Orlov", "contact")
    return Comment(comment_id, ISSUE, html, True, NOW, who, tuple(files))


def forward(c: Comment, cycle: int = 1) -> ForwardComment:
    return ForwardComment(ISSUE, comment=c, task_cycle=cycle, text=f"text of {c.id}")


def op(key: keys.Key, kind: str, *, state: str = OpState.DONE, ambiguous: bool = False, **detail: Any) -> Op:
    return Op(key.text, ISSUE, kind, OpState(state), "1", None, None, ambiguous, None, 1, detail)


def state(*ops: Op, links: dict[int, Link] | None = None) -> StateView:
    return StateView(links=links or {}, ops={o.key: o for o in ops})


def names(actions: list[Any]) -> list[str]:
    return [type(a).__name__ for a in actions]


def task_file(att_id: int, name: str, size: int = 2000) -> TaskFile:
    return TaskFile(att_id, att_id + 5000, name, size, None)


# -- Okdesk -> the task ------------------------------------------------------------------------------
def test_an_issue_file_is_copied_then_attached_and_a_public_or_allowed_internal_one_only():
    actions = issue_files(ROUTE, issue(file(1), file(2, public=False)), [], 1, state())
    assert names(actions) == ["UploadFile", "AttachFileToTask"] * 2
    assert [a.key for a in actions] == ["file:10:1", "attach:10:1:1", "file:10:2", "attach:10:1:2"]
    public_only = cycle_files(config(internal_files=False))
    assert public_only is not None
    assert [a.key for a in issue_files(public_only, issue(file(1), file(2, public=False)), [], 1, state())] == [
        "file:10:1",
        "attach:10:1:1",
    ]


def test_a_copy_made_for_an_earlier_task_is_attached_to_a_new_one_without_copying_again():
    copied = op(keys.FileKey(ISSUE, 1), "file")
    attached = op(keys.AttachKey(ISSUE, 1, 1), "attach")
    assert issue_files(ROUTE, issue(file(1)), [], 1, state(copied, attached)) == []
    again = issue_files(ROUTE, issue(file(1)), [], 2, state(copied, attached))  # the task was deleted, handoff 2
    assert [a.key for a in again] == ["attach:10:2:1"]


def test_an_issue_file_over_the_cap_gets_one_note_in_the_task_naming_it_and_where_it_is():
    big = file(3, "выгрузка 1С.cf", 11 * MB)
    (note,) = issue_files(ROUTE, issue(big), [], 1, state())
    assert isinstance(note, NoteBigFile) and note.key == "note:bigfile:10:1:3"
    assert "выгрузка 1С.cf" in note.text and "11.0 MB" in note.text and "10 MB per file" in note.text
    assert "https://acme.okdesk.ru/issues/10" in note.text and note.text.endswith("[I]okbx:note:bigfile:10:1:3[/I]")
    assert issue_files(ROUTE, issue(big), [], 1, state(op(keys.TaskNoteKey("bigfile", ISSUE, 1, "3"), "bigfile"))) == []


def test_an_account_listing_comment_files_on_the_issue_has_them_go_with_their_comment():
    shot = file(4, comment=7)
    assert issue_files(ROUTE, issue(shot), [comment(7, shot)], 1, state()) == []


def test_a_comment_with_files_goes_after_their_copies_and_carries_them():
    shot, log = file(4, comment=7), file(5, "app.log", comment=7, public=False)
    actions = comment_files(ROUTE, forward(comment(7, shot, log)), state(op(keys.FileKey(ISSUE, 5), "file")))
    assert names(actions) == ["UploadFile", "ForwardCommentWithFiles"]
    carrying = actions[1]
    assert isinstance(carrying, ForwardCommentWithFiles)
    assert carrying.key == "comment:10:1:7" and carrying.text == "text of 7"  # the forward's own key and words
    assert [k.text for k in carrying.files] == ["file:10:4", "file:10:5"]
    assert carrying.needs == ("file:10:4", "file:10:5")
    assert not carrying.batchable


def test_a_comment_whose_only_file_is_too_large_goes_as_it_is_with_a_note_after_it():
    actions = comment_files(ROUTE, forward(comment(7, file(4, "dump.zip", 50 * MB, comment=7))), state())
    assert names(actions) == ["ForwardComment", "NoteBigFile"]
    assert "comment #7" in actions[1].text


def test_a_comment_without_files_or_with_internal_ones_not_allowed_is_unchanged():
    plain = forward(comment(7))
    assert comment_files(ROUTE, plain, state()) == [plain]
    public_only = cycle_files(config(internal_files=False))
    assert public_only is not None
    secret = forward(comment(8, file(9, public=False, comment=8)))
    assert comment_files(public_only, secret, state()) == [secret]


def test_the_route_plans_a_handoff_with_its_files_in_order():
    snap = Snapshot(
        handoff={ISSUE: issue()},
        issues={ISSUE: issue(file(1, "spec.pdf"))},
        comments={ISSUE: [comment(7, file(4, comment=7))]},
    )
    plan = build_plan(snap, state(), config(), NOW)
    assert names(plan.actions) == [
        "CreateTask", "PostLinkComment", "UploadFile", "AttachFileToTask", "UploadFile", "ForwardCommentWithFiles",
    ]  # fmt: skip
    assert isinstance(plan.actions[0], CreateTask)
    off = build_plan(snap, state(), config(enabled=False), NOW)
    assert names(off.actions) == ["CreateTask", "PostLinkComment", "ForwardComment"]


def test_a_comment_already_forwarded_brings_no_files_later():
    done = op(keys.CommentKey(ISSUE, 1, 7), "comment")
    link = Link(ISSUE, TASK, LinkState.ACTIVE, 1, "to_programmers", False, NOW, NOW, None)
    snap = Snapshot(
        handoff={ISSUE: issue()},
        comments={ISSUE: [comment(7, file(4, comment=7))]},
        tasks={TASK: Task(TASK, 3)},
    )
    created = [op(keys.TaskKey(ISSUE, 1), "task"), op(keys.LinkCommentKey(ISSUE, 1), "link_comment")]
    assert build_plan(snap, state(done, *created, links={ISSUE: link}), config(), NOW).actions == []


# -- the task -> Okdesk ------------------------------------------------------------------------------
def back(task: TaskFiles | None, st: StateView | None = None, comments: list[Comment] | None = None, **kw: Any):
    return files_back(ROUTE, ISSUE, TASK, task, comments or [], st or state(), late=kw.get("late", False))


def test_the_programmers_files_come_back_in_one_comment_and_okbx_copies_are_only_recorded():
    own = task_file(301, "spec [okbx-file-10-1].pdf")
    files = TaskFiles((own, task_file(303, "fixed.xlsx"), task_file(304, "a.diff")))
    actions = back(files)
    assert names(actions) == ["PostFilesBack", "TaskFilesSeen"]
    carrying, seen = actions
    assert isinstance(carrying, PostFilesBack) and isinstance(seen, TaskFilesSeen)
    assert carrying.key == "files:10:303" and [f.id for f in carrying.files] == [303, 304]
    assert [a.key for a in carrying.also_completes()] == ["files:10:304"]
    assert carrying.moves_bytes == 4000 and not carrying.public and "attached to Bitrix24 task #100" in carrying.heading
    assert seen.key == "files:10:301" and seen.also_completes() == []
    assert back(None) == []  # not read this cycle


def test_files_over_the_cap_or_unreadable_are_named_not_carried():
    files = TaskFiles((task_file(303, "huge.iso", 11 * MB),), unreadable={305: "Access denied"})
    (carrying,) = back(files)
    assert isinstance(carrying, PostFilesBack) and carrying.carried == [] and carrying.moves_bytes == 0
    assert [(f.id, bool(f.why_not)) for f in carrying.files] == [(303, True), (305, True)]
    assert "10 MB per file" in carrying.files[0].why_not and "Access denied" in carrying.files[1].why_not


def test_files_dealt_with_in_the_store_or_listed_by_a_comment_of_okbx_never_come_back_twice():
    files = TaskFiles((task_file(303, "a.xlsx"), task_file(304, "b.xlsx"), task_file(306, "c.xlsx")))
    bot = Person(BOT, "okbx", "employee")
    listed = comment(50, author=bot, html=f"Files<br>{files_line([304])}<br><span>okbx:files:10:304</span>")
    (carrying,) = back(files, state(op(keys.FilesBackKey(ISSUE, 303), "files")), [listed])
    assert [f.id for f in carrying.files] == [306]
    person = comment(51, html=f"{files_line([306])}")  # a person pasting the line adopts nothing
    assert [f.id for f in back(files, state(), [person])[0].files] == [303, 304, 306]


def test_an_unsure_comment_is_planned_again_exactly_as_it_was_whatever_the_task_holds_now():
    detail = {"task_id": TASK, "heading": "H", "public": False, "files": [{"id": 303, "name": "a.xlsx", "size": 1}]}
    unsure = op(keys.FilesBackKey(ISSUE, 303), "files", state=OpState.INTENT, **detail)
    files = TaskFiles((task_file(303, "a.xlsx"), task_file(304, "b.xlsx")))
    again, fresh = back(files, state(unsure))
    assert again.key == "files:10:303" and [f.id for f in again.files] == [303] and again.heading == "H"
    assert [f.id for f in fresh.files] == [304]
    refused = op(keys.FilesBackKey(ISSUE, 303), "files", state=OpState.FAILED, **detail)  # nothing was written
    assert [[f.id for f in a.files] for a in back(files, state(refused))] == [[303, 304]]


def test_files_go_to_as_many_comments_as_the_cycle_cap_needs_and_later_ones_say_so():
    files = TaskFiles(tuple(task_file(300 + n, f"{n}.bin", 9 * MB) for n in range(4)))
    actions = back(files, late=True)
    assert [[f.id for f in a.files] for a in actions] == [[300, 301], [302, 303]]  # 25 MB a cycle
    assert all("after it was completed" in a.heading for a in actions)


def test_the_route_brings_files_back_after_the_summary_and_before_the_link_closes():
    link = Link(ISSUE, TASK, LinkState.ACTIVE, 1, "to_programmers", False, NOW, NOW, None)
    created = [op(keys.TaskKey(ISSUE, 1), "task"), op(keys.LinkCommentKey(ISSUE, 1), "link_comment")]
    snap = Snapshot(
        handoff={ISSUE: issue()},
        issues={ISSUE: issue()},
        comments={ISSUE: []},
        tasks={TASK: Task(TASK, 5)},
        elapsed={TASK: [ElapsedItem(1, TASK, 7, 600, "fix", NOW)]},
        task_files={TASK: TaskFiles((task_file(303, "fixed.xlsx"),))},
    )
    plan = build_plan(snap, state(*created, links={ISSUE: link}), config(), NOW)
    assert names(plan.actions) == ["CopyTimeEntry", "ReturnIssue", "PostFilesBack", "CloseLink"]


def test_late_files_are_the_attachments_okbx_has_not_dealt_with():
    known = {keys.FilesBackKey(ISSUE, 303).text}
    assert new_attachments({TASK: [303, 304], 101: [7]}, {TASK: ISSUE}, known) == {TASK: [304]}
    assert new_attachments({TASK: [303]}, {TASK: ISSUE}, known) == {}


# -- the cycle's cap -----------------------------------------------------------------------------------
def test_the_cycle_cap_cuts_an_issue_from_its_first_file_that_does_not_fit_and_lets_one_file_through():
    drive = DriveTarget(42)
    first = [UploadFile(1, file(1, size=20 * MB), drive), ForwardComment(1, comment=comment(1), text="a")]
    second = [ForwardComment(2, comment=comment(2), text="b"), UploadFile(2, file(2, size=10 * MB), drive),
              AttachFileToTask(2, file(2, size=10 * MB), 1)]  # fmt: skip
    plan = Plan(actions=first + second)
    kept, waiting, moved = fit_cycle_cap(plan, 25 * MB)
    assert waiting == {2} and moved == 20 * MB
    assert [a.issue_id for a in kept.actions] == [1, 1, 2] and "next cycle" in kept.skipped[2]
    alone, waiting, _ = fit_cycle_cap(Plan(actions=[UploadFile(3, file(3, size=90 * MB), drive)]), 25 * MB)
    assert len(alone.actions) == 1 and waiting == set()  # at least one file a cycle
    _, waiting, _ = fit_cycle_cap(Plan(actions=[UploadFile(3, file(3, size=6 * MB), drive)]), 25 * MB, moved=20 * MB)
    assert waiting == {3}  # earlier pages of the cycle count


# -- names and words ---------------------------------------------------------------------------------
def test_a_copys_name_carries_its_key_and_stays_safe_and_short():
    key = keys.FileKey(ISSUE, 345)
    assert tagged_name(key, "screen.png") == "screen [okbx-file-10-345].png"
    for hostile in (
        "../../etc/passwd",
        "a\u202egnp.exe",
        "CON.txt",
        "x" * 400 + ".pdf",
        "\x00\x1b[31m.log",
        "",
        "n.[okbx-file-10-9]",
        "y.[okbx-file-3-4]x",
    ):
        name = tagged_name(key, hostile)
        assert key_in_name(name) == key
        assert "/" not in name and "\\" not in name and "\u202e" not in name and "\x00" not in name
        assert len(name.encode("utf-8")) <= 255
    assert tagged_name(key, "x" * 400 + ".pdf").endswith(" [okbx-file-10-345].pdf")
    assert key_in_name("screen.png") is None and key_in_name("a [okbx-nope-1].png") is None


def test_the_files_line_is_read_back_and_sizes_read_like_a_person_writes_them():
    assert reported_files(f"x<br>{files_line([5, 3])}<br><span>okbx:files:1:3</span>") == [3, 5]
    assert reported_files("no line") == []
    sizes = (0, 1023, 1024, 5 * MB, 3 * 1024 * MB)
    assert [size_text(n) for n in sizes] == ["0 B", "1023 B", "1.0 KB", "5.0 MB", "3.0 GB"]


def test_dry_run_rows_name_each_file_and_its_size():
    upload = UploadFile(ISSUE, file(1, "scan.pdf", 1536, public=False, comment=7), DriveTarget(42))
    assert upload.detail == "internal file scan.pdf (1.5 KB) of comment #7 -> Bitrix24 Drive"
    assert upload.op_record().detail["name"] == "scan.pdf"
    carrying = back(TaskFiles((task_file(303, "fixed.xlsx"),)))[0]
    assert carrying.detail == "files of task #100 back: fixed.xlsx (2.0 KB)"


def test_nothing_about_files_is_planned_for_a_route_with_files_off():
    assert cycle_files(config(enabled=False)) is None
