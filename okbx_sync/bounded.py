"""Reading a small text file okbx is given, whatever it turns out to be.

A size from `stat` says nothing for a device, a pipe or /proc (`-c /dev/zero` read without end),
so the limit is enforced on what is read: at most `limit + 1` bytes are read, and one byte more
than the limit refuses the file.  The caller turns `TooLarge` (and the usual OSErrors) into its
own error naming the file."""

from __future__ import annotations

from pathlib import Path


class TooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit // 1024} KiB")
        self.limit = limit


def read_text(path: Path, limit: int) -> str:
    """The file's text (UTF-8); TooLarge past `limit` bytes, UnicodeDecodeError, or the OSError of opening it."""
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(limit)
    return data.decode("utf-8")
