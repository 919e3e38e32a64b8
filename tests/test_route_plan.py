"""The route planner as a pure function: snapshots of both systems plus our state in, actions out.

Every row of the decision tables at the top of `okbx_sync/sync/plan.py` and `sync/completion.py`
has a story here, built from literal model objects; no HTTP, no database, no clock.  The safety
policy over the plan (`core.plan.Safety`) is checked here too, with the same literals.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from okbx_sync import keys
from okbx_sync.config import Config, parse_config
from okbx_sync.core.action import Action, Completed, WorkLine
from okbx_sync.core.notes import IssueNote, stuck_note
from okbx_sync.core.plan import Plan, Safety
from okbx_sync.model import Comment, ElapsedItem, Issue, Person, Task
from okbx_sync.state import lifecycle
from okbx_sync.state.lifecycle import Health, Link, LinkState, Track
from okbx_sync.state.records import Op, OpState
from okbx_sync.sync.issue_writes import CloseLink, CopyTimeEntry, MarkGone, PostLinkComment, PostReport, ReturnIssue
from okbx_sync.sync.plan import build_plan
from okbx_sync.sync.snapshot import Snapshot, StateView
from okbx_sync.sync.task_writes import CreateTask, ForwardComment, RenewTask, TaskNote

NOW = datetime(2024, 9, 2, 12, 0, tzinfo=UTC)
HANDOFF = "to_programmers"
BOT = 1  # Okdesk employee okbx writes as
CONSULTANT = 2
CLIENT = 5
TASK = 100
ISSUE = 10
STATUSES = {HANDOFF: "To programmers", "opened": "Open", "in_progress": "In progress"}


# -- literals ----------------------------------------------------------------------------------
def make_config(**overrides: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {
        "okdesk": {
            "url": "https://acme.okdesk.ru",
            "api_token": "t",
            "bot_employee_id": BOT,
            "handoff_status": HANDOFF,
            "return_status": "opened",
        },
        "bitrix24": {
            "webhook_url": "http://127.0.0.1:1/rest/1/secret/",
            "group_id": 42,
            "responsible_id": 7,
            "created_by": 1,
            "done_statuses": [5],
        },
        "time": {"default_employee_id": BOT, "users": {7: 3}},
        "state": {"path": "okbx.sqlite3"},
    }
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return parse_config(raw, env={}, base_dir=Path("/nonexistent"))


CONFIG = make_config()


def issue(issue_id: int = ISSUE, status: str = HANDOFF, **kw: Any) -> Issue:
    values: dict[str, Any] = {
        "title": f"Printer {issue_id} is jammed",
        "updated_at": NOW - timedelta(hours=1),
        "description_html": "It <b>jams</b> on page 2",
        "company": "Romashka LLC",
        "contact": "Pavel Orlov",
        "priority": "High",
        "deadline_at": None,
    }
    values.update(kw)
    return Issue(id=issue_id, status=status, **values)


def comment(
    comment_id: int,
    *,
    public: bool = True,
    author_id: int = CLIENT,
    kind: str = "contact",
    html: str = "Please hurry",
    issue_id: int = ISSUE,
) -> Comment:
    name = "Pavel Orlov" if kind == "contact" else "Anna Smirnova"
    return Comment(
        comment_id, issue_id, html, public, NOW - timedelta(minutes=comment_id % 50), Person(author_id, name, kind)
    )


def task(task_id: int = TASK, status: int = 3) -> Task:
    return Task(id=task_id, status=status, xml_id=keys.task_xml_id(ISSUE), title="t", group_id=42)


def item(
    item_id: int, *, task_id: int = TASK, user_id: int = 7, seconds: int = 3600, text: str = "work"
) -> ElapsedItem:
    return ElapsedItem(item_id, task_id, user_id, seconds, text, datetime(2024, 9, 1, 10, 0, tzinfo=UTC))


def link(
    issue_id: int = ISSUE,
    *,
    task_id: int | None = TASK,
    state: str = "active",
    cycle: int = 1,
    issue_status: str | None = HANDOFF,
    fail_count: int = 0,
    parked: bool = False,
    next_retry_at: datetime | None = None,
    last_error: str | None = None,
    **kw: Any,
) -> Link:
    """A link as the store holds it; failures live in its route track's health (None: healthy)."""
    health = None
    if fail_count or parked or next_retry_at or last_error:
        health = Health(issue_id, Track.ROUTE, fail_count, last_error or "HTTP 502", next_retry_at, parked)
    values: dict[str, Any] = {
        "dirty": False,
        "created_at": NOW - timedelta(days=2),
        "updated_at": NOW - timedelta(days=1),
        "done_at": None,
    }
    values.update(kw)
    return Link(
        issue_id=issue_id,
        task_id=task_id,
        state=LinkState(state),
        cycle=cycle,
        issue_status=issue_status,
        health=health,
        **values,
    )


