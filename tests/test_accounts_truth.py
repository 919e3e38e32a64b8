"""The accounts are the truth: a lost state store, or a second installation, repeats nothing.

Every story runs the real CLI against both emulators and then counts what is on the remote side.
"""

from __future__ import annotations

from pathlib import Path

from e2e import Okbx, comment_markers, hand_off
from test_sync_story import only_task

from okbx_emulator.http import Fault
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


# -- a renewal leaves no marker of its own: the note announcing the handoff goes first ----------------
def _completed_and_handed_off_again(world, okbx, clock) -> tuple[int, int]:
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue = hand_off(world)
    okbx.sync()
    task = only_task(world)
    bx.log_time(task, p.bx_ivan, 600, "first round")
    bx.complete_task(task)
    okbx.sync()
    assert marked(world, issue, "okbx:summary:") == [f"okbx:summary:{issue}:1"]
    clock.advance(minutes=5)  # Bitrix24 dates have whole seconds: the next completion gets another closedDate
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant, comment="Still broken")
    return issue, task


def renew_notes(world, task: int) -> list[str]:
    return [m for m in comment_markers(world, task) if m.startswith("okbx:note:renew:")]


def test_a_completion_after_a_renewal_whose_answer_was_lost_is_reported_after_a_lost_store(world, okbx, clock):
    """Chaos seed 83: the renewal went through but its answer was lost (or the run was killed), the
    store was lost, then the programmers completed the task.  The rebuilt store took the completed
    task for the previous handoff's, reopened it once more and never reported this completion."""
    ok, bx, p = world.okdesk, world.bitrix, world.people
    issue, task = _completed_and_handed_off_again(world, okbx, clock)
    world.bitrix_server.inject(Fault(op="tasks.task.renew", when="after", kind="drop"))
    okbx.sync()
    world.bitrix_server.clear_faults()
    assert int(bx.task(task)["STATUS"]) != 5, "the renewal went through on the portal"
    lose_store(okbx)
    clock.advance(minutes=5)
    bx.log_time(task, p.bx_olga, 900, "second round")
    bx.complete_task(task)
    for _ in range(3):
        clock.advance(minutes=1)
        okbx.sync()
    assert int(bx.task(task)["STATUS"]) == 5, "the programmers' completion is not undone"
    assert marked(world, issue, "okbx:summary:") == [f"okbx:summary:{issue}:1", f"okbx:summary:{issue}:2"]
    assert time_markers(world, issue) == ["okbx:time:1", "okbx:time:2"]
    assert ok.status_of(issue) == "opened"
    assert world.bitrix_server.count("tasks.task.renew") == 1
    assert len(renew_notes(world, task)) == 1


def test_a_handoff_announced_but_not_renewed_before_a_lost_store_is_renewed_not_reported(world, okbx, clock):
    """The other side of the same note: written, then the renewal failed and the store was lost.
    The task still has the closedDate the note names, so it was not reopened for this handoff yet."""
    ok, bx = world.okdesk, world.bitrix
    issue, task = _completed_and_handed_off_again(world, okbx, clock)
    world.bitrix_server.inject(Fault(op="tasks.task.renew", when="before", kind="drop"))
    okbx.sync()
    world.bitrix_server.clear_faults()
    assert int(bx.task(task)["STATUS"]) == 5 and len(renew_notes(world, task)) == 1
    lose_store(okbx)
    for _ in range(3):
        clock.advance(minutes=1)
        okbx.sync()
    assert int(bx.task(task)["STATUS"]) != 5, "renewed for the new handoff"
    assert ok.status_of(issue) == HANDOFF, "the issue does not bounce back with an empty summary"
    assert marked(world, issue, "okbx:summary:") == [f"okbx:summary:{issue}:1"]
    assert len(renew_notes(world, task)) == 1
