"""The accounts are the truth: a lost state store, or a second installation, repeats nothing.

Every story runs the real CLI against both emulators and then counts what is on the remote side.
"""

from __future__ import annotations

from pathlib import Path

from e2e import Okbx, hand_off
from test_sync_story import only_task

from okbx_emulator.world import HANDOFF


def lose_store(okbx: Okbx) -> None:
    path = okbx.config().state.path
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def forwarded(world, task: int, phrase: str) -> int:
    return sum(phrase in c["POST_MESSAGE"] for c in world.bitrix.comments(task))


def marked(world, issue: int, prefix: str) -> list[str]:
    """okbx markers with this prefix in the issue's comments, in order."""
    found = []
    for c in world.okdesk.comments(issue):
        for token in c["content"].replace("<", " ").replace(">", " ").split():
            if token.startswith(prefix):
                found.append(token)
    return found


def time_markers(world, issue: int) -> list[str]:
    return sorted(e["comment"].rsplit("[", 1)[-1].rstrip("]") for e in world.okdesk.time_entries(issue))


def test_a_lost_store_forwards_no_comment_twice(world, okbx):
    ok, p = world.okdesk, world.people
    issue = hand_off(world, comment="Please look at the export.")
    ok.add_comment(issue, "Any news?", author_id=p.client, author_type="contact")
    okbx.sync()
    task = only_task(world)
    lose_store(okbx)
    ok.add_comment(issue, "Tried again, still broken", author_id=p.client, author_type="contact")
    okbx.sync()
    okbx.sync()
    assert only_task(world) == task
    for phrase in ("Please look at the export.", "Any news?", "Tried again, still broken"):
        assert forwarded(world, task, phrase) == 1, phrase
    assert len(marked(world, issue, "okbx:linkcomment:")) == 1


def test_a_lost_store_after_a_completion_renews_the_task_on_the_next_handoff_and_bills_nothing_twice(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 3600, "first round")
    bx.complete_task(task)
    okbx.sync()
    assert ok.status_of(issue) == "opened"

    lose_store(okbx)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment="Still broken for the client")
    for _ in range(3):
        okbx.sync()
    assert only_task(world) == task
    assert int(bx.task(task)["STATUS"]) != 5, "the completed task is renewed for the new handoff"
    assert ok.status_of(issue) == HANDOFF, "the issue does not bounce back"
    assert forwarded(world, task, "Still broken for the client") == 1
    assert time_markers(world, issue) == ["okbx:time:1"]
    assert marked(world, issue, "okbx:summary:") == [f"okbx:summary:{issue}:1"]

    bx.log_time(task, p.bx_olga, 1800, "second round")
    bx.complete_task(task)
    okbx.sync()
    okbx.sync()
    assert time_markers(world, issue) == ["okbx:time:1", "okbx:time:2"]
    assert marked(world, issue, "okbx:summary:") == [f"okbx:summary:{issue}:1", f"okbx:summary:{issue}:2"]
    assert ok.status_of(issue) == "opened"


def test_a_lost_store_while_a_completion_waits_completes_it_once(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world, comment="Look at the export")
    okbx.sync()
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 1200, "fixed")
    bx.complete_task(task)
    lose_store(okbx)
    for _ in range(3):
        okbx.sync()
    assert time_markers(world, issue) == ["okbx:time:1"]
    assert marked(world, issue, "okbx:summary:") == [f"okbx:summary:{issue}:1"]
    assert ok.status_of(issue) == "opened"
    assert forwarded(world, task, "Look at the export") == 1


def test_two_installations_with_their_own_stores_write_everything_once(world, tmp_path):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Okbx(world, tmp_path / "a"), Okbx(world, tmp_path / "b")

    def both() -> None:
        first.sync()
        second.sync()

    issue = hand_off(world, comment="Handed over")
    both()
    task = only_task(world)
    ok.add_comment(issue, "Client asks again", author_id=p.client, author_type="contact")
    both()
    bx.log_time(task, p.bx_ivan, 2400, "round one")
    bx.complete_task(task)
    second.sync()  # the other installation sees the completion first this time
    first.sync()
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment="Once more")
    both()
    both()
    bx.log_time(task, p.bx_olga, 600, "round two")
    bx.complete_task(task)
    both()
    both()

    assert only_task(world) == task
    for phrase in ("Handed over", "Client asks again", "Once more"):
        assert forwarded(world, task, phrase) == 1, phrase
    assert time_markers(world, issue) == ["okbx:time:1", "okbx:time:2"]
    assert marked(world, issue, "okbx:summary:") == [f"okbx:summary:{issue}:1", f"okbx:summary:{issue}:2"]
    assert len(marked(world, issue, "okbx:linkcomment:")) == 1
    assert ok.status_of(issue) == "opened"


def test_what_a_rebuilt_store_adopted_is_shown_by_okbx_show(world, okbx):
    issue = hand_off(world, comment="Please look")
    okbx.sync()
    lose_store(okbx)
    okbx.sync()
    shown = okbx("show", str(issue))
    assert shown.exit_code == 0
    assert "adopted" in shown.output
    [row] = okbx.status_rows().values()
    assert row["adopted"] >= 3  # the task, its link comment and the forwarded comment
