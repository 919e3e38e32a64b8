"""Limits and hostile files (issue 15 item 4), and what people see of files (item 5's tools).

Names from the other system are neutralised wherever they land; no byte of a file and no download
link reaches a log; Okdesk's 30-second link is asked for right before each download; an upload
Okdesk refuses as too large is named instead and the handoff goes on; the dry run lists the files
it would move and writes nothing; `okbx show` names each file.
"""

from __future__ import annotations

from e2e import HANDOFF, Okbx, bot_comments, hand_off, start_world, task_of
from files_support import FILE_WRITES, copies_of, files_in_task_comments
from test_files_travel import attach_result, client_comment_with, complete

SECRET_BYTES = b"TOP-SECRET-FILE-CONTENT-7f3a"


def test_hostile_names_are_neutralised_on_the_drive_and_in_okbxs_words(world, okbx):
    ok = world.okdesk
    issue = hand_off(world)
    hostile = "..\\..\\evil\u202egnp.exe\x07"
    comment = ok.add_comment(issue, "see attached", author_id=world.people.client, author_type="contact")
    ok.files.add(issue, hostile, b"x", comment_id=comment, is_public=True)
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    (name,) = files_in_task_comments(world, task)
    assert "\\" not in name and "/" not in name and "\u202e" not in name and "\x07" not in name
    assert name.endswith(f" [okbx-file-{issue}-1].exe") and not name.startswith(".")
    attach_result(world, task, "<img src=x onerror=alert(1)>.html", b"<html>")
    complete(world, task)
    assert okbx.sync().exit_code == 0
    (back,) = bot_comments(world, issue, "okbx:files:")
    assert "<img" not in back and "&lt;img src=x onerror=alert(1)&gt;.html" in back


def test_no_file_content_or_download_link_reaches_the_log(world, okbx, tmp_path):
    issue = hand_off(world)
    client_comment_with(world, issue, "secret.txt", SECRET_BYTES)
    log = tmp_path / "okbx.log"
    assert okbx.sync("-v", "--log-file", str(log)).exit_code == 0
    task = task_of(world, issue)
    attach_result(world, task, "answer.txt", SECRET_BYTES + b" answer")
    complete(world, task)
    result = okbx.sync("-v", "--log-file", str(log), "--log-format", "json")
    assert result.exit_code == 0
    text = log.read_text(encoding="utf-8") + result.output
    assert "secret.txt" in text  # the file is named...
    assert SECRET_BYTES.decode() not in text  # ...its content never shown
    assert "token=" not in text and "auth=" not in text and "auth[auth]" not in text and "uploadUrl" not in text


def test_okdesks_short_lived_link_is_asked_for_right_before_each_download(world, okbx):
    ok = world.okdesk
    issue = ok.create_issue("Two files", "<p>x</p>", company_id=world.people.company, contact_id=world.people.client)
    ok.files.add(issue, "one.txt", b"one", is_public=True)
    ok.files.add(issue, "two.txt", b"two", is_public=True)
    ok.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
    world.okdesk_server.reset_log()
    assert okbx.sync().exit_code == 0
    ops = [entry.op for entry in world.okdesk_server.log]
    asked = [i for i, op in enumerate(ops) if op == "GET /issues/{id}/attachments/{id}"]
    assert len(asked) == 2
    assert all(ops[i + 1] == "GET attachment link" for i in asked)  # nothing in between: the link is fresh


def test_an_upload_okdesk_refuses_as_too_large_is_named_and_the_handoff_goes_on(tmp_path, clock):
    world = start_world(clock, okdesk_file_options={"max_attachment_bytes": 10})
    try:
        okbx = Okbx(world, tmp_path, clock=clock)
        issue = hand_off(world)
        assert okbx.sync().exit_code == 0
        task = task_of(world, issue)
        attach_result(world, task, "big_result.zip", b"PK" + b"0" * 100)
        complete(world, task)
        result = okbx.sync()
        assert result.exit_code == 0, result.output
        assert world.okdesk.status_of(issue) == "opened"
        (back,) = bot_comments(world, issue, "okbx:files:")
        assert "big_result.zip" in back and "Okdesk refused it as too large" in back
        assert okbx.sync().exit_code == 0 and len(bot_comments(world, issue, "okbx:files:")) == 1
    finally:
        world.close()


def test_the_dry_run_lists_each_file_it_would_move_and_writes_nothing(world, okbx):
    ok = world.okdesk
    issue = ok.create_issue("Export", "<p>x</p>", company_id=world.people.company, contact_id=world.people.client)
    ok.files.add(issue, "export.csv", b"a;b\n" * 300, is_public=False)
    ok.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
    client_comment_with(world, issue, "screen.png", b"png" * 10)
    result = okbx.sync("--dry-run")
    assert result.exit_code == 0, result.output
    assert "internal file export.csv (1.2 KB) of the issue -> Bitrix24 Drive" in result.output
    assert "public file screen.png (30 B) of comment" in result.output
    assert "with 1 file" in result.output
    assert not any(world.bitrix_server.count(op) for op in FILE_WRITES)
    assert not okbx.config().state.path.exists()


def test_okbx_show_names_each_file_that_travelled(world, okbx):
    issue = hand_off(world)
    client_comment_with(world, issue, "screen.png", b"png")
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    attach_result(world, task, "fixed_report.xlsx", b"xlsx")
    complete(world, task)
    assert okbx.sync().exit_code == 0
    shown = okbx("show", str(issue))
    assert shown.exit_code == 0, shown.output
    assert "screen.png" in shown.output and "fixed_report.xlsx" in shown.output
    assert len(copies_of(world, "screen.png")) == 1


def test_an_account_that_will_not_hand_out_a_comments_file_gets_it_named_and_goes_on(tmp_path, clock):
    """Inferred (routes-files.md §4): a comment's file downloads through the issue's path."""
    world = start_world(clock, okdesk_file_options={"comment_files_via_issue": False})
    try:
        okbx = Okbx(world, tmp_path, clock=clock)
        issue = hand_off(world)
        client_comment_with(world, issue, "screen.png", b"png")
        result = okbx.sync()
        assert result.exit_code == 0, result.output
        task = task_of(world, issue)
        (forwarded,) = [
            c["POST_MESSAGE"] for c in world.bitrix.comments(task) if "error looks like" in c["POST_MESSAGE"]
        ]
        assert "could not fetch the file(s) screen.png from Okdesk" in forwarded
        assert forwarded.rstrip().endswith("[/I]") and files_in_task_comments(world, task) == []
        assert okbx.sync().exit_code == 0 and not any(world.bitrix_server.count(op) for op in FILE_WRITES)
    finally:
        world.close()