def op(
    text: str,
    *,
    issue_id: int = ISSUE,
    state: str = "done",
    remote_id: str | None = None,
    cycle: int | None = None,
    report_key: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Op:
    """An op as the store holds it, by its key text (the product's parser checks the literal)."""
    key = keys.parse(text)
    assert key is not None, f"not a key: {text}"
    return Op(
        key=text,
        issue_id=issue_id,
        kind=key.kind,
        state=OpState(state),
        remote_id=remote_id,
        cycle=cycle,
        report_key=report_key,
        ambiguous=False,
        error=None,
        attempts=1,
        detail=detail or {},
    )


def created_ops(issue_id: int = ISSUE, *, task_id: int = TASK, cycle: int = 1) -> list[Op]:
    """What the store holds once a task was created and its link comment posted."""
    return [
        op(keys.TaskKey(issue_id, cycle).text, issue_id=issue_id, remote_id=str(task_id), cycle=cycle),
        op(keys.LinkCommentKey(issue_id, cycle).text, issue_id=issue_id, cycle=cycle),
    ]


def state_of(links: list[Link], ops: list[Op] = ()) -> StateView:  # type: ignore[assignment]
    return StateView(links={lk.issue_id: lk for lk in links}, ops={o.key: o for o in ops})


def texts(plan: Plan | list[Action]) -> list[str]:
    """The key texts of a plan's actions: the ops they become in the store, in order."""
    actions = plan.actions if isinstance(plan, Plan) else plan
    return [a.key for a in actions]


def types(plan: Plan) -> list[type]:
    return [type(a) for a in plan.actions]


def plan_for(snap: Snapshot, state: StateView, config: Config = CONFIG) -> Plan:
    return build_plan(snap, state, config, NOW)


# -- handoff, no link: create task, link comment, forward comments --------------------------------
def test_new_handoff_creates_task_posts_link_comment_and_forwards_every_comment():
    i = issue(deadline_at=datetime(2024, 9, 5, 18, 0, tzinfo=UTC))
    snap = Snapshot(
        handoff={ISSUE: i},
        issues={ISSUE: i},
        comments={ISSUE: [comment(501), comment(502, public=False, author_id=CONSULTANT, kind="employee")]},
    )
    plan = plan_for(snap, state_of([]))

    assert types(plan) == [CreateTask, PostLinkComment, ForwardComment, ForwardComment]
    assert texts(plan) == ["task:10:1", "linkcomment:10:1", "comment:10:1:501", "comment:10:1:502"]
    create = plan.actions[0]
    assert isinstance(create, CreateTask)
    assert create.cycle == 1 and create.issue == i
    assert create.fields["TITLE"] == "[Okdesk #10] Printer 10 is jammed"
    assert create.fields["XML_ID"] == "okdesk:10"
    assert create.fields["GROUP_ID"] == 42 and create.fields["RESPONSIBLE_ID"] == 7
    assert create.fields["CREATED_BY"] == 1
    assert create.fields["TAGS"] == ["okdesk"]
    assert create.fields["DEADLINE"] == "2024-09-05T18:00:00+00:00"
    assert "https://acme.okdesk.ru/issues/10" in str(create.fields["DESCRIPTION"])
    assert "[B]jams[/B]" in str(create.fields["DESCRIPTION"])
    client, consultant = plan.actions[2], plan.actions[3]
    assert isinstance(client, ForwardComment) and isinstance(consultant, ForwardComment)
    assert client.text.startswith("[B]Client Pavel Orlov (Romashka LLC)[/B] in Okdesk (public comment):")
    assert client.text.endswith("[I]okbx:comment:10:1:501[/I]")
    assert "internal comment, not visible to the client" in consultant.text
    assert plan.skipped == {}


def test_new_handoff_without_deadline_or_creator_leaves_those_fields_out():
    config = make_config(bitrix24={"created_by": None})
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()})
    create = plan_for(snap, state_of([]), config).actions[0]
    assert isinstance(create, CreateTask)
    assert "DEADLINE" not in create.fields and "CREATED_BY" not in create.fields


def test_new_handoff_never_forwards_the_bots_own_comments_back():
    snap = Snapshot(
        handoff={ISSUE: issue()},
        issues={ISSUE: issue()},
        comments={
            ISSUE: [
                comment(501, author_id=BOT, kind="employee", html="Passed to the programmers"),
                comment(502, author_id=BOT, kind="contact", html="a client whose id equals the bot's"),
            ]
        },
    )
    assert texts(plan_for(snap, state_of([]))) == ["task:10:1", "linkcomment:10:1", "comment:10:1:502"]


@pytest.mark.parametrize(
    ("switches", "forwarded"),
    [
        ({"forward_public": True, "forward_internal": True}, ["comment:10:1:501", "comment:10:1:502"]),
        ({"forward_public": False, "forward_internal": True}, ["comment:10:1:502"]),
        ({"forward_public": True, "forward_internal": False}, ["comment:10:1:501"]),
        ({"forward_public": False, "forward_internal": False}, []),
    ],
)
def test_comment_switches_choose_which_comments_are_forwarded(switches, forwarded):
    snap = Snapshot(
        handoff={ISSUE: issue()},
        issues={ISSUE: issue()},
        comments={
            ISSUE: [comment(501, public=True), comment(502, public=False, author_id=CONSULTANT, kind="employee")]
        },
    )
    plan = plan_for(snap, state_of([]), make_config(comments=switches))
    assert texts(plan) == ["task:10:1", "linkcomment:10:1", *forwarded]


