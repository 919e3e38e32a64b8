"""Files as okbx sees them, and pure parsers from both APIs' JSON to them.

Okdesk (crm-billing.md §1.5, routes-files.md §4): an attachment is
`{id, attachment_file_name, description, attachment_file_size, is_public, created_at}`, without a
URL; `GET /issues/{id}/attachments/{att}` adds `attachment_url`, a link that lives 30 seconds.

Bitrix24 (routes-files.md §3): Drive objects `{ID, NAME, TYPE, PARENT_ID, FILE_ID, SIZE (string),
DOWNLOAD_URL, ...}` with mixed string and number values; storages `{ID, ENTITY_TYPE, ENTITY_ID,
ROOT_OBJECT_ID}`; attached objects `{ID, OBJECT_ID, ENTITY_TYPE, ENTITY_ID, NAME, SIZE,
DOWNLOAD_URL}`; a task's `ufTaskWebdavFiles` (attachment ids; an empty field may be `false` or
`[]`); comment rows' `ATTACHED_OBJECTS` keyed by attachment id with **relative** URLs (`{}` or
`[]` when none); the task chat's `files[]`.

Every link is wrapped in a `Secret`: it carries a token and must not reach a log or an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

from ..model import Attachment
from ..secrets import Secret
from .parse import ParseError, integer, items, obj, opt_integer, text, timestamp


@dataclass(frozen=True)
class Storage:
    id: int
    name: str
    entity_type: str  # user | common | group
    entity_id: str
    root_folder_id: int


@dataclass(frozen=True)
class DriveObject:
    """A Drive file or folder.  `id` is the Drive id (attach with it), never `file_id`."""

    id: int
    name: str
    type: str  # file | folder
    parent_id: int | None
    size: int = 0
    file_id: int | None = None
    download_url: Secret | None = None

    @property
    def is_folder(self) -> bool:
        return self.type == "folder"


@dataclass(frozen=True)
class TaskFile:
    """A file attached to a task or a comment: `id` is the attachment id, `object_id` the Drive id."""

    id: int
    object_id: int | None
    name: str
    size: int
    download_url: Secret | None
    entity_type: str = ""
    entity_id: int | None = None


@dataclass(frozen=True)
class ChatFile:
    id: int  # the Drive id
    name: str
    size: int
    message_id: int | None = None


# -- Okdesk ------------------------------------------------------------------------------------
def parse_attachment(raw: Any, comment_id: int | None = None) -> Attachment:
    data = obj(raw, "attachment")
    what = f"attachment {data.get('id', '?')}"
    public = data.get("is_public", False)
    if not isinstance(public, bool):
        raise ParseError(f"{what}.is_public: expected true or false, got {public!r}")
    size = opt_integer(data, "attachment_file_size", what)
    return Attachment(
        id=integer(data, "id", what),
        name=text(data, "attachment_file_name", what, default=""),
        size=size or 0,
        is_public=public,
        description=text(data, "description", what, default="") or None,
        created_at=timestamp(data, "created_at", what),
        comment_id=comment_id,
    )


def parse_attachments(raw: Any, what: str, comment_id: int | None = None) -> list[Attachment]:
    if raw in (None, {}):
        return []
    return [parse_attachment(item, comment_id) for item in items(raw, f"{what}.attachments")]


def parse_issue_attachments(raw: Any) -> list[Attachment]:
    data = obj(raw, "issue")
    return parse_attachments(data.get("attachments"), f"issue {data.get('id', '?')}")


def parse_comment_attachments(raw: Any, issue_id: int) -> list[Attachment]:
    """Every file of every comment of the issue, each with its comment's id."""
    found: list[Attachment] = []
    for item in items(raw, f"issue {issue_id} comments"):
        data = obj(item, "comment")
        comment_id = integer(data, "id", f"issue {issue_id} comment")
        found += parse_attachments(data.get("attachments"), f"comment {comment_id}", comment_id)
    return found


def parse_attachment_link(raw: Any) -> tuple[Attachment, Secret]:
    data = obj(raw, "attachment")
    url = text(data, "attachment_url", f"attachment {data.get('id', '?')}")
    if not url.startswith(("https://", "http://")):
        raise ParseError(f"attachment {data.get('id', '?')}.attachment_url: not an http(s) link")
    return parse_attachment(data), Secret(url)


# -- Bitrix24 ----------------------------------------------------------------------------------
def parse_storage(raw: Any) -> Storage:
    data = obj(raw, "storage")
    what = f"storage {data.get('ID', '?')}"
    return Storage(
        id=integer(data, "ID", what),
        name=text(data, "NAME", what, default=""),
        entity_type=text(data, "ENTITY_TYPE", what, default=""),
        entity_id=text(data, "ENTITY_ID", what, default=""),
        root_folder_id=integer(data, "ROOT_OBJECT_ID", what),
    )


def parse_storages(raw: Any) -> list[Storage]:
    return [parse_storage(item) for item in items(raw, "disk.storage.getlist")]


def _url(data: dict[str, Any], key: str, what: str, origin: str) -> Secret | None:
    value = text(data, key, what, default="")
    if not value:
        return None
    return Secret(urljoin(origin + "/", value))  # comment URLs are relative to the portal


def parse_drive_object(raw: Any, origin: str = "") -> DriveObject:
    data = obj(raw, "drive object")
    what = f"drive object {data.get('ID', '?')}"
    kind = text(data, "TYPE", what)
    if kind not in ("file", "folder"):
        raise ParseError(f"{what}.TYPE: expected file or folder, got {kind[:20]!r}")
    return DriveObject(
        id=integer(data, "ID", what),
        name=text(data, "NAME", what, default=""),
        type=kind,
        parent_id=opt_integer(data, "PARENT_ID", what),
        size=opt_integer(data, "SIZE", what) or 0,
        file_id=opt_integer(data, "FILE_ID", what),
        download_url=_url(data, "DOWNLOAD_URL", what, origin),
    )


