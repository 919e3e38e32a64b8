"""The keys of billing and the debt hold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Key


# -- billing and the debt hold ------------------------------------------------------------------
@dataclass(frozen=True)
class InvoiceKey(Key):
    """The invoice of the completion of handoff `cycle` (its xmlId is this marker)."""

    kind: ClassVar[str] = "invoice"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class InvoiceNoteKey(Key):
    kind: ClassVar[str] = "invnote"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class TaskLinkKey(Key):
    """The invoice of handoff `cycle` named among the task's CRM links."""

    kind: ClassVar[str] = "tasklink"
    issue_id: int
    cycle: int


@dataclass(frozen=True)
class PaidKey(Key):
    """The note that invoice `invoice_id` was paid or declined."""

    kind: ClassVar[str] = "paid"
    issue_id: int
    invoice_id: int


@dataclass(frozen=True)
class HoldKey(Key):
    """The issue held for the debt named by its oldest overdue invoice `debt_ref`."""

    kind: ClassVar[str] = "hold"
    issue_id: int
    debt_ref: int

    @property
    def release(self) -> ReleaseKey:
        return ReleaseKey(self.issue_id, self.debt_ref)


@dataclass(frozen=True)
class ReleaseKey(Key):
    kind: ClassVar[str] = "release"
    issue_id: int
    debt_ref: int
