"""Files travel with the route (issue 15): the real `okbx sync` against both emulators.

A client's screenshot reaches the programmers once, with its comment; the issue's own files are
attached to the task; the programmers' result files come back once, after the summary, and files
added after the completion come like late time; a file over the cap is named in a note and the
handoff goes on; internal files follow the configuration; the new task card gets them in its chat.
"""

from __future__ import annotations

import hashlib

from e2e import HANDOFF, Okbx, bot_comments, hand_off, in_task, start_world, summary, task_of
from files_support import (
    FILE_WRITES,
    copies_of,
    files_in_task_comments,
    okdesk_files_from_bot,
    task_file_names,
)

from okbx_emulator.world import GROUP_ID, World

SCREEN = b"\x89PNG\r\n\x1a\n" + b"client screenshot pixels" * 40
MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def client_comment_with(world: World, issue: int, name: str, data: bytes, *, public: bool = True) -> int:
    ok, p = world.okdesk, world.people
    comment = ok.add_comment(issue, "The error looks like this", author_id=p.client, author_type="contact")
    ok.files.add(issue, name, data, comment_id=comment, is_public=public)
    return comment


def attach_result(world: World, task: int, name: str, data: bytes | None = None, *, size: int | None = None) -> int:
    """A programmer puts a file on their drive and attaches it to the task."""
    bx, p = world.bitrix, world.people
    root = bx.drive.storage_of("user", p.bx_ivan)["root_id"]
    file = bx.drive.add_file(root, name, data, size=size, created_by=p.bx_ivan)
    return bx.drive.attach_to_task(task, file, p.bx_ivan)


def complete(world: World, task: int) -> None:
    world.bitrix.log_time(task, world.people.bx_ivan, 1800, "Fixed the report")
    world.bitrix.complete_task(task)


def test_a_screenshot_in_a_client_comment_reaches_the_task_once(world, okbx):
    issue = hand_off(world, comment="Please look")
    assert okbx.sync().exit_code == 0
    client_comment_with(world, issue, "screen.png", SCREEN)
    result = okbx.sync()
    assert result.exit_code == 0, result.output
    task = task_of(world, issue)
    assert files_in_task_comments(world, task) == ["screen [okbx-file-1-1].png"]
    (copy,) = copies_of(world, "screen.png")
    assert world.bitrix.drive.blob(copy["ID"]).sha256 == sha(SCREEN)
    assert in_task(world, issue, "The error looks like this") == 1
    before = world.bitrix_server.counts()
    assert okbx.sync().exit_code == 0
    assert okbx.sync().exit_code == 0
    assert all(world.bitrix_server.counts()[op] == before[op] for op in FILE_WRITES)
    assert len(copies_of(world, "screen.png")) == 1 and in_task(world, issue, "The error looks like this") == 1


def test_the_issues_own_files_are_attached_to_the_task_at_the_handoff(world, okbx):
    ok, p = world.okdesk, world.people
    issue = ok.create_issue("Export fails", "<p>see the export</p>", company_id=p.company, contact_id=p.client)
    ok.files.add(issue, "export.csv", b"a;b;c\n1;2;3\n", is_public=True)
    ok.files.add(issue, "notes.txt", b"consultant's notes", is_public=False)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    assert task_file_names(world, task) == [f"export [okbx-file-{issue}-1].csv", f"notes [okbx-file-{issue}-2].txt"]
    root = world.bitrix.drive.storage_of("group", GROUP_ID)["root_id"]
    (folder,) = [f for f in world.bitrix.drive.files_in(root) if f["NAME"] == "Okdesk files"]
    (issue_folder,) = world.bitrix.drive.files_in(folder["ID"])
    assert issue_folder["NAME"] == f"Okdesk #{issue}" and len(world.bitrix.drive.files_in(issue_folder["ID"])) == 2


