"""The product's story, end to end: the real CLI and clients against both emulators over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from e2e import hand_off, writes

from okbx_emulator.world import HANDOFF


def only_task(world):
    tasks = world.bitrix.tasks()
    assert len(tasks) == 1, tasks
    return int(tasks[0]["ID"])


def test_a_handoff_creates_exactly_one_task_with_marker_description_and_link_comment(world, okbx):
    issue = hand_off(world)
    assert okbx.sync().exit_code == 0
    assert okbx.sync().exit_code == 0
    task = world.bitrix.task(only_task(world))
    assert task["TITLE"] == f"[Okdesk #{issue}] Report export fails"
    assert task["XML_ID"] == f"okdesk:{issue}"
    assert int(task["GROUP_ID"]) == 42 and int(task["RESPONSIBLE_ID"]) == world.people.bx_ivan
    assert "[B]fails[/B]" in task["DESCRIPTION"] and "<b>" not in task["DESCRIPTION"]
    assert f"{world.okdesk_server.url}/issues/{issue}" in task["DESCRIPTION"]
    assert "Romashka LLC" in task["DESCRIPTION"] and "Pavel Orlov" in task["DESCRIPTION"]
    bot_comments = [c for c in world.okdesk.comments(issue) if c["author"]["id"] == world.people.bot]
    assert len(bot_comments) == 1 and bot_comments[0]["public"] is False
    assert f"task #{task['ID']}" in bot_comments[0]["content"]


def test_every_okdesk_comment_reaches_the_task_once_and_bitrix_comments_stay_there(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world, comment="Please look at the export code.")
    ok.add_comment(issue, "Any news?", author_id=p.client, author_type="contact")
    okbx.sync()
    task = only_task(world)
    bx.add_comment(task, p.bx_ivan, "Internal programmer talk")
    ok.add_comment(issue, "Checked on staging", author_id=p.consultant, public=False)
    okbx.sync()
    okbx.sync()
    texts = [c["POST_MESSAGE"] for c in bx.comments(task)]
    for phrase in ("Please look at the export code.", "Any news?", "Checked on staging"):
        assert sum(phrase in t for t in texts) == 1, (phrase, texts)
    assert any("Client Pavel Orlov (Romashka LLC)" in t for t in texts)
    assert not any("Internal programmer talk" in c["content"] for c in ok.comments(issue))


def test_comment_switches_and_the_bot_own_comments(world, okbx):
    ok, p = world.okdesk, world.people
    okbx.reconfigure(comments={"forward_internal": False})
    issue = hand_off(world)
    ok.add_comment(issue, "internal note", author_id=p.consultant, public=False)
    ok.add_comment(issue, "public answer", author_id=p.consultant, public=True)
    ok.add_comment(issue, "written as the bot", author_id=p.bot, public=True)
    okbx.sync()
    texts = " ".join(c["POST_MESSAGE"] for c in world.bitrix.comments(only_task(world)))
    assert "public answer" in texts
    assert "internal note" not in texts and "written as the bot" not in texts


def test_completion_copies_time_posts_one_summary_and_returns_the_issue(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 5400, "Fixed encoding")
    bx.log_time(task, p.bx_sergey, 1200, "")
    bx.complete_task(task)
    assert okbx.sync().exit_code == 0
    okbx.sync()
    entries = ok.time_entries(issue)
    assert sorted(round(e["spent_time"] * 60) for e in entries) == [20, 90]
    by_minutes = {round(e["spent_time"] * 60): e for e in entries}
    assert by_minutes[90]["employee"]["id"] == p.ok_ivan  # mapped through time.users
    assert by_minutes[20]["employee"]["id"] == p.bot  # unmapped: time.default_employee_id
    summaries = [c for c in ok.comments(issue) if "okbx:summary:" in c["content"]]
    assert len(summaries) == 1 and summaries[0]["public"] is False
    assert "1 h 50 min" in summaries[0]["content"] and "Fixed encoding" in summaries[0]["content"]
    assert ok.status_of(issue) == "opened"
    store = okbx.store()
    try:
        assert store.link(issue).state == "done"
    finally:
        store.close()


def test_status_is_left_alone_when_a_person_moved_the_issue_meanwhile(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    okbx.sync()
    okbx.sync()
    notes = [c for c in bx.comments(task) if "okbx:note:left:" in c["POST_MESSAGE"]]
    assert len(notes) == 1  # the task learned once that the issue left the handoff status
    bx.complete_task(task)
    okbx.sync()
    assert ok.status_of(issue) == "in_progress"
    summary = [c for c in ok.comments(issue) if "okbx:summary:" in c["content"]]
    assert len(summary) == 1 and "left unchanged" in summary[0]["content"]


def test_handing_off_again_renews_the_same_task_and_copies_only_new_time(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 600, "first")
    bx.complete_task(task)
    okbx.sync()
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment="Still broken for the client")
    okbx.sync()
    assert int(bx.task(task)["STATUS"]) != 5 and only_task(world) == task
    assert any("Still broken for the client" in c["POST_MESSAGE"] for c in bx.comments(task))
    bx.log_time(task, p.bx_olga, 1800, "second")
    bx.complete_task(task)
    okbx.sync()
    okbx.sync()
    assert sorted(e["comment"].split(" [")[0] for e in ok.time_entries(issue)) == ["first", "second"]
    assert len([c for c in ok.comments(issue) if "okbx:summary:" in c["content"]]) == 2
    assert ok.status_of(issue) == "opened"


def test_time_logged_after_completion_is_copied_at_the_next_cycle_with_a_note(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    bx.complete_task(task)
    okbx.sync()
    bx.log_time(task, p.bx_olga, 900, "forgot to log this")
    okbx.sync()
    okbx.sync()
    assert [e["comment"].split(" [")[0] for e in ok.time_entries(issue)] == ["forgot to log this"]
    assert len([c for c in ok.comments(issue) if "okbx:late:" in c["content"]]) == 1


def test_a_deleted_task_stops_the_link_with_a_note_and_no_new_task(world, okbx):
    ok, bx = world.okdesk, world.bitrix
    issue = hand_off(world)
    okbx.sync()
    bx.delete_task(only_task(world))
    okbx.sync()
    okbx.sync()
    assert bx.tasks() == []
    assert len([c for c in ok.comments(issue) if "okbx:inote:taskdeleted" in c["content"]]) == 1
    ok.set_status(issue, "opened", by_employee_id=world.people.consultant)
    okbx.sync()
    ok.set_status(issue, HANDOFF, by_employee_id=world.people.consultant)
    okbx.sync()
    assert len(bx.tasks()) == 1  # handed off again on purpose: a new task


def test_a_deleted_issue_stops_the_link_with_a_note_in_the_task(world, okbx):
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    world.okdesk.delete_issue(issue)
    okbx.sync()
    okbx.sync()
    notes = [c for c in world.bitrix.comments(task) if "okbx:note:issuedeleted" in c["POST_MESSAGE"]]
    assert len(notes) == 1
    status = json.loads(okbx("status", "--json").stdout)
    assert status["links"][0]["state"] == "gone_issue"


def test_issues_never_handed_off_are_never_touched(world, okbx):
    ok = world.okdesk
    quiet = ok.create_issue("Unrelated", "x")
    ok.add_comment(quiet, "hello", author_id=world.people.client, author_type="contact")
    hand_off(world)
    okbx.sync()
    assert [c["author"]["id"] for c in ok.comments(quiet)] == [world.people.client]
    assert ok.time_entries(quiet) == [] and ok.status_of(quiet) == "opened"


def test_a_sync_with_no_changes_writes_nothing(world, okbx):
    hand_off(world)
    okbx.sync()
    before = writes(world)
    okbx.sync()
    okbx.sync()
    assert writes(world) == before


def test_dry_run_prints_the_plan_and_writes_nothing_anywhere(world, okbx):
    issue = hand_off(world, comment="look")
    result = okbx.sync("--dry-run")
    assert result.exit_code == 0
    assert "CreateTask" in result.stdout and "ForwardComment" in result.stdout and str(issue) in result.stdout
    assert world.bitrix.tasks() == [] and writes(world) == 0
    store = okbx.store()
    try:
        assert store.links() == {} and store.journal() == []
    finally:
        store.close()


def test_link_connects_an_existing_pair_and_refuses_doubles(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = ok.create_issue("Existing", "x")
    task = bx.create_task("Existing task", responsible_id=p.bx_ivan, group_id=42)
    other = bx.create_task("Other", responsible_id=p.bx_ivan, group_id=42)
    not_handed_off = okbx("link", str(issue), str(task))
    assert not_handed_off.exit_code == 2 and world.okdesk.status_of(issue) == "opened"
    assert "is in status 'opened', not the handoff status 'to_programmers'" in not_handed_off.stderr
    assert "--force" in not_handed_off.stderr
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    assert okbx("link", str(issue), str(task)).exit_code == 0
    again = okbx("link", str(issue), str(other))
    assert again.exit_code == 2 and "already linked" in again.stderr
    missing = okbx("link", "999", str(other))
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    ok.add_comment(issue, "forward me", author_id=p.consultant)
    okbx.sync()
    assert any("forward me" in c["POST_MESSAGE"] for c in bx.comments(task))


def test_status_lists_links_with_counts(world, okbx):
    ok = world.okdesk
    issue = hand_off(world)
    ok.add_comment(issue, "one", author_id=world.people.consultant)
    okbx.sync()
    result = okbx("status", "--json")
    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)["links"]
    assert row["issue"] == issue and row["state"] == "active" and row["comments_forwarded"] == 1
    plain = okbx("status")
    assert str(issue) in plain.stdout and "active" in plain.stdout


def test_a_bad_config_is_reported_with_key_paths_and_exit_code_2(world, okbx, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("okdesk:\n  url: ftp://x\n  colour: red\nbitrix24: {}\n")
    result = okbx("sync", "--config", str(bad))
    assert result.exit_code == 2
    assert "okdesk.url" in result.stderr and "okdesk.colour: unknown key" in result.stderr
    assert "bitrix24.webhook_url: is required" in result.stderr and "Traceback" not in result.output


def test_a_summary_whose_status_change_was_lost_is_posted_once_the_issue_was_moved_by_hand(world, okbx):
    from okbx_emulator.http import Fault

    ok, bx, p = world.okdesk, world.bitrix, world.people
    okbx.reconfigure(sync={"retry_base_seconds": 1, "backoff_seconds": 0.05})
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 600, "work")
    bx.complete_task(task)
    world.okdesk_server.inject(Fault(op="POST /issues/{id}/statuses", when="before", kind="drop"))
    assert okbx.sync().exit_code == 1  # the change carrying the summary got no answer (and was not applied)
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    okbx("retry", str(issue))
    okbx.sync()
    okbx.sync()
    summaries = [c for c in ok.comments(issue) if "okbx:summary:" in c["content"]]
    assert len(summaries) == 1 and "left unchanged" in summaries[0]["content"]
    assert ok.status_of(issue) == "in_progress" and len(ok.time_entries(issue)) == 1


def test_a_task_created_with_a_lost_answer_is_adopted_after_the_issue_left_the_handoff(world, okbx):
    from okbx_emulator.http import Fault

    ok, bx, p = world.okdesk, world.bitrix, world.people
    okbx.reconfigure(sync={"retry_base_seconds": 1, "backoff_seconds": 0.05})
    world.bitrix_server.inject(Fault(op="tasks.task.add", when="after", kind="drop"))
    issue = hand_off(world)
    assert okbx.sync().exit_code == 1  # created, answer lost
    ok.set_status(issue, "in_progress", by_employee_id=p.consultant)
    okbx("retry", str(issue))
    okbx.sync()
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 600, "work")
    bx.complete_task(task)
    okbx.sync()
    okbx.sync()
    assert len(bx.tasks()) == 1 and len(ok.time_entries(issue)) == 1  # the orphan was adopted, its time copied


def test_a_deadline_moved_in_okdesk_after_the_handoff_reaches_the_task_and_a_programmers_own_stays(world, okbx):
    ok, bx = world.okdesk, world.bitrix
    first = datetime(2026, 12, 10, 18, 0, tzinfo=UTC)
    issue = hand_off(world)
    ok.set_deadline(issue, first)
    okbx.sync()
    task = only_task(world)
    assert bx.task(task)["DEADLINE"] == first  # given at creation
    moved = datetime(2026, 12, 20, 12, 30, tzinfo=UTC)
    ok.set_deadline(issue, moved)
    okbx.sync()
    okbx.sync()
    assert bx.task(task)["DEADLINE"] == moved
    assert world.bitrix_server.counts()["tasks.task.update"] == 1  # once, not every cycle
    agreed = datetime(2026, 12, 22, 9, 0, tzinfo=UTC)
    bx.set_deadline(task, agreed)  # the programmers agreed on another date in Bitrix24
    okbx.sync()
    assert bx.task(task)["DEADLINE"] == agreed  # left alone until the Okdesk deadline moves again
    ok.set_deadline(issue, first)
    okbx.sync()
    assert bx.task(task)["DEADLINE"] == first
    assert world.bitrix_server.counts()["tasks.task.update"] == 2
