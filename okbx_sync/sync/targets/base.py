"""The protocol of a kind of target (see the package docstring), and MISSING.

The route wing (listing, selection, reading, planning, settling) is the same for every route;
what differs with the target is asked of its kind here, purely, by the planner (plan.py):

  create(...)        the action that makes it (found again by its marker first), or Blocked
  link_comment(...)  the internal comment in the issue naming it (its marker names the route)
  forward(...)       an Okdesk comment forwarded into it
  note(...)          okbx's own note into it (left the status, moved to another route, ...)
  current(link, snap)      its state as read this cycle: the object, None when it was found
                           deleted, MISSING when it was not read
  finished(current, config)
  completion(...)    what a finished target brings back (time, the report, the return), or
                     None while the reads it needs are missing

A new kind of target is one module with such an object and its action kinds (task: the
existing `task_writes.py`; deal: `deal.py`), added to `TARGETS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from datetime import datetime

    from ...config import Config, RouteConfig
    from ...core.action import Action
    from ...core.plan import Blocked
    from ...keys import TaskNoteKey
    from ...model import Comment, Issue
    from ...state.lifecycle import Entry, Link
    from ..snapshot import Snapshot, StateView

MISSING = object()  # a target not read this cycle (not the same as one found deleted)


class TargetKind(Protocol):
    kind: str
    label: str  # how people call it: "task", "deal"

    def create(
        self, route: RouteConfig, issue: Issue, cycle: int, entry: Entry, snap: Snapshot, config: Config, now: datetime
    ) -> Action | Blocked: ...

    def adopt_only(self, create: Action) -> Action: ...

    def adopt_only_made(self, route: RouteConfig, issue: Issue, cycle: int, link: Link) -> Action:
        """Withdrawn while its create could not be planned again: look for what was made, by its marker."""
        ...

    def link_comment(self, issue_id: int, cycle: int, route: RouteConfig, entry: Entry) -> Action: ...

    def forward(self, issue_id: int, cycle: int, comment: Comment, text: str) -> Action: ...

    def note(self, issue_id: int, key: TaskNoteKey, text: str) -> Action: ...

    def current(self, link: Link, snap: Snapshot) -> object: ...

    def finished(self, current: object, config: Config) -> bool: ...

    def completion(
        self, link: Link, route: RouteConfig, issue: Issue, snap: Snapshot, state: StateView, config: Config
    ) -> list[Action] | None: ...
