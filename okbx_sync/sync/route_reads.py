"""What a page's routes need read besides issues and comments: the reads of reader.py, per target.

  a new deal (an issue entering a sales route)  -> whom it is for: the CRM company matched as
        billing matches it (core/companies.py: the map, originId, INN, exact name; no match or
        two is the issue's failure, never a guess), the company's responsible person, and the
        issue's contact where exactly one CRM contact of that company carries its Okdesk id
        (originId) or exactly its name (otherwise the deal is made without a contact)
  a new document task (`describe: equipment`)   -> the issue's equipment (one request per piece)
        and the company's equipment under the issue's service agreement (`/equipments/list`)
  a finishing task of a route quoting its result -> the task's comments (one batched request; the
        task chat, one task at a time, where the portal has the new task card)
  once per cycle, for each deal route            -> its pipeline's stages (`read_stages`)
A read that fails is that issue's read error (tried again next run); a match that fails is a
failure of the issue shown in `okbx status`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .. import keys
from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_crm import CrmClient, Stage
from ..clients.bitrix24_deals import DealsClient
from ..clients.okdesk import OkdeskClient
from ..clients.okdesk_equipment import EquipmentClient
from ..config import Config, RouteConfig
from ..core.companies import CompanyMatcher, Unmatched
from ..errors import ApiError
from ..model import Issue
from ..state.store import Link, LinkState
from . import routing
from .snapshot import DealParty, EquipmentSheet, Snapshot

log = logging.getLogger(__name__)


def read_stages(bitrix: Bitrix24Client, config: Config) -> dict[int, list[Stage] | str]:
    """Each deal route's pipeline and its stages; a pipeline that cannot be read says why."""
    found: dict[int, list[Stage] | str] = {}
    for route in config.routes:
        pipeline = route.target.pipeline_id
        if route.kind != "deal" or pipeline is None or pipeline in found:
            continue
        try:
            stages = DealsClient(bitrix).stages(pipeline)
            found[pipeline] = stages or f"pipeline {pipeline} has no stages the webhook user can read"
        except ApiError as error:
            found[pipeline] = f"cannot read the stages of pipeline {pipeline}: {error}"
    return found


@dataclass
class RouteReads:
    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    config: Config
    matcher: CompanyMatcher | None = None
    stages: dict[int, list[Stage] | str] | None = None  # read once per cycle, when a page needs them

    @classmethod
    def of(cls, okdesk: OkdeskClient, bitrix: Bitrix24Client, config: Config) -> RouteReads:
        return cls(okdesk, bitrix, config, CompanyMatcher(okdesk, CrmClient(bitrix), config.billing))

    def read(self, snap: Snapshot, links: dict[int, Link], completing: list[Link]) -> None:
        entering: list[int] = []
        for issue_id, issue in sorted(snap.issues.items()):
            if issue is None or issue_id in snap.errors:
                continue
            listed = snap.handoff.get(issue_id)
            route = routing.route_of(issue, self.config, listed.status) if listed is not None else None
            if route is None or not _entering(links.get(issue_id), route):
                continue
            try:
                if route.kind == "deal":
                    entering.append(issue_id)
                    snap.parties[issue_id] = self.party(issue)
                elif route.target.describe == "equipment":
                    snap.equipment[issue_id] = self.equipment(issue)
            except ApiError as error:
                snap.errors[issue_id] = f"reading what route {route.name} needs failed: {error}"
        self._results(snap, completing)
        if entering or any(link.target == "deal" for link in completing):  # a deal is made, or finished
            if self.stages is None:
                self.stages = read_stages(self.bitrix, self.config)
            snap.stages.update(self.stages)

    def party(self, issue: Issue) -> DealParty | str:
        assert self.matcher is not None
        if issue.company_id is None:
            return "the issue has no client company to make the deal for"
        try:
            company_id = self.matcher.crm_company(issue.company_id)
        except Unmatched as unmatched:
            return f"{unmatched} (billing.company_map, or the CRM company's originId, INN or name)"
        company = self.matcher.crm.company(company_id)
        return DealParty(company_id, self._contact(issue, company_id), company.assigned_by_id if company else None)

    def _contact(self, issue: Issue, company_id: int) -> tuple[int, ...]:
        """The issue's contact among the CRM company's contacts: its Okdesk id (originId), else
        exactly its name, else none (the deal is made without a contact, never with a guess)."""
        if issue.contact_id is None:
            return ()
        contacts = DealsClient(self.bitrix).contacts({"=companyId": company_id})
        origin = self.matcher.origin_source if self.matcher else "okdesk"
        by_origin = [c.id for c in contacts if c.marker and c.marker.fields() == _origin(origin, issue.contact_id)]
        if len(by_origin) == 1:
            return (by_origin[0],)
        name = " ".join((issue.contact or "").split())
        by_name = [
            c.id
            for c in contacts
            if name
            and name in (" ".join(f"{c.name} {c.last_name}".split()), " ".join(f"{c.last_name} {c.name}".split()))
        ]
        return (by_name[0],) if len(by_name) == 1 else ()

    def equipment(self, issue: Issue) -> EquipmentSheet:
        kit = EquipmentClient(self.okdesk)
        pieces = tuple(kit.many(issue.equipment_ids or ()))
        if issue.agreement is None or issue.company_id is None:
            return EquipmentSheet(issue.agreement, pieces)
        covered = kit.listing(company_ids=[issue.company_id], agreement_ids=[issue.agreement.id])
        return EquipmentSheet(issue.agreement, pieces, tuple(covered))

    def _results(self, snap: Snapshot, completing: list[Link]) -> None:
        """The last comment a person wrote in each finishing task of a route that quotes it."""
        wanted = []
        for link in completing:
            route = self.config.route(link.route)
            if route is not None and route.flows.result_comment and link.on_task and link.task_id:
                wanted.append(link.task_id)
        if not wanted:
            return
        try:
            listed = self.bitrix.comments_of_tasks(wanted)
        except ApiError as error:  # the report goes without the quote rather than not at all
            log.warning("could not read the comments of %s finished tasks: %s", len(wanted), error)
            return
        for task_id in wanted:  # refused or empty: on the new task card the comments are the task chat's
            if not listed.get(task_id):
                try:
                    listed[task_id] = self.bitrix.list_comments(task_id)
                except ApiError as error:
                    log.warning("could not read the comments of finished task %s: %s", task_id, error)
        bot = self.bitrix.webhook_user()
        for task_id, comments in listed.items():
            task = snap.tasks.get(task_id)
            closed = task.closed_at if task is not None else None
            # Bitrix24 lists its service comments (the completion itself) among the people's and
            # documents no way to tell them apart (bitrix24.md 4.1): the result is the last comment
            # of someone other than okbx written before the task was completed (inferred).
            people = [
                c
                for c in comments
                if c.author_id not in (bot, 0)
                and keys.in_bbcode(c.text) is None
                and c.text.strip()
                and (closed is None or c.posted_at is None or c.posted_at < closed)
            ]
            if people:
                snap.results[task_id] = max(people, key=lambda c: c.id).text


def _entering(link: Link | None, route: RouteConfig) -> bool:
    """Will the issue get a new target of this route (so what making it needs is read)?"""
    if link is None or link.route != route.name or link.task_id is None:
        return True
    return route.kind == "deal" and link.state != LinkState.ACTIVE  # a deal per handoff


def _origin(source: str, contact_id: int) -> dict[str, str]:
    return {"originatorId": source, "originId": str(contact_id)}
