"""Moving a file between the systems without holding it: each file goes through a spool file.

The bytes are streamed from one system into a temporary file and from there to the other, 64 KiB
at a time, so okbx's memory does not grow with a file's size (benchmarks/bench_files.py measures
it).  The spool file lives in the state store's directory (okbx's own, on disk; /tmp may be memory),
is made with mode 600 and without a name where the system allows it (Linux: O_TMPFILE, else it is
unlinked at once), and is gone when closed, whatever happens.  A download link is asked for right
before its bytes are read: Okdesk's lives 30 seconds, Bitrix24's for an undocumented while.
No byte of a file and no link ever reaches a log.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import BinaryIO

from ...clients.files_parse import DriveObject
from ...clients.multipart import FileSource
from ...clients.okdesk_files import Upload
from ...core.remote_files import RemoteFiles
from ...model import Attachment, Comment


@contextmanager
def spooled(directory: Path) -> Iterator[BinaryIO]:
    with tempfile.TemporaryFile(dir=directory if directory.is_dir() else None, prefix="okbx-spool-") as file:
        yield file


def okdesk_to_drive(
    files: RemoteFiles, issue_id: int, attachment: Attachment, folder: Callable[[], int], name: str, spool_dir: Path
) -> DriveObject:
    """Download an Okdesk file (a fresh link) into a spool file, then upload it to the Drive folder
    `folder()` gives, asked only once the bytes are here (a file that cannot be fetched makes none)."""
    with spooled(spool_dir) as spool:
        _, got = files.okdesk.download(issue_id, attachment.id, spool)
        spool.seek(0)
        return files.drive.upload(folder(), FileSource(name, spool, got.size))


def task_files_to_okdesk(
    files: RemoteFiles,
    issue_id: int,
    html: str,
    attachments: Sequence[tuple[int, str]],
    *,
    public: bool,
    spool_dir: Path,
) -> Comment:
    """Download the task's files (each through a link made just now) into spool files, then post
    one Okdesk comment carrying them all, streamed as the documented multipart form."""
    with ExitStack() as stack:
        uploads = []
        for attachment_id, name in attachments:
            spool = stack.enter_context(spooled(spool_dir))
            _, got = files.drive.download_attachment(attachment_id, spool)
            spool.seek(0)
            uploads.append(Upload(FileSource(name, spool, got.size)))
        comment, _ = files.okdesk.add_comment_with_files(issue_id, html, uploads, public=public)
        return comment
