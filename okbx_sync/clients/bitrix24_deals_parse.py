"""Pure parsers from Bitrix24 deal, pipeline, contact and timeline JSON to our model.

Facts used (../shared/api/routes-files.md §1-§2): `crm.item.*` answers typed values (ids and
amounts as numbers, booleans `"Y"`/`"N"`), but numbers as strings are read too, as in every
classic method; `stageSemanticId` is `P`/`S`/`F`; `crm.category.list` answers
`{"categories": [...]}`; timeline comments are all strings, `ENTITY_TYPE` lowercase, and `FILES`
(present only with files) is an object keyed by Drive id in the docs and a list of ids in the
source: both are read.  A deal's okbx marker is its `originatorId`/`originId` pair (deals have no
`xmlId`, §1.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .parse import ParseError, integer, items, obj, opt_integer, text, timestamp

SEMANTICS = ("P", "S", "F")  # in progress, success, failure


@dataclass(frozen=True)
class DealMarker:
    """okbx's mark on a deal it made: `originatorId` (the installation) and `originId` (the key)."""

    originator_id: str
    origin_id: str

    def __post_init__(self) -> None:
        if not self.originator_id.strip() or not self.origin_id.strip():
            raise ValueError("a deal marker needs a non-empty originator_id and origin_id")

    def fields(self) -> dict[str, str]:
        return {"originatorId": self.originator_id, "originId": self.origin_id}


@dataclass(frozen=True)
class Deal:
    id: int
    title: str
    category_id: int
    stage_id: str
    semantics: str  # "P" in progress, "S" won, "F" lost; "" when not selected
    closed: bool
    company_id: int | None = None
    contact_ids: tuple[int, ...] = ()
    assigned_by_id: int | None = None
    opportunity: Decimal | None = None
    currency: str = ""
    comments: str = ""
    marker: DealMarker | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    updated_by: int | None = None
    moved_at: datetime | None = None
    moved_by: int | None = None
    last_activity_at: datetime | None = None
    last_activity_by: int | None = None
    closedate: datetime | None = None


@dataclass(frozen=True)
class Pipeline:
    id: int
    name: str
    sort: int
    is_default: bool


@dataclass(frozen=True)
class TimelineComment:
    id: int
    owner_type: str  # "deal", "contact", "company", ...
    owner_id: int
    author_id: int
    created_at: datetime | None
    text: str
    file_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class CrmContact:
    id: int
    name: str
    last_name: str = ""
    second_name: str = ""
    company_id: int | None = None
    marker: DealMarker | None = None  # originatorId/originId, when another system set them
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()


def parse_deal(raw: Any) -> Deal:
    data = obj(raw, "deal")
    what = f"deal {data.get('id', '?')}"
    semantics = text(data, "stageSemanticId", what, default="")
    if semantics not in ("", *SEMANTICS):
        raise ParseError(f"{what}.stageSemanticId: unexpected {semantics!r}")
    closed = text(data, "closed", what, default="")
    return Deal(
        id=integer(data, "id", what),
        title=text(data, "title", what, default=""),
        category_id=opt_integer(data, "categoryId", what) or 0,
        stage_id=text(data, "stageId", what),
        semantics=semantics,
        closed=closed == "Y" if closed else semantics in ("S", "F"),
        company_id=opt_integer(data, "companyId", what) or None,  # 0 also means "no company"
        contact_ids=_ids(data, "contactIds", what) or _ids(data, "contactId", what),
        assigned_by_id=opt_integer(data, "assignedById", what),
        opportunity=_amount(data, "opportunity", what),
        currency=text(data, "currencyId", what, default=""),
        comments=text(data, "comments", what, default=""),
        marker=_marker(data, what),
        created_at=timestamp(data, "createdTime", what),
        updated_at=timestamp(data, "updatedTime", what),
        updated_by=opt_integer(data, "updatedBy", what),
        moved_at=timestamp(data, "movedTime", what),
        moved_by=opt_integer(data, "movedBy", what),
        last_activity_at=timestamp(data, "lastActivityTime", what),
        last_activity_by=opt_integer(data, "lastActivityBy", what),
        closedate=timestamp(data, "closedate", what),
    )


