"""Okdesk file verbs: list attachments, download one, post a comment with files.

Facts used (crm-billing.md §1.5, routes-files.md §4): there is no attachment list endpoint, so
files are read from the issue (`attachments[]`) and from each comment; a download takes a fresh
`attachment_url` from `GET /issues/{id}/attachments/{att}` (it works 30 seconds, so it is asked
for right before the bytes are read, and followed through redirects without the token); files
are uploaded only with a comment, as `multipart/form-data` with `comment[content]`,
`comment[author_id]`, `comment[public]` and per file `comment[attachments][<i>][attachment]`,
`[description]`, `[is_public]`.  Inferred: a comment's file downloads through the issue path, and
the largest upload is unknown (`max_upload_bytes` refuses before sending; HTTP 413 or 422 is `TooLarge`).

Files stream both ways: the upload body is read from the caller's file objects or iterators as
it is sent, and a download is written to the caller's sink chunk by chunk under a byte cap.
No file content and no link ever reaches a log or an error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import ApiError, MalformedResponse
from ..filenames import safe_filename
from ..model import Comment
from ..secrets import Secret
from .files_parse import (
    Attachment,
    parse_attachment_link,
    parse_attachments,
    parse_comment_attachments,
    parse_issue_attachments,
)
from .http import Downloaded, Sink, TooLarge
from .multipart import FileSource, streaming_body
from .okdesk import SYSTEM, OkdeskClient
from .okdesk_parse import parse_comment
from .parse import ParseError, obj

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # okbx's own cap per file (both directions); configurable


@dataclass(frozen=True)
class Upload:
    """A file to attach to a new comment; `is_public` None takes the comment's `public` (the
    bridge rule of routes-files.md §4)."""

    source: FileSource
    description: str | None = None
    is_public: bool | None = None


class OkdeskFiles:
    """The file verbs, over the Okdesk client's transport (same token, budget and retry policy)."""

    def __init__(
        self, okdesk: OkdeskClient, *, max_download_bytes: int | None = DEFAULT_MAX_BYTES,
        max_upload_bytes: int | None = DEFAULT_MAX_BYTES,
    ) -> None:  # fmt: skip
        self.okdesk = okdesk
        self.max_download_bytes, self.max_upload_bytes = max_download_bytes, max_upload_bytes

    # -- reading -------------------------------------------------------------------------------
    def issue_attachments(self, issue_id: int) -> list[Attachment]:
        """The files attached to the issue itself (`GET /issues/{id}` -> `attachments[]`)."""
        op = "GET /issues/{id}"
        raw = self.okdesk.call("GET", f"/issues/{int(issue_id)}", op)
        found: list[Attachment] = _parse(op, parse_issue_attachments, raw)
        return found

    def comment_attachments(self, issue_id: int) -> list[Attachment]:
        """The files of every comment of the issue, each with its `comment_id`."""
        op = "GET /issues/{id}/comments"
        raw = self.okdesk.call("GET", f"/issues/{int(issue_id)}/comments", op)
        found: list[Attachment] = _parse(op, parse_comment_attachments, raw, int(issue_id))
        return found

    def download(self, issue_id: int, attachment_id: int, sink: Sink) -> tuple[Attachment, Downloaded]:
        """Ask for a fresh link, then stream the file into `sink` at once (the link lives 30 s).

        A file over `max_download_bytes` (by its listed size, its Content-Length or what arrives)
        raises `TooLarge` before more is read; a short body raises `MalformedResponse`."""
        op = "GET /issues/{id}/attachments/{id}"
        found, url = self._link_checked(issue_id, attachment_id, op)
        link_op = "GET attachment link"
        done = self.okdesk.download(url.reveal(), link_op, sink, max_bytes=self.max_download_bytes)
        if found.size and done.size != found.size:
            raise MalformedResponse(SYSTEM, link_op, f"file {found.id}: {done.size} bytes arrived, {found.size} listed")
        log.debug("Okdesk file %s of issue %s: %s bytes downloaded", found.id, issue_id, done.size)
        return found, done

    def _link_checked(self, issue_id: int, attachment_id: int, op: str) -> tuple[Attachment, Secret]:
        raw = self.okdesk.call("GET", f"/issues/{int(issue_id)}/attachments/{int(attachment_id)}", op)
        found, url = _parse(op, parse_attachment_link, raw)
        if found.id != int(attachment_id):
            raise MalformedResponse(SYSTEM, op, f"asked for file {attachment_id}, got file {found.id}")
        if self.max_download_bytes is not None and found.size > self.max_download_bytes:
            raise TooLarge(
                SYSTEM, op, f"file {found.id} has {found.size} bytes, over the cap of {self.max_download_bytes}"
            )
        return found, url

    # -- writing -------------------------------------------------------------------------------
    def add_comment_with_files(
        self, issue_id: int, content_html: str, files: Sequence[Upload], *, public: bool
    ) -> tuple[Comment, list[Attachment]]:
        """One comment by okbx's employee carrying `files`, posted as the documented multipart
        form; file names are made safe first.  A write: never sent twice."""
        op = "POST /issues/{id}/comments"
        if not files:
            raise ValueError("a comment with files needs at least one file")
        fields = [
            ("comment[content]", content_html),
            ("comment[author_id]", str(self.okdesk.config.bot_employee_id)),
            ("comment[author_type]", "employee"),
            ("comment[public]", "true" if public else "false"),
        ]
        parts: list[tuple[str, FileSource]] = []
        for index, upload in enumerate(files):
            source = upload.source
            size = source.known_size()
            if self.max_upload_bytes is not None and size is not None and size > self.max_upload_bytes:
                raise TooLarge(SYSTEM, op, f"file of {size} bytes is over the cap of {self.max_upload_bytes}")
            named = FileSource(safe_filename(source.name), source.content, size, source.content_type)
            parts.append((f"comment[attachments][{index}][attachment]", named))
            if upload.description:
                fields.append((f"comment[attachments][{index}][description]", upload.description))
            shown = public if upload.is_public is None else upload.is_public
            fields.append((f"comment[attachments][{index}][is_public]", "true" if shown else "false"))
        body = streaming_body(fields, parts, max_file_bytes=self.max_upload_bytes)
        try:
            raw = self.okdesk.call(
                "POST", f"/issues/{int(issue_id)}/comments", op, data=body,
                headers={"Content-Type": body.content_type}, write=True,
            )  # fmt: skip
        except ApiError as error:
            # inferred (routes-files.md §4): the account's limit is unknown and 413 or 422 may say "too
            # large"; nothing was written, and a 422 for another reason fails again without the files
            if error.status in (413, 422):
                raise TooLarge(SYSTEM, op, error.message, status=error.status) from None
            raise
        comment = _parse(op, parse_comment, raw, int(issue_id))
        data = _parse(op, obj, raw, "comment")
        attached = _parse(op, parse_attachments, data.get("attachments"), "comment", comment.id)
        log.info("Okdesk issue %s: comment %s with %d file(s)", issue_id, comment.id, len(files))
        return comment, attached


def _parse(op: str, parser: Callable[..., T], *args: Any) -> T:
    try:
        return parser(*args)
    except ParseError as exc:
        raise MalformedResponse(SYSTEM, op, str(exc)) from None
