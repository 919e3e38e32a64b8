"""Attachments of the Okdesk emulator: files on issues and comments, downloads and uploads.

It follows /work/shared/api/crm-billing.md §1.5 and routes-files.md §4:

* attachments appear as `attachments[]` of `GET /issues/{id}` and of each comment, shaped
  `{id, attachment_file_name, description, attachment_file_size (bytes), is_public, created_at}`,
  with no URL; there is no list endpoint and `POST /issues/{id}/attachments` is a 404;
* `GET /issues/{id}/attachments/{att}` answers the same object plus `attachment_url`, a link that
  works for 30 seconds after it was made (on the emulator's clock) and needs no `api_token`;
* files are uploaded only with a comment, as `multipart/form-data` with the indexed fields
  `comment[attachments][<i>][attachment]` (the file), `[description]` and `[is_public]`; the
  sequential `[]` form and the name `attachment_file` are refused with 422 (observed), and so is
  any other place for a file, or `attachments` in a JSON body (inferred).

Inferred facts are constructor options (`file_options` of the emulator): whether a comment's file
downloads through the issue path (`comment_files_via_issue`, likely), whether the issue's own list
shows its comments' files (`issue_lists_comment_files`), the link's lifetime (`link_seconds`),
whether the link redirects once like a static file server (`link_redirects`), an upload size cap
(`max_attachment_bytes`, answered 413, or 422 with `too_large_status`), the default of a file's
`is_public` (`public_default`), and whether stored names are cleaned the way Paperclip does it
(`paperclip_names`: the sample link `attachments/attachments/000/000/150/original/hqdefault.jpg`
is Paperclip's layout, whose default replaces `&$+,/:;=?@<>[]{}|\\^~%#` and spaces with `_`).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from okbx_emulator.files import Blob, FormPart, MultipartError, boundary_of, parse_multipart
from okbx_emulator.http import Request, Response

if TYPE_CHECKING:
    from okbx_emulator.okdesk import OkdeskEmulator

_PAPERCLIP_RESTRICTED = re.compile(r"[&$+,/:;=?@<>\[\]{}|\\^~%# ]")
_LINK = re.compile(r"/attachments/(?:attachments/\d{3}/\d{3}/\d{3}/original/[^/]+|stored/[0-9a-f]+)")
_ATTACHMENT_PATH = re.compile(r"/api/v1/issues/(?P<id>[^/]+)/attachments/(?P<att>[^/]+)")
_FILE_KEYS = {"attachment", "description", "is_public"}
_EXPIRED_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message></Error>"
)
_BOOLS = {"true": True, "1": True, "false": False, "0": False}


@dataclass
class _Attachment:
    id: int
    issue_id: int
    comment_id: int | None
    name: str
    description: str | None
    is_public: bool
    created_at: datetime
    blob: Blob


@dataclass(frozen=True)
class _Upload:
    """A file of a multipart comment, checked and waiting for its comment to exist."""

    name: str
    description: str | None
    is_public: bool
    blob: Blob


class OkdeskFiles:
    def __init__(
        self,
        emulator: OkdeskEmulator,
        error: Callable[[int, Any], Exception],  # the emulator's ApiError(status, errors)
        *,
        link_seconds: float = 30.0,  # documented: "работает в течение 30 секунд после создания"
        comment_files_via_issue: bool = True,  # inferred: "very likely"
        issue_lists_comment_files: bool = False,  # inferred: the issue lists its own files only
        link_redirects: bool = True,  # inferred from the production client's follow_redirects=True
        max_attachment_bytes: int | None = None,  # unknown in every source: no cap unless a test sets one
        too_large_status: int = 413,  # inferred: 413 or 422 (routes-files.md §4)
        public_default: bool = False,  # inferred: a file without is_public is internal
        paperclip_names: bool = True,  # inferred from the link layout (module docstring)
    ) -> None:
        self._ok, self._error = emulator, error
        self.link_seconds, self.comment_files_via_issue = link_seconds, comment_files_via_issue
        self.issue_lists_comment_files, self.link_redirects = issue_lists_comment_files, link_redirects
        self.max_attachment_bytes, self.public_default = max_attachment_bytes, public_default
        self.too_large_status = too_large_status
        self.paperclip_names = paperclip_names
        self._files: dict[int, _Attachment] = {}
        self._links: dict[str, tuple[int, datetime]] = {}  # token -> (attachment id, made at)
        self._last_id = 0

    # -- seeding and inspection (plain Python; the emulator's lock) ---------------------------
    def add(
        self,
        issue_id: int,
        name: str,
        data: bytes | None = None,
        *,
        size: int | None = None,
        seed: int = 0,
        comment_id: int | None = None,
        is_public: bool = False,
        description: str | None = None,
    ) -> int:
        """A file a person attached (to the issue, or to one of its comments).  Give `data`, or a
        `size` for a synthetic content of that many bytes (a large file costs no memory)."""
        if (data is None) == (size is None):
            raise ValueError("give either data or size")
        blob = Blob.of(data) if data is not None else Blob.synthetic(size or 0, seed)
        with self._ok._lock:
            issue = self._ok._live_issue(issue_id)
            if comment_id is not None and self._ok._comments.get(comment_id, None) is None:
                raise ValueError(f"no comment {comment_id}")
            if comment_id is not None and self._ok._comments[comment_id].issue_id != issue.id:
                raise ValueError(f"comment {comment_id} is not in issue {issue_id}")
            return self._store(issue.id, comment_id, _Upload(name, description, is_public, blob)).id

    def blob(self, attachment_id: int) -> Blob:
        with self._ok._lock:
            return self._files[attachment_id].blob

    def of_issue(self, issue_id: int) -> list[dict[str, Any]]:
        """Every file of the issue, its comments' too, as the API shows one (for tests)."""
        with self._ok._lock:
            files = [f for f in self._files.values() if f.issue_id == issue_id]
            return [self._json(f) | {"comment_id": f.comment_id} for f in files]

    # -- rendering hooks (called under the lock by okdesk.py) ----------------------------------
    def issue_json(self, issue_id: int) -> list[dict[str, Any]]:
        files = [f for f in self._files.values() if f.issue_id == issue_id]
        if not self.issue_lists_comment_files:
            files = [f for f in files if f.comment_id is None]
        return [self._json(f) for f in files]

    def comment_json(self, comment_id: int) -> list[dict[str, Any]]:
        return [self._json(f) for f in self._files.values() if f.comment_id == comment_id]

    def _json(self, file: _Attachment) -> dict[str, Any]:
        return {
            "id": file.id,
            "attachment_file_name": file.name,
            "description": file.description,
            "attachment_file_size": file.blob.size,
            "is_public": file.is_public,
            "created_at": self._ok._ts(file.created_at),
        }

    # -- the API -------------------------------------------------------------------------------
    def api_attachment(self, request: Request, issue_ref: str | None) -> dict[str, Any]:
        issue = self._ok._issue_ref(issue_ref)
        match = _ATTACHMENT_PATH.fullmatch(request.path.rstrip("/"))
        ref = match.group("att") if match else ""
        file = self._files.get(int(ref)) if ref.isdigit() else None
        if file is None or file.issue_id != issue.id or (file.comment_id and not self.comment_files_via_issue):
            raise self._error(404, "Файл не найден")  # inferred wording
        token = secrets.token_hex(16)
        self._links[token] = (file.id, self._ok._now())
        origin = f"http://{request.headers.get('host', '127.0.0.1')}"
        partition = f"{file.id:09d}"
        path = f"/attachments/attachments/{partition[:3]}/{partition[3:6]}/{partition[6:]}/original/"
        return self._json(file) | {"attachment_url": f"{origin}{path}{quote(file.name)}?token={token}"}

    @staticmethod
    def is_link(request: Request) -> bool:
        return request.method == "GET" and _LINK.fullmatch(request.path) is not None

    def serve_link(self, request: Request) -> Response | None:
        """The temporary link (and the stored object it redirects to); None for other paths."""
        if not self.is_link(request):
            return None
        with self._ok._lock:
            token = request.query_value("token") or request.path.rsplit("/", 1)[-1]
            found = self._links.get(token)
            if found is None:
                return Response(403, _EXPIRED_XML.encode(), content_type="application/xml")
            file_id, made = found
            if self._ok._now() - made > timedelta(seconds=self.link_seconds):
                del self._links[token]
                return Response(403, _EXPIRED_XML.encode(), content_type="application/xml")
            if self.link_redirects and "/stored/" not in request.path:
                location = {"Location": f"/attachments/stored/{token}"}
                return Response(302, b"", content_type="text/html", headers=location)
            file = self._files[file_id]
        headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(file.name)}"}
        return Response.stream(file.blob.size, file.blob.chunks(), "application/octet-stream", headers)

    def form(self, request: Request) -> dict[str, Any]:
        """A multipart body as the nested fields Rails makes of it (`a[b][0][c]`)."""
        boundary = boundary_of(request.headers.get("content-type", ""))
        if boundary is None:
            raise self._error(400, "Unsupported Content-Type: multipart/form-data needs a boundary")
        try:
            parts = parse_multipart(request.open_body(), boundary)
        except MultipartError as error:
            raise self._error(400, f"Invalid multipart body: {error}") from None
        root: dict[str, Any] = {}
        for part in parts:
            _assign(root, part)
        return root

    def comment_uploads(self, request: Request, body: dict[str, Any], data: Any) -> list[_Upload]:
        """The files of a new comment, checked before the comment is made (422 / 413 otherwise):
        a file anywhere but `comment[attachments][<i>][attachment]` is refused (inferred)."""
        multipart = boundary_of(request.headers.get("content-type", "")) is not None
        if not isinstance(data, dict):
            return []
        outside = [(k, v) for k, v in body.items() if v is not data]
        outside += [(k, v) for k, v in data.items() if k != "attachments"]
        stray = [key for key, value in outside if _holds_file(value)]
        if stray:
            raise self._error(422, {stray[0]: ["недопустимый параметр"]})  # inferred wording
        if "attachments" not in data:
            return []
        attachments = data["attachments"]
        if not multipart:
            raise self._error(422, {"attachments": ["файлы передаются только в multipart/form-data"]})
        if not isinstance(attachments, dict) or not attachments or not all(k.isdigit() for k in attachments):
            raise self._error(422, {"attachments": ["имеет неверный формат"]})  # the `[]` form (observed 422)
        return [self._upload(f"attachments[{index}]", item) for index, item in attachments.items()]

    def _upload(self, where: str, item: Any) -> _Upload:
        if not isinstance(item, dict) or set(item) - _FILE_KEYS:
            unknown = sorted(set(item) - _FILE_KEYS) if isinstance(item, dict) else []
            raise self._error(422, {f"{where}[{unknown[0] if unknown else 'attachment'}]": ["недопустимый параметр"]})
        part = item.get("attachment")
        if not isinstance(part, FormPart) or part.blob is None:
            raise self._error(422, {f"{where}[attachment]": ["не может быть пустым"]})
        if self.max_attachment_bytes is not None and part.blob.size > self.max_attachment_bytes:
            raise self._error(self.too_large_status, {f"{where}[attachment]": ["слишком большой файл"]})  # inferred
        flag, description = item.get("is_public"), item.get("description")
        if flag is not None and (not isinstance(flag, str) or flag not in _BOOLS):
            raise self._error(422, {f"{where}[is_public]": ["должно быть true или false"]})
        if description is not None and not isinstance(description, str):
            raise self._error(422, {f"{where}[description]": ["должен быть строкой"]})
        public = self.public_default if flag is None else _BOOLS[flag]
        return _Upload(self._stored_name(part.filename or ""), description, public, part.blob)

    def attach(self, issue_id: int, comment_id: int, uploads: list[_Upload]) -> None:
        for upload in uploads:
            self._store(issue_id, comment_id, upload)

    # -- state ---------------------------------------------------------------------------------
    def _stored_name(self, name: str) -> str:
        name = name.replace("\\", "/").rsplit("/", 1)[-1]  # browsers of old sent full paths
        return _PAPERCLIP_RESTRICTED.sub("_", name) if self.paperclip_names else name

    def _store(self, issue_id: int, comment_id: int | None, upload: _Upload) -> _Attachment:
        self._last_id += 1
        file = _Attachment(
            self._last_id, issue_id, comment_id, upload.name, upload.description, upload.is_public,
            self._ok._now(), upload.blob,
        )  # fmt: skip
        self._files[file.id] = file
        return file


def _holds_file(value: Any) -> bool:
    if isinstance(value, FormPart):
        return value.blob is not None
    if isinstance(value, dict):
        return any(_holds_file(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_file(v) for v in value)
    return False


def _assign(root: dict[str, Any], part: FormPart) -> None:
    """Rack's nesting: `a[b][0][c]` -> {"a": {"b": {"0": {"c": value}}}}, a field's value as text,
    a file as its part.  The sequential `a[][c]` form is kept under the key "[]", which no
    documented field has, so the caller refuses it."""
    base, _, rest = part.name.partition("[")
    keys = [base, *re.findall(r"\[([^\]]*)\]", "[" + rest)] if rest else [base]
    keys = [key or "[]" for key in keys]
    node = root
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = part if part.blob is not None else part.text
