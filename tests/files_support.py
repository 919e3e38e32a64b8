"""What the file contract tests share: the real clients on the test clock, sinks, raw calls."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from e2e import Okbx, TestClock

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
