"""Bitrix24 verbs for the sales route: deals, pipelines and stages, CRM contacts, timeline comments.

Facts used (../shared/api/routes-files.md §1-§2, crm-billing.md §2.3): deals are `crm.item.*`
with `entityTypeId: 2` in every call; they have no `xmlId`, so okbx's marker is the
`originatorId`/`originId` pair, which has no uniqueness check: okbx looks for it before every
add.  That the pair is filterable, exactly, is inferred (§9.1): every answer is checked here, and
a portal found to ignore the filter is searched deal by deal instead.  Lists page by 50; for
long ones okbx pages by `>id` with `start: -1` (no count).  Stages come from `crm.status.list`
(`DEAL_STAGE` for pipeline 0, `DEAL_STAGE_<n>` otherwise): stage ids are read, never built.
Timeline comments take lowercase `fields`, filter only by owner, and are read newest first
(`order: {"ID": "DESC"}`) until an id okbx has seen.  Reads and writes go through the task
client's transport, request budget and `batch` (50 commands a request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from ..errors import ApiError, MalformedResponse
from .bitrix24 import PAGE, SYSTEM, Bitrix24Client
from .bitrix24_crm import Stage, parse_stages
from .bitrix24_deals_parse import (
    CrmContact,
    Deal,
    DealMarker,
    Pipeline,
    TimelineComment,
    parse_contact,
    parse_deal,
    parse_deals,
    parse_item,
    parse_items,
    parse_pipelines,
    parse_timeline_comments,
)
from .parse import ParseError

log = logging.getLogger(__name__)
DEAL, CONTACT = 2, 3
DEAL_SELECT = [
    "id", "title", "categoryId", "stageId", "stageSemanticId", "closed", "companyId", "contactIds",
    "assignedById", "opportunity", "currencyId", "comments", "originatorId", "originId", "createdTime",
    "updatedTime", "updatedBy", "movedTime", "movedBy", "lastActivityTime", "lastActivityBy", "closedate",
]  # fmt: skip
_MARKER_FIELDS = ("originatorId", "originId")
_MAX_PAGES = 10_000


class DealsClient:
    """The sales-route verbs, over the same transport (and request budget) as the task client."""

    def __init__(self, bitrix: Bitrix24Client) -> None:
        self.bitrix = bitrix

    def _parse(self, method: str, parser: Callable[..., Any], *args: Any) -> Any:
        try:
            return parser(*args)
        except ParseError as exc:
            raise MalformedResponse(SYSTEM, method, str(exc)) from None

    # -- deals: writes ------------------------------------------------------------------------
    def add_deal(self, fields: dict[str, Any], marker: DealMarker) -> Deal:
        """Create a deal carrying okbx's marker (look for it first: `deals_by_marker`)."""
        raw = self.bitrix.call("crm.item.add", _add_params(fields, marker), write=True)
        return self._made(raw, marker)

    def add_deals(
        self, drafts: dict[str, tuple[dict[str, Any], DealMarker]]
    ) -> tuple[dict[str, Deal], dict[str, ApiError]]:
        """Up to 50 deals per request (`batch`), by the caller's key."""
        commands = {key: ("crm.item.add", _add_params(f, m)) for key, (f, m) in drafts.items()}
        results, errors = self.bitrix.batch(commands, write=True)
        made: dict[str, Deal] = {}
        for key, raw in results.items():
            try:
                made[key] = self._made(raw, drafts[key][1])
            except MalformedResponse as error:  # one bad answer does not hide the others' deals
                errors[key] = error
        return made, errors

    def update_deal(self, deal_id: int, fields: dict[str, Any]) -> Deal:
        """Change fields (a pipeline move needs `categoryId` and `stageId` together); never the marker."""
        if set(fields) & set(_MARKER_FIELDS):
            raise ValueError("update_deal() must not change the deal's marker (originatorId/originId)")
        method = "crm.item.update"
        raw = self.bitrix.call(method, {"entityTypeId": DEAL, "id": int(deal_id), "fields": fields}, write=True)
        deal: Deal = self._parse(method, lambda r: parse_deal(parse_item(r, method)), raw)
        return deal

    def _made(self, raw: Any, marker: DealMarker) -> Deal:
        method = "crm.item.add"
        deal: Deal = self._parse(method, lambda r: parse_deal(parse_item(r, method)), raw)
        if deal.marker != marker:  # without it the deal could never be found again: say so loudly
            raise MalformedResponse(SYSTEM, method, f"deal {deal.id} was made without okbx's marker {marker}")
        return deal

    # -- deals: reads -------------------------------------------------------------------------
    def get_deal(self, deal_id: int) -> Deal | None:
        """The deal, or None when it does not exist (`NOT_FOUND`); no right to read it is an error."""
        method = "crm.item.get"
        try:
            raw = self.bitrix.call(method, {"entityTypeId": DEAL, "id": int(deal_id)})
        except ApiError as error:
            if error.code == "NOT_FOUND":
                return None
            raise
        deal: Deal = self._parse(method, lambda r: parse_deal(parse_item(r, method)), raw)
        if deal.id != int(deal_id):
            raise MalformedResponse(SYSTEM, method, f"asked for deal {deal_id}, the answer is about {deal.id}")
        return deal

    def deals_by_id(self, deal_ids: Iterable[int]) -> tuple[dict[int, Deal], dict[int, ApiError]]:
        """Current state of many deals: 50 ids per command, 50 commands per request."""
        ids = sorted({int(i) for i in deal_ids})
        chunks = {f"d{n}": ids[n : n + PAGE] for n in range(0, len(ids), PAGE)}
        commands = {key: ("crm.item.list", _list_params({"@id": chunk}, start=-1)) for key, chunk in chunks.items()}
        results, errors = self.bitrix.batch(commands)
        found = {deal.id: deal for raw in results.values() for deal in self._parse("crm.item.list", parse_deals, raw)}
        failed = {deal_id: error for key, error in errors.items() for deal_id in chunks[key]}
        return {i: d for i, d in found.items() if i in ids}, failed

    def deals_by_marker(self, markers: Iterable[DealMarker]) -> dict[DealMarker, list[Deal]]:
        """The deals carrying each marker (the look before a write), one command per marker.

        A marker whose lookup failed is missing from the answer (its action looks again alone).
        If the portal answered deals without the marker, it ignores the filter (inferred fact):
        those markers are then searched among all of okbx's deals by `originatorId`, checked here.
        """
        wanted = sorted(set(markers), key=lambda m: (m.originator_id, m.origin_id))
        commands = {f"m{n}": ("crm.item.list", _list_params(_marker_filter(m))) for n, m in enumerate(wanted)}
        results, _ = self.bitrix.batch(commands)
        found: dict[DealMarker, list[Deal]] = {}
        unfiltered: list[DealMarker] = []
        for key, marker in zip(commands, wanted, strict=True):
            if key in results:
                deals = self._parse("crm.item.list", parse_deals, results[key])
                found[marker] = [d for d in deals if d.marker == marker]
                if len(found[marker]) < len(deals):
                    unfiltered.append(marker)
        if unfiltered:
            log.warning(
                "Bitrix24 ignores the originId filter on deals: searching %d markers one by one", len(unfiltered)
            )
            for originator in {m.originator_id for m in unfiltered}:
                scanned = self._all_deals({"=originatorId": originator})
                for marker in (m for m in unfiltered if m.originator_id == originator):
                    found[marker] = [d for d in scanned if d.marker == marker]
        return found

    def deals_changed_since(
        self, since: datetime, *, field: str = "updatedTime", originator_id: str | None = None
    ) -> list[Deal]:
        """Deals whose `field` (`updatedTime`, or `movedTime` for stage changes) is at or after
        `since`, optionally only okbx's; callers overlap their windows (§1.6)."""
        if field not in ("updatedTime", "movedTime", "lastActivityTime"):
            raise ValueError(f"not a change field: {field}")
        filter_: dict[str, Any] = {f">={field}": since.replace(microsecond=0).isoformat()}
        if originator_id is not None:
            filter_["=originatorId"] = originator_id
        deals = self._all_deals(filter_)
        if originator_id is not None:
            deals = [d for d in deals if d.marker is not None and d.marker.originator_id == originator_id]
        return deals

    def _all_deals(self, filter_: dict[str, Any]) -> list[Deal]:
        """Every deal matching, paged by `>id` without counting (the large-set pattern)."""
        deals: list[Deal] = []
        last_id = 0
        for _ in range(_MAX_PAGES):
            raw = self.bitrix.call("crm.item.list", _list_params({**filter_, ">id": last_id}, start=-1))
            page: list[Deal] = self._parse("crm.item.list", parse_deals, raw)
            deals.extend(page)
            if len(page) < PAGE:
                return deals
            following = max(d.id for d in page)
            if following <= last_id:
                raise MalformedResponse(SYSTEM, "crm.item.list", "paging by >id does not move forward")
            last_id = following
        raise MalformedResponse(SYSTEM, "crm.item.list", "paging does not end")

    # -- pipelines and stages -----------------------------------------------------------------
    def pipelines(self) -> list[Pipeline]:
        """The deal pipelines the webhook user may read, as the portal sorts them."""
        method = "crm.category.list"
        pipelines: list[Pipeline] = self._parse(
            method, parse_pipelines, self.bitrix.call(method, {"entityTypeId": DEAL})
        )
        return pipelines

    def stages(self, category_id: int) -> list[Stage]:
        method = "crm.status.list"
        entity = "DEAL_STAGE" if int(category_id) == 0 else f"DEAL_STAGE_{int(category_id)}"
        raw = self.bitrix.call(method, {"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}})
        stages: list[Stage] = self._parse(method, parse_stages, raw)
        return stages

    # -- contacts -----------------------------------------------------------------------------
    def contacts(self, filter_: dict[str, Any]) -> list[CrmContact]:
        """CRM contacts matching the filter, with their e-mails and phones (`select: ["*"]`)."""
        method = "crm.item.list"
        found: list[CrmContact] = []
        last_id = 0
        for _ in range(_MAX_PAGES):
            params = {"entityTypeId": CONTACT, "select": ["*"], "filter": {**filter_, ">id": last_id}}
            raw = self.bitrix.call(method, params | {"order": {"id": "ASC"}, "start": -1})
            page: list[CrmContact] = self._parse(
                method, lambda r: [parse_contact(x) for x in parse_items(r, method)], raw
            )
            found.extend(page)
            if len(page) < PAGE:
                return found
            last_id = max(c.id for c in page)
        raise MalformedResponse(SYSTEM, method, "paging does not end")

    # -- timeline comments --------------------------------------------------------------------
    def add_comment(self, deal_id: int, text: str, *, author_id: int | None = None) -> int:
        """A comment in the deal's timeline (BB-code; its marker inside the text); returns its id."""
        method = "crm.timeline.comment.add"
        raw = self.bitrix.call(method, {"fields": _comment_fields(deal_id, text, author_id)}, write=True)
        new_id: int = self._parse(method, _comment_id, raw)
        return new_id

    def add_comments(
        self, comments: dict[str, tuple[int, str]], *, author_id: int | None = None
    ) -> tuple[dict[str, int], dict[str, ApiError]]:
        """(deal id, text) by the caller's key: up to 50 comments per request (`batch`)."""
        commands = {
            key: ("crm.timeline.comment.add", {"fields": _comment_fields(deal_id, text, author_id)})
            for key, (deal_id, text) in comments.items()
        }
        results, errors = self.bitrix.batch(commands, write=True)
        return {key: self._parse("crm.timeline.comment.add", _comment_id, raw) for key, raw in results.items()}, errors

    def comments(self, deal_id: int, *, after_id: int = 0) -> list[TimelineComment]:
        """The deal's comments newer than `after_id` (all by default), oldest first."""
        found: dict[int, TimelineComment] = {}
        for start in range(0, _MAX_PAGES * PAGE, PAGE):
            page = self._comment_page(deal_id, start)
            found.update((c.id, c) for c in page if c.id > after_id)
            if len(page) < PAGE or min(c.id for c in page) <= after_id:
                return sorted(found.values(), key=lambda c: c.id)
        raise MalformedResponse(SYSTEM, "crm.timeline.comment.list", "paging does not end")

    def comments_of_deals(self, deal_ids: Iterable[int]) -> dict[int, list[TimelineComment]]:
        """Every comment of each deal: the first pages of 50 deals per request (`batch`), the
        rest deal by deal.  A deal whose read failed is missing (its action reads it alone)."""
        ids = sorted({int(i) for i in deal_ids})
        commands = {f"c{d}": ("crm.timeline.comment.list", _comments_params(d, 0)) for d in ids}
        results, _ = self.bitrix.batch(commands)
        found: dict[int, list[TimelineComment]] = {}
        for deal_id in ids:
            if f"c{deal_id}" not in results:
                continue
            page = self._parse("crm.timeline.comment.list", parse_timeline_comments, results[f"c{deal_id}"])
            found[deal_id] = sorted(page, key=lambda c: c.id) if len(page) < PAGE else self.comments(deal_id)
        return found

    def _comment_page(self, deal_id: int, start: int) -> list[TimelineComment]:
        method = "crm.timeline.comment.list"
        page: list[TimelineComment] = self._parse(
            method, parse_timeline_comments, self.bitrix.call(method, _comments_params(deal_id, start))
        )
        return page


def _add_params(fields: dict[str, Any], marker: DealMarker) -> dict[str, Any]:
    clash = {k: fields[k] for k in _MARKER_FIELDS if k in fields and fields[k] != marker.fields()[k]}
    if clash:
        raise ValueError(f"deal fields contradict okbx's marker: {clash}")
    return {"entityTypeId": DEAL, "fields": {**fields, **marker.fields()}}


def _list_params(filter_: dict[str, Any], *, start: int = 0) -> dict[str, Any]:
    return {"entityTypeId": DEAL, "select": DEAL_SELECT, "filter": filter_, "order": {"id": "ASC"}, "start": start}


def _marker_filter(marker: DealMarker) -> dict[str, Any]:
    return {"=originatorId": marker.originator_id, "=originId": marker.origin_id}


def _comment_fields(deal_id: int, text: str, author_id: int | None) -> dict[str, Any]:
    fields: dict[str, Any] = {"ENTITY_ID": int(deal_id), "ENTITY_TYPE": "deal", "COMMENT": text}
    if author_id is not None:  # absent: the webhook's user (source: no check on posting as another)
        fields["AUTHOR_ID"] = int(author_id)
    return fields


def _comments_params(deal_id: int, start: int) -> dict[str, Any]:
    # always an order: without one the database order applies (§2.2)
    return {"filter": {"ENTITY_ID": int(deal_id), "ENTITY_TYPE": "deal"}, "order": {"ID": "DESC"}, "start": start}


def _comment_id(raw: Any) -> int:
    if isinstance(raw, bool) or not str(raw).isdigit():
        raise ParseError(f"crm.timeline.comment.add: expected the new comment's id, got {str(raw)[:30]!r}")
    return int(str(raw))
