"""Contract tests of the sales route's API layer: the Bitrix24 deal, pipeline, contact and timeline
emulator read and written by the real clients over HTTP, to routes-files.md §1-§2."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from e2e import Okbx, TestClock, start_world

from okbx_emulator.world import SALES_PIPELINE, World
from okbx_sync.clients.bitrix24_deals import DealsClient
from okbx_sync.clients.bitrix24_deals_parse import DealMarker
from okbx_sync.clients.bundle import Clients
from okbx_sync.errors import ApiError
from okbx_sync.secrets import Redactor

MARK = DealMarker("okbx", "okdesk:314599:1")


@pytest.fixture
def connect(tmp_path: Path, clock: TestClock) -> Iterator[Callable[[World], Clients]]:
    """The real clients of a world, configured as okbx would be."""
    built: list[Clients] = []

    def make(world: World) -> Clients:
        directory = tmp_path / f"okbx{len(built)}"
        directory.mkdir()
        config = Okbx(world, directory, clock=clock).config()
        built.append(Clients.build(config, Redactor(config.secrets())))
        return built[-1]

    yield make
    for clients in built:
        clients.close()


@pytest.fixture
def seeded(world: World) -> dict[str, int]:
    return world.routes_story()


@pytest.fixture
def clients(world: World, connect: Callable[[World], Clients]) -> Clients:
    return connect(world)


@pytest.fixture
def deals(clients: Clients) -> DealsClient:
    return DealsClient(clients.bitrix)


def _stage(deals: DealsClient, category: int, name: str) -> str:
    return next(s.id for s in deals.stages(category) if s.name == name)


def test_a_deal_okbx_makes_carries_its_marker_and_is_found_by_it(seeded, deals, clients):
    new = _stage(deals, SALES_PIPELINE, "Новая")
    fields = {"title": "Okdesk #314599: КП", "categoryId": SALES_PIPELINE, "stageId": new}
    deal = deals.add_deal(fields | {"companyId": seeded["crm_company"], "contactIds": [seeded["crm_contact"]]}, MARK)
    assert (deal.stage_id, deal.semantics, deal.closed, deal.marker) == ("C10:NEW", "P", False, MARK)
    assert deal.contact_ids == (seeded["crm_contact"],) and deal.company_id == seeded["crm_company"]
    assert deal.updated_at == deal.created_at == deal.moved_at
    assert deal.closedate is not None and deal.created_at is not None
    assert (deal.closedate.date() - deal.created_at.date()).days == 7  # the default close date
    other = DealMarker("okbx", "okdesk:314599:2")
    assert deals.deals_by_marker([MARK, other]) == {MARK: [deal], other: []}
    # typed on the wire: numbers, "Y"/"N", no xmlId on a deal
    raw = clients.bitrix.call("crm.item.get", {"entityTypeId": 2, "id": deal.id})["item"]
    assert raw["id"] == deal.id and raw["categoryId"] == SALES_PIPELINE and raw["contactIds"] == [seeded["crm_contact"]]
    assert raw["closed"] == "N" and raw["opened"] == "Y" and raw["entityTypeId"] == 2 and "xmlId" not in raw


def test_deals_have_no_xml_id_and_drop_read_only_and_unknown_fields(seeded, deals, clients):
    deal = deals.add_deal({"title": "x", "xmlId": "okdesk:1", "closed": "Y", "stageSemanticId": "S", "foo": 1}, MARK)
    assert (deal.closed, deal.semantics, deal.category_id, deal.stage_id) == (False, "P", 0, "NEW")
    with pytest.raises(ApiError) as refused:
        clients.bitrix.call("crm.item.list", {"entityTypeId": 2, "filter": {"=xmlId": "okdesk:1"}})
    assert refused.value.code == "INVALID_ARG_VALUE" and "xmlId" in refused.value.message
    assert deals.get_deal(deal.id + 100) is None  # NOT_FOUND "Element not found"


def test_stage_ids_are_read_per_pipeline_with_their_semantics(seeded, deals):
    pipelines = deals.pipelines()
    assert [(p.id, p.is_default) for p in pipelines] == [(SALES_PIPELINE, False), (0, True)]  # by sort
    general = {s.id: s.semantics for s in deals.stages(0)}
    assert general["NEW"] == "" and general["WON"] == "S" and general["LOSE"] == general["APOLOGY"] == "F"
    sales = [s.id for s in deals.stages(SALES_PIPELINE)]
    assert sales[0] == "C10:NEW" and "C10:PREPAYMENT_INVOIC" in sales  # truncated: never build, read
    assert deals.stages(99) == []


def test_a_stage_outside_the_pipeline_is_refused_unless_the_pipeline_changes(seeded, deals):
    deal = deals.add_deal({"title": "x"}, MARK)
    with pytest.raises(ApiError) as refused:
        deals.update_deal(deal.id, {"stageId": "C10:WON"})
    assert refused.value.code == "CRM_FIELD_ERROR_VALUE_NOT_VALID" and refused.value.message == (
        'Invalid value for field "Stage"'
    )
    moved = deals.update_deal(deal.id, {"categoryId": SALES_PIPELINE, "stageId": "WON"})  # silently re-picked
    assert (moved.category_id, moved.stage_id, moved.semantics, moved.closed) == (SALES_PIPELINE, "C10:WON", "S", True)
    repicked = deals.add_deal({"categoryId": SALES_PIPELINE, "stageId": "NEW"}, DealMarker("okbx", "2"))
    assert repicked.stage_id == "C10:NEW" and repicked.title == f"Deal #{repicked.id}"
    with pytest.raises(ApiError) as unknown:
        deals.add_deal({"categoryId": 99}, DealMarker("okbx", "3"))
    assert unknown.value.message == 'Invalid value for field "Category"'


def test_without_the_repick_option_add_refuses_a_foreign_stage(clock, connect):
    world = start_world(clock, bitrix_deal_options={"add_repicks_stage": False})
    try:
        world.routes_story()
        with pytest.raises(ApiError) as refused:
            DealsClient(connect(world).bitrix).add_deal({"categoryId": SALES_PIPELINE, "stageId": "NEW"}, MARK)
        assert refused.value.code == "CRM_FIELD_ERROR_VALUE_NOT_VALID"
    finally:
        world.close()


def test_a_salesperson_winning_the_deal_moves_it_and_closes_it_today(world, seeded, deals, clock):
    deal = deals.add_deal({"categoryId": SALES_PIPELINE, "stageId": "C10:NEW"}, MARK)
    clock.advance(minutes=5)
    before = clock.now()
    world.bitrix.deals.move_deal(deal.id, "WON", by_user=world.people.bx_sales)
    won = deals.get_deal(deal.id)
    assert won is not None and (won.stage_id, won.semantics, won.closed) == ("C10:WON", "S", True)
    assert (
        won.moved_by == world.people.bx_sales
        and won.moved_at is not None
        and won.moved_at >= before.replace(microsecond=0)
    )
    assert won.closedate is not None and won.closedate.date() == won.moved_at.date()  # was a week ahead
    assert [d.id for d in deals.deals_changed_since(before, field="movedTime", originator_id="okbx")] == [deal.id]
    clock.advance(minutes=5)
    same = deals.update_deal(deal.id, {"title": won.title})  # nothing changed: nothing saved
    assert same.updated_at == won.updated_at


def test_portal_rules_required_fields_multiple_fields_links_and_emptying(world, seeded, deals):
    world.bitrix.deals.required_fields = {"opportunity": "Amount"}
    with pytest.raises(ApiError) as missing:
        deals.add_deal({"title": "x"}, MARK)
    assert (missing.value.code, missing.value.message) == ("CRM_FIELD_ERROR_REQUIRED", 'The "Amount" field is required')
    deal = deals.add_deal({"title": "x", "opportunity": 1500.5, "currencyId": "RUB"}, MARK)
    assert deal.opportunity == Decimal("1500.5")
    with pytest.raises(ApiError) as scalar:
        deals.update_deal(deal.id, {"contactIds": seeded["crm_contact"]})
    assert scalar.value.code == "100" and "Expected iterable value" in scalar.value.message
    with pytest.raises(ApiError) as company:
        deals.update_deal(deal.id, {"companyId": 999})
    assert company.value.code == "CRM_FIELD_ERROR_VALUE_NOT_VALID"
    kept = deals.update_deal(deal.id, {"title": "", "currencyId": ""})  # cannot be emptied: kept
    assert (kept.title, kept.currency) == ("x", "RUB")
    with pytest.raises(ValueError):
        deals.update_deal(deal.id, {"originId": "something else"})  # okbx never moves its own marker


def test_a_webhook_without_crm_scope_or_for_an_extranet_user_is_refused(clock, connect):
    world = start_world(clock, bitrix_scopes=("task", "user", "sonet"))
    try:
        with pytest.raises(ApiError) as refused:
            DealsClient(connect(world).bitrix).pipelines()
        assert (refused.value.status, refused.value.code) == (403, "insufficient_scope")
    finally:
        world.close()
    world = start_world(clock, bitrix_deal_options={"intranet_user": False})
    try:
        with pytest.raises(ApiError) as extranet:
            DealsClient(connect(world).bitrix).get_deal(1)
        assert (extranet.value.status, extranet.value.code) == (403, "allowed_only_intranet_user")
    finally:
        world.close()


def test_lists_page_by_50_and_changes_are_read_by_updated_time(world, seeded, deals, clients, clock):
    made, errors = deals.add_deals({f"k{n}": ({"title": f"d{n}"}, DealMarker("okbx", f"{n}")) for n in range(120)})
    assert not errors and len(made) == 120
    assert world.bitrix_server.count("batch") == 3  # 50 commands a request
    for n in range(3):
        world.bitrix.deals.add_deal(f"by hand {n}", by_user=world.people.bx_sales)
    start = clock.now()
    raw: dict[str, Any] = clients.bitrix.call("crm.item.list", {"entityTypeId": 2, "select": ["id"]})
    assert len(raw["items"]) == 50 and set(raw["items"][0]) == {"id", "entityTypeId"}
    assert len(deals.deals_changed_since(start - timedelta(minutes=1), originator_id="okbx")) == 120
    clock.advance(minutes=10)
    since = clock.now()
    deals.update_deal(made["k7"].id, {"title": "changed"})
    world.bitrix.deals.edit_deal(made["k9"].id, by_user=world.people.bx_sales, opportunity=10)
    assert sorted(d.id for d in deals.deals_changed_since(since)) == [made["k7"].id, made["k9"].id]
    found, failed = deals.deals_by_id([made["k1"].id, made["k119"].id, 9999])
    assert set(found) == {made["k1"].id, made["k119"].id} and not failed


def test_a_portal_that_ignores_the_origin_filter_is_searched_deal_by_deal(world, seeded, deals):
    for n in range(60):
        world.bitrix.deals.add_deal(f"other {n}", by_user=world.people.bx_sales)
    ours = deals.add_deal({"title": "ours"}, MARK)
    world.bitrix.deals.origin_filter = "ignored"
    other = DealMarker("okbx", "nothing")
    assert deals.deals_by_marker([MARK, other]) == {MARK: [ours], other: []}
    assert [d.id for d in deals.deals_changed_since(ours.created_at - timedelta(hours=1), originator_id="okbx")] == [
        ours.id
    ]


def test_a_pipeline_the_webhook_user_cannot_read_is_invisible(world, seeded, deals):
    deal = deals.add_deal({"categoryId": SALES_PIPELINE}, MARK)
    world.bitrix.deals.hide_pipeline(SALES_PIPELINE)
    assert [p.id for p in deals.pipelines()] == [0]
    with pytest.raises(ApiError) as denied:
        deals.get_deal(deal.id)
    assert denied.value.code == "ACCESS_DENIED"
    assert deals.deals_by_marker([MARK]) == {MARK: []}
    with pytest.raises(ApiError) as unavailable:
        deals.add_deal({"categoryId": SALES_PIPELINE}, DealMarker("okbx", "2"))
    assert unavailable.value.code == "CRM_FIELD_ERROR_CATEGORY_NOT_AVAILABLE"
    with pytest.raises(ApiError) as comment:
        deals.add_comment(deal.id, "hello")
    assert comment.value.code == "ACCESS_DENIED"


def test_other_entity_types_keep_their_own_answers(clients):
    with pytest.raises(ApiError) as unknown:
        clients.bitrix.call("crm.item.list", {"entityTypeId": 999})
    assert (unknown.value.code, unknown.value.message) == ("NOT_FOUND", "Smart process not found")
    assert clients.bitrix.call("crm.category.list", {"entityTypeId": 31})["categories"][0]["id"] == 1


def test_the_issue_contact_is_matched_among_crm_contacts(seeded, deals):
    (contact,) = deals.contacts({"=lastName": "Orlov", "=companyId": seeded["crm_company"]})
    assert (contact.id, contact.name, contact.emails) == (seeded["crm_contact"], "Pavel", ("pavel@example.com",))
    assert deals.contacts({"=lastName": "Nobody"}) == []


# -- timeline comments (§2) -------------------------------------------------------------------------
def test_a_comment_by_someone_else_than_the_assignee_moves_the_deal(world, seeded, deals, clock):
    sales = world.people.bx_sales
    deal = deals.add_deal({"title": "x", "assignedById": sales}, MARK)
    clock.advance(minutes=3)
    comment_id = deals.add_comment(deal.id, "  [B]Клиент:[/B] нужен счёт\n[I]okbx:c:1[/I]  ")  # as the webhook user
    (comment,) = deals.comments(deal.id)
    assert (comment.id, comment.author_id, comment.owner_type) == (comment_id, world.bitrix.user_id, "deal")
    assert comment.text == "[B]Клиент:[/B] нужен счёт\n[I]okbx:c:1[/I]"  # trimmed, markup kept
    bumped = deals.get_deal(deal.id)
    assert bumped is not None and bumped.updated_at is not None and deal.updated_at is not None
    assert bumped.updated_at > deal.updated_at and bumped.last_activity_by == world.bitrix.user_id
    clock.advance(minutes=3)
    deals.add_comment(deal.id, "by the assignee", author_id=sales)
    assert deals.get_deal(deal.id) == bumped  # the assignee's own comment moves nothing


def test_comment_rules_envelope_empty_text_unknown_owner(seeded, deals, clients):
    deal = deals.add_deal({"title": "x"}, MARK)
    with pytest.raises(ApiError) as upper:
        clients.bitrix.call("crm.timeline.comment.add", {"FIELDS": {"ENTITY_ID": deal.id, "ENTITY_TYPE": "deal"}})
    assert upper.value.code == "100"
    with pytest.raises(ApiError) as blank:
        deals.add_comment(deal.id, "   ")
    assert blank.value.code == "INVALID_ARG_VALUE"
    with pytest.raises(ApiError) as unknown:
        deals.add_comment(deal.id + 50, "hello")
    assert unknown.value.code == "ACCESS_DENIED"
    with pytest.raises(ApiError) as owner:
        clients.bitrix.call("crm.timeline.comment.add", {"fields": {"ENTITY_ID": 0, "ENTITY_TYPE": "deal"}})
    assert owner.value.code == "OWNER_NOT_FOUND"
    with pytest.raises(ApiError) as not_found:
        clients.bitrix.call("crm.timeline.comment.get", {"id": 4242})
    assert not_found.value.message == "Not found."


def test_comments_are_read_newest_first_until_a_seen_id_and_in_batches(world, seeded, deals):
    busy, quiet = deals.add_deal({"title": "busy"}, MARK), deals.add_deal({"title": "q"}, DealMarker("okbx", "q"))
    made, errors = deals.add_comments({f"c{n}": (busy.id, f"comment {n}") for n in range(70)})
    assert not errors and len(made) == 70
    deals.add_comment(quiet.id, "only one")
    everything = deals.comments(busy.id)
    assert [c.text for c in everything] == [f"comment {n}" for n in range(70)]
    assert [c.id for c in deals.comments(busy.id, after_id=made["c65"])] == [made[f"c{n}"] for n in range(66, 70)]
    both = deals.comments_of_deals([busy.id, quiet.id])
    assert len(both[busy.id]) == 70 and [c.text for c in both[quiet.id]] == ["only one"]


def test_comment_files_update_and_delete(world, seeded, deals, clients):
    deal = deals.add_deal({"title": "x"}, MARK)
    fields = {"ENTITY_ID": deal.id, "ENTITY_TYPE": "DEAL", "COMMENT": "act", "FILES": [["act.pdf", "JVBERi0x"]]}
    comment_id = clients.bitrix.call("crm.timeline.comment.add", {"fields": fields}, write=True)
    (listed,) = clients.bitrix.call(
        "crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal.id, "ENTITY_TYPE": "deal"}}
    )
    (drive_id, shown) = next(iter(listed["FILES"].items()))
    assert listed["ID"] == str(comment_id) and listed["ENTITY_TYPE"] == "deal" and shown["name"] == "act.pdf"
    assert deals.comments(deal.id)[0].file_ids == (int(drive_id),)
    clients.bitrix.call("crm.timeline.comment.update", {"id": comment_id, "fields": {"COMMENT": "act v2", "FILES": []}})
    (changed,) = deals.comments(deal.id)
    assert (changed.text, changed.file_ids) == ("act v2", ())
    world.bitrix.timeline.files_shape = "ids"
    clients.bitrix.call("crm.timeline.comment.update", {"id": comment_id, "fields": {"FILES": [["b.txt", "aGk="]]}})
    assert len(deals.comments(deal.id)[0].file_ids) == 1
    assert clients.bitrix.call("crm.timeline.comment.delete", {"id": comment_id}) is None
    assert deals.comments(deal.id) == []


def test_required_fields_are_checked_again_only_when_the_stage_moves(world, seeded, deals):
    deal = deals.add_deal({"title": "x", "categoryId": SALES_PIPELINE}, MARK)
    world.bitrix.deals.required_fields = {"opportunity": "Amount"}
    assert deals.update_deal(deal.id, {"title": "y"}).title == "y"  # no stage change: not checked
    with pytest.raises(ApiError) as moving:
        deals.update_deal(deal.id, {"stageId": "C10:PREPARATION"})
    assert moving.value.code == "CRM_FIELD_ERROR_REQUIRED"
    # a pipeline change checks only the required fields it changes
    moved = deals.update_deal(deal.id, {"categoryId": 0, "stageId": "NEW"})
    assert (moved.category_id, moved.stage_id) == (0, "NEW")


def test_own_only_rights_make_the_webhook_user_the_assignee(clock, connect):
    world = start_world(clock, bitrix_deal_options={"assign_own_only": True})
    try:
        deal = DealsClient(connect(world).bitrix).add_deal({"assignedById": 7}, MARK)
        assert deal.assigned_by_id == world.bitrix.user_id
    finally:
        world.close()


def test_html_in_deal_comments_is_stored_as_bb_code_and_sorting_is_checked(seeded, deals, clients):
    deal = deals.add_deal({"comments": "<p><b>Клиент</b> просит КП<br>на 3 картриджа &amp; тонер</p>"}, MARK)
    assert deal.comments == "[B]Клиент[/B] просит КП\nна 3 картриджа & тонер"
    with pytest.raises(ApiError) as order:
        clients.bitrix.call("crm.item.list", {"entityTypeId": 2, "order": {"xmlId": "ASC"}})
    assert order.value.code == "INVALID_ARG_VALUE"
    with pytest.raises(ApiError) as value:
        clients.bitrix.call("crm.item.list", {"entityTypeId": 2, "filter": {">updatedTime": "yesterday"}})
    assert "has invalid value" in value.value.message


def test_timeline_owner_rules_for_reads_and_the_type_id_form(world, seeded, deals, clients):
    deal = deals.add_deal({"title": "x", "categoryId": SALES_PIPELINE}, MARK)
    by_type_id = {"ENTITY_TYPE_ID": 2, "ENTITY_TYPE": "contact", "ENTITY_ID": deal.id, "COMMENT": "typed"}
    clients.bitrix.call("crm.timeline.comment.add", {"fields": by_type_id}, write=True)  # the id wins
    assert [c.text for c in deals.comments(deal.id)] == ["typed"]
    with pytest.raises(ApiError) as no_type:
        clients.bitrix.call("crm.timeline.comment.list", {"filter": {"ENTITY_ID": deal.id}})
    assert no_type.value.code == "INVALID_ARG_VALUE"
    world.bitrix.deals.hide_pipeline(SALES_PIPELINE)
    with pytest.raises(ApiError) as hidden:
        deals.comments(deal.id)
    assert (hidden.value.code, hidden.value.message) == ("", "Access denied.")


def test_a_comment_length_limit_when_a_portal_has_one(world, seeded, deals):
    deal = deals.add_deal({"title": "x"}, MARK)
    world.bitrix.timeline.max_length = 10
    with pytest.raises(ApiError) as long:
        deals.add_comment(deal.id, "x" * 11)
    assert long.value.code == "INVALID_ARG_VALUE"
