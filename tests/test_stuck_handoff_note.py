"""the note that tells the consultant a handoff is stuck must reach the issue even
when Okdesk itself is what failed: a failed note was never planned again."""

from __future__ import annotations

from e2e import Okbx, hand_off

from okbx_emulator.http import Fault, Response

COMMENTS = "POST /issues/{id}/comments"


def test_a_stuck_note_that_failed_is_posted_once_okdesk_answers_again(world, tmp_path, clock):
    okbx = Okbx(world, tmp_path, {"sync": {"max_retries": 2, "retry_base_seconds": 60}}, clock=clock)
    issue = hand_off(world)
    failing = Response.json(500, {"errors": "Internal Server Error"})
    # the link comment fails twice (the link is parked), and so does the stuck note right after
    world.okdesk_server.inject(Fault(COMMENTS, when="before", response=failing, times=3))
    assert okbx.sync().exit_code == 1
    assert okbx.sync().exit_code == 1
    assert okbx.status_rows()[issue]["state"] == "parked"
    for _ in range(2):
        okbx.sync()
    notes = [c for c in world.okdesk.comments(issue) if "okbx:inote:stuck:" in c["content"]]
    assert len(notes) == 1