def test_new_handoff_whose_full_issue_was_not_read_plans_nothing_yet():
    snap = Snapshot(handoff={ISSUE: issue()})
    plan = plan_for(snap, state_of([]))
    assert plan.actions == []


def test_active_link_whose_create_was_lost_plans_the_create_again_in_the_same_cycle():
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()})
    plan = plan_for(snap, state_of([link(task_id=None, cycle=2)]))
    assert texts(plan) == ["task:10:2", "linkcomment:10:2"]


# -- active: link comment if missing; forward new comments ----------------------------------------
def test_active_link_forwards_only_comments_not_yet_done():
    snap = Snapshot(
        handoff={ISSUE: issue()},
        issues={ISSUE: issue()},
        comments={ISSUE: [comment(501), comment(502), comment(503)]},
        tasks={TASK: task(status=3)},
    )
    ops = [*created_ops(), op("comment:10:1:501"), op("comment:10:1:503", state="failed")]
    plan = plan_for(snap, state_of([link()], ops))
    assert types(plan) == [ForwardComment, ForwardComment]
    assert texts(plan) == ["comment:10:1:502", "comment:10:1:503"]


def test_active_link_whose_link_comment_is_missing_posts_it():
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()}, comments={ISSUE: []}, tasks={TASK: task()})
    ops = [op("task:10:1", remote_id=str(TASK), cycle=1), op("linkcomment:10:1", state="intent")]
    plan = plan_for(snap, state_of([link()], ops))
    assert texts(plan) == ["linkcomment:10:1"]
    assert isinstance(plan.actions[0], PostLinkComment) and plan.actions[0].task_cycle == 1


# -- active, task done: copy time, summary, return status, close ----------------------------------
def completed_snapshot(status: str = HANDOFF, elapsed: list[ElapsedItem] | None = None) -> Snapshot:
    return Snapshot(
        handoff={ISSUE: issue(status=status)} if status == HANDOFF else {},
        issues={ISSUE: issue(status=status)},
        comments={ISSUE: []},
        tasks={TASK: task(status=5)},
        elapsed={TASK: elapsed if elapsed is not None else [item(2, user_id=9, seconds=1800), item(1)]},
        user_names={7: "Ivan Petrov", 9: "Sergey Kuznetsov"},
        statuses=STATUSES,
    )


def test_completed_task_copies_each_time_item_posts_summary_returns_issue_and_closes_link():
    plan = plan_for(completed_snapshot(), state_of([link()], created_ops()))

    # the summary travels as the comment of the status change: one comment, one write
    assert types(plan) == [CopyTimeEntry, CopyTimeEntry, ReturnIssue, CloseLink]
    assert texts(plan) == ["time:1", "time:2", "return:10:1", "close:10:1"]
    first, second, back = plan.actions[0], plan.actions[1], plan.actions[2]
    assert isinstance(back, ReturnIssue) and back.summary is not None
    report = back.summary
    assert back.comment_html == report.html and back.marker == "okbx:summary:10:1" and report.key == "summary:10:1"
    assert isinstance(first, CopyTimeEntry) and isinstance(second, CopyTimeEntry)
    assert first.employee_id == 3  # Bitrix24 user 7 is mapped in time.users
    assert second.employee_id == BOT  # user 9 is not: time.default_employee_id
    assert first.report == second.report == keys.SummaryKey(10, 1)  # listed in the summary
    assert first.comment == "work [okbx:time:1]"
    assert report.total_seconds == 5400 and report.item_count == 2 and report.public is False
    assert "The programmers completed Bitrix24 task #100." in report.html
    assert "Ivan Petrov" in report.html and "Sergey Kuznetsov" in report.html
    assert "The issue returns to &#x27;Open&#x27;." in report.html
    # Changed on purpose: a report now names the elapsed items it copied on the line before its
    # marker, so a store rebuilt from the markers knows them even after a person deleted an entry.
    assert report.html.endswith('Bitrix24 time items: 1, 2<br><span class="okbx-marker">okbx:summary:10:1</span>')
    assert (back.from_status, back.to_status, back.cycle) == (HANDOFF, "opened", 1)
    # the completion it reports, so billing invoices it in the same cycle (a line per elapsed item)
    work = (WorkLine(7, "Ivan Petrov", 3600), WorkLine(9, "Sergey Kuznetsov", 1800))
    assert back.completes() == report.completes() == Completed(ISSUE, 1, work)


def test_completed_task_copies_only_items_not_copied_yet():
    ops = [*created_ops(), op("time:1", report_key="summary:10:1")]
    plan = plan_for(completed_snapshot(), state_of([link()], ops))
    assert texts(plan) == ["time:2", "return:10:1", "close:10:1"]
    back = plan.actions[1]
    assert isinstance(back, ReturnIssue) and back.summary is not None
    assert "Bitrix24 time items: 2<br>" in back.summary.html  # only what this store knows it copied


