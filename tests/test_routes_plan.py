"""The planner over routes, purely, with literals (issue 14): which route an issue is on, what each
kind of target makes, where `previous` goes, what a move between routes plans, and what blocks."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from okbx_sync import keys
from okbx_sync.clients.bitrix24_crm import Stage
from okbx_sync.clients.bitrix24_deals_parse import Deal
from okbx_sync.config import Config, parse_config
from okbx_sync.core.action import Action
from okbx_sync.model import Comment, ElapsedItem, Issue, Person, Task
from okbx_sync.state.lifecycle import Health, Link, LinkState, Track
from okbx_sync.state.records import Op, OpState
from okbx_sync.sync import routing
from okbx_sync.sync.handoff import EnterRoute, MoveOn
from okbx_sync.sync.issue_writes import CloseLink, CopyTimeEntry, PostLinkComment, PostReport, ReturnIssue
from okbx_sync.sync.plan import build_plan
from okbx_sync.sync.snapshot import DealParty, EquipmentSheet, Snapshot, StateView
from okbx_sync.sync.targets.deal import CreateDeal, ForwardToDeal, PostDealLink
from okbx_sync.sync.task_writes import CreateTask, ForwardComment, RenewTask, TaskNote

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ROUTES: list[dict[str, Any]] = [
    {"name": "programmers", "trigger": {"status": "to_dev"}, "target": {"group_id": 42, "responsible_id": 7}},
    {
        "name": "documents",
        "trigger": {"status": "waiting_docs"},
        "target": {"group_id": 43, "responsible_id": 8, "describe": "equipment", "auditors": [1]},
        "flows": {"copy_time": False, "result_comment": True},
        "finish": {"return_status": "previous"},
    },
    {"name": "sales", "trigger": {"status": "to_sales"}, "target": {"kind": "deal", "pipeline_id": 10}},
]
STAGES = [Stage("C10:NEW", "Новая", ""), Stage("C10:WON", "Сделка успешна", "S"), Stage("C10:LOSE", "Провал", "F")]


def config(routes: list[dict[str, Any]] = ROUTES) -> Config:
    raw = {
        "okdesk": {"url": "https://x.okdesk.ru", "api_token": "t0ken-secret", "bot_employee_id": 1},
        "bitrix24": {"webhook_url": "https://p.example/rest/1/s3cret/"},
        "time": {"default_employee_id": 1},
        "routes": copy.deepcopy(routes),
    }
    return parse_config(raw, env={}, base_dir=Path("/tmp"))


def issue(status: str, old: str | None = "in_progress", **fields: Any) -> Issue:
    defaults = {"company": "Romashka", "company_id": 5, "contact": "Pavel Orlov", "contact_id": 3}
    return Issue(1, "Printer", status, NOW, old_status=old, **(defaults | fields))


def comment(comment_id: int, text: str = "hello", public: bool = True) -> Comment:
    return Comment(comment_id, 1, f"<p>{text}</p>", public, NOW, Person(3, "Pavel Orlov", "contact"))


def link(route: str = "programmers", state: str = "active", target: str = "task", **fields: Any) -> Link:
    values: dict[str, Any] = {"task_id": 77, "cycle": 1, "issue_status": None, "dirty": False}
    values |= {"created_at": NOW, "updated_at": NOW, "done_at": None}
    values |= fields
    return Link(1, state=LinkState(state), route=route, target=target, **values)


def op(key: keys.Key, kind: str, remote_id: str | None = None, **detail: Any) -> Op:
    cycle = getattr(key, "cycle", None)
    return Op(key.text, 1, kind, OpState.DONE, remote_id, cycle, None, False, None, 1, detail, NOW)


def snapshot(seen: Issue, *, listed: bool = True, **fields: Any) -> Snapshot:
    snap = Snapshot(handoff={1: seen} if listed else {}, issues={1: seen}, comments={1: [comment(55)]}, **fields)
    snap.stages.setdefault(10, STAGES)
    return snap


def plan(snap: Snapshot, links: dict[int, Link] | None = None, ops: list[Op] | None = None, cfg: Config | None = None):
    state = StateView(links=links or {}, ops={o.key: o for o in ops or []})
    return build_plan(snap, state, cfg or config(), NOW)


def kinds(actions: list[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


# -- which route --------------------------------------------------------------------------------
def test_the_first_route_whose_status_and_filters_admit_the_issue():
    routes = copy.deepcopy(ROUTES)
    routes[2]["trigger"] = {"status": "waiting_docs"}
    routes[1]["trigger"]["issue_types"] = ["service"]
    cfg = config(routes)
    assert routing.route_of(issue("waiting_docs", type_code="service"), cfg).name == "documents"
    assert routing.route_of(issue("waiting_docs", type_code="incident"), cfg).name == "sales"
    assert routing.route_of(issue("opened"), cfg) is None
    listed_now = issue("waiting_docs", type_code="service")
    assert routing.route_of(listed_now, cfg, status="to_dev").name == "programmers"  # the listing decides


def test_previous_is_the_status_before_the_route_and_never_a_routes_status():
    cfg = config()
    assert routing.previous_for(issue("waiting_docs", old="in_progress"), None, cfg) == "in_progress"
    came_from_dev = issue("waiting_docs", old="to_dev")
    assert routing.previous_for(came_from_dev, link(previous_status="delayed"), cfg) == "delayed"
    assert routing.previous_for(came_from_dev, link(previous_status=None), cfg) is None
    docs = cfg.route("documents")
    assert routing.return_target(docs, link(previous_status=None), cfg) == (
        "opened",
        "the status it had before the route is not known (okbx did not see it, or it came from another route)",
    )
    assert routing.return_target(docs, link(previous_status="to_sales"), cfg)[0] == "opened"
    assert routing.return_target(docs, link(previous_status="in_progress"), cfg) == ("in_progress", "")


# -- what each target makes ------------------------------------------------------------------------
def test_the_document_route_makes_a_task_in_its_group_listing_the_equipment():
    from okbx_sync.clients.okdesk_equipment_parse import Equipment, EquipmentRef
    from okbx_sync.model import Agreement

    printer = Equipment(9, "CNB1R12345", "INV-1", EquipmentRef("printer", "Принтер"), model=EquipmentRef("m", "M404"))
    sheet = EquipmentSheet(Agreement(2, "Договор 12/24"), (printer,), (printer,))
    made = plan(snapshot(issue("waiting_docs"), equipment={1: sheet})).actions
    assert kinds(made) == ["CreateTask", "PostLinkComment", "ForwardComment"]
    create, link_comment = made[0], made[1]
    assert isinstance(create, CreateTask) and isinstance(link_comment, PostLinkComment)
    fields = create.fields
    assert (fields["GROUP_ID"], fields["RESPONSIBLE_ID"], fields["AUDITORS"]) == (43, 8, [1])
    assert fields["XML_ID"] == "okdesk:1:documents" and "ACCOMPLICES" not in fields
    assert "CNB1R12345" in str(fields["DESCRIPTION"]) and "Договор 12/24" in str(fields["DESCRIPTION"])
    assert create.entry.route == "documents" and create.entry.previous_status == "in_progress"
    assert link_comment.marker == "okbx:linkcomment:1:1:documents:in_progress"
    assert link_comment.key == "linkcomment:1:1"  # the op key stays the bare one


def test_the_programmers_route_writes_what_it_always_wrote():
    made = plan(snapshot(issue("to_dev"))).actions
    create, link_comment = made[0], made[1]
    assert isinstance(create, CreateTask) and create.fields["XML_ID"] == "okdesk:1"
    assert set(create.fields) == {"TITLE", "DESCRIPTION", "RESPONSIBLE_ID", "GROUP_ID", "XML_ID", "TAGS"}
    assert link_comment.marker == "okbx:linkcomment:1:1"


def test_the_sales_route_makes_a_deal_for_the_matched_company():
    party = DealParty(company_id=40, contact_ids=(12,), assigned_by_id=10)
    made = plan(snapshot(issue("to_sales", deadline_at=datetime(2026, 12, 24, tzinfo=UTC)), parties={1: party}))
    assert kinds(made.actions) == ["CreateDeal", "PostDealLink", "ForwardToDeal"] and not made.blocked
    deal = made.actions[0]
    assert isinstance(deal, CreateDeal)
    assert deal.fields | {"comments": ""} == {
        "title": "[Okdesk #1] Printer",
        "categoryId": 10,
        "stageId": "C10:NEW",
        "companyId": 40,
        "contactIds": [12],
        "assignedById": 10,
        "currencyId": "RUB",
        "comments": "",
        "closedate": "2026-12-24",
    }
    assert deal.deal_marker.fields() == {"originatorId": "okbx", "originId": "okdesk:1:1:sales"}
    assert made.actions[1].marker == "okbx:linkcomment:1:1:sales"


def test_an_unmatched_company_enters_the_route_and_blocks_the_deal_never_guessing():
    made = plan(snapshot(issue("to_sales"), parties={1: "no CRM company for Okdesk company 5"}))
    assert kinds(made.actions) == ["EnterRoute"]
    (blocked,) = made.blocked
    assert blocked.track == Track.ROUTE and "no CRM company" in blocked.why and not blocked.transient
    entering = made.actions[0]
    assert isinstance(entering, EnterRoute) and entering.entry.route == "sales" and entering.entry.target == "deal"
    again = plan(
        snapshot(issue("to_sales"), parties={1: "still none"}), {1: link("sales", target="deal", task_id=None)}
    )
    assert again.actions == [] and len(again.blocked) == 1  # the link is there: only the failure again


def test_stages_not_read_block_the_deal_as_a_read_failure():
    snap = snapshot(issue("to_sales"), parties={1: DealParty(40)})
    snap.stages[10] = "cannot read the stages of pipeline 10: ACCESS_DENIED"
    (blocked,) = plan(snap).blocked
    assert blocked.transient and "ACCESS_DENIED" in blocked.why


# -- finishing ---------------------------------------------------------------------------------------
def test_a_won_deal_returns_the_issue_with_one_note_of_its_result():
    won = Deal(88, "x", 10, "C10:WON", "S", True, opportunity=Decimal("120000"), currency="RUB")
    snap = snapshot(issue("to_sales"), deals={88: won})
    done = [op(keys.TaskKey(1, 1), "deal", "88"), op(keys.LinkCommentKey(1, 1), "link_comment")]
    done.append(op(keys.CommentKey(1, 1, 55), "comment"))
    made = plan(snap, {1: link("sales", target="deal", task_id=88)}, done).actions
    assert kinds(made) == ["ReturnIssue", "CloseLink"]
    back = made[0]
    assert isinstance(back, ReturnIssue) and back.to_status == "opened" and back.summary is not None
    assert "Deal won: 120 000 RUB" in back.comment_html and back.marker == "okbx:summary:1:1"
    assert back.summary.completes() is not None and back.summary.completes().route == "sales"


def test_a_lost_deal_names_its_stage():
    lost = Deal(88, "x", 10, "C10:LOSE", "F", True)
    made = plan(snapshot(issue("to_sales"), deals={88: lost}), {1: link("sales", target="deal", task_id=88)}).actions
    back = next(a for a in made if isinstance(a, ReturnIssue))
    assert "Deal lost: Провал" in back.comment_html


def test_a_finished_document_task_returns_to_the_previous_status_with_the_result():
    done = Task(77, 5, "okdesk:1:documents", closed_at=NOW)
    snap = snapshot(issue("waiting_docs"), tasks={77: done}, results={77: "Added the laptop to appendix 2"})
    made = plan(snap, {1: link("documents", previous_status="in_progress")}).actions
    back = next(a for a in made if isinstance(a, ReturnIssue))
    assert back.to_status == "in_progress" and "appendix 2" in back.comment_html
    assert not [a for a in made if isinstance(a, CopyTimeEntry)]  # the route copies no time


def test_an_unknown_previous_falls_back_and_says_why():
    done = Task(77, 5, "okdesk:1:documents", closed_at=NOW)
    made = plan(snapshot(issue("waiting_docs"), tasks={77: done}), {1: link("documents")}).actions
    back = next(a for a in made if isinstance(a, ReturnIssue))
    assert back.to_status == "opened" and "not known" in back.comment_html


# -- moves and routes coming back ----------------------------------------------------------------------
def test_moving_to_another_route_ends_the_first_cleanly_and_starts_the_second():
    item = ElapsedItem(501, 77, 7, 3600, "first look", NOW)
    snap = snapshot(issue("to_sales", old="to_dev"), tasks={77: Task(77, 2, "okdesk:1")}, elapsed={77: [item]})
    snap.parties[1] = DealParty(40)
    made = plan(snap, {1: link(previous_status=None)}, [op(keys.LinkCommentKey(1, 1), "link_comment")]).actions
    assert kinds(made) == [
        "TaskNote", "CopyTimeEntry", "PostReport", "MoveOn", "CreateDeal", "PostDealLink", "ForwardToDeal"
    ]  # fmt: skip
    note = made[0]
    assert isinstance(note, TaskNote) and note.note == keys.TaskNoteKey("moved", 1, 1) and "route sales" in note.text
    report = next(a for a in made if isinstance(a, PostReport))
    assert report.target == ("programmers", "task", 77) and "moved to route sales" in report.html
    move = next(a for a in made if isinstance(a, MoveOn))
    assert move.key == keys.CloseKey(1, 1).text
    deal = next(a for a in made if isinstance(a, CreateDeal))
    assert deal.cycle == 2 and deal.deal_marker.origin_id == "okdesk:1:2:sales"
    assert not [a for a in made if isinstance(a, ReturnIssue)]  # the status is the person's move


def test_a_move_to_a_route_that_cannot_start_yet_leaves_the_first_alone():
    snap = snapshot(issue("to_sales"), tasks={77: Task(77, 2, "okdesk:1")}, parties={1: "no CRM company"})
    made = plan(snap, {1: link()}, [op(keys.LinkCommentKey(1, 1), "link_comment")])
    assert made.actions == [] and len(made.blocked) == 1


def test_back_on_a_route_whose_task_was_left_open_takes_it_up_again():
    ops = [op(keys.TaskKey(1, 1), "task", "77", route="programmers"), op(keys.TaskKey(1, 2), "deal", "88")]
    done_sales = link("sales", state="done", target="deal", task_id=88, cycle=2)
    made = plan(snapshot(issue("to_dev", old="opened")), {1: done_sales}, ops).actions
    note, renew = made[0], made[1]  # announced in the task first: the renewal itself carries no marker
    assert isinstance(note, TaskNote) and note.note.why == "renew" and note.note.cycle == 3
    assert isinstance(renew, RenewTask) and (renew.task_id, renew.cycle, renew.resume) == (77, 3, True)
    assert renew.entry is not None and renew.entry.route == "programmers"
    # the programmers' task keeps its own link comment (made with it, handoff 1), as a renewal always did
    assert [a.key for a in made if isinstance(a, PostLinkComment)] == ["linkcomment:1:1"]
    assert [a.key for a in made if isinstance(a, ForwardComment)] == ["comment:1:1:55"]


def test_a_sales_route_always_makes_a_new_deal_for_a_new_handoff():
    ops = [op(keys.TaskKey(1, 1), "deal", "88")]
    done = link("sales", state="done", target="deal", task_id=88)
    made = plan(snapshot(issue("to_sales"), parties={1: DealParty(40)}), {1: done}, ops).actions
    deal = made[0]
    assert isinstance(deal, CreateDeal) and deal.cycle == 2
    assert isinstance(made[2], ForwardToDeal) and made[2].key == "comment:1:2:55"
    assert isinstance(made[1], PostDealLink)


def test_a_link_whose_route_was_removed_from_the_configuration_is_a_failure_not_a_guess():
    made = plan(snapshot(issue("to_dev")), {1: link("billing_dept")})
    assert made.actions == [] and "no longer in the configuration" in made.blocked[0].why


def test_a_parked_route_link_is_left_alone_whatever_its_target():
    parked = Health(1, Track.ROUTE, fail_count=5, last_error="x", parked=True)
    made = plan(snapshot(issue("to_sales")), {1: link("sales", target="deal", task_id=None, health=parked)})
    assert kinds(made.actions) == ["IssueNote"] and made.skipped[1] == "parked after repeated failures"
    assert not [a for a in made.actions if isinstance(a, (CreateDeal, CloseLink))]


def test_leaving_the_route_before_the_deal_could_be_made_withdraws_the_handoff():
    waiting = link("sales", target="deal", task_id=None)
    made = plan(snapshot(issue("in_progress"), listed=False, parties={1: "no CRM company"}), {1: waiting})
    assert kinds(made.actions) == ["Withdraw"] and made.actions[0].key == "gone:withdrawn:1:1" and not made.blocked


def test_leaving_before_the_deal_was_matched_again_still_looks_for_a_deal_whose_answer_was_lost():
    waiting = link("sales", target="deal", task_id=None)
    sent = Op("task:1:1", 1, "deal", OpState.INTENT, None, 1, None, False, None, 1, {}, NOW)
    made = plan(snapshot(issue("in_progress"), listed=False), {1: waiting}, [sent]).actions
    (look,) = made
    assert isinstance(look, CreateDeal) and look.adopt_only and look.deal_marker.origin_id == "okdesk:1:1:sales"
