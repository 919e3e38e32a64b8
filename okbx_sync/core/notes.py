"""okbx's own notes in the Okdesk issue: internal comments carrying a marker, found by it.

Every wing writes such notes (a task was deleted, an invoice was issued, the issue is held for
a debt, the work is stuck); they share one way of being found again: among the issue's comments
by okbx's own employee, read once per cycle (remote.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from .. import keys
from ..markup import escape_html, html_marker_line
from ..state.lifecycle import Health, Track
from .action import Action, Context, Effect, Found

if TYPE_CHECKING:
    from ..state.store import Op


def note_html(text: str, token: str) -> str:
    """A plain-text note, escaped, ending with its marker line."""
    return f"{escape_html(text)}<br>{html_marker_line(token)}"


@dataclass(frozen=True)
class IssueComment(Action):
    """Any comment okbx writes into the issue; found by its marker among the bot's comments."""

    side: ClassVar[str] = "Okdesk"

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        remote_id = ctx.remote.issue(self.issue_id).get(self.key)
        return Found(remote_id) if remote_id is not None else None

    def post(self, ctx: Context, html: str, public: bool) -> Effect:
        comment = ctx.okdesk.add_comment(self.issue_id, html, public=public)
        new_id = str(comment.id)
        ctx.remote.issue(self.issue_id)[self.key] = new_id
        if comment.published_at is not None:
            ctx.own_writes[self.issue_id] = comment.published_at
        return new_id, None


@dataclass(frozen=True)
class IssueNote(IssueComment):
    """An internal note from okbx into the Okdesk issue, named by its typed key."""

    note: keys.IssueNoteKey = field(default=keys.IssueNoteKey("note", 0, 0))
    html: str = field(default="", compare=False)
    on_track: Track = Track.ROUTE  # whose failure a failing note counts as
    kind: ClassVar[str] = "issue_note"

    @property
    def track(self) -> Track:
        return self.on_track

    @property
    def ref(self) -> keys.Key:
        return self.note

    @property
    def detail(self) -> str:
        return self.note.why

    def perform(self, ctx: Context) -> Effect:
        return self.post(ctx, self.html, False)


_STUCK_WHAT = {
    Track.ROUTE: "sync this issue with its Bitrix24 task",
    Track.BILLING: "invoice the work of this issue in Bitrix24",
    Track.DEBT: "hold or release this issue for its company's debt",
}
_STUCK_WHY = {Track.ROUTE: "stuck", Track.BILLING: "stuck-billing", Track.DEBT: "stuck-debt"}


def stuck_note(health: Health, cycle: int) -> IssueNote:
    """The one note a consultant finds in an issue whose work okbx parked (one per parking)."""
    stamp = int(health.next_retry_at.timestamp()) if health.next_retry_at else 0
    key = keys.IssueNoteKey(_STUCK_WHY[health.track], health.issue_id, cycle, stamp)
    text = (
        f"okbx could not {_STUCK_WHAT[health.track]} and stopped trying after {health.fail_count} failures. "
        f"The last one: {health.last_error}. Nothing is lost: an administrator sees the cause with "
        f"`okbx status` and resumes with `okbx retry {health.issue_id}` once it is fixed."
    )
    return IssueNote(health.issue_id, note=key, html=note_html(text, key.marker), on_track=health.track)
