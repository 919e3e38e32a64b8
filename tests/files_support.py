"""What the file contract tests share: the real clients on the test clock, sinks, raw calls."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from e2e import Okbx, TestClock, is_bot

from okbx_emulator.world import World
from okbx_sync.clients.bitrix24 import Bitrix24Client
from okbx_sync.clients.bitrix24_disk import Bitrix24Drive
from okbx_sync.clients.okdesk import OkdeskClient
from okbx_sync.clients.okdesk_files import OkdeskFiles
from okbx_sync.secrets import Redactor


@dataclass
class FileClients:
    okdesk: OkdeskClient
    bitrix: Bitrix24Client
    files: OkdeskFiles
    drive: Bitrix24Drive


@contextmanager
def file_clients(okbx: Okbx, clock: TestClock, **caps: int | None) -> Iterator[FileClients]:
    config = okbx.config()
    redactor = Redactor(config.secrets())
    okdesk = OkdeskClient(config.okdesk, redactor, clock=clock.for_okbx, backoff_seconds=0.01)
    bitrix = Bitrix24Client(config.bitrix24, redactor, clock=clock.for_okbx, backoff_seconds=0.01)
    download, upload = caps.get("max_download_bytes", 1 << 30), caps.get("max_upload_bytes", 1 << 30)
    try:
        yield FileClients(
            okdesk,
            bitrix,
            OkdeskFiles(okdesk, max_download_bytes=download, max_upload_bytes=upload),
            Bitrix24Drive(bitrix, max_bytes=caps.get("max_bytes", 1 << 30)),
        )
    finally:
        okdesk.close()
        bitrix.close()


class HashSink:
    """Takes a download without keeping it: its size and SHA-256."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self._digest.update(chunk)
        self.size += len(chunk)
        return len(chunk)

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- both systems' files, the way a person would look at them ---------------------------------------
FILE_WRITES = ("upload.json", "disk.folder.uploadfile", "tasks.task.files.attach", "im.disk.file.commit")


def copies_of(world: World, name: str) -> list[dict[str, Any]]:
    """The Drive files whose name starts like `name` (okbx's copies carry a tag before the extension)."""
    stem = name.rsplit(".", 1)[0]
    return [f for f in world.bitrix.drive.every_file() if f["NAME"].startswith(stem + " [okbx-")]


def task_file_names(world: World, task: int) -> list[str]:
    return sorted(a["NAME"] for a in world.bitrix.drive.task_attachments(task))


def files_in_task_comments(world: World, task: int) -> list[str]:
    """The names of the files carried by the task's comments (chat messages on the new card)."""
    return sorted(n for c in world.bitrix.comments(task) for n in world.bitrix.drive.comment_file_names(c["ID"]))


def okdesk_files_from_bot(world: World, issue: int) -> list[tuple[str, bool, str]]:
    """(name, is_public, sha256) of every file okbx posted in the issue."""
    ok = world.okdesk
    bot_comments = {c["id"] for c in ok.comments(issue) if is_bot(world, c)}
    return sorted(
        (f["attachment_file_name"], f["is_public"], ok.files.blob(f["id"]).sha256)
        for f in ok.files.of_issue(issue)
        if f["comment_id"] in bot_comments
    )
