"""Pure parsers of the routes' API layer against answers recorded in ../shared/api/routes-files.md
(deals §1.1, pipelines §1.3, timeline comments §2.2, equipment §5) and crm-billing.md."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from okbx_sync.clients.bitrix24_crm import parse_stages
from okbx_sync.clients.bitrix24_deals_parse import (
    DealMarker,
    parse_contact,
    parse_deal,
    parse_deals,
    parse_item,
    parse_pipelines,
    parse_timeline_comments,
)
from okbx_sync.clients.okdesk_equipment_parse import (
    EquipmentRef,
    parse_equipment,
    parse_equipment_list,
    parse_equipment_search,
)
from okbx_sync.clients.okdesk_parse import parse_issue, parse_issue_list
from okbx_sync.clients.parse import ParseError
from okbx_sync.model import Agreement

PLUS2, PLUS3 = timezone(timedelta(hours=2)), timezone(timedelta(hours=3))

# §1.1: crm.item.add for a deal (typed values, "Y"/"N", result.item)
DEAL_ADDED = json.loads("""
{"item": {"id": 342, "title": "Okdesk #314599: заявка на продажу", "categoryId": 3, "stageId": "C3:NEW",
  "stageSemanticId": "P", "closed": "N", "opened": "Y", "companyId": 5, "contactId": 11, "contactIds": [11],
  "assignedById": 17, "opportunity": 0, "isManualOpportunity": "N", "currencyId": "RUB", "sourceId": "OTHER",
  "originatorId": "okdesk", "originId": "314599", "createdTime": "2024-07-18T14:00:14+02:00",
  "updatedTime": "2024-07-18T14:00:14+02:00", "movedTime": "2024-07-18T14:00:14+02:00", "movedBy": 1,
  "lastActivityTime": "2024-07-18T14:00:14+02:00", "lastActivityBy": 1,
  "begindate": "2024-07-18T02:00:00+02:00", "closedate": "2024-07-25T02:00:00+02:00",
  "entityTypeId": 2, "…": "…"}}
""")
# §1.3: crm.category.list for deals
CATEGORIES = json.loads("""
{"categories": [
   {"id": 9, "name": "Продажи", "sort": 200, "entityTypeId": 2, "isDefault": "N", "originId": "", "originatorId": ""},
   {"id": 0, "name": "General", "sort": 300, "entityTypeId": 2, "isDefault": "Y"}]}
""")
# §1.3: crm.status.list rows of a pipeline (CATEGORY_ID a string, SEMANTICS null/"S"/"F")
DEAL_STAGES = json.loads("""
[{"ID": "71", "ENTITY_ID": "DEAL_STAGE_10", "STATUS_ID": "C10:NEW", "NAME": "Новая", "NAME_INIT": "Новая",
  "SORT": "10", "SYSTEM": "Y", "CATEGORY_ID": "10", "COLOR": "#39A8EF", "SEMANTICS": null,
  "EXTRA": {"SEMANTICS": "process", "COLOR": "#39A8EF"}},
 {"ID": "73", "ENTITY_ID": "DEAL_STAGE_10", "STATUS_ID": "C10:PREPAYMENT_INVOIC", "NAME": "Счёт",
  "SORT": "30", "SYSTEM": "Y", "CATEGORY_ID": "10", "SEMANTICS": null, "EXTRA": {"SEMANTICS": "process"}},
 {"ID": "76", "ENTITY_ID": "DEAL_STAGE_10", "STATUS_ID": "C10:WON", "NAME": "Сделка успешна",
  "SORT": "60", "SYSTEM": "Y", "CATEGORY_ID": "10", "SEMANTICS": "S", "EXTRA": {"SEMANTICS": "success"}},
 {"ID": "77", "ENTITY_ID": "DEAL_STAGE_10", "STATUS_ID": "C10:LOSE", "NAME": "Сделка провалена",
  "SORT": "70", "SYSTEM": "Y", "CATEGORY_ID": "10", "SEMANTICS": "F", "EXTRA": {"SEMANTICS": "failure"}}]
""")
# §2.2: crm.timeline.comment.list (all strings; FILES keyed by Drive id in the docs)
TIMELINE = json.loads("""
[{"ID": "999", "ENTITY_ID": "342", "ENTITY_TYPE": "deal", "CREATED": "2020-03-02T12:00:00+03:00",
  "COMMENT": "[B]Клиент (Okdesk #314599):[/B]\\nНужен счёт", "AUTHOR_ID": "1",
  "FILES": {"930": {"id": 930, "date": "2020-03-02T12:00:00+03:00", "type": "file", "name": "act.pdf",
            "size": 4149, "image": "N", "authorId": 1, "authorName": "Admin", "urlPreview": "",
            "urlShow": "/show", "urlDownload": "/download"}}},
 {"ID": "1000", "ENTITY_ID": "342", "ENTITY_TYPE": "deal", "CREATED": "2020-03-02T12:05:00+03:00",
  "COMMENT": "без файлов", "AUTHOR_ID": "17"},
 {"ID": "1001", "ENTITY_ID": "342", "ENTITY_TYPE": "deal", "CREATED": "2020-03-02T12:06:00+03:00",
  "COMMENT": "source shape", "AUTHOR_ID": "17", "FILES": ["931", 932]}]
