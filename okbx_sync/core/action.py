"""The one action protocol every route and billing use.

An action is a small frozen value named as a verb.  Its kind knows everything about itself:
  ref / key / marker  its typed idempotency key (keys.py), carried by the remote write as a marker;
  track               the line of work whose failures it counts toward (route, billing, debt);
  detail              a readable line for `--dry-run`, logs and history;
  find(ctx, op)       whether the write is already on the remote side (by its marker), whatever
                      the state store says: the applier asks before every write;
  perform(ctx)        the write itself, returning the remote id and the change to the link;
  look_many / perform_many   the same for many actions of the kind in one request (`batch`).
The applier (applier.py) runs any kind the same way: intent, find, write, result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ApiError
from ..keys import DEFAULT_ROUTE, Key
from ..model import Task
from ..state.lifecycle import LinkChange, Track

if TYPE_CHECKING:
    from ..clients.bitrix24 import Bitrix24Client
    from ..clients.bitrix24_crm import CrmClient
    from ..clients.okdesk import OkdeskClient
    from ..config import Config
    from ..state.store import Op, Store
    from .remote import RemoteMarkers


@dataclass
class Context:
    """What an action needs to find or perform itself: the clients, the store, the cycle's caches."""

    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    crm: CrmClient
    store: Store
    config: Config
    remote: RemoteMarkers
    # issue id -> when okbx last wrote a comment there: that write moves the issue's updated_at,
    # and the next cycle must not take it for a change (settle.py)
    own_writes: dict[int, datetime] = field(default_factory=dict)
    # XML_ID -> tasks carrying it, looked up for many creates in one request; each used once
    tasks_by_xml_id: dict[str, list[Task]] = field(default_factory=dict)
    # a deal's origin marker -> deals carrying it, the same for deals (sync/targets/deal.py)
    deals_by_marker: dict[Any, list[Any]] = field(default_factory=dict)

    def task_id(self, issue_id: int) -> int:
        """The id of the link's target (a task, or a deal on a sales route)."""
        link = self.store.link(issue_id)
        if link is None or link.task_id is None:
            raise ApiError("okbx", "state", f"issue {issue_id} has no task yet")
        return link.task_id

    def remote_id_of(self, key: Key) -> str:
        """The remote id a done write of okbx recorded (an invoice's id for its note, say)."""
        op = self.store.op(key.text)
        if op is None or not op.done or not op.remote_id:
            raise ApiError("okbx", "state", f"{key} was not written")
        return op.remote_id


@dataclass(frozen=True)
class Found:
    """A write found on the remote side: adopted instead of repeated."""

    remote_id: str | None
    change: LinkChange | None = None
    replan: bool = False  # what was found does not fit the rest of this issue's plan
    op_cycle: int | None = None  # the handoff the adopted write belongs to, when it differs
    by_marker: bool = True  # False: inferred from the remote state (e.g. the status), not a marker
    carried_only: bool = False  # only what the action carries is there (a report), the action itself is not


Effect = tuple[str | None, LinkChange | None]  # (remote id, the change to the link)


@dataclass(frozen=True)
class WorkLine:
    """Time of one programmer in a completion report (billing invoices it)."""

    user_id: int
    user_name: str
    seconds: int


@dataclass(frozen=True)
class Completed:
    """A completion an action reports (the summary), so billing can invoice it in the same cycle."""

    issue_id: int
    cycle: int
    work: tuple[WorkLine, ...]
    route: str = DEFAULT_ROUTE  # billing invoices only the routes that say so (flows.bill)
    task_id: int | None = field(default=None, compare=False)  # the task whose work it reports (None: not a task)


@dataclass(frozen=True)
class OpRecord:
    """What the intent record keeps besides the key: the handoff, the report it is listed in, detail."""

    cycle: int | None = None
    report_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    issue_id: int
    kind: ClassVar[str] = "action"
    side: ClassVar[str] = ""  # which system is written: "Bitrix24", "Okdesk", or "" for local state only
    TRACK: ClassVar[Track] = Track.ROUTE

    @property
    def track(self) -> Track:
        return self.TRACK

    @property
    def ref(self) -> Key:
        raise NotImplementedError

    @property
    def key(self) -> str:
        return self.ref.text

    @property
    def marker(self) -> str:
        return self.ref.marker

    @property
    def detail(self) -> str:
        return ""

    @property
    def name(self) -> str:
        """What the action is called in plans and logs (the verb of its class)."""
        return self.__class__.__name__

    # -- how the applier runs it --------------------------------------------------------------
    def prepare(self, ctx: Context) -> None:
        """Local bookkeeping before anything else (e.g. the link a new task belongs to)."""

    def op_record(self) -> OpRecord:
        return OpRecord(getattr(self, "cycle", None), None, {"detail": self.detail})

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        return None

    def perform(self, ctx: Context) -> Effect:
        raise NotImplementedError

    def unwritten(self, ctx: Context) -> Effect | None:
        """Decided, after looking, that nothing needs writing: the effect to record as done."""
        return None

    def also_completes(self) -> list[Action]:
        """Other actions this write carries (a status change carrying the summary)."""
        return []

    @property
    def needs(self) -> tuple[str, ...]:
        """Keys of writes that must be done before this one (an invoice needs its summary posted)."""
        return ()

    def completes(self) -> Completed | None:
        """The completion this write reports, if it is a completion's report."""
        return None

    # -- batching (Bitrix24 `batch`: up to 50 commands in one request) -------------------------
    batchable: ClassVar[bool] = False

    @classmethod
    def look_many(cls, ctx: Context, actions: list[Action]) -> None:
        """Read what `find` of each of these actions needs, in as few requests as possible."""

    @classmethod
    def perform_many(cls, ctx: Context, actions: list[Action]) -> dict[str, Effect | ApiError]:
        """Perform these actions (of this kind) in one request; by action key."""
        raise NotImplementedError


@dataclass(frozen=True)
class LocalAction(Action):
    """A decision kept in okbx's own state only: nothing to find, nothing written remotely.
    Recorded as a done op like any write, so the plan does not decide it again."""

    def apply_locally(self, ctx: Context) -> Effect:
        return None, None