def test_completed_task_of_an_issue_moved_meanwhile_keeps_its_status_and_says_so():
    plan = plan_for(completed_snapshot(status="in_progress"), state_of([link()], created_ops()))
    assert types(plan) == [CopyTimeEntry, CopyTimeEntry, PostReport, CloseLink]
    report = plan.actions[2]
    assert isinstance(report, PostReport)
    assert "The status was left unchanged: someone moved the issue to &#x27;In progress&#x27; meanwhile." in report.html
    assert "returns to" not in report.html
    assert report.marker == "okbx:summary:10:1" and not report.return_owed  # nothing is owed: no return


def test_completed_task_without_time_still_reports_and_closes():
    plan = plan_for(completed_snapshot(elapsed=[]), state_of([link()], created_ops()))
    assert texts(plan) == ["return:10:1", "close:10:1"]
    back = plan.actions[0]
    assert isinstance(back, ReturnIssue)
    report = back.summary
    assert isinstance(report, PostReport) and report.item_count == 0 and report.total_seconds == 0
    assert "Bitrix24 time items: none<br>" in report.html
    assert report.completes() == Completed(ISSUE, 1, ())


def test_summary_after_a_crash_lists_the_items_copied_before_it():
    copied = {
        "id": 1,
        "date": "01.09.2024",
        "user": "Ivan Petrov",
        "user_id": 7,
        "seconds": 3600,
        "comment": "fixed the driver",
    }
    ops = [*created_ops(), op("time:1", report_key="summary:10:1", detail=copied)]
    plan = plan_for(completed_snapshot(), state_of([link()], ops))

    assert texts(plan) == ["time:2", "return:10:1", "close:10:1"]
    back = plan.actions[1]
    assert isinstance(back, ReturnIssue)
    report = back.summary
    assert isinstance(report, PostReport)
    assert report.item_count == 2 and report.total_seconds == 3600 + 1800
    assert "fixed the driver" in report.html and "Sergey Kuznetsov" in report.html
    assert report.html.index("fixed the driver") < report.html.index("Sergey Kuznetsov")  # sorted by item id
    assert "Bitrix24 time items: 1, 2<br>" in report.html
    # billing invoices the whole completion, the time copied before the crash included
    work = (WorkLine(7, "Ivan Petrov", 3600), WorkLine(9, "Sergey Kuznetsov", 1800))
    assert report.completes() == Completed(ISSUE, 1, work)


def test_a_status_change_refused_by_okdesk_sends_the_summary_alone_and_retries_the_change():
    ops = [*created_ops(), op("time:1"), op("time:2"), op("return:10:1", state="failed")]
    plan = plan_for(completed_snapshot(), state_of([link()], ops))
    assert texts(plan) == ["summary:10:1", "return:10:1", "close:10:1"]
    report, back = plan.actions[0], plan.actions[1]
    assert isinstance(report, PostReport) and "could not move the issue back" in report.html
    assert isinstance(back, ReturnIssue) and back.summary is None and back.marker == "okbx:return:10:1"
    # Changed on purpose: the summary posted alone says in its marker that the return is still owed,
    # so a store rebuilt from the markers does not take the issue for a new handoff.  Its key (the
    # op in the store) stays the report's own.
    assert report.key == "summary:10:1" and report.return_owed
    assert report.marker == "okbx:summary:10:1:pending"
    assert report.html.endswith('<span class="okbx-marker">okbx:summary:10:1:pending</span>')
    assert keys.in_html(report.html) == keys.SummaryKey(ISSUE, 1, "pending")


def test_a_status_change_whose_answer_was_lost_is_planned_again_to_be_looked_for():
    # the issue already left the handoff status (our change went through) but the summary it
    # carried is not recorded: the ReturnIssue is planned again, so its marker is looked for
    ops = [*created_ops(), op("time:1"), op("time:2"), op("return:10:1", state="intent")]
    plan = plan_for(completed_snapshot(status="opened"), state_of([link()], ops))
    assert texts(plan) == ["return:10:1", "close:10:1"]
    back = plan.actions[0]
    assert isinstance(back, ReturnIssue) and back.summary is not None


def test_summary_posted_before_a_crash_is_not_posted_again():
    ops = [*created_ops(), op("time:1"), op("time:2"), op("summary:10:1")]
    plan = plan_for(completed_snapshot(), state_of([link()], ops))
    assert texts(plan) == ["return:10:1", "close:10:1"]


def test_completed_task_waits_while_its_elapsed_time_could_not_be_read():
    snap = completed_snapshot()
    snap.elapsed = {}
    assert plan_for(snap, state_of([link()], created_ops())).actions == []