""")
# §5.2: GET /equipments/{id}, the apidoc sample
EQUIPMENT = json.loads("""
{"id": 3, "serial_number": "1101040003532", "inventory_number": "51BKB835225", "comment": "…",
 "maintenance_entity_id": 15, "parent_id": 43,
 "equipment_kind": {"id": 24, "code": "laptop", "name": "Ноутбук", "description": ""},
 "equipment_manufacturer": null, "equipment_model": null,
 "company": {"id": 45, "name": "Интеллект+", "additional_name": null, "site": "…", "email": "…", "phone": "…",
             "address": "…", "comment": "", "attachments": []},
 "parameters": [{"code": "end_of_service_period", "name": "Дата окончания сервисного периода",
                 "field_type": "ftdate", "value": "2018-03-16"}],
 "agreements": [{"id": 2, "title": "Важный Договор"}]}
""")
# §5.1: the webhook issue block's equipment (kind named `type`), empty strings are common
WEBHOOK_EQUIPMENT = json.loads("""
{"id": 7, "serial_number": "", "inventory_number": "", "type": {"code": "printer", "name": "Принтер"},
 "manufacturer": null, "model": {"code": "m404", "name": "LaserJet M404"},
 "maintenance_entity": {"id": 16, "name": "Офис"}}
""")
ISSUE_FULL = json.loads("""
{"id": 153, "title": "Требуется мастер на выезд", "status": {"code": "opened", "name": "Открыта"},
 "updated_at": "2016-08-23T09:39:35.428+03:00", "company_id": 40, "equipment_ids": [3, 7],
 "contact": {"id": 3020, "name": "Егор Егоров"}, "agreement": {"id": 2, "title": "Важный Договор"}}
""")
ISSUE_LIST_ITEM = json.loads("""
{"id": 13, "title": "Printer does not work", "updated_at": "2024-08-22T09:10:00.000+07:00",
 "status": {"code": "opened", "name": "Открыта", "color": "#5cb85c"},
 "company": {"id": 2058, "name": "ООО Ромашка"}, "contact": {"id": 11771, "name": "Иван Петров"},
 "agreement": {"id": 5, "title": "Договор 12/24"},
 "equipments": [{"id": 3, "serial_number": "1101", "inventory_number": "51BKB",
                 "equipment_kind": {"code": "laptop", "name": "Ноутбук"},
                 "equipment_manufacturer": {"code": "hp", "name": "HP"}, "equipment_model": null}]}
