"""Files travel (issue 15), the way a user and an attacker would try it: the real `okbx sync`
against both emulators.  Each test here once failed on the code it guards."""

from __future__ import annotations

from e2e import HANDOFF, task_of
from files_support import okdesk_files_from_bot, task_file_names
from test_files_travel import attach_result, complete, sha


def test_a_programmers_edited_copy_of_an_okdesk_file_comes_back(world, okbx):
    """A programmer downloads okbx's copy ("prices [okbx-file-1-1].xlsx"), fixes it and attaches
    the fixed file under the name the browser kept: it is their result, not okbx's copy."""
    ok, p = world.okdesk, world.people
    issue = ok.create_issue("Prices", "<p>wrong prices</p>", company_id=p.company, contact_id=p.client)
    ok.files.add(issue, "prices.xlsx", b"old prices", is_public=True)
    ok.set_status(issue, HANDOFF, by_employee_id=p.consultant)
    assert okbx.sync().exit_code == 0
    task = task_of(world, issue)
    (copy_name,) = task_file_names(world, task)
    attach_result(world, task, copy_name, b"fixed prices")
    attach_result(world, task, f"other [okbx-file-{issue + 1}-7].txt", b"a tag of another issue")
    complete(world, task)
    assert okbx.sync().exit_code == 0
    back = {h for _, _, h in okdesk_files_from_bot(world, issue)}
    # both came back; okbx's own copy (attached by okbx at the handoff) still never goes back
    assert back == {sha(b"fixed prices"), sha(b"a tag of another issue")}
