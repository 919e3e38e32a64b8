"""The kinds of target a route makes in Bitrix24: one module each, one registry, one protocol.

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

from .base import MISSING, TargetKind
from .deal import DEAL
from .task import TASK

__all__ = ["MISSING", "TargetKind", "target_of"]
TARGETS: dict[str, TargetKind] = {"task": TASK, "deal": DEAL}


def target_of(kind: str) -> TargetKind:
    return TARGETS[kind]