def parse_item(raw: Any, what: str) -> Any:
    """`result.item` of crm.item.add/get/update."""
    return obj(raw, what).get("item")


def parse_items(raw: Any, what: str) -> list[Any]:
    """`result.items` of crm.item.list."""
    return items(obj(raw, what).get("items", []), f"{what}.items")


def parse_deals(raw: Any) -> list[Deal]:
    return [parse_deal(row) for row in parse_items(raw, "crm.item.list")]


def parse_pipelines(raw: Any) -> list[Pipeline]:
    result = []
    for row in items(obj(raw, "crm.category.list").get("categories", []), "categories"):
        data = obj(row, "category")
        what = f"category {data.get('id', '?')}"
        result.append(
            Pipeline(
                id=integer(data, "id", what),
                name=text(data, "name", what, default=""),
                sort=opt_integer(data, "sort", what) or 0,
                is_default=data.get("isDefault") in ("Y", True),
            )
        )
    return result


def parse_timeline_comment(raw: Any) -> TimelineComment:
    data = obj(raw, "timeline comment")
    what = f"timeline comment {data.get('ID', '?')}"
    return TimelineComment(
        id=integer(data, "ID", what),
        owner_type=text(data, "ENTITY_TYPE", what, default="").lower(),
        owner_id=integer(data, "ENTITY_ID", what),
        author_id=opt_integer(data, "AUTHOR_ID", what) or 0,
        created_at=timestamp(data, "CREATED", what),
        text=text(data, "COMMENT", what, default=""),
        file_ids=_file_ids(data.get("FILES"), what),
    )


def parse_timeline_comments(raw: Any) -> list[TimelineComment]:
    return [parse_timeline_comment(row) for row in items(raw, "crm.timeline.comment.list")]


def parse_contact(raw: Any) -> CrmContact:
    data = obj(raw, "contact")
    what = f"contact {data.get('id', '?')}"
    channels: dict[str, list[str]] = {"EMAIL": [], "PHONE": []}
    for entry in [] if data.get("fm") is None else items(data["fm"], f"{what}.fm"):
        channel = obj(entry, f"{what}.fm[]")
        kind = text(channel, "typeId", f"{what}.fm[]", default="").upper()
        value = text(channel, "value", f"{what}.fm[]", default="").strip()
        if kind in channels and value:
            channels[kind].append(value)
    return CrmContact(
        id=integer(data, "id", what),
        name=text(data, "name", what, default=""),
        last_name=text(data, "lastName", what, default=""),
        second_name=text(data, "secondName", what, default=""),
        company_id=opt_integer(data, "companyId", what) or None,
        marker=_marker(data, what),
        emails=tuple(channels["EMAIL"]),
        phones=tuple(channels["PHONE"]),
    )


def _ids(data: dict[str, Any], key: str, what: str) -> tuple[int, ...]:
    value = data.get(key)
    if value in (None, "", [], {}, 0, "0"):
        return ()
    values = value if isinstance(value, list) else [value]
    return tuple(integer({key: v}, key, what) for v in values)


def _amount(data: dict[str, Any], key: str, what: str) -> Decimal | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ParseError(f"{what}.{key}: not a number: {str(value)[:30]!r}") from None
    if not amount.is_finite():
        raise ParseError(f"{what}.{key}: not a finite number")
    return amount


def _marker(data: dict[str, Any], what: str) -> DealMarker | None:
    originator = text(data, "originatorId", what, default="").strip()
    origin = text(data, "originId", what, default="").strip()
    return DealMarker(originator, origin) if originator and origin else None


def _file_ids(raw: Any, what: str) -> tuple[int, ...]:
    if raw in (None, "", [], {}):
        return ()
    if isinstance(raw, dict):  # the docs: {"<drive id>": {id, name, ...}}
        return tuple(integer({"FILES": key}, "FILES", what) for key in raw)
    return tuple(integer({"FILES": v}, "FILES", what) for v in items(raw, f"{what}.FILES"))