def test_internal_files_stay_in_okdesk_when_the_configuration_says_so(world, tmp_path, clock):
    okbx = Okbx(world, tmp_path, {"files": {"internal_files": False}}, clock=clock)
    issue = hand_off(world)
    client_comment_with(world, issue, "public.png", b"public")
    client_comment_with(world, issue, "internal.png", b"internal", public=False)
    assert okbx.sync().exit_code == 0
    assert files_in_task_comments(world, task_of(world, issue)) == [f"public [okbx-file-{issue}-1].png"]
    assert in_task(world, issue, "The error looks like this") == 2  # both comments, one file


def test_a_result_file_comes_back_once_after_the_summary(world, okbx):
    issue = hand_off(world, comment="Please fix the report")
    client_comment_with(world, issue, "screen.png", SCREEN)
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    attach_result(world, task, "fixed_report.xlsx", b"PK fixed report")
    complete(world, task)
    result = okbx.sync()
    assert result.exit_code == 0, result.output
    assert world.okdesk.status_of(issue) == "opened"
    assert okdesk_files_from_bot(world, issue) == [("fixed_report.xlsx", False, sha(b"PK fixed report"))]
    contents = bot_comments(world, issue)
    assert "The programmers completed" in contents[-2] and "fixed_report.xlsx" in contents[-1]
    assert "screen" not in contents[-1]  # okbx's own copy of the client's screenshot never goes back
    for _ in range(2):
        assert okbx.sync().exit_code == 0
    assert len(okdesk_files_from_bot(world, issue)) == 1 and len(bot_comments(world, issue, "okbx:files:")) == 1


def test_result_files_reach_the_client_when_configured(world, tmp_path, clock):
    okbx = Okbx(world, tmp_path, {"files": {"results_public": True}}, clock=clock)
    issue = hand_off(world)
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    attach_result(world, task, "instructions.pdf", b"%PDF how to")
    complete(world, task)
    assert okbx.sync().exit_code == 0
    assert okdesk_files_from_bot(world, issue) == [("instructions.pdf", True, sha(b"%PDF how to"))]
    (files_comment,) = [c for c in world.okdesk.comments(issue) if "okbx:files:" in c["content"]]
    assert files_comment["public"]


def test_a_file_added_after_the_completion_arrives_like_late_time(world, okbx):
    issue = hand_off(world)
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    attach_result(world, task, "patch.diff", b"--- a\n+++ b\n")
    complete(world, task)
    assert okbx.sync().exit_code == 0
    attach_result(world, task, "forgotten.txt", b"one more thing")
    assert okbx.sync().exit_code == 0
    assert [n for n, _, _ in okdesk_files_from_bot(world, issue)] == ["forgotten.txt", "patch.diff"]
    (late,) = [c for c in world.okdesk.comments(issue) if "after it was completed" in c["content"]]
    assert "forgotten.txt" in late["content"] and "patch.diff" not in late["content"]
    assert okbx.sync().exit_code == 0
    assert len(okdesk_files_from_bot(world, issue)) == 2


def test_a_file_over_the_cap_is_named_in_a_note_and_the_handoff_goes_on(world, tmp_path, clock):
    okbx = Okbx(world, tmp_path, {"files": {"max_file_mb": 1}}, clock=clock)
    ok = world.okdesk
    issue = hand_off(world)
    comment = ok.add_comment(issue, "Our 1C configuration", author_id=world.people.client, author_type="contact")
    ok.files.add(issue, "config.cf", size=3 * MB, comment_id=comment, is_public=True)  # synthetic: costs nothing
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    assert in_task(world, issue, "Our 1C configuration") == 1 and files_in_task_comments(world, task) == []
    notes = [c["POST_MESSAGE"] for c in world.bitrix.comments(task) if "okbx:note:bigfile:" in c["POST_MESSAGE"]]
    assert len(notes) == 1 and "config.cf" in notes[0] and "3.0 MB" in notes[0] and f"/issues/{issue}" in notes[0]
    assert copies_of(world, "config.cf") == []
    attach_result(world, task, "dump.bak", size=2 * MB)
    complete(world, task)
    assert okbx.sync().exit_code == 0
    assert ok.status_of(issue) == "opened"  # the handoff went on
    (back,) = bot_comments(world, issue, "okbx:files:")
    assert "dump.bak" in back and "1 MB per file" in back and f"/tasks/task/view/{task}/" in back
    assert okdesk_files_from_bot(world, issue) == []
    assert okbx.sync().exit_code == 0 and len(bot_comments(world, issue, "okbx:note:bigfile")) == 0
    assert len(notes) == 1 and len(bot_comments(world, issue, "okbx:files:")) == 1


