"""Drive (`disk.*`) and task files of the Bitrix24 emulator.

It follows /work/shared/api/routes-files.md §3 and crm-billing.md §2.8:

* storages (`disk.storage.getlist`, `getTypes`, `getChildren`): a personal one per user, one
  common, one per workgroup; `ROOT_OBJECT_ID` is the root folder for `disk.folder.*`;
* folders (`disk.folder.getChildren` 50 a page with a `filter`, `addSubFolder`) and files
  (`disk.folder.uploadFile` inline with base64 `fileContent`, or in two steps through `uploadUrl`
  whose token carries `id`, `data`, `rights`, `generateUniqueName`; the file then takes the
  multipart part's name), `DISK_OBJ_22000` on a clash, `name (1).ext` with `generateUniqueName`;
  the Drive `ID` differs from `FILE_ID`; `disk.file.get` gives a fresh `DOWNLOAD_URL`;
* attaching to a task (`tasks.task.files.attach` -> `attachmentId`; `UF_TASK_WEBDAV_FILES` with
  `n<id>` values on add, replaced whole on update), `ufTaskWebdavFiles` lists attachment ids,
  `disk.attachedObject.get` maps one to `OBJECT_ID` and a `DOWNLOAD_URL`;
* classic comment files (`UF_FORUM_MESSAGE_DOC` on `task.commentitem.add`, `ATTACHED_OBJECTS`
  with relative URLs in `task.commentitem.getlist` / `get`);
* the new task card's chat (`im.disk.folder.get`, `im.disk.file.commit`, `im.v2.File.upload`,
  `im.v2.File.download`, and `files[]` next to `messages[]` of `im.dialog.messages.get`);
* the `disk` scope, and folder rights: the webhook user needs "read" to list or attach and "add"
  to upload (`ACCESS_DENIED`).  Download links refuse a request without a User-Agent.

Inferred facts are options of `Drive` (the emulator's `drive_options`): who may read and add in
each kind of storage (`_default_rights`), the HTTP status of `ACCESS_DENIED` (403), how long
upload and download links live (`link_seconds`, unknown: forever), whether a technical
User-Agent (`python-requests/…`, `curl/…`) is refused too, the `im.v2` size cap (100 MB,
documented) and whether files of a comment on a new-card portal are dropped (they are: "comment
methods not suitable" for files there).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from okbx_emulator import bitrix24_query as q
from okbx_emulator.bitrix24_crm import Page
from okbx_emulator.bitrix24_query import ApiError, core_error
from okbx_emulator.files import Blob, MultipartError, boundary_of, parse_multipart
from okbx_emulator.http import Request, Response

if TYPE_CHECKING:
    from okbx_emulator.bitrix24 import Bitrix24Emulator

DISK_METHODS: dict[str, tuple[tuple[str, ...], str]] = {  # method -> (scopes, Drive handler)
    "disk.storage.getlist": (("disk",), "storage_getlist"),
    "disk.storage.gettypes": (("disk",), "storage_gettypes"),
    "disk.storage.getchildren": (("disk",), "storage_getchildren"),
    "disk.folder.getchildren": (("disk",), "folder_getchildren"),
    "disk.folder.addsubfolder": (("disk",), "folder_addsubfolder"),
    "disk.folder.uploadfile": (("disk",), "folder_uploadfile"),
    "disk.file.get": (("disk",), "file_get"),
    "disk.attachedobject.get": (("disk",), "attachedobject_get"),
    "tasks.task.files.attach": (("task",), "task_files_attach"),
    "task.commentitem.get": (("task",), "commentitem_get"),
    "im.disk.folder.get": (("im",), "im_disk_folder_get"),
    "im.disk.file.commit": (("im",), "im_disk_file_commit"),
    "im.v2.file.upload": (("im",), "im_v2_file_upload"),
    "im.v2.file.download": (("im",), "im_v2_file_download"),
}
UF_TRIO = ("UF_CRM_TASK", "UF_TASK_WEBDAV_FILES", "UF_MAIL_MESSAGE")  # select one, get all three
IM_V2_MAX_BYTES = 100 * 1024 * 1024  # documented
_TECHNICAL_AGENTS = re.compile(r"^(python-requests|python-urllib|curl|wget|go-http-client|java)/", re.IGNORECASE)
_COMMENT_GET = q.LegacySignature(
    "ctaskcommentitem", "get", (q.LegacyParam("taskId", "integer"), q.LegacyParam("itemId", "integer")), mandatory=2
)
_PAGE = q.PAGE_SIZE


@dataclass
class _Storage:
    id: int
    name: str
    entity_type: str  # user | common | group | im (the chats' storage, not listed)
    entity_id: str
    root_id: int


@dataclass
class _Object:
    id: int
    storage_id: int
    parent_id: int | None
    name: str
    type: str  # folder | file
    created_by: int
    created: datetime
    file_id: int | None = None
    blob: Blob | None = None
    # rights set on this folder (None: inherited): user ids that may read / add
    readers: frozenset[int] | None = None
    adders: frozenset[int] | None = None


@dataclass
class _Attached:
    id: int
    object_id: int
    module_id: str  # tasks | forum | im
    entity_type: str  # tasks_task | forum_message | im_message (inferred for the last two)
    entity_id: int
    created_by: int
    created: datetime


@dataclass
class _Link:
    kind: str  # upload | object | attached | once
    target: int  # folder (upload), object, or attached object id
    made: datetime
    auth: str
    token: str
    params: dict[str, Any] = field(default_factory=dict)


class Drive:
    def __init__(
        self,
        emulator: Bitrix24Emulator,
        *,
        access_denied_status: int = 403,  # inferred: AccessException "probably rendered as 403"
        link_seconds: float | None = None,  # unknown (open question 5): links live forever unless set
        refuse_technical_agents: bool = False,  # documented only as "may fail"
        new_card_comment_files: bool = False,  # inferred: dropped on the new card ("not suitable")
    ) -> None:
        self._bx = emulator
        self.access_denied_status, self.link_seconds = access_denied_status, link_seconds
        self.refuse_technical_agents, self.new_card_comment_files = refuse_technical_agents, new_card_comment_files
        self.origin = "http://127.0.0.1"  # the portal's address, from the Host of the request served
        self._storages: dict[int, _Storage] = {}
        self._objects: dict[int, _Object] = {}
        self._attached: dict[int, _Attached] = {}
        self._links: dict[str, _Link] = {}
        self._current: dict[tuple[str, int], _Link] = {}  # the live link of each file and attachment
        self._chat_files: dict[int, list[int]] = {}  # message (comment) id -> Drive object ids
        self._ids = {"storage": 0, "object": 1000, "file": 50000, "attached": 300}

    # -- seeding and inspection (plain Python) -----------------------------------------------
    def storage_of(self, entity_type: str, entity_id: int | str) -> dict[str, Any]:
        with self._bx._lock:
            self._sync_storages()
            found = [
                s for s in self._storages.values() if (s.entity_type, s.entity_id) == (entity_type, str(entity_id))
            ]
            if not found:
                raise ValueError(f"no {entity_type} storage {entity_id}")
            return {"id": found[0].id, "root_id": found[0].root_id}

    def add_file(self, folder_id: int, name: str, data: bytes | None = None, *, size: int | None = None,
                 seed: int = 0, created_by: int | None = None) -> int:  # fmt: skip
        """A file a person put on the Drive: `data`, or a synthetic content of `size` bytes."""
        if (data is None) == (size is None):
            raise ValueError("give either data or size")
        blob = Blob.of(data) if data is not None else Blob.synthetic(size or 0, seed)
        with self._bx._lock:
            folder = self._folder(folder_id)
            if self._child_named(folder.id, name):
                raise ValueError(f"a file named {name!r} exists in folder {folder_id}")
            return self._new_file(folder, name, blob, created_by or self._bx.user_id).id

    def set_rights(self, folder_id: int, *, read: set[int] | None = None, add: set[int] | None = None) -> None:
        """Who may read and add in this folder and below (None: as the parent)."""
        with self._bx._lock:
            folder = self._folder(folder_id)
            folder.readers = None if read is None else frozenset(read)
            folder.adders = None if add is None else frozenset(add)

    def attach_to_task(self, task_id: int, object_id: int, by_user: int) -> int:
        """A programmer attaches a Drive file to the task in the UI."""
        with self._bx._lock:
            self._bx._existing_task(task_id)
            return self._attach(task_id, object_id, by_user)

    def add_comment_with_files(self, task_id: int, author_id: int, text: str, object_ids: list[int]) -> int:
        """A programmer comments on the task with files (old card: comment; new card: chat message)."""
        with self._bx._lock:
            self._bx._existing_task(task_id)
            comment_id = self._bx._insert_comment(task_id, author_id, text, self._bx._now())
            self._attach_comment(comment_id, object_ids, author_id)
            return comment_id

    def blob(self, object_id: int) -> Blob:
        with self._bx._lock:
            blob = self._objects[object_id].blob
            if blob is None:
                raise ValueError(f"object {object_id} is a folder")
            return blob

    def files_in(self, folder_id: int) -> list[dict[str, Any]]:
        with self._bx._lock:
            return [self._object_json(o) for o in self._children(folder_id)]

    def every_file(self) -> list[dict[str, Any]]:
        """Every file on every drive, the chats' too, as the API shows one (for tests)."""
        with self._bx._lock:
            return [self._object_json(o) for o in self._objects.values() if o.type == "file"]

    def comment_file_names(self, comment_id: int) -> list[str]:
        """The names of the files a task comment carries (on the new card: a chat message)."""
        with self._bx._lock:
            if comment_id in self._chat_files:
                return [self._objects[i].name for i in self._chat_files[comment_id]]
            found = [
                a for a in self._attached.values() if a.entity_type == "forum_message" and a.entity_id == comment_id
            ]
            return [self._objects[a.object_id].name for a in found]

    def task_attachments(self, task_id: int) -> list[dict[str, Any]]:
        with self._bx._lock:
            found = [a for a in self._attached.values() if a.module_id == "tasks" and a.entity_id == task_id]
            return [self._attached_json(a) for a in found]

    # -- hooks for bitrix24.py (called under the lock) -----------------------------------------
    def expand_select(self, select: list[str] | None) -> list[str] | None:
        if select is None or not set(select) & set(UF_TRIO):
            return select
        return [*select, *(f for f in UF_TRIO if f not in select)]

    def set_task_files(self, task: dict[str, Any], values: Any, *, replace: bool) -> None:
        """`UF_TASK_WEBDAV_FILES` written: `n<id>` attaches a Drive file, a bare number keeps that
        attachment (only on update), anything else attaches nothing (documented)."""
        keep: list[int] = []
        for value in q.listed(values) if values not in (None, "", False) else []:
            text = str(value).strip()
            if text.startswith("n") and text[1:].isdigit():
                obj = self._objects.get(int(text[1:]))
                if obj is not None and obj.type == "file" and self._may(obj, "read"):
                    keep.append(self._attach(task["ID"], obj.id, self._bx.user_id))
            elif text.isdigit() and replace:
                found = self._attached.get(int(text))
                if found is not None and found.entity_type == "tasks_task" and found.entity_id == task["ID"]:
                    keep.append(found.id)
        for attached in [a for a in self._attached.values() if _on_task(a, task["ID"]) and a.id not in keep]:
            del self._attached[attached.id]  # a field written whole: files not in it are detached
        task["UF_TASK_WEBDAV_FILES"] = list(dict.fromkeys(keep))

    def comment_files(self, values: Any, author: int) -> list[int]:
        """Drive ids of `UF_FORUM_MESSAGE_DOC` (`n<id>`), checked: "File not found" otherwise."""
        ids = []
        for value in q.listed(values) if values not in (None, "", []) else []:
            text = str(value).strip()
            obj = self._objects.get(int(text[1:])) if text.startswith("n") and text[1:].isdigit() else None
            if obj is None or obj.type != "file" or not self._may(obj, "read", author):
                raise core_error("File not found")
            ids.append(obj.id)
        return ids

    def attach_comment_files(self, comment_id: int, object_ids: list[int], author: int) -> None:
        if self._bx.new_task_card and not self.new_card_comment_files:
            return  # inferred: "comment methods: not suitable" for files on the new card
        self._attach_comment(comment_id, object_ids, author)

    def comment_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """`ATTACHED_OBJECTS` of a `task.commentitem.*` row, keyed by attachment id (relative URLs)."""
        found = [
            a for a in self._attached.values() if a.entity_type == "forum_message" and a.entity_id == int(row["ID"])
        ]
        objects = {}
        for attached in found:
            obj = self._objects[attached.object_id]
            link = self._mint("attached", attached.id)
            objects[str(attached.id)] = {
                "ATTACHMENT_ID": str(attached.id),
                "NAME": obj.name,
                "SIZE": str(obj.blob.size if obj.blob else 0),
                "FILE_ID": str(obj.file_id),
                "DOWNLOAD_URL": _uf_path(attached.id, link.auth, "download"),
                "VIEW_URL": _uf_path(attached.id, link.auth, "show"),
            }
        return row | {"ATTACHED_OBJECTS": objects}

    def chat_payload(self, messages: list[dict[str, Any]], chat_id: int) -> dict[str, Any]:
        """`params.FILE_ID` on messages with files, and the top-level `files[]` (inferred shapes)."""
        files = []
        for message in messages:
            ids = self._chat_files.get(int(message["id"]), [])
            if ids:
                message["params"] = {"FILE_ID": [str(i) for i in ids]}
            for object_id in ids:
                obj = self._objects[object_id]
                files.append({
                    "id": obj.id, "chatId": chat_id, "date": self._bx._view.fmt(obj.created), "type": "file",
                    "name": obj.name, "extension": obj.name.rpartition(".")[2] if "." in obj.name else "",
                    "size": obj.blob.size if obj.blob else 0, "authorId": obj.created_by,
                    # a browser-session link (inferred): useless to a webhook, use im.v2.File.download
                    "urlDownload": f"/disk/downloadFile/{obj.id}/?&ncc=1&filename={quote(obj.name)}",
                })  # fmt: skip
        return {"files": files}

    # -- disk.storage.* ----------------------------------------------------------------------
    def storage_getlist(self, params: Any) -> Page:
        named = q.as_mapping(params)
        self._sync_storages()
        listed = [s for s in self._storages.values() if s.entity_type != "im"]
        rows = [self._storage_json(s) for s in listed if self._may(self._objects[s.root_id], "read")]
        coercers: dict[str, Callable[[Any], Any]] = {k: str for k in ("ID", "NAME", "CODE", "ENTITY_TYPE", "ENTITY_ID")}
        filters = q.as_mapping(named.get("filter"))
        rows = [r for r in rows if q.row_matches(filters, q.TASK_PREFIXES, coercers, r.get)]
        chunk, total, following = q.page(rows, named.get("start", 0))
        return Page(chunk, total, following)

    def storage_gettypes(self, params: Any) -> list[str]:
        return ["user", "common", "group"]

    def storage_getchildren(self, params: Any) -> Page:
        named = q.as_mapping(params)
        if "id" not in named:
            raise ApiError(400, "ERROR_ARGUMENT", "Required parameter id is missing")  # inferred wording
        self._sync_storages()
        storage = self._storages.get(q.php_intval(named["id"]))
        if storage is None or storage.entity_type == "im":
            raise _not_found(named.get("id"))
        return self._list_children(self._objects[storage.root_id], named)

    # -- disk.folder.* / disk.file.* ----------------------------------------------------------
    def folder_getchildren(self, params: Any) -> Page:
        named = q.as_mapping(params)
        return self._list_children(self._folder_param(named), named)

    def folder_addsubfolder(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        parent = self._folder_param(named)
        name = str(q.as_mapping(named.get("data")).get("NAME") or "").strip()
        if not name:
            raise ApiError(400, "DISK_BASE_SERVICE_22001", "Error: required parameter NAME")
        self._require(parent, "add")
        if self._child_named(parent.id, name):
            raise _clash(name)
        folder = self._new_object(parent, name, "folder", self._bx.user_id)
        return self._object_json(folder)

    def folder_uploadfile(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        folder = self._folder_param(named)
        data = q.as_mapping(named.get("data"))
        unique = q.php_truthy(named.get("generateUniqueName", False))
        self._require(folder, "add")
        if "fileContent" not in named:  # step 1 of 2: everything but the content goes into the token
            link = self._mint("upload", folder.id, {"data": data, "unique": unique, "rights": named.get("rights")})
            return {"field": "file", "uploadUrl": f"{self.origin}/rest/upload.json?auth={link.auth}&token={link.token}"}
        name = str(data.get("NAME") or "").strip()
        if not name:
            raise ApiError(400, "DISK_BASE_SERVICE_22001", "Error: required parameter NAME")
        return self._object_json(self._new_file(folder, self._free_name(folder, name, unique), _base64(named)))

    def file_get(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        obj = self._objects.get(q.php_intval(named.get("id")))
        if obj is None or obj.type != "file":
            raise _not_found(named.get("id"))
        self._require(obj, "read")
        return self._object_json(obj)

    def attachedobject_get(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        attached = self._attached.get(q.php_intval(named.get("id")))
        if attached is None:
            raise _not_found(named.get("id"))
        if self._bx._visible_task(self._task_of(attached)) is None:
            raise ApiError(self.access_denied_status, "ACCESS_DENIED", "Access denied")
        return self._attached_json(attached)

    # -- tasks -------------------------------------------------------------------------------
    def task_files_attach(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        if "fileId" not in named:
            raise ApiError(400, "100", "Could not find value for parameter {fileId} (internal error)")
        file_id = q.lax_int(named["fileId"])
        if file_id is None:
            text = f"Invalid value {named['fileId']} to match with parameter {{fileId}}. Should be value of type int."
            raise ApiError(400, "100", f"{text} (internal error)")
        task_id = q.lax_int(named.get("taskId"))
        if task_id is None:
            raise ApiError(400, "0", "wrong task id (internal error)")
        task = self._bx._visible_task(task_id)
        if task is None or not self._may_edit(task):
            raise ApiError(400, "0", "Access denied (internal error)")
        obj = self._objects.get(file_id)
        if obj is None or obj.type != "file" or not self._may(obj, "read"):
            raise core_error("Insufficient permissions.")
        return {"attachmentId": self._attach(task_id, obj.id, self._bx.user_id)}

    def commentitem_get(self, params: Any) -> dict[str, Any]:
        task_id, item_id = q.legacy_args(_COMMENT_GET, q.positional_values(params), reject_extra=True)
        if self._bx.new_task_card or self._bx._visible_task(task_id) is None:
            raise core_error("TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED")
        found = [c for c in self._bx._comments if c["TASK_ID"] == task_id and c["ID"] == item_id]
        if not found:
            raise core_error("TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED")
        return self.comment_row(self._bx._view.comment(found[0]))

    # -- the task chat (new card) ---------------------------------------------------------------
    def im_disk_folder_get(self, params: Any) -> dict[str, Any]:
        task = self._chat_task(q.as_mapping(params), 400)
        return {"ID": self._chat_folder(task).id}

    def im_disk_file_commit(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        task = self._chat_task(named, 403)
        ids = [q.php_intval(v) for v in q.listed(named.get("FILE_ID") or [])]
        if not ids:
            raise ApiError(400, "FILES_ERROR", "List of files is not specified")
        objects = [self._objects.get(i) for i in ids]
        if any(o is None or o.type != "file" or not self._may(o, "read") for o in objects):
            raise ApiError(400, "SAVE_ERROR", "Error saving file")  # inferred: what a foreign id meets
        message = str(named.get("MESSAGE") or "")
        message_id = self._bx._insert_comment(task["ID"], self._bx.user_id, message, self._bx._now())
        self._chat_files[message_id] = ids
        files = {f"upload{i}": self._chat_file_json(self._objects[i], task) for i in ids}
        return {"FILES": files, "DISK_ID": [str(i) for i in ids], "FILE_MODELS": files, "MESSAGE_ID": message_id}

    def im_v2_file_upload(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        task = self._chat_task({"DIALOG_ID": named.get("dialogId")}, 403, code="ACCESS_DENIED")
        fields = q.as_mapping(named.get("fields"))
        name = str(fields.get("name") or "").strip()
        if not name or not fields.get("content"):
            raise ApiError(400, "INVALID_PARAMETERS", "Fields name and content are required")  # inferred wording
        blob = _base64({"fileContent": [name, fields["content"]]})
        if blob.size > IM_V2_MAX_BYTES:
            raise ApiError(400, "FILE_TOO_LARGE", "The file is larger than 100 MB")  # inferred code
        folder = self._chat_folder(task)
        obj = self._new_file(folder, self._free_name(folder, name, True), blob)
        message_id = self._bx._insert_comment(task["ID"], self._bx.user_id, str(fields.get("message") or ""),
                                              self._bx._now())  # fmt: skip
        self._chat_files[message_id] = [obj.id]
        chat = task["CHAT_ID"]
        return {"file": self._chat_file_json(obj, task), "messageId": message_id, "chatId": chat,
                "dialogId": f"chat{chat}"}  # fmt: skip

    def im_v2_file_download(self, params: Any) -> dict[str, Any]:
        named = q.as_mapping(params)
        task = self._chat_task({"DIALOG_ID": named.get("dialogId")}, 403, code="ACCESS_DENIED")
        wanted = q.php_intval(named.get("fileId"))
        in_chat = {
            i for c in self._bx._comments if c["TASK_ID"] == task["ID"] for i in self._chat_files.get(c["ID"], [])
        }
        if wanted not in in_chat:
            raise ApiError(400, "FILE_NOT_FOUND", "File not found")
        link = self._mint("once", wanted)
        return {"downloadUrl": f"{self.origin}/rest/download.json?auth={link.auth}&token={link.token}"}

    # -- links served outside the REST methods ------------------------------------------------
    def is_url(self, request: Request) -> bool:
        return request.path in ("/rest/upload.json", "/rest/download.json", "/bitrix/tools/disk/uf.php")

    def serve_url(self, request: Request) -> Response | None:
        if not self.is_url(request):
            return None
        if request.path == "/rest/upload.json":
            return self._upload(request)
        agent = request.headers.get("user-agent", "").strip()
        if not agent or (self.refuse_technical_agents and _TECHNICAL_AGENTS.match(agent)):
            return Response.html(403, "<html><body>Access denied</body></html>")  # inferred answer
        with self._bx._lock:
            if request.path == "/bitrix/tools/disk/uf.php":
                link = self._live_link(request.query_value("auth[auth]"), "attached")
                attached = self._attached.get(link.target) if link else None
                if attached is None or str(attached.id) != request.query_value("attachedId"):
                    return Response.html(403, "<html><body>Access denied</body></html>")
                obj = self._objects[attached.object_id]
            else:
                link = self._live_link(request.query_value("token"), "object", "once")
                if link is None or link.auth != request.query_value("auth"):
                    return _json_error(ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data"))
                if link.kind == "once":
                    del self._links[link.token]  # documented: reuse is not guaranteed
                obj = self._objects[link.target]
        assert obj.blob is not None
        headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(obj.name)}"}
        return Response.stream(obj.blob.size, obj.blob.chunks(), "application/octet-stream", headers)

    def _upload(self, request: Request) -> Response:
        """Step 2 of `disk.folder.uploadFile`: the multipart POST to `uploadUrl`."""
        boundary = boundary_of(request.headers.get("content-type", ""))
        if request.method != "POST" or boundary is None:
            return _json_error(ApiError(400, "ERROR_ARGUMENT", "File is not specified"))  # inferred wording
        try:
            parts = parse_multipart(request.open_body(), boundary)  # outside the lock: it may be large
        except MultipartError:
            return _json_error(ApiError(400, "ERROR_COULD_NOT_SAVE_FILE", "Could not save file"))
        with self._bx._lock:
            link = self._live_link(request.query_value("token"), "upload")
            if link is None or link.auth != request.query_value("auth"):
                return _json_error(ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data"))
            part = next((p for p in parts if p.name == "file" and p.blob is not None), None)
            if part is None or part.blob is None:
                return _json_error(ApiError(400, "ERROR_ARGUMENT", "File is not specified"))  # inferred wording
            try:
                folder = self._folder(link.target)
                self._require(folder, "add")
                name = (part.filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
                if not name:
                    raise ApiError(400, "DISK_BASE_SERVICE_22001", "Error: required parameter NAME")
                obj = self._new_file(folder, self._free_name(folder, name, link.params["unique"]), part.blob)
            except ApiError as error:
                return _json_error(error)
            return Response.json(200, {"result": self._object_json(obj)})

    # -- state -------------------------------------------------------------------------------
    def _sync_storages(self) -> None:
        """A storage per user and workgroup, plus the common one, made on first sight."""
        known = {(s.entity_type, s.entity_id) for s in self._storages.values()}
        wanted = [("common", "shared_files_s1", "Shared drive")]
        wanted += [("user", str(u), self._bx._view.full_name(u)) for u in sorted(self._bx._users)]
        wanted += [("group", str(g), str(self._bx._groups[g]["NAME"])) for g in sorted(self._bx._groups)]
        for kind, entity, name in wanted:
            if (kind, entity) not in known:
                self._new_storage(kind, entity, name)

    def _new_storage(self, kind: str, entity: str, name: str) -> _Storage:
        self._ids["storage"] += 1
        root = self._new_object(None, name, "folder", self._bx.user_id, storage_id=self._ids["storage"])
        storage = _Storage(self._ids["storage"], name, kind, entity, root.id)
        self._storages[storage.id] = storage
        return storage

    def _new_object(
        self, parent: _Object | None, name: str, kind: str, by: int, storage_id: int | None = None
    ) -> _Object:
        self._ids["object"] += 1
        storage = storage_id if parent is None else parent.storage_id
        assert storage is not None
        obj = _Object(self._ids["object"], storage, parent.id if parent else None, name, kind, by, self._bx._now())
        self._objects[obj.id] = obj
        return obj

    def _new_file(self, folder: _Object, name: str, blob: Blob, by: int | None = None) -> _Object:
        obj = self._new_object(folder, name, "file", by or self._bx.user_id)
        self._ids["file"] += 1
        obj.file_id, obj.blob = self._ids["file"], blob
        return obj

    def _attach(self, task_id: int, object_id: int, by: int) -> int:
        task = self._bx._tasks[task_id]
        for attached in self._attached.values():  # inferred: attaching the same file again adds nothing
            if _on_task(attached, task_id) and attached.object_id == object_id:
                return attached.id
        attached = self._new_attached(object_id, "tasks", "tasks_task", task_id, by)
        task["UF_TASK_WEBDAV_FILES"] = [*task.get("UF_TASK_WEBDAV_FILES", []), attached.id]
        return attached.id

    def _attach_comment(self, comment_id: int, object_ids: list[int], author: int) -> None:
        if self._bx.new_task_card:  # on the new card a comment is a chat message
            self._chat_files[comment_id] = list(object_ids)
            return
        for object_id in object_ids:
            self._new_attached(object_id, "forum", "forum_message", comment_id, author)

    def _new_attached(self, object_id: int, module: str, entity_type: str, entity_id: int, by: int) -> _Attached:
        self._ids["attached"] += 1
        attached = _Attached(self._ids["attached"], object_id, module, entity_type, entity_id, by, self._bx._now())
        self._attached[attached.id] = attached
        return attached

    def _task_of(self, attached: _Attached) -> int:
        if attached.entity_type == "tasks_task":
            return attached.entity_id
        comment = next((c for c in self._bx._comments if c["ID"] == attached.entity_id), None)
        return int(comment["TASK_ID"]) if comment else 0

    def _chat_folder(self, task: dict[str, Any]) -> _Object:
        storage = next((s for s in self._storages.values() if s.entity_type == "im"), None)
        if storage is None:
            storage = self._new_storage("im", "im", "Chat files")
        name = f"chat{task['CHAT_ID']}"
        existing = self._child_named(storage.root_id, name)
        return existing or self._new_object(self._objects[storage.root_id], name, "folder", self._bx.user_id)

    def _chat_task(self, named: dict[str, Any], status: int, code: str = "ACCESS_ERROR") -> dict[str, Any]:
        """The task whose chat `CHAT_ID` or `DIALOG_ID` ("chat<id>") names; the first one given wins."""
        if "CHAT_ID" in named:
            chat_id = q.php_intval(named["CHAT_ID"])
            if not chat_id:
                raise ApiError(400, "CHAT_ID_EMPTY", "Chat ID can't be empty")
        else:
            dialog = str(named.get("DIALOG_ID") or "")
            if not dialog:
                raise ApiError(400, "DIALOG_ID_EMPTY", "Dialog ID can't be empty")
            chat_id = q.php_intval(dialog[4:]) if dialog.startswith("chat") else 0
        task = next((t for t in self._bx._tasks.values() if chat_id and t.get("CHAT_ID") == chat_id), None)
        if task is None or not self._bx._readable(task):
            raise ApiError(status, code, "You do not have access to the specified dialog")
        return task

    def _mint(self, kind: str, target: int, params: dict[str, Any] | None = None) -> _Link:
        """A link; a file's or attachment's live one is given again, so listings do not pile them up."""
        current = self._current.get((kind, target)) if kind in ("object", "attached") else None
        if current is not None and self._live_link(current.token, kind) is current:
            return current
        auth = secrets.token_hex(16)
        # a uf.php link carries only auth[auth]: that is its key; the others carry a token too
        token = auth if kind == "attached" else ("im|" if kind == "once" else "disk|") + secrets.token_hex(12)
        link = _Link(kind, target, self._bx._now(), auth, token, params or {})
        self._links[token] = link
        if kind in ("object", "attached"):
            if current is not None:
                self._links.pop(current.token, None)  # expired: forget it
            self._current[(kind, target)] = link
        return link

    def _live_link(self, token: str | None, *kinds: str) -> _Link | None:
        link = self._links.get(token or "")
        if link is None or link.kind not in kinds:
            return None
        if self.link_seconds is not None and self._bx._now() - link.made > timedelta(seconds=self.link_seconds):
            return None
        return link

    # -- rights ------------------------------------------------------------------------------
    def _may(self, obj: _Object, right: str, user: int | None = None) -> bool:
        user = self._bx.user_id if user is None else user
        node: _Object | None = obj
        while node is not None:
            chosen = node.readers if right == "read" else node.adders
            if chosen is not None:
                return user in chosen
            node = self._objects.get(node.parent_id) if node.parent_id is not None else None
        return self._default_rights(self._storages[obj.storage_id], right, user)

    def _default_rights(self, storage: _Storage, right: str, user: int) -> bool:
        """inferred: a personal drive is its owner's alone (administrators included); a workgroup's
        is its members' and the administrators'; everyone reads the common drive, administrators
        add to it; a chat's files are for whoever may read the task."""
        admin = user in self._bx.admins
        if storage.entity_type == "user":
            return storage.entity_id == str(user)
        if storage.entity_type == "group":
            return admin or user in self._bx._members.get(int(storage.entity_id), set())
        if storage.entity_type == "common":
            return right == "read" or admin
        return True  # the chat storage: access is checked on the chat

    def _require(self, obj: _Object, right: str) -> None:
        if not self._may(obj, right):
            raise ApiError(self.access_denied_status, "ACCESS_DENIED", "Access denied")

    def _may_edit(self, task: dict[str, Any]) -> bool:
        # documented: edit rights on the task or being its creator; inferred: administrators may edit
        user = self._bx.user_id
        return user in self._bx.admins or user == task["CREATED_BY"]

    # -- lookups and rendering ---------------------------------------------------------------
    def _folder(self, folder_id: int) -> _Object:
        folder = self._objects.get(folder_id)
        if folder is None or folder.type != "folder":
            raise _not_found(folder_id)
        return folder

    def _folder_param(self, named: dict[str, Any]) -> _Object:
        if "id" not in named:
            raise ApiError(400, "ERROR_ARGUMENT", "Required parameter id is missing")  # inferred wording
        folder = self._objects.get(q.php_intval(named["id"]))
        if folder is None or folder.type != "folder":
            raise _not_found(named["id"])
        return folder

    def _children(self, folder_id: int) -> list[_Object]:
        return [o for o in self._objects.values() if o.parent_id == folder_id]

    def _child_named(self, folder_id: int, name: str) -> _Object | None:
        # inferred: names compare case-insensitively, as on the portal's file systems
        return next((o for o in self._children(folder_id) if o.name.lower() == name.lower()), None)

    def _free_name(self, folder: _Object, name: str, unique: bool) -> str:
        if not self._child_named(folder.id, name):
            return name
        if not unique:
            raise _clash(name)
        stem, dot, ext = name.rpartition(".") if "." in name.strip(".") else (name, "", "")
        number = 1
        while self._child_named(folder.id, f"{stem} ({number}){dot}{ext}"):
            number += 1
        return f"{stem} ({number}){dot}{ext}"

    def _list_children(self, folder: _Object, named: dict[str, Any]) -> Page:
        self._require(folder, "read")
        # inferred: NAME compares as MySQL's default collation does, without regard to case
        coercers: dict[str, Callable[[Any], Any]] = {"ID": q.php_intval, "NAME": _folded, "TYPE": str}
        coercers |= {"CREATE_TIME": self._bx._filter_date, "UPDATE_TIME": self._bx._filter_date}
        filters = q.as_mapping(named.get("filter"))
        rows = [o for o in self._children(folder.id) if self._may(o, "read")]
        rows = [o for o in rows if q.row_matches(filters, q.TASK_PREFIXES, coercers, partial(_value, o))]
        chunk, total, following = q.page(rows, named.get("start", 0))
        return Page([self._object_json(o) for o in chunk], total, following)

    def _storage_json(self, storage: _Storage) -> dict[str, Any]:
        return {
            "ID": str(storage.id), "NAME": storage.name, "CODE": None, "MODULE_ID": "disk",
            "ENTITY_TYPE": storage.entity_type, "ENTITY_ID": storage.entity_id,
            "ROOT_OBJECT_ID": str(storage.root_id),
        }  # fmt: skip

    def _object_json(self, obj: _Object) -> dict[str, Any]:
        fmt = self._bx._view.fmt
        row: dict[str, Any] = {
            "ID": obj.id, "NAME": obj.name, "CODE": None, "STORAGE_ID": str(obj.storage_id), "TYPE": obj.type,
            "PARENT_ID": str(obj.parent_id) if obj.parent_id else None, "DELETED_TYPE": 0,
            "CREATE_TIME": fmt(obj.created), "UPDATE_TIME": fmt(obj.created), "DELETE_TIME": None,
            "CREATED_BY": str(obj.created_by), "UPDATED_BY": str(obj.created_by), "DELETED_BY": "0",
            "DETAIL_URL": f"{self.origin}/docs/path/{quote(obj.name)}",
        }  # fmt: skip
        if obj.type == "folder":
            return row | {"REAL_OBJECT_ID": str(obj.id)}
        link = self._mint("object", obj.id)
        download = f"{self.origin}/rest/download.json?auth={link.auth}&token={link.token}"
        size = str(obj.blob.size if obj.blob else 0)
        return row | {"GLOBAL_CONTENT_VERSION": "1", "FILE_ID": obj.file_id, "SIZE": size, "DOWNLOAD_URL": download}

    def _attached_json(self, attached: _Attached) -> dict[str, Any]:
        obj = self._objects[attached.object_id]
        link = self._mint("attached", attached.id)
        return {
            "ID": str(attached.id), "OBJECT_ID": str(obj.id), "MODULE_ID": attached.module_id,
            "ENTITY_TYPE": attached.entity_type, "ENTITY_ID": str(attached.entity_id),
            "CREATE_TIME": self._bx._view.fmt(attached.created), "CREATED_BY": str(attached.created_by),
            "DOWNLOAD_URL": self.origin + _uf_path(attached.id, link.auth, "download"),
            "NAME": obj.name, "SIZE": str(obj.blob.size if obj.blob else 0),
        }  # fmt: skip

    def _chat_file_json(self, obj: _Object, task: dict[str, Any]) -> dict[str, Any]:
        return {"id": obj.id, "chatId": task["CHAT_ID"], "name": obj.name, "size": obj.blob.size if obj.blob else 0,
                "type": "file", "urlDownload": f"/disk/downloadFile/{obj.id}/?&ncc=1"}  # fmt: skip


def _on_task(attached: _Attached, task_id: int) -> bool:
    return attached.entity_type == "tasks_task" and attached.entity_id == task_id


def _folded(value: Any) -> str:
    return str(value).casefold()


def _value(obj: _Object, field: str) -> Any:
    return {"ID": obj.id, "NAME": obj.name.casefold(), "TYPE": obj.type, "CREATE_TIME": obj.created,
            "UPDATE_TIME": obj.created}.get(field)  # fmt: skip


def _uf_path(attached_id: int, auth: str, action: str) -> str:
    return f"/bitrix/tools/disk/uf.php?attachedId={attached_id}&auth[auth]={auth}&action={action}&ncc=1"


def _base64(named: dict[str, Any]) -> Blob:
    content = named.get("fileContent")
    pair = list(content.values()) if isinstance(content, dict) else content
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str) or not pair[1].strip():
        raise ApiError(400, "ERROR_COULD_NOT_SAVE_FILE", "Could not save file")  # documented code; inferred cases
    try:
        return Blob.of(base64.b64decode(pair[1], validate=True))
    except (binascii.Error, ValueError):
        raise ApiError(400, "ERROR_COULD_NOT_SAVE_FILE", "Could not save file") from None


def _not_found(ref: Any) -> ApiError:
    return ApiError(400, "ERROR_NOT_FOUND", f"Could not find entity with id `{ref}`")


def _clash(name: str) -> ApiError:
    # source: ERROR_NON_UNIQUE_NAME = 'DISK_OBJ_22000'; the text is localised (inferred wording)
    return ApiError(400, "DISK_OBJ_22000", f"A file or folder named «{name}» already exists")


def _json_error(error: ApiError) -> Response:
    return Response.json(error.status, error.payload())
