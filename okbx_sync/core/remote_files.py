"""What okbx already put on the Bitrix24 side for files, read before writing: the cycle's cache.

A Drive file has no field but its name, so okbx's key travels in the name (`filenames.key_tag`); a task's
files are its attachments (`ufTaskWebdavFiles`, then `disk.attachedObject.get`).  Each list is
read at most once per cycle and only when a file write of its issue is planned; what okbx writes
is added as it succeeds, so the cache stays true:

  a folder's subfolder by name   (made once: the Drive refuses a second one of the same name)
  a folder's files by the key their name carries
  a task's attachments, and the task's chat and the chat's folder (the new task card)

The clients here carry okbx's cap per file: a file that turns out larger stops being read.
"""

from __future__ import annotations

from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_disk import Bitrix24Drive
from ..clients.files_parse import DriveObject, TaskFile
from ..clients.okdesk import OkdeskClient
from ..clients.okdesk_files import OkdeskFiles
from ..errors import ApiError
from ..filenames import key_in_name
from ..keys import Key


class RemoteFiles:
    def __init__(self, okdesk: OkdeskClient, bitrix: Bitrix24Client, *, max_file_bytes: int | None) -> None:
        self.drive = Bitrix24Drive(bitrix, max_bytes=max_file_bytes)
        self.okdesk = OkdeskFiles(okdesk, max_download_bytes=max_file_bytes, max_upload_bytes=max_file_bytes)
        self._roots: dict[int, int] = {}  # workgroup -> its drive's root folder
        self._folders: dict[tuple[int, str], int | None] = {}  # (parent, name) -> folder id
        self._tagged: dict[int, dict[str, DriveObject]] = {}  # folder -> key text -> file
        self._attachments: dict[int, list[TaskFile]] = {}  # task -> its attachments
        self._chats: dict[int, int | None] = {}  # task -> its chat (None: a classic card)
        self._chat_folders: dict[int, int] = {}  # chat -> its Drive folder

    # -- folders ---------------------------------------------------------------------------------
    def group_root(self, group_id: int) -> int:
        if group_id not in self._roots:
            storage = self.drive.group_storage(group_id)
            if storage is None:
                raise ApiError(
                    "Bitrix24",
                    "disk.storage.getlist",
                    f"the webhook user cannot see the drive of workgroup {group_id}: make it a member of the "
                    "group, or set files.folder_id to a folder it may add files to",
                )
            self._roots[group_id] = storage.root_folder_id
        return self._roots[group_id]

    def subfolder(self, parent: int, name: str, *, make: bool) -> int | None:
        """The folder `name` in `parent`; made when `make` (looked for first, and again after a clash)."""
        known = self._folders.get((parent, name))
        if known is not None or ((parent, name) in self._folders and not make):
            return known
        if make:
            found: int | None = self.drive.folder(parent, name).id
        else:
            found = next((o.id for o in self.drive.children(parent, name=name) if o.is_folder), None)
        self._folders[(parent, name)] = found
        return found

    def tagged(self, folder_id: int) -> dict[str, DriveObject]:
        """The folder's files whose names carry a key of okbx, by key text."""
        if folder_id not in self._tagged:
            found: dict[str, DriveObject] = {}
            for obj in self.drive.children(folder_id):
                key = key_in_name(obj.name) if not obj.is_folder else None
                if key is not None:
                    found.setdefault(key.text, obj)
            self._tagged[folder_id] = found
        return self._tagged[folder_id]

    def forget(self, folder_id: int) -> None:
        """Read the folder again when next asked (another writer was met there)."""
        self._tagged.pop(folder_id, None)

    def uploaded(self, folder_id: int, key: Key, obj: DriveObject) -> None:
        self.tagged(folder_id)[key.text] = obj

    # -- tasks -----------------------------------------------------------------------------------
    def attachments(self, task_id: int) -> list[TaskFile]:
        if task_id not in self._attachments:
            self._attachments[task_id] = self.drive.task_files(task_id) or []
        return self._attachments[task_id]

    def attached(self, task_id: int, file: TaskFile) -> None:
        self.attachments(task_id).append(file)

    def task_chat(self, task_id: int) -> int | None:
        if task_id not in self._chats:
            self._chats[task_id] = self.drive.task_chat_id(task_id)
        return self._chats[task_id]

    def chat_folder(self, chat_id: int) -> int:
        if chat_id not in self._chat_folders:
            self._chat_folders[chat_id] = self.drive.chat_folder(chat_id)
        return self._chat_folders[chat_id]
