"""Okdesk files toward the programmers' task: each write kind in one place.

  UploadFile               the Okdesk file, streamed to a Drive folder under a name carrying its key
                           (found among the folder's files by that name; a copy found is adopted, so
                           a crash between upload and attach completes the attach and uploads nothing)
  AttachFileToTask         the Drive copy attached to the task (`tasks.task.files.attach`; found among
                           the task's attachments, `ufTaskWebdavFiles`, by the copy's Drive id or name)
  ForwardCommentWithFiles  a forwarded comment carrying the copies of its files (`UF_FORUM_MESSAGE_DOC`),
                           or, on the new task card, one chat message with the text and the files
                           (`im.disk.file.commit`); found by the comment's marker like any forward
  NoteBigFile              the task's note naming a file over the cap and where to find it

Where a copy goes: a comment's file on a task with a chat (the new card) into the chat's folder,
as the documented three steps want it (folder, upload, commit); every other file into the issue's
folder ("Okdesk #<id>") in the route's Drive folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from ... import keys
from ...clients.bitrix24_disk import NAME_CLASH
from ...clients.files_parse import DriveObject, TaskFile
from ...core.action import Action, Context, Effect, Found, OpRecord
from ...errors import ApiError, NotFound
from ...filenames import key_in_name, tagged_name
from ...markup import escape_bbcode
from ...model import Attachment
from ..task_writes import ForwardComment, TaskComment
from .route import FOLDER, DriveTarget, file_name, issue_folder, size_text
from .transfer import okdesk_to_drive

if TYPE_CHECKING:
    from ...state.store import Op

log = logging.getLogger(__name__)


def _describe(file: Attachment) -> str:
    scope = "public" if file.is_public else "internal"
    where = f"comment #{file.comment_id}" if file.comment_id else "the issue"
    return f"{scope} file {file_name(file.name)} ({size_text(file.size)}) of {where}"


@dataclass(frozen=True)
class UploadFile(Action):
    file: Attachment
    drive: DriveTarget
    kind: ClassVar[str] = "file"
    side: ClassVar[str] = "Bitrix24"

    @property
    def ref(self) -> keys.Key:
        return keys.FileKey(self.issue_id, self.file.id)

    @property
    def detail(self) -> str:
        return f"{_describe(self.file)} -> Bitrix24 Drive"

    @property
    def moves_bytes(self) -> int:
        return self.file.size

    def op_record(self) -> OpRecord:
        file = self.file
        detail = {"detail": self.detail, "name": file.name, "size": file.size, "public": file.is_public}
        return OpRecord(None, None, detail)

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        for folder in self._folders(ctx):
            found = ctx.remote.files.tagged(folder).get(self.key)
            if found is not None:
                return Found(str(found.id))
        return None

    def perform(self, ctx: Context) -> Effect:
        files, name = ctx.remote.files, tagged_name(self.ref, self.file.name)
        chosen: list[int] = []

        def folder() -> int:
            chosen.append(self._destination(ctx))
            return chosen[0]

        try:
            copy = okdesk_to_drive(files, self.issue_id, self.file, folder, name, ctx.config.state.path.parent)
        except NotFound as error:
            if error.system != "Okdesk":
                raise
            # Inferred (routes-files.md §4): a comment's file downloads through the issue's path.  An
            # account where it does not, or a file deleted meanwhile, leaves nothing to copy: done
            # without a copy, and whatever carries the file names it instead, so the issue goes on.
            log.warning("issue %s: Okdesk file %s cannot be fetched (%s); named, not copied", *self._who, error)
            return None, None
        except ApiError as error:
            # The Drive refuses a second file of the same name: another run (an installation, a lost
            # answer) put it there meanwhile; nothing was written now, so it is adopted, not failed.
            if error.code == NAME_CLASH and chosen and (found := _reread(ctx, chosen[0], self.ref)):
                return str(found.id), None
            raise
        files.uploaded(chosen[0], self.ref, copy)
        return str(copy.id), None

    @property
    def _who(self) -> tuple[int, int]:
        return self.issue_id, self.file.id

    # -- where the copy goes -----------------------------------------------------------------------
    def _chat(self, ctx: Context) -> int | None:
        return ctx.remote.files.task_chat(ctx.task_id(self.issue_id)) if self.file.comment_id else None

    def _issue_folder(self, ctx: Context, *, make: bool) -> int | None:
        files, drive = ctx.remote.files, self.drive
        base = drive.folder_id
        if base is None:
            base = files.subfolder(files.group_root(drive.group_id), FOLDER, make=make)
        return files.subfolder(base, issue_folder(self.issue_id), make=make) if base is not None else None

    def _folders(self, ctx: Context) -> list[int]:
        """Everywhere a copy may be: the issue's folder, and the task chat's for a comment's file."""
        found = [f for f in (self._issue_folder(ctx, make=False),) if f is not None]
        if (chat := self._chat(ctx)) is not None:
            found.append(ctx.remote.files.chat_folder(chat))
        return found

    def _destination(self, ctx: Context) -> int:
        chat = self._chat(ctx)
        if chat is not None:
            return ctx.remote.files.chat_folder(chat)
        folder = self._issue_folder(ctx, make=True)
        assert folder is not None
        return folder