# -- done link handed off again: renew the task ---------------------------------------------------
def test_done_link_handed_off_again_notes_it_renews_the_task_and_forwards_new_comments():
    closed = NOW - timedelta(days=3)
    snap = Snapshot(
        handoff={ISSUE: issue()},
        issues={ISSUE: issue()},
        comments={ISSUE: [comment(501), comment(502)]},
        tasks={TASK: replace(task(status=5), closed_at=closed)},
    )
    ops = [*created_ops(), op("comment:10:1:501"), op("close:10:1")]
    done = link(state="done", done_at=closed, issue_status="opened")
    plan = plan_for(snap, state_of([done], ops))

    # the note first, naming the task's closedDate: the renewal itself leaves no marker (rebuild.py)
    stamp = int(closed.timestamp())
    assert types(plan) == [TaskNote, RenewTask, ForwardComment]
    assert texts(plan) == [f"note:renew:10:2:{stamp}", "renew:10:2", "comment:10:1:502"]  # same task: cycle 1
    note, renew = plan.actions[0], plan.actions[1]
    assert isinstance(renew, RenewTask) and renew.task_id == TASK and renew.cycle == 2
    assert renew.closed_before == closed
    assert isinstance(note, TaskNote) and "handed to the programmers again (handoff #2)" in note.text
    assert note.text.endswith(f"[I]okbx:note:renew:10:2:{stamp}[/I]")


def test_a_renewal_whose_note_is_written_is_planned_without_a_second_note():
    snap = Snapshot(
        handoff={ISSUE: issue()}, issues={ISSUE: issue()}, comments={ISSUE: []}, tasks={TASK: task(status=5)}
    )
    ops = [*created_ops(), op("close:10:1"), op("note:renew:10:2:1725000000")]
    done = link(state="done", done_at=NOW - timedelta(days=3), issue_status="opened")
    assert texts(plan_for(snap, state_of([done], ops))) == ["renew:10:2"]


def test_renewed_link_posts_its_renew_note_if_it_is_missing():
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()}, comments={ISSUE: []}, tasks={TASK: task()})
    ops = [*created_ops(), op("renew:10:2")]  # renewed by an older okbx, which wrote the note afterwards
    assert texts(plan_for(snap, state_of([link(cycle=2)], ops))) == ["note:renew:10:2:open"]


# -- task deleted / issue deleted -------------------------------------------------------------
def test_deleted_task_gets_a_note_in_the_issue_and_stops_the_link():
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()}, comments={ISSUE: []}, tasks={TASK: None})
    plan = plan_for(snap, state_of([link()], created_ops()))
    assert types(plan) == [IssueNote, MarkGone]
    assert texts(plan) == ["inote:taskdeleted:10:1", "gone:task:10:1"]
    note, gone = plan.actions
    assert isinstance(note, IssueNote) and "Bitrix24 task #100 was deleted" in note.html
    assert f"&#x27;{HANDOFF}&#x27;" in note.html
    assert isinstance(gone, MarkGone) and gone.what == "task"


def test_deleted_issue_gets_a_note_in_the_task_and_stops_the_link():
    snap = Snapshot(issues={ISSUE: None}, tasks={TASK: task()})
    plan = plan_for(snap, state_of([link()], created_ops()))
    assert types(plan) == [TaskNote, MarkGone]
    assert texts(plan) == ["note:issuedeleted:10:1", "gone:issue:10:1"]
    note = plan.actions[0]
    assert isinstance(note, TaskNote) and "Okdesk issue #10 was deleted" in note.text


def test_task_deleted_and_issue_back_in_handoff_after_leaving_starts_a_new_task_cycle():
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()}, comments={ISSUE: [comment(501)]})
    ops = [*created_ops(), op("comment:10:1:501"), op("inote:taskdeleted:10:1"), op("gone:task:10:1")]
    gone = link(state="gone_task", issue_status="opened")
    plan = plan_for(snap, state_of([gone], ops))
    # the new task needs the whole story again: comments are forwarded under the new cycle
    assert texts(plan) == ["task:10:2", "linkcomment:10:2", "comment:10:2:501"]


def test_task_deleted_while_issue_never_left_handoff_starts_nothing():
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()}, comments={ISSUE: []})
    for observed in (HANDOFF, None):
        plan = plan_for(snap, state_of([link(state="gone_task", issue_status=observed)], created_ops()))
        assert plan.actions == []


def test_link_stopped_because_the_issue_was_deleted_plans_nothing():
    assert plan_for(Snapshot(), state_of([link(state="gone_issue")], created_ops())).actions == []


# -- issue left handoff: one note per cycle -------------------------------------------------------
def test_issue_that_left_handoff_gets_one_task_note_per_cycle():
    snap = Snapshot(
        issues={ISSUE: issue(status="in_progress")}, comments={ISSUE: []}, tasks={TASK: task()}, statuses=STATUSES
    )
    plan = plan_for(snap, state_of([link()], created_ops()))
    assert texts(plan) == ["note:left:10:1"]
    note = plan.actions[0]
    assert isinstance(note, TaskNote) and "is now 'In progress'" in note.text

    again = plan_for(snap, state_of([link()], [*created_ops(), op("note:left:10:1")]))
    assert again.actions == []

    second_cycle = plan_for(
        snap, state_of([link(cycle=2)], [*created_ops(), op("note:left:10:1"), op("renew:10:2"), op("note:renew:10:2")])
    )
    assert texts(second_cycle) == ["note:left:10:2"]


