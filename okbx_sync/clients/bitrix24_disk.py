"""Bitrix24 Drive and task-file verbs over the incoming webhook (scopes `disk`, `task`, `im`).

Facts used (routes-files.md §3, crm-billing.md §2.8): a webhook finds a folder through
`disk.storage.getlist` (a workgroup's storage: `ENTITY_TYPE` group, `ENTITY_ID` the group) and
its `ROOT_OBJECT_ID`, then `disk.folder.getChildren` (50 a page) or `addSubFolder`; a file is
uploaded in two steps (`disk.folder.uploadFile` with `id` and `generateUniqueName` only, which
answers `{field, uploadUrl}`; then a multipart POST of the file under `field` to that URL; the
name is the part's file name); it is attached with its Drive `ID` (never `FILE_ID`) by
`tasks.task.files.attach`, or to a classic comment by `UF_FORUM_MESSAGE_DOC: ["n<id>"]`, or to a
new-card task chat by `im.disk.folder.get` + upload into that folder + `im.disk.file.commit`.
A task's files are `ufTaskWebdavFiles` (attachment ids) -> `disk.attachedObject.get` ->
`DOWNLOAD_URL`; a comment's are its `ATTACHED_OBJECTS` (relative URLs); a chat's are the
`files[]` of `im.dialog.messages.get`, downloaded through `disk.file.get` (a fresh link).

No description field is documented for a Drive file, so okbx's marker has to live in the file's
name: `children(folder, name=...)` is the look before a write.  Every link carries a token and is
kept in a `Secret`; downloads send a browser's headers, as the docs ask.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..errors import ApiError, MalformedResponse
from ..filenames import safe_filename
from .bitrix24 import PAGE, SYSTEM, Bitrix24Client
from .files_parse import (
    ChatFile,
    DriveObject,
    Storage,
    TaskFile,
    parse_chat_files,
    parse_comment_files,
    parse_drive_object,
    parse_drive_objects,
    parse_storages,
    parse_task_chat_id,
    parse_task_file,
    parse_task_file_ids,
    parse_task_list_file_ids,
    parse_upload_target,
)
from .http import Downloaded, Sink, TooLarge
from .multipart import FileSource, streaming_body
from .parse import ParseError, integer, items, obj

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
NAME_CLASH = "DISK_OBJ_22000"


def _parse(method: str, parser: Callable[..., T], *args: Any) -> T:
    try:
        return parser(*args)
    except ParseError as exc:
        raise MalformedResponse(SYSTEM, method, str(exc)) from None


class Bitrix24Drive:
    def __init__(self, bitrix: Bitrix24Client, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> None:
        self.bitrix = bitrix
        self.max_bytes = max_bytes

    @property
    def _origin(self) -> str:
        return self.bitrix.portal_url()

    def _pages(self, method: str, params: dict[str, Any]) -> list[Any]:
        """Every row of a `start`-paged list method (50 a page)."""
        rows: list[Any] = []
        for start in range(0, 200 * PAGE, PAGE):
            page = _parse(method, items, self.bitrix.call(method, {**params, "start": start}), method)
            rows += page
            if len(page) < PAGE:
                return rows
        raise MalformedResponse(SYSTEM, method, "still paging after 200 pages")

    # -- folders -------------------------------------------------------------------------------
    def storages(self, *, entity_type: str | None = None, entity_id: int | str | None = None) -> list[Storage]:
        method = "disk.storage.getlist"
        filter_ = {k: str(v) for k, v in (("ENTITY_TYPE", entity_type), ("ENTITY_ID", entity_id)) if v is not None}
        found = _parse(method, parse_storages, self._pages(method, {"filter": filter_}))
        # the filter is checked here too: a portal that ignored it must not hand out another storage
        return [
            s
            for s in found
            if (entity_type is None or s.entity_type == entity_type)
            and (entity_id is None or s.entity_id == str(entity_id))
        ]

    def group_storage(self, group_id: int) -> Storage | None:
        found = self.storages(entity_type="group", entity_id=group_id)
        return found[0] if found else None

    def children(self, folder_id: int, *, name: str | None = None) -> list[DriveObject]:
        """A folder's files and folders (those the webhook user may read); with `name`, only the
        objects of that name (compared here, case-insensitively, whatever the filter did)."""
        method = "disk.folder.getchildren"
        params: dict[str, Any] = {"id": int(folder_id)}
        if name is not None:
            params["filter"] = {"NAME": name}  # inferred: NAME is filterable (the generic filter is documented)
        found = _parse(method, parse_drive_objects, self._pages(method, params), self._origin)
        return [o for o in found if name is None or o.name.casefold() == name.casefold()]

    def folder(self, parent_id: int, name: str) -> DriveObject:
        """The subfolder `name`, made once: looked for first, and looked for again after a clash."""
        name = safe_filename(name)
        for existing in self.children(parent_id, name=name):
            if existing.is_folder:
                return existing
        method = "disk.folder.addsubfolder"
        try:
            raw = self.bitrix.call(method, {"id": int(parent_id), "data": {"NAME": name}}, write=True)
        except ApiError as error:
            if error.code != NAME_CLASH:
                raise
            # the NAME filter is inferred: after a clash, read the whole folder before giving up
            found = [o for o in self.children(parent_id) if o.is_folder and o.name.casefold() == name.casefold()]
            if not found:
                raise
            return found[0]
        return _parse(method, parse_drive_object, raw, self._origin)

    # -- files ---------------------------------------------------------------------------------
    def upload(self, folder_id: int, source: FileSource, *, unique_name: bool = False) -> DriveObject:
        """Upload in two steps, streaming the content; the name is made safe first.  A write:
        never sent twice.  With `unique_name` a clash gives `name (1).ext`, else `DISK_OBJ_22000`."""
        method = "disk.folder.uploadfile"
        size = source.known_size()
        if self.max_bytes is not None and size is not None and size > self.max_bytes:
            raise TooLarge(SYSTEM, method, f"file of {size} bytes is over the cap of {self.max_bytes}")
        # id and generateUniqueName are signed into uploadUrl: they go in step 1, nothing in step 2
        raw = self.bitrix.call(method, {"id": int(folder_id), "generateUniqueName": unique_name}, write=True)
        field, url = _parse(method, parse_upload_target, raw)
        named = FileSource(safe_filename(source.name), source.content, size, source.content_type)
        body = streaming_body([], [(field, named)], max_file_bytes=self.max_bytes)
        result = self.bitrix.post_form(url.reveal(), "upload.json", body)
        uploaded = _parse("upload.json", parse_drive_object, result, self._origin)
        log.info("Bitrix24 Drive: file %s (%d bytes) uploaded to folder %s", uploaded.id, uploaded.size, folder_id)
        return uploaded

    def file(self, object_id: int) -> DriveObject:
        """A Drive file with a fresh `DOWNLOAD_URL` (`disk.file.get`)."""
        method = "disk.file.get"
        return _parse(method, parse_drive_object, self.bitrix.call(method, {"id": int(object_id)}), self._origin)

    def download(self, file: DriveObject | TaskFile, sink: Sink) -> Downloaded:
        """Stream a file from its link into `sink`, under the byte cap; checks the listed size."""
        if file.download_url is None:
            raise MalformedResponse(SYSTEM, "download", f"file {file.id} has no download link")
        if self.max_bytes is not None and file.size > self.max_bytes:
            raise TooLarge(
                SYSTEM, "download", f"file {file.id} has {file.size} bytes, over the cap of {self.max_bytes}"
            )
        done = self.bitrix.download(file.download_url.reveal(), "download", sink, max_bytes=self.max_bytes)
        if file.size and done.size != file.size:
            raise MalformedResponse(
                SYSTEM, "download", f"file {file.id}: {done.size} bytes arrived, {file.size} listed"
            )
        return done

    def download_file(self, object_id: int, sink: Sink) -> tuple[DriveObject, Downloaded]:
        """A Drive file (a chat's, say) through a link made just now (`disk.file.get`): the
        links' lifetime is not documented, so none is kept for later."""
        file = self.file(object_id)
        return file, self.download(file, sink)

    def download_attachment(self, attachment_id: int, sink: Sink) -> tuple[TaskFile, Downloaded]:
        """A task's or a comment's file by its attachment id, through a link made just now."""
        file = self.attached_object(attachment_id)
        return file, self.download(file, sink)

    # -- tasks ---------------------------------------------------------------------------------
    def attach_to_task(self, task_id: int, object_id: int) -> int:
        """Attach a Drive file (its `ID`) to the task; the attachment id."""
        method = "tasks.task.files.attach"
        raw = self.bitrix.call(method, {"taskId": int(task_id), "fileId": int(object_id)}, write=True)
        return _parse(method, lambda r: integer(obj(r, method), "attachmentId", method), raw)

    def task_file_ids(self, task_id: int) -> list[int] | None:
        """The task's attachment ids (`ufTaskWebdavFiles`); None when the task is not found."""
        method = "tasks.task.get"
        raw = self.bitrix.call(method, {"taskId": int(task_id), "select": ["ID", "UF_TASK_WEBDAV_FILES"]})
        return _parse(method, parse_task_file_ids, raw)

    def task_files(self, task_id: int) -> list[TaskFile] | None:
        """The task's files with their links (one batch of `disk.attachedObject.get`)."""
        ids = self.task_file_ids(task_id)
        if not ids:
            return None if ids is None else []
        commands = {f"a{i}": ("disk.attachedObject.get", {"id": i}) for i in ids}
        results, errors = self.bitrix.batch(commands)
        if errors:
            raise next(iter(errors.values()))
        method = "disk.attachedObject.get"
        return [_parse(method, parse_task_file, results[f"a{i}"], self._origin) for i in ids]

    def file_ids_of_tasks(self, task_ids: Iterable[int]) -> dict[int, list[int]]:
        """The attachment ids (`ufTaskWebdavFiles`) of many tasks: 50 tasks to a `tasks.task.list`,
        50 lists to a `batch`.  A task missing from the answer is not in the result."""
        ids = sorted(set(task_ids))
        method = "tasks.task.list"
        select = ["ID", "UF_TASK_WEBDAV_FILES"]
        commands = {
            f"f{n}": (method, {"filter": {"ID": ids[n : n + PAGE]}, "select": select, "start": -1})
            for n in range(0, len(ids), PAGE)
        }
        results, errors = self.bitrix.batch(commands)
        if errors:
            raise next(iter(errors.values()))
        found: dict[int, list[int]] = {}
        for raw in results.values():
            found.update(_parse(method, parse_task_list_file_ids, raw))
        return found

    def attached_objects(self, attachment_ids: Iterable[int]) -> tuple[dict[int, TaskFile], dict[int, ApiError]]:
        """Many attached objects (names, sizes, Drive ids) in `batch` requests; refusals by id."""
        ids = sorted(set(attachment_ids))
        method = "disk.attachedObject.get"
        results, errors = self.bitrix.batch({f"a{i}": (method, {"id": i}) for i in ids})
        found = {i: _parse(method, parse_task_file, results[f"a{i}"], self._origin) for i in ids if f"a{i}" in results}
        return found, {int(key[1:]): error for key, error in errors.items()}

    def task_chat_id(self, task_id: int) -> int | None:
        """The task's chat (the new task card), or None on a classic card or for a missing task."""
        method = "tasks.task.get"
        raw = self.bitrix.call(method, {"taskId": int(task_id), "select": ["ID", "CHAT_ID"]})
        return _parse(method, parse_task_chat_id, raw)

    def can_add(self, folder_id: int) -> bool:
        """Whether the webhook user may put files into the folder: step 1 of the two-step upload
        asks for an upload link and writes nothing; the portal checks the "add" right there
        (inferred: the rights are signed into the link).  The link is thrown away, never shown."""
        method = "disk.folder.uploadfile"
        try:
            _parse(method, parse_upload_target, self.bitrix.call(method, {"id": int(folder_id)}))
        except ApiError as error:
            if error.code == "ACCESS_DENIED":
                return False
            raise
        return True

    def attached_object(self, attachment_id: int) -> TaskFile:
        method = "disk.attachedObject.get"
        raw = self.bitrix.call(method, {"id": int(attachment_id)})
        return _parse(method, parse_task_file, raw, self._origin)

    # -- comments (old card) and the task chat (new card) ---------------------------------------
    def add_comment_with_files(self, task_id: int, text: str, object_ids: Iterable[int]) -> int:
        """A classic task comment carrying Drive files (`UF_FORUM_MESSAGE_DOC`); positional
        method: TASKID then FIELDS, nothing else."""
        method = "task.commentitem.add"
        fields = {"POST_MESSAGE": text, "UF_FORUM_MESSAGE_DOC": [f"n{int(i)}" for i in object_ids]}
        raw = self.bitrix.call(method, {"TASKID": int(task_id), "FIELDS": fields}, write=True)
        return _parse(method, lambda r: integer({"result": r}, "result", method), raw)

    def comment_files(self, task_id: int) -> dict[int, list[TaskFile]]:
        """The files of each classic comment of the task, by comment id."""
        method = "task.commentitem.getlist"
        raw = self.bitrix.call(method, {"TASKID": int(task_id), "ORDER": {"ID": "asc"}})
        return _parse(method, parse_comment_files, raw, int(task_id), self._origin)

    def chat_folder(self, chat_id: int) -> int:
        """The task chat's Drive folder (`im.disk.folder.get`): upload there, then commit."""
        method = "im.disk.folder.get"
        raw = self.bitrix.call(method, {"CHAT_ID": int(chat_id)})
        return _parse(method, lambda r: integer(obj(r, method), "ID", method), raw)

    def post_to_chat(self, chat_id: int, object_ids: Iterable[int], message: str) -> int:
        """Files (already in the chat folder) posted to the task chat with `message`; the message id."""
        method = "im.disk.file.commit"
        params = {"CHAT_ID": int(chat_id), "FILE_ID": [int(i) for i in object_ids], "MESSAGE": message}
        raw = self.bitrix.call(method, params, write=True)
        return _parse(method, lambda r: integer(obj(r, method), "MESSAGE_ID", method), raw)

    def chat_files(self, chat_id: int) -> list[ChatFile]:
        """The files posted in the task chat, newest page first then backward (50 messages a page)."""
        method = "im.dialog.messages.get"
        found: dict[int, ChatFile] = {}
        last_id: int | None = None
        while True:
            params: dict[str, Any] = {"DIALOG_ID": f"chat{int(chat_id)}", "LIMIT": PAGE}
            if last_id is not None:
                params["LAST_ID"] = last_id
            raw = self.bitrix.call(method, params)
            found.update((f.id, f) for f in _parse(method, parse_chat_files, raw))
            messages = _parse(method, lambda r: items(obj(r, method).get("messages") or [], method), raw)
            ids = [integer(obj(m, "message"), "id", "message") for m in messages]
            if len(ids) < PAGE:
                return sorted(found.values(), key=lambda f: f.id)
            last_id = min(ids)
