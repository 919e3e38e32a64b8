"""A Bitrix24 CRM deal as a route's target: the sales department's route.

One deal per handoff (`crm.item.add`, entityTypeId 2) in the route's pipeline and first stage
(or `stage_id`), for the issue's client company as billing matches it (never a guess: no match or
two is a failure of the issue), with its contact where one matches exactly, assigned to the
route's user or the company's responsible person.  Deals have no xmlId: okbx's marker is the
`originatorId`/`originId` pair (`okbx`, `okdesk:<issue>:<handoff>:<route>`), looked for before
every add (routes-files.md 1.4; that the pair filters exactly is inferred, and every answer is
checked again by the client).  Comments go to the deal's timeline, each found again by its
marker.  Finished: a stage whose semantics is S (won) or F (lost); the issue then gets one note,
"Deal won: 120 000 RUB" or "Deal lost: <stage>", with the status return.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ... import keys
from ...clients.bitrix24_crm import date_param
from ...clients.bitrix24_deals import DealsClient
from ...clients.bitrix24_deals_parse import Deal, DealMarker
from ...config import Config, RouteConfig
from ...core.action import Action, Context, Effect, Found, OpRecord
from ...core.notes import note_html
from ...core.plan import Blocked
from ...errors import ApiError
from ...model import Comment, Issue
from ...state import lifecycle
from ...state.lifecycle import Entry, Link, Track
from .. import rebuild, render, render_routes
from ..completion import report_back
from ..drift import FINAL, renumbered
from ..issue_writes import PostLinkComment, PostReport
from ..snapshot import Snapshot, StateView
from .base import MISSING
from .task import deadline_of

if TYPE_CHECKING:
    from ...state.store import Op


def deals(ctx: Context) -> DealsClient:
    return DealsClient(ctx.bitrix)


def deal_marker(issue_id: int, cycle: int, route: str) -> DealMarker:
    return DealMarker(keys.DEAL_ORIGINATOR, keys.deal_origin(issue_id, cycle, route))


class DealTarget:
    kind = "deal"
    label = "deal"

    def create(
        self, route: RouteConfig, issue: Issue, cycle: int, entry: Entry, snap: Snapshot, config: Config, now: datetime
    ) -> Action | Blocked:
        target = route.target
        pipeline = target.pipeline_id or 0
        stages = snap.stages.get(pipeline, "the pipeline's stages were not read")
        party = snap.parties.get(issue.id, "the client company was not matched yet")
        if isinstance(stages, str) or isinstance(party, str):
            why = stages if isinstance(stages, str) else party
            transient = isinstance(stages, str) or issue.id not in snap.parties
            return Blocked(issue.id, Track.ROUTE, "deal", f"no deal made: {why}", transient=transient)
        first = next((s.id for s in stages if not s.semantics), None)
        stage = target.stage_id or first
        if stage is None or stage not in {s.id for s in stages}:
            why = f"stage {stage!r} is not in pipeline {pipeline} (routes.{route.name}.target.stage_id)"
            return Blocked(issue.id, Track.ROUTE, "deal", f"no deal made: {why}")
        if any(s.id == stage and s.semantics for s in stages):  # a deal made there would be over at once
            why = f"stage {stage!r} is a final stage (won or lost) of pipeline {pipeline}"
            why += f" (routes.{route.name}.target.stage_id)"
            return Blocked(issue.id, Track.ROUTE, "deal", f"no deal made: {why}")
        fields: dict[str, Any] = {
            "title": render_routes.deal_title(issue),
            "categoryId": pipeline,  # always with a stage of its own: the pair is never re-picked (1.3)
            "stageId": stage,
            "companyId": party.company_id,
            "currencyId": target.currency,
            "comments": render_routes.deal_comments(issue, config.okdesk.url),
        }
        if party.contact_ids:
            fields["contactIds"] = list(party.contact_ids)
        if assignee := target.assigned_by_id or party.assigned_by_id:
            fields["assignedById"] = assignee
        if deadline := deadline_of(route, issue, now):
            fields["closedate"] = date_param(deadline.date())
        return CreateDeal(issue.id, issue=issue, cycle=cycle, route=route.name, fields=fields, entry=entry)

    def adopt_only(self, create: Action) -> Action:
        assert isinstance(create, CreateDeal)
        return replace(create, adopt_only=True)

    def adopt_only_made(self, route: RouteConfig, issue: Issue, cycle: int, link: Link) -> Action:
        entry = Entry(route.name, "deal", link.previous_status)
        return CreateDeal(issue.id, issue=issue, cycle=cycle, route=route.name, fields={}, entry=entry, adopt_only=True)

    def link_comment(self, issue_id: int, cycle: int, route: RouteConfig, entry: Entry) -> Action:
        said = keys.LinkCommentKey.of(issue_id, cycle, route.name, entry.previous_status)
        return PostDealLink(issue_id, task_cycle=cycle, said=said)

    def forward(self, issue_id: int, cycle: int, comment: Comment, text: str) -> Action:
        return ForwardToDeal(issue_id, comment=comment, task_cycle=cycle, text=text)

    def note(self, issue_id: int, key: keys.TaskNoteKey, text: str) -> Action:
        return DealNote(issue_id, note=key, text=render.task_note(text, key.marker))

    def current(self, link: Link, snap: Snapshot) -> object:

        return snap.deals.get(link.task_id or 0, MISSING)

    def finished(self, current: object, config: Config) -> bool:
        return isinstance(current, Deal) and (current.semantics in FINAL or current.closed)

    def completion(
        self, link: Link, route: RouteConfig, issue: Issue, snap: Snapshot, state: StateView, config: Config
    ) -> list[Action] | None:
        deal = snap.deals.get(link.task_id or 0)
        if deal is None:
            return None
        stages = snap.stages.get(deal.category_id)
        stage = next((s for s in stages if s.id == deal.stage_id), None) if isinstance(stages, list) else None
        semantics = deal.semantics or (stage.semantics if stage else "")
        result = render_routes.deal_result(
            semantics == "S", deal.opportunity, deal.currency, stage.name if stage else deal.stage_id, deal.id
        )
        report = keys.SummaryKey(link.issue_id, link.cycle)

        def report_of(footer: str, return_owed: bool) -> PostReport:
            draft = PostReport(link.issue_id, report=report, return_owed=return_owed)
            text = render_routes.result_note(f"Route {route.name}: {result}", None, footer)
            return PostReport(
                link.issue_id,
                report=report,
                html=note_html(text, draft.marker),
                public=route.flows.summary_public,
                return_owed=return_owed,
                target=(route.name, "deal", deal.id),
                note=result,
            )

        back = f"Back from route {route.name}: Bitrix24 deal #{deal.id} is closed."
        return report_back(link, route, issue, report_of, back, snap, state, config)


DEAL = DealTarget()


# -- the action kinds ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CreateDeal(Action):
    issue: Issue
    cycle: int
    route: str
    fields: dict[str, object] = field(hash=False, compare=False)
    entry: Entry = lifecycle.DEFAULT_ENTRY
    adopt_only: bool = False  # the issue left the route's status: adopt a deal already made, create none
    kind: ClassVar[str] = "deal"
    side: ClassVar[str] = "Bitrix24"

    @property
    def ref(self) -> keys.Key:
        return keys.TaskKey(self.issue_id, self.cycle)  # the target of this handoff

    @property
    def deal_marker(self) -> DealMarker:
        return deal_marker(self.issue_id, self.cycle, self.route)

    @property
    def detail(self) -> str:
        return f"deal '{self.fields.get('title', '')}' in pipeline {self.fields.get('categoryId')}"

    def prepare(self, ctx: Context) -> None:
        link = ctx.store.link(self.issue_id)
        if link is None or link.state != "active" or link.cycle != self.cycle:
            change = lifecycle.handed_off(self.issue_id, self.cycle, self.issue.status, existing=link, entry=self.entry)
            ctx.store.apply(change)

    def op_record(self) -> OpRecord:
        return OpRecord(self.cycle, None, {"detail": self.detail, "route": self.route})

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        # Always looked for, whatever the store says: a lost answer, a lost store, a second installation.
        marker = self.deal_marker
        looked = ctx.deals_by_marker.pop(marker, None)
        found = deals(ctx).deals_by_marker([marker]).get(marker, []) if looked is None else looked
        mine = sorted((d for d in found if isinstance(d, Deal) and d.marker == marker), key=lambda d: d.id)
        if mine:
            return Found(str(mine[0].id), lifecycle.target_made(self.issue_id, mine[0].id, "deal"))
        if (op is not None and op.unsure) or self.adopt_only:
            return None
        return self._later(ctx) or renumbered(ctx, self.issue_id, self.cycle, self.issue.status, self.entry)

    def _later(self, ctx: Context) -> Found | None:
        """The store is behind (lost, restored, or another installation's): okbx's markers in the
        issue name a later handoff.  Its deal on this route, when there is one, is this handoff's."""
        written = ctx.remote.issue(self.issue_id)
        latest = rebuild.latest_handoff(self.issue_id, written)
        if latest <= self.cycle:
            return None
        later = deal_marker(self.issue_id, latest, self.route)
        found = [d for d in deals(ctx).deals_by_marker([later]).get(later, []) if d.marker == later]
        if not found:
            return None
        deal = min(found, key=lambda d: d.id)
        finished = deal.semantics in FINAL or deal.closed
        markers = [*written, *ctx.remote.deal(deal.id)]
        rebuilt = rebuild.link_from_markers(
            self.issue_id,
            deal.id,
            finished,
            deal.moved_at,
            markers,
            floor_cycle=latest,
            route=self.route,
            target="deal",
        )
        change = rebuilt.change(f"found deal {deal.id}: handoff {rebuilt.cycle}, {rebuilt.state}", entry=self.entry)
        return Found(str(deal.id), change, replan=True, op_cycle=latest)

    def unwritten(self, ctx: Context) -> Effect | None:
        """Withdrawn before a deal existed: nothing to create."""
        return (None, lifecycle.withdrawn(self.issue_id)) if self.adopt_only else None

    def perform(self, ctx: Context) -> Effect:
        deal = deals(ctx).add_deal(dict(self.fields), self.deal_marker)
        ctx.remote.new_deal(deal.id)
        return str(deal.id), lifecycle.target_made(self.issue_id, deal.id, "deal")

    batchable: ClassVar[bool] = True

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        markers = [a.deal_marker for a in actions if isinstance(a, CreateDeal)]
        ctx.deals_by_marker.update(deals(ctx).deals_by_marker(markers))

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        creates = {a.key: a for a in actions if isinstance(a, CreateDeal)}
        made, errors = deals(ctx).add_deals({key: (dict(a.fields), a.deal_marker) for key, a in creates.items()})
        done: dict[str, Effect | ApiError] = dict(errors)
        for key, deal in made.items():
            ctx.remote.new_deal(deal.id)
            done[key] = (str(deal.id), lifecycle.target_made(creates[key].issue_id, deal.id, "deal"))
        return done


@dataclass(frozen=True)
class PostDealLink(PostLinkComment):
    """The internal comment in the issue naming the deal (its marker names the route)."""

    @property
    def detail(self) -> str:
        return "internal comment with the deal's URL"

    def perform(self, ctx: Context) -> Effect:
        deal_id = ctx.task_id(self.issue_id)
        url = ctx.bitrix.deal_url(deal_id)
        route = self.said.route if self.said is not None else None
        text = f"Passed to route {route}: Bitrix24 deal #{deal_id} {url}"
        return self.post(ctx, note_html(text, self.marker), False)


@dataclass(frozen=True)
class DealComment(Action):
    """Any comment okbx writes into the deal's timeline; found by its marker there."""

    text: str = field(default="", compare=False)
    side: ClassVar[str] = "Bitrix24"

    def _written(self, written: dict[str, str]) -> str | None:
        return written.get(self.key)

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        remote_id = self._written(ctx.remote.deal(ctx.task_id(self.issue_id)))
        return Found(remote_id) if remote_id is not None else None

    def perform(self, ctx: Context) -> Effect:
        deal_id = ctx.task_id(self.issue_id)
        new_id = str(deals(ctx).add_comment(deal_id, self.text))
        ctx.remote.deal(deal_id)[self.key] = new_id
        return new_id, None

    batchable: ClassVar[bool] = True

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        links = ctx.store.links_for(a.issue_id for a in actions)
        ctx.remote.read_deals(link.task_id for link in links.values() if link.task_id is not None)

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        comments = {a.key: (ctx.task_id(a.issue_id), a.text) for a in actions if isinstance(a, DealComment)}
        new_ids, errors = deals(ctx).add_comments(comments)
        done: dict[str, Effect | ApiError] = dict(errors)
        for key, new_id in new_ids.items():
            ctx.remote.deal(comments[key][0])[key] = str(new_id)
            done[key] = (str(new_id), None)
        return done


@dataclass(frozen=True)
class ForwardToDeal(DealComment):
    comment: Comment | None = None
    task_cycle: int = 1
    kind: ClassVar[str] = "comment"

    @property
    def ref(self) -> keys.Key:
        assert self.comment is not None
        return keys.CommentKey(self.issue_id, self.task_cycle, self.comment.id)

    @property
    def detail(self) -> str:
        assert self.comment is not None
        who = "client" if self.comment.author.kind == "contact" else "consultant"
        return f"{'public' if self.comment.public else 'internal'} comment #{self.comment.id} by {who} to the deal"

    def _written(self, written: dict[str, str]) -> str | None:
        assert self.comment is not None  # under any handoff number: a rebuilt store may count differently
        for text, remote_id in written.items():
            key = keys.parse_as(keys.CommentKey, text)
            if key is not None and key.issue_id == self.issue_id and key.comment_id == self.comment.id:
                return remote_id
        return None


@dataclass(frozen=True)
class DealNote(DealComment):
    """okbx's own note in the deal's timeline (the issue left the route's status, moved on...)."""

    note: keys.TaskNoteKey = field(default=keys.TaskNoteKey("note", 0, 0))
    kind: ClassVar[str] = "task_note"

    @property
    def ref(self) -> keys.Key:
        return self.note

    @property
    def detail(self) -> str:
        return self.text.splitlines()[0][:80] if self.text else self.note.text