def test_completed_task_of_an_issue_that_left_handoff_gets_no_left_note():
    plan = plan_for(completed_snapshot(status="in_progress"), state_of([link()], created_ops()))
    assert not any(a.key.startswith("note:left:") for a in plan.actions)


# -- done, time logged after completion -----------------------------------------------------------
def done_link(**kw: Any) -> Link:
    return link(state="done", done_at=kw.pop("done_at", NOW - timedelta(days=1)), issue_status="opened", **kw)


def test_time_logged_after_completion_is_copied_with_a_short_note():
    snap = Snapshot(
        late_elapsed=[item(7, seconds=5400), item(8, task_id=999)], user_names={7: "Ivan Petrov"}, statuses=STATUSES
    )
    plan = plan_for(snap, state_of([done_link()], [*created_ops(), op("time:1"), op("summary:10:1")]))
    assert types(plan) == [CopyTimeEntry, PostReport]
    assert texts(plan) == ["time:7", "late:10:7"]
    copy, note = plan.actions
    assert isinstance(copy, CopyTimeEntry) and copy.report == keys.LateKey(ISSUE, 7)
    assert isinstance(note, PostReport)
    assert note.completes() is None  # late time is copied, never invoiced again
    assert note.item_count == 1 and note.total_seconds == 5400
    assert "More time was logged in Bitrix24 task #100 after it was completed." in note.html
    assert "Copied as time entries (1 h 30 min)." in note.html


def test_late_time_already_copied_plans_nothing():
    snap = Snapshot(late_elapsed=[item(7)])
    ops = [*created_ops(), op("time:7", report_key="late:10:7"), op("late:10:7")]
    assert plan_for(snap, state_of([done_link()], ops)).actions == []


def test_late_note_missing_after_a_crash_reuses_its_group_for_new_items():
    copied = {"id": 7, "date": "01.09.2024", "user": "Ivan Petrov", "seconds": 600, "comment": "first"}
    ops = [*created_ops(), op("time:7", report_key="late:10:7", detail=copied)]
    snap = Snapshot(late_elapsed=[item(7, seconds=600), item(9, seconds=1200, text="second")])
    plan = plan_for(snap, state_of([done_link()], ops))
    assert texts(plan) == ["time:9", "late:10:7"]
    copy, note = plan.actions
    assert isinstance(copy, CopyTimeEntry) and copy.report == keys.LateKey(ISSUE, 7)
    assert isinstance(note, PostReport) and note.item_count == 2 and note.total_seconds == 1800
    assert "first" in note.html and "second" in note.html
    assert note.html.endswith('Bitrix24 time items: 7, 9<br><span class="okbx-marker">okbx:late:10:7</span>')

    orphan_only = plan_for(Snapshot(), state_of([done_link()], ops))
    assert texts(orphan_only) == ["late:10:7"]


def test_time_logged_long_after_completion_is_left_alone():
    snap = Snapshot(late_elapsed=[item(7)])
    plan = plan_for(snap, state_of([done_link(done_at=NOW - timedelta(days=31))], created_ops()))
    assert plan.actions == []


# -- waiting for a retry, parked, unreadable -----------------------------------------------------
def test_links_waiting_for_a_retry_or_parked_are_skipped_with_the_reason():
    snap = Snapshot(
        handoff={ISSUE: issue(), 11: issue(11), 12: issue(12)},
        issues={ISSUE: issue(), 11: issue(11), 12: issue(12)},
        comments={ISSUE: [comment(501)], 11: [comment(601, issue_id=11)], 12: [comment(701, issue_id=12)]},
    )
    links = [
        link(next_retry_at=NOW + timedelta(minutes=5), fail_count=1),
        link(11, task_id=101, parked=True, fail_count=5),
        link(12, task_id=102, next_retry_at=NOW - timedelta(seconds=1), fail_count=1),
    ]
    ops = [*created_ops(), *created_ops(11, task_id=101), *created_ops(12, task_id=102)]
    plan = plan_for(snap, state_of(links, ops))
    assert plan.skipped[ISSUE].startswith("waiting to retry at 12:05")
    assert plan.skipped[11] == "parked after repeated failures"
    assert 12 not in plan.skipped
    # the retry time of 12 has passed; 11 is parked and the consultant has not been told yet
    assert texts(plan) == ["inote:stuck:11:1:0", "comment:12:1:701"]
    parked = links[1].health
    assert parked is not None
    stuck = plan.actions[0]
    assert isinstance(stuck, IssueNote) and stuck == stuck_note(parked, 1) and stuck.track == Track.ROUTE
    assert "okbx retry 11" in stuck.html and "5 failures" in stuck.html and "HTTP 502" in stuck.html
    told = plan_for(snap, state_of(links, [*ops, op("inote:stuck:11:1:0", issue_id=11)]))
    assert texts(told) == ["comment:12:1:701"]  # one note per parking