def parse_drive_objects(raw: Any, origin: str = "") -> list[DriveObject]:
    return [parse_drive_object(item, origin) for item in items(raw, "drive folder children")]


def parse_upload_target(raw: Any) -> tuple[str, Secret]:
    """Step 1 of the two-step upload: (form field name, upload URL)."""
    data = obj(raw, "disk.folder.uploadfile")
    field = text(data, "field", "disk.folder.uploadfile", default="file") or "file"
    url = text(data, "uploadUrl", "disk.folder.uploadfile")
    return field, Secret(url)


def parse_task_file(raw: Any, origin: str = "") -> TaskFile:
    data = obj(raw, "attached object")
    what = f"attached object {data.get('ID', '?')}"
    return TaskFile(
        id=integer(data, "ID", what),
        object_id=opt_integer(data, "OBJECT_ID", what),
        name=text(data, "NAME", what, default=""),
        size=opt_integer(data, "SIZE", what) or 0,
        download_url=_url(data, "DOWNLOAD_URL", what, origin),
        entity_type=text(data, "ENTITY_TYPE", what, default=""),
        entity_id=opt_integer(data, "ENTITY_ID", what),
    )


def parse_task_file_ids(raw: Any) -> list[int] | None:
    """`ufTaskWebdavFiles` of `tasks.task.get`; None when the task is missing (`[]` result)."""
    if raw in ([], None, {}):
        return None
    task = obj(raw, "tasks.task.get result").get("task")
    if task in ([], None):
        return None
    values = obj(task, "task").get("ufTaskWebdavFiles")
    if values in (None, False, "", []):  # an empty user field comes back as false or [] (inferred)
        return []
    return [integer({"id": v}, "id", "ufTaskWebdavFiles[]") for v in items(values, "ufTaskWebdavFiles")]


def parse_task_list_file_ids(raw: Any) -> dict[int, list[int]]:
    """`tasks.task.list` rows with `ufTaskWebdavFiles`: task id -> attachment ids."""
    found: dict[int, list[int]] = {}
    for row in items(obj(raw, "tasks.task.list result").get("tasks") or [], "tasks"):
        data = obj(row, "task")
        task_id = integer(data, "id", "task")
        values = data.get("ufTaskWebdavFiles")
        if values in (None, False, "", []):
            found[task_id] = []
            continue
        listed = items(values, f"task {task_id}.ufTaskWebdavFiles")
        found[task_id] = [integer({"id": v}, "id", f"task {task_id}.ufTaskWebdavFiles[]") for v in listed]
    return found


def parse_task_chat_id(raw: Any) -> int | None:
    """`chatId` of `tasks.task.get`: the new task card's chat; None without one or without the task."""
    if raw in ([], None, {}):
        return None
    task = obj(raw, "tasks.task.get result").get("task")
    if task in ([], None):
        return None
    data = obj(task, "task")
    value = data.get("chatId", data.get("CHAT_ID"))
    return int(str(value)) if str(value or "").isdigit() and int(str(value)) > 0 else None


def parse_comment_files(raw: Any, task_id: int, origin: str) -> dict[int, list[TaskFile]]:
    """`ATTACHED_OBJECTS` of `task.commentitem.getlist` rows, by comment id."""
    found: dict[int, list[TaskFile]] = {}
    for row in items(raw, f"task {task_id} comments"):
        data = obj(row, "comment")
        comment_id = integer(data, "ID", f"task {task_id} comment")
        attached = obj(data.get("ATTACHED_OBJECTS") or {}, f"comment {comment_id}.ATTACHED_OBJECTS")
        files = []
        for key, value in attached.items():
            item = obj(value, f"comment {comment_id}.ATTACHED_OBJECTS.{key}")
            what = f"comment {comment_id} attachment {key}"
            files.append(
                TaskFile(
                    id=integer(item, "ATTACHMENT_ID", what)
                    if item.get("ATTACHMENT_ID")
                    else integer({"k": key}, "k", what),
                    object_id=None,
                    name=text(item, "NAME", what, default=""),
                    size=opt_integer(item, "SIZE", what) or 0,
                    download_url=_url(item, "DOWNLOAD_URL", what, origin),
                    entity_type="forum_message",
                    entity_id=comment_id,
                )
            )
        found[comment_id] = files
    return found


def parse_chat_files(raw: Any) -> list[ChatFile]:
    """The top-level `files[]` of `im.dialog.messages.get`, each tied to its message by `params.FILE_ID`."""
    data = obj(raw, "im.dialog.messages.get result")
    owner: dict[int, int] = {}
    for message in items(data.get("messages") or [], "messages"):
        row = obj(message, "message")
        params = row.get("params")
        ids = obj(params, "message.params").get("FILE_ID") if isinstance(params, dict) else None
        for file_id in items(ids or [], "message.params.FILE_ID"):
            owner[integer({"id": file_id}, "id", "FILE_ID")] = integer(row, "id", "message")
    files = []
    for item in items(data.get("files") or [], "files"):
        row = obj(item, "file")
        file_id = integer(row, "id", "chat file")
        size = opt_integer(row, "size", f"chat file {file_id}") or 0
        files.append(ChatFile(file_id, text(row, "name", f"chat file {file_id}", default=""), size, owner.get(file_id)))
    return files
