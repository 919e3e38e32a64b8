"""Idempotency keys and the markers that carry them: one typed value per kind, one parser.

A key names one remote write: `CommentKey(12, 1, 55)` is Okdesk comment 55 of issue 12,
forwarded into the target made in handoff 1, text "comment:12:1:55".  The text is the primary
key of the write's op in the state store, and the write carries it as a marker (`okbx:` + the
text) at the very end of its text, so that any run, with or without the store, can find the
write again on the remote side.  No other module builds or splits a key: they construct these
values and read their fields.  The texts are those of earlier releases, so existing state
stores and the markers already in both accounts keep their meaning.

  base      the Key type and `parse`, from a key text to its typed value
  route     the route's keys: a target per handoff, comments into it, the report back
  billing   invoices, their notes and task links, payments, the debt hold
  files     files travelling: a Drive copy, its attachment, the comment carrying files back
  markers   finding a marker in what the remote side returns
"""

from __future__ import annotations

from .base import DEFAULT_ROUTE, PREFIX, Key, parse, parse_as
from .billing import HoldKey, InvoiceKey, InvoiceNoteKey, PaidKey, ReleaseKey, TaskLinkKey
from .files import AttachKey, FileKey, FilesBackKey
from .markers import ITEMS_LINE, in_bbcode, in_html, in_text, items_line, reported_items, strip_tags
from .route import (
    DEAL_ORIGINATOR,
    TASK_XML_PREFIX,
    CloseKey,
    CommentKey,
    DeadlineKey,
    GoneKey,
    HandoffKey,
    IssueNoteKey,
    LateKey,
    LinkCommentKey,
    RenewKey,
    ReturnKey,
    SummaryKey,
    TaskKey,
    TaskNoteKey,
    TimeKey,
    closed_stamp,
    deal_origin,
    issue_of_xml_id,
    task_xml_id,
)

__all__ = [
    "DEAL_ORIGINATOR",
    "DEFAULT_ROUTE",
    "ITEMS_LINE",
    "PREFIX",
    "TASK_XML_PREFIX",
    "AttachKey",
    "CloseKey",
    "CommentKey",
    "DeadlineKey",
    "FileKey",
    "FilesBackKey",
    "GoneKey",
    "HandoffKey",
    "HoldKey",
    "InvoiceKey",
    "InvoiceNoteKey",
    "IssueNoteKey",
    "Key",
    "LateKey",
    "LinkCommentKey",
    "PaidKey",
    "ReleaseKey",
    "RenewKey",
    "ReturnKey",
    "SummaryKey",
    "TaskKey",
    "TaskLinkKey",
    "TaskNoteKey",
    "TimeKey",
    "closed_stamp",
    "deal_origin",
    "in_bbcode",
    "in_html",
    "in_text",
    "issue_of_xml_id",
    "items_line",
    "parse",
    "parse_as",
    "reported_items",
    "strip_tags",
    "task_xml_id",
]