def test_the_cycle_cap_moves_the_rest_at_the_next_cycle(world, tmp_path, clock):
    okbx = Okbx(world, tmp_path, {"files": {"max_file_mb": 2, "max_cycle_mb": 3}}, clock=clock)
    ok = world.okdesk
    issue = hand_off(world)
    for n in range(3):
        comment = ok.add_comment(issue, f"log part {n}", author_id=world.people.client, author_type="contact")
        ok.files.add(issue, f"part{n}.log", size=2 * MB - 1, seed=n, comment_id=comment, is_public=True)
    first = okbx.sync()
    assert first.exit_code == 0, first.output
    task = task_of(world, issue)
    assert len(files_in_task_comments(world, task)) == 1 and in_task(world, issue, "log part 1") == 0
    assert okbx.sync().exit_code == 0
    assert okbx.sync().exit_code == 0
    assert len(files_in_task_comments(world, task)) == 3
    assert [in_task(world, issue, f"log part {n}") for n in range(3)] == [1, 1, 1]


def test_files_go_to_the_task_chat_on_a_new_task_card_portal(tmp_path, clock):
    world = start_world(clock, bitrix_new_task_card=True)
    try:
        okbx = Okbx(world, tmp_path, clock=clock)
        issue = hand_off(world, comment="Handed over")
        assert okbx.sync().exit_code == 0
        client_comment_with(world, issue, "screen.png", SCREEN)
        assert okbx.sync().exit_code == 0
        task = task_of(world, issue)
        assert files_in_task_comments(world, task) == [f"screen [okbx-file-{issue}-1].png"]
        assert world.bitrix_server.count("im.disk.file.commit") == 1
        for _ in range(2):
            assert okbx.sync().exit_code == 0
        assert world.bitrix_server.count("im.disk.file.commit") == 1 and len(copies_of(world, "screen.png")) == 1
    finally:
        world.close()


def test_a_lost_state_store_uploads_and_attaches_nothing_twice(world, okbx):
    ok = world.okdesk
    issue = ok.create_issue("Files", "<p>x</p>", company_id=world.people.company, contact_id=world.people.client)
    ok.files.add(issue, "spec.pdf", b"%PDF spec", is_public=True)
    ok.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
    client_comment_with(world, issue, "screen.png", SCREEN)
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    attach_result(world, task, "result.zip", b"PK result")
    complete(world, task)
    assert okbx.sync().exit_code == 0
    writes = {op: n for op, n in world.bitrix_server.counts().items() if op in FILE_WRITES}
    comments = len(world.okdesk.comments(issue))
    okbx.config().state.path.unlink()
    for _ in range(2):
        assert okbx.sync().exit_code == 0
    assert {op: n for op, n in world.bitrix_server.counts().items() if op in FILE_WRITES} == writes
    assert len(world.okdesk.comments(issue)) == comments
    assert len(copies_of(world, "spec.pdf")) == 1 and len(task_file_names(world, task)) == 2


def test_a_second_installation_copies_nothing_again(world, okbx, tmp_path, clock):
    issue = hand_off(world)
    client_comment_with(world, issue, "screen.png", SCREEN)
    assert okbx.sync().exit_code == 0
    (tmp_path / "second").mkdir()
    second = Okbx(world, tmp_path / "second", clock=clock)
    result = second.sync()
    assert result.exit_code == 0, result.output
    assert summary(result)["done"] == 0
    assert len(copies_of(world, "screen.png")) == 1 and in_task(world, issue, "The error looks like this") == 1