def test_issues_that_could_not_be_read_are_skipped_this_cycle():
    snap = Snapshot(
        handoff={ISSUE: issue(), 11: issue(11)},
        issues={ISSUE: issue(), 11: issue(11)},
        errors={ISSUE: "reading comments failed: HTTP 500", 11: "reading task 101 failed"},
    )
    plan = plan_for(snap, state_of([link(11, task_id=101)], created_ops(11, task_id=101)))
    assert plan.actions == []
    assert plan.skipped == {ISSUE: "reading comments failed: HTTP 500", 11: "reading task 101 failed"}


# -- unusual plans -------------------------------------------------------------------------------
def many_links(count: int) -> tuple[list[Link], list[Op]]:
    links = [link(1000 + n, task_id=5000 + n) for n in range(count)]
    ops = [o for n in range(count) for o in created_ops(1000 + n, task_id=5000 + n)]
    return links, ops


def admitted(plan: Plan, state: StateView, *, force: bool = False) -> Plan:
    """The plan as the cycle's safety policy lets it through (one page, nothing foreseen)."""
    active = sum(1 for lk in state.links.values() if lk.state == LinkState.ACTIVE)
    return Safety(CONFIG, active, force=force).admit(plan)


def all_tasks_gone(count: int) -> Snapshot:
    return Snapshot(
        tasks={5000 + n: None for n in range(count)},
        issues={1000 + n: issue(1000 + n) for n in range(count)},
        comments={},
    )


def test_plan_stopping_most_links_at_once_is_unusual_and_held_back_unless_forced():
    links, ops = many_links(12)
    state = state_of(links, ops)
    plan = plan_for(all_tasks_gone(12), state)
    assert sum(isinstance(a, MarkGone) for a in plan.actions) == 12
    kept = admitted(plan, state)
    why = kept.refused
    assert why is not None and "12 of 12 active links would stop at once" in why and "outage" in why
    assert kept.actions == [] and kept.held_back == plan.actions
    assert kept.skipped[1000] == "held back by the safety check (okbx sync --force)"
    forced = admitted(plan, state, force=True)
    assert forced.refused is None and forced.actions == plan.actions and forced.held_back == []


def test_the_safety_policy_holds_back_only_the_issues_that_would_stop():
    # Changed on purpose: an unusual plan used to raise UnsafePlan and the whole cycle wrote
    # nothing; now only the issues making the unusual change wait, and the rest of the plan goes on.
    links, ops = many_links(12)
    snap = all_tasks_gone(12)
    snap.handoff[ISSUE] = snap.issues[ISSUE] = issue()
    state = state_of(links, ops)
    kept = admitted(plan_for(snap, state), state)
    assert kept.refused is not None
    assert texts(kept) == ["task:10:1", "linkcomment:10:1"]
    assert {a.issue_id for a in kept.held_back} == {1000 + n for n in range(12)}
    assert ISSUE not in kept.skipped


def test_links_found_stopping_before_any_page_count_against_every_page():
    # the cycle's listings tell which tasks are gone before the first page is planned (foreseen),
    # so a first page with a few of them is already refused; the counts carry over the pages
    links, ops = many_links(12)
    state = state_of(links[:3], ops)
    first_page = plan_for(all_tasks_gone(3), state)
    safety = Safety(CONFIG, 12, force=False)
    safety.foresee({1000 + n for n in range(12)}, set())
    kept = safety.admit(first_page)
    assert kept.actions == [] and kept.refused is not None and "12 of 12" in kept.refused
    assert Safety(CONFIG, 12, force=False).admit(first_page).refused is None  # 3 alone are not unusual


def test_a_team_completing_most_tasks_at_once_is_not_refused():
    # Completions are read from each task's own status (positive evidence), unlike "not found".
    links, ops = many_links(10)
    state = state_of(links, ops)
    snap = Snapshot(
        tasks={5000 + n: task(5000 + n, status=5) for n in range(10)},
        issues={1000 + n: issue(1000 + n) for n in range(10)},
        elapsed={5000 + n: [] for n in range(10)},
        statuses=STATUSES,
    )
    plan = plan_for(snap, state)
    assert sum(isinstance(a, CloseLink) for a in plan.actions) == 10
    kept = admitted(plan, state)
    assert kept.refused is None and kept.actions == plan.actions


def test_a_few_deleted_tasks_among_many_links_are_not_unusual():
    links, ops = many_links(30)
    state = state_of(links, ops)
    snap = Snapshot(
        tasks={5000 + n: (None if n < 12 else task(5000 + n)) for n in range(30)},
        issues={1000 + n: issue(1000 + n) for n in range(30)},
    )
    plan = plan_for(snap, state)
    assert sum(isinstance(a, MarkGone) for a in plan.actions) == 12  # 12 <= 50% of 30
    assert admitted(plan, state).refused is None


def test_below_the_minimum_number_of_links_nothing_is_unusual():
    links, ops = many_links(9)
    state = state_of(links, ops)
    plan = plan_for(all_tasks_gone(9), state)
    assert sum(isinstance(a, MarkGone) for a in plan.actions) == 9
    assert admitted(plan, state).refused is None


