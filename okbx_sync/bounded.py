"""Reading a small text file okbx is given, whatever it turns out to be.

A size from `stat` says nothing for a device, a pipe or /proc (`-c /dev/zero` read without end),
so the limit is enforced on what is read: at most `limit + 1` bytes are read, and one byte more
than the limit refuses the file.  Opening never waits: a named pipe nobody writes to would block
`open` for ever (a cron job hung before its first line), so it is opened non-blocking, and a pipe
that gives nothing is `NoWriter`.  The caller turns `TooLarge`, `NoWriter` (and the usual
OSErrors) into its own error naming the file."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path


class TooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit // 1024} KiB")
        self.limit = limit


class NoWriter(ValueError):
    def __init__(self) -> None:
        super().__init__("a named pipe nobody writes to, not a file")


def read_text(path: Path, limit: int) -> str:
    """The file's text (UTF-8); TooLarge past `limit` bytes, NoWriter, UnicodeDecodeError, or the
    OSError of opening it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)  # a writer's bytes: wait
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(limit)
    if pipe and not data:
        raise NoWriter()
    return data.decode("utf-8")
