"""The safety policy holds for the whole cycle, not page by page: a mass of links that look
stopped is refused before the first of them is written, wherever in the pages they are."""

from __future__ import annotations

from collections import Counter

from e2e import FAST, clean, hand_off, task_of


def test_issues_that_all_look_deleted_are_refused_before_any_link_stops(world, okbx):
    # 12 linked issues; all of them look deleted in Okdesk (a direct 404 each), which the policy
    # calls unusual (more than 6 and more than half of the active links).  The first page holds 5.
    okbx.reconfigure(sync={**FAST, "unusual_min_links": 6})
    issues = [hand_off(world, f"Issue {n}") for n in range(12)]
    assert okbx.sync().exit_code == 0
    for issue in issues:
        world.okdesk.delete_issue(issue)
    refused = clean(okbx("sync"))
    assert refused.exit_code == 1 and "--force" in refused.stderr
    states = Counter(row["state"] for row in okbx.status_rows().values())
    assert states == {"active": 12}, states
    noted = [i for i in issues if "okbx:note:issuedeleted" in str(world.bitrix.comments(task_of(world, i)))]
    assert noted == []