def test_plan_groups_actions_by_issue():
    snap = Snapshot(handoff={ISSUE: issue(), 11: issue(11)}, issues={ISSUE: issue(), 11: issue(11)})
    grouped = plan_for(snap, state_of([])).by_issue()
    assert {k: texts(v) for k, v in grouped.items()} == {
        10: ["task:10:1", "linkcomment:10:1"],
        11: ["task:11:1", "linkcomment:11:1"],
    }


# -- idempotency: planning again over the state the plan produced plans nothing -------------------
def applied(state: StateView, plan: Plan) -> StateView:
    """What a fully successful apply leaves in the store, as the applier records it: each action's
    op from its own `op_record` (and the ops a write carries), the link moved by its transition."""
    links, ops = dict(state.links), dict(state.ops)
    for action in plan.actions:
        remote, change = None, None
        if isinstance(action, CreateTask):
            links[action.issue_id] = link(action.issue_id, task_id=None, cycle=action.cycle)  # prepare()
            remote, change = str(TASK), lifecycle.target_made(action.issue_id, TASK)
        elif isinstance(action, RenewTask):
            change = lifecycle.renewed(action.issue_id, action.cycle)
        elif isinstance(action, CloseLink):
            change = lifecycle.completed(action.issue_id, NOW)
        elif isinstance(action, MarkGone):
            change = lifecycle.gone(action.issue_id, action.what, action.detail)
        if change is not None:
            links[action.issue_id] = replace(links[action.issue_id], **change.fields)
        for written in (action, *action.also_completes()):
            record = written.op_record()
            ops[written.key] = op(
                written.key,
                issue_id=written.issue_id,
                remote_id=remote,
                cycle=record.cycle,
                report_key=record.report_key,
                detail=record.detail,
            )
    return StateView(links=links, ops=ops)


def test_plan_over_an_unchanged_state_is_empty_after_a_handoff():
    snap = Snapshot(
        handoff={ISSUE: issue()},
        issues={ISSUE: issue()},
        comments={ISSUE: [comment(501), comment(502, public=False, author_id=CONSULTANT, kind="employee")]},
    )
    first = plan_for(snap, state_of([]))
    assert len(first.actions) == 4
    after = applied(state_of([]), first)
    snap.tasks = {TASK: task(status=2)}
    assert plan_for(snap, after).actions == []


def test_plan_over_an_unchanged_state_is_empty_after_completion_and_return():
    state = state_of([link()], [*created_ops(), op("comment:10:1:501")])
    first = plan_for(completed_snapshot(), state)
    after = applied(state, first)
    assert after.links[ISSUE].state == "done"
    # the issue was returned, so it is no longer in the handoff listing; both items show up as "late"
    snap = Snapshot(issues={ISSUE: issue(status="opened")}, late_elapsed=[item(1), item(2, user_id=9)])
    assert plan_for(snap, after).actions == []


def test_plan_over_an_unchanged_state_is_empty_after_renewal():
    snap = Snapshot(handoff={ISSUE: issue()}, issues={ISSUE: issue()}, comments={ISSUE: [comment(501)]})
    state = state_of([done_link()], [*created_ops(), op("comment:10:1:501")])
    first = plan_for(snap, state)
    assert texts(first) == ["note:renew:10:2:open", "renew:10:2"]
    after = applied(state, first)
    snap.tasks = {TASK: task(status=2)}
    assert plan_for(snap, after).actions == []


def test_plan_over_an_unchanged_state_is_empty_after_late_time():
    snap = Snapshot(late_elapsed=[item(7), item(8)])
    state = state_of([done_link()], created_ops())
    first = plan_for(snap, state)
    assert texts(first) == ["time:7", "time:8", "late:10:7"]
    assert plan_for(snap, applied(state, first)).actions == []


# -- deadlines ------------------------------------------------------------------------------------
def deadline_story(task_deadline: datetime | None, ops: list[Op]) -> list[str]:
    moved = NOW + timedelta(days=5)
    snap = Snapshot(
        handoff={ISSUE: issue(deadline_at=moved)},
        comments={ISSUE: []},
        tasks={TASK: Task(TASK, 3, xml_id=f"okdesk:{ISSUE}", deadline_at=task_deadline)},
    )
    return texts(plan_for(snap, state_of([link()], ops)))


def test_a_deadline_moved_since_okbx_gave_it_reaches_the_task():
    given = op(f"task:{ISSUE}:1", remote_id=str(TASK), cycle=1, detail={"okdesk_deadline": NOW.isoformat()})
    stamp = "".join(ch for ch in (NOW + timedelta(days=5)).isoformat() if ch.isdigit())
    previous = "".join(ch for ch in NOW.isoformat() if ch.isdigit())
    assert deadline_story(NOW, [given, op(f"linkcomment:{ISSUE}:1")]) == [f"deadline:{ISSUE}:{stamp}:{previous}"]


def test_a_link_older_than_deadline_sync_takes_the_current_deadline_as_given_and_writes_nothing():
    [key] = deadline_story(NOW + timedelta(days=1), created_ops())  # a programmer's own date on the task
    assert key.startswith(f"deadline:{ISSUE}:") and key.endswith(":baseline")