def _reread(ctx: Context, folder: int, key: keys.Key) -> DriveObject | None:
    files = ctx.remote.files
    files.forget(folder)
    return files.tagged(folder).get(key.text)


@dataclass(frozen=True)
class AttachFileToTask(Action):
    file: Attachment
    cycle: int  # the handoff whose task it is attached to
    kind: ClassVar[str] = "attach"
    side: ClassVar[str] = "Bitrix24"

    @property
    def ref(self) -> keys.Key:
        return keys.AttachKey(self.issue_id, self.cycle, self.file.id)

    @property
    def copy(self) -> keys.FileKey:
        return keys.FileKey(self.issue_id, self.file.id)

    @property
    def detail(self) -> str:
        return f"attach {file_name(self.file.name)} to the task"

    @property
    def needs(self) -> tuple[str, ...]:
        return (self.copy.text,)

    def find(self, ctx: Context, op: Op | None) -> Found | None:
        drive_id = _drive_id(ctx, self.copy)
        if drive_id is None:
            return None
        for attached in ctx.remote.files.attachments(ctx.task_id(self.issue_id)):
            tagged = key_in_name(attached.name)
            if attached.object_id == drive_id or (tagged is not None and tagged.text == self.copy.text):
                return Found(str(attached.id))
        return None

    def unwritten(self, ctx: Context) -> Effect | None:
        """The file could not be fetched from Okdesk (UploadFile): there is nothing to attach."""
        return (None, None) if _drive_id(ctx, self.copy) is None else None

    def perform(self, ctx: Context) -> Effect:
        task_id, drive_id = ctx.task_id(self.issue_id), int(ctx.remote_id_of(self.copy))
        attachment = ctx.remote.files.drive.attach_to_task(task_id, drive_id)
        name = tagged_name(self.copy, self.file.name)
        ctx.remote.files.attached(task_id, TaskFile(attachment, drive_id, name, self.file.size, None))
        return str(attachment), None


@dataclass(frozen=True)
class ForwardCommentWithFiles(ForwardComment):
    files: tuple[keys.FileKey, ...] = ()
    batchable: ClassVar[bool] = False  # one comment with its files: a request of its own

    @property
    def detail(self) -> str:
        count = len(self.files)
        return f"{super().detail}, with {count} file{'s' if count != 1 else ''}"

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(key.text for key in self.files)

    def perform(self, ctx: Context) -> Effect:
        task_id, files = ctx.task_id(self.issue_id), ctx.remote.files
        found = {key.attachment_id: _drive_id(ctx, key) for key in self.files}
        drive_ids = [drive_id for drive_id in found.values() if drive_id is not None]
        text = self._naming([attachment for attachment, drive_id in found.items() if drive_id is None])
        chat = files.task_chat(task_id)
        if not drive_ids:
            new_id = ctx.bitrix.add_comment(task_id, text)
        elif chat is not None:  # the new card: files of a comment live in the chat
            new_id = files.drive.post_to_chat(chat, drive_ids, text)
        else:
            new_id = files.drive.add_comment_with_files(task_id, text, drive_ids)
        ctx.remote.task(task_id)[self.key] = str(new_id)
        return str(new_id), None

    def _naming(self, missing: list[int]) -> str:
        """The text, with a line before its marker naming the files Okdesk would not hand over."""
        if not missing or self.comment is None:
            return self.text
        names = ", ".join(file_name(a.name) for a in self.comment.attachments if a.id in missing)
        body, _, marker = self.text.rpartition("\n")
        line = f"okbx could not fetch the file(s) {names} from Okdesk: find them in the Okdesk issue."
        return f"{body}\n{escape_bbcode(line)}\n{marker}"


def _drive_id(ctx: Context, copy: keys.Key) -> int | None:
    """The Drive id of okbx's copy (its op's result); None when there was nothing to copy."""
    op = ctx.store.op(copy.text)
    return int(op.remote_id) if op is not None and op.done and op.remote_id else None


@dataclass(frozen=True)
class NoteBigFile(TaskComment):
    """The task's note about an Okdesk file over the cap: named, with where to find it."""

    note: keys.TaskNoteKey = field(default=keys.TaskNoteKey("bigfile", 0, 0))
    file: Attachment = field(default=Attachment(0, "", 0, False), compare=False)
    kind: ClassVar[str] = "bigfile"

    @property
    def ref(self) -> keys.Key:
        return self.note

    @property
    def detail(self) -> str:
        return f"{_describe(self.file)}: over the cap, named in a note"