""")


def test_a_deal_is_read_typed_with_its_marker():
    deal = parse_deal(parse_item(DEAL_ADDED, "crm.item.add"))
    assert (deal.id, deal.category_id, deal.stage_id, deal.semantics, deal.closed) == (342, 3, "C3:NEW", "P", False)
    assert deal.marker == DealMarker("okdesk", "314599") and deal.contact_ids == (11,) and deal.company_id == 5
    assert deal.opportunity == Decimal(0) and deal.created_at == datetime(2024, 7, 18, 14, 0, 14, tzinfo=PLUS2)
    assert deal.closedate == datetime(2024, 7, 25, 2, 0, tzinfo=PLUS2)


def test_a_deal_with_string_values_reads_the_same():
    # what classic methods (and a batch answer) print: numbers as strings
    stringly = {k: (str(v) if isinstance(v, int) else v) for k, v in DEAL_ADDED["item"].items()}
    stringly["contactIds"] = ["11"]
    assert parse_deal(stringly) == parse_deal(DEAL_ADDED["item"])


def test_a_deal_without_semantics_selected_reads_closed_from_closed():
    deal = parse_deal({"id": "1", "stageId": "WON", "closed": "Y", "companyId": 0, "contactIds": []})
    assert (deal.semantics, deal.closed, deal.company_id, deal.contact_ids, deal.marker) == ("", True, None, (), None)


@pytest.mark.parametrize(
    "broken",
    [{"stageSemanticId": "X"}, {"id": None}, {"opportunity": "much"}, {"contactIds": ["a"]}, {"movedTime": "soon"}],
)
def test_a_malformed_deal_names_the_field(broken):
    with pytest.raises(ParseError) as error:
        parse_deal(DEAL_ADDED["item"] | broken)
    assert next(iter(broken)) in str(error.value)


def test_deal_lists_read_items_and_refuse_other_shapes():
    assert [d.id for d in parse_deals({"items": [DEAL_ADDED["item"]]})] == [342]
    assert parse_deals({"items": []}) == [] and parse_deals([]) == []  # PHP prints an empty result as []
    with pytest.raises(ParseError):
        parse_deals({"items": {"0": 1}})


def test_pipelines_and_their_stages():
    pipelines = parse_pipelines(CATEGORIES)
    assert [(p.id, p.name, p.sort, p.is_default) for p in pipelines] == [
        (9, "Продажи", 200, False),
        (0, "General", 300, True),
    ]
    stages = parse_stages(DEAL_STAGES)
    assert [(s.id, s.semantics) for s in stages] == [
        ("C10:NEW", ""), ("C10:PREPAYMENT_INVOIC", ""), ("C10:WON", "S"), ("C10:LOSE", "F"),
    ]  # fmt: skip


def test_timeline_comments_read_both_files_shapes():
    comments = parse_timeline_comments(TIMELINE)
    assert [(c.id, c.owner_type, c.owner_id, c.author_id) for c in comments] == [
        (999, "deal", 342, 1), (1000, "deal", 342, 17), (1001, "deal", 342, 17),
    ]  # fmt: skip
    assert [c.file_ids for c in comments] == [(930,), (), (931, 932)]
    assert comments[0].created_at == datetime(2020, 3, 2, 12, 0, tzinfo=PLUS3)
    assert comments[0].text.startswith("[B]Клиент")
    with pytest.raises(ParseError):
        parse_timeline_comments([TIMELINE[0] | {"FILES": {"not-an-id": {}}}])


def test_a_crm_contact_keeps_its_emails_and_phones():
    contact = parse_contact(
        {"id": 11, "name": "Pavel", "lastName": "Orlov", "companyId": 5, "originatorId": None,
         "fm": [{"id": 1, "typeId": "EMAIL", "valueType": "WORK", "value": "pavel@example.com"},
                {"id": 2, "typeId": "PHONE", "valueType": "MOBILE", "value": "+7 900 000-00-00"},
                {"id": 3, "typeId": "WEB", "valueType": "WORK", "value": "example.com"}]}
    )  # fmt: skip
    assert (contact.id, contact.last_name, contact.company_id, contact.marker) == (11, "Orlov", 5, None)
    assert contact.emails == ("pavel@example.com",) and contact.phones == ("+7 900 000-00-00",)


def test_a_deal_marker_must_name_both_parts():
    with pytest.raises(ValueError):
        DealMarker("okbx", " ")


def test_equipment_from_the_apidoc_sample():
    item = parse_equipment(EQUIPMENT)
    assert (item.id, item.serial_number, item.inventory_number, item.parent_id) == (
        3,
        "1101040003532",
        "51BKB835225",
        43,
    )
    assert item.kind == EquipmentRef("laptop", "Ноутбук", 24) and item.manufacturer is None and item.model is None
    assert (item.company_id, item.company_name, item.maintenance_entity_id) == (45, "Интеллект+", 15)
    assert item.agreements == (Agreement(2, "Важный Договор"),) and item.agreement_ids == (2,)
    assert dict(item.parameters) == {"end_of_service_period": "2018-03-16"}
    assert item.display_name == "Ноутбук"


def test_equipment_in_a_webhook_and_in_an_issue_list_item():
    hooked = parse_equipment(WEBHOOK_EQUIPMENT)
    assert hooked.kind == EquipmentRef("printer", "Принтер") and hooked.model == EquipmentRef("m404", "LaserJet M404")
    assert hooked.maintenance_entity_id == 16 and hooked.display_name == "Принтер LaserJet M404"
    (brief,) = [parse_equipment(e) for e in ISSUE_LIST_ITEM["equipments"]]
    assert brief.manufacturer == EquipmentRef("hp", "HP") and brief.company_id is None and brief.agreements == ()
    assert parse_equipment({"id": 9}).display_name == "#9"


def test_equipment_search_answers_an_object_or_a_list():
    assert [e.id for e in parse_equipment_search(EQUIPMENT)] == [3]
    assert [e.id for e in parse_equipment_search([EQUIPMENT, WEBHOOK_EQUIPMENT])] == [3, 7]
    assert parse_equipment_search([]) == []
    with pytest.raises(ParseError):
        parse_equipment_list({"id": 3})
    with pytest.raises(ParseError):
        parse_equipment(EQUIPMENT | {"equipment_kind": "laptop"})


def test_an_issue_carries_its_equipment_agreement_and_contact():
    full = parse_issue(ISSUE_FULL)
    assert (full.equipment_ids, full.agreement, full.contact_id) == ((3, 7), Agreement(2, "Важный Договор"), 3020)
    (listed,) = parse_issue_list([ISSUE_LIST_ITEM])
    assert (listed.equipment_ids, listed.agreement, listed.contact_id) == ((3,), Agreement(5, "Договор 12/24"), 11771)
    silent = parse_issue({k: v for k, v in ISSUE_FULL.items() if k != "equipment_ids"} | {"agreement": None})
    assert silent.equipment_ids is None and silent.agreement is None  # not said is not "none"
    assert parse_issue(ISSUE_FULL | {"equipment_ids": []}).equipment_ids == ()
    with pytest.raises(ParseError):
        parse_issue(ISSUE_FULL | {"equipment_ids": ["x"]})
