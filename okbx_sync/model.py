"""Our own view of the remote records: only what the sync needs, already typed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Person:
    id: int
    name: str
    kind: str  # "employee" | "contact" | "system" (a comment Okdesk wrote itself, no person)


@dataclass(frozen=True)
class Attachment:
    """An Okdesk file of an issue or of one of its comments (`comment_id`)."""

    id: int
    name: str
    size: int
    is_public: bool
    description: str | None = None
    created_at: datetime | None = None
    comment_id: int | None = None
    content_type: str | None = None  # Okdesk does not say; kept for symmetry with uploads


@dataclass(frozen=True)
class Issue:
    id: int
    title: str
    status: str
    updated_at: datetime | None
    description_html: str = ""
    company: str | None = None
    contact: str | None = None
    priority: str | None = None
    deadline_at: datetime | None = None
    company_id: int | None = None
    type_code: str | None = None
    priority_code: str | None = None
    parameters: tuple[tuple[str, object], ...] = ()  # (code, value) of the issue's custom parameters
    delayed_to: datetime | None = None  # postponed until, when its status is `delayed`
    # routes: the issue's equipment ids (None: the answer did not say), service agreement, contact
    equipment_ids: tuple[int, ...] | None = None
    agreement: Agreement | None = None
    contact_id: int | None = None
    attachments: tuple[Attachment, ...] = ()  # the issue's own files (a full read; a listing may not say)
    old_status: str | None = None  # the status it had before this one (the full issue only)


@dataclass(frozen=True)
class Agreement:
    """An Okdesk service agreement as issues and equipment show it; there is no REST endpoint."""

    id: int
    title: str


@dataclass(frozen=True)
class Company:
    """An Okdesk client company, with its custom attributes (code -> value)."""

    id: int
    name: str
    parameters: tuple[tuple[str, object], ...] = ()

    def parameter(self, code: str) -> object:
        return dict(self.parameters).get(code)


@dataclass(frozen=True)
class Comment:
    id: int
    issue_id: int
    content_html: str
    public: bool
    published_at: datetime | None
    author: Person
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class TimeEntry:
    id: int
    issue_id: int
    employee_id: int | None
    spent_hours: float
    comment: str


@dataclass(frozen=True)
class Task:
    id: int
    status: int
    xml_id: str | None = None
    title: str = ""
    group_id: int | None = None
    closed_at: datetime | None = None
    deadline_at: datetime | None = None


@dataclass(frozen=True)
class ElapsedItem:
    id: int
    task_id: int
    user_id: int
    seconds: int
    comment: str
    created_at: datetime | None


@dataclass(frozen=True)
class TaskComment:
    id: int
    task_id: int
    author_id: int
    text: str
    posted_at: datetime | None = None
