"""A `multipart/form-data` body that streams its files instead of holding them.

`requests` builds multipart bodies in memory (`files=`), which would make okbx's memory grow with
the size of a file.  `MultipartBody` is an iterable of chunks that `requests` sends as it goes:
fields first, then each file read in `CHUNK` pieces from a binary file or an iterator of bytes.
When every file's size is known the body has a length (`len()`), so `requests` sends a
Content-Length; otherwise it is sent chunked.  A file that turns out shorter or longer than its
declared size fails the upload instead of sending a body the server would misread.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1 << 16


@dataclass(frozen=True)
class FileSource:
    """One file to send: a binary file (read from its current position) or an iterator of chunks.

    `size` is the number of bytes that will come; for a real file it is found from the file
    itself when not given."""

    name: str
    content: BinaryIO | Iterable[bytes]
    size: int | None = None
    content_type: str = "application/octet-stream"

    def known_size(self) -> int | None:
        if self.size is not None:
            return self.size
        content = self.content
        if not hasattr(content, "seek") or not hasattr(content, "tell"):
            return None
        try:
            if hasattr(content, "seekable") and not content.seekable():
                return None
            here = content.tell()
            end = content.seek(0, os.SEEK_END)
            content.seek(here)
            return int(end) - int(here)
        except (OSError, ValueError):
            return None

    def chunks(self) -> Iterator[bytes]:
        content = self.content
        if hasattr(content, "read"):
            while chunk := content.read(CHUNK):
                yield chunk
        else:
            for chunk in content:
                if chunk:
                    yield bytes(chunk)


class BodyError(ValueError):
    """The body could not be sent as declared (the transport turns it into an API error)."""


class SizeMismatch(BodyError):
    """A file delivered another number of bytes than it declared."""


class OverCap(BodyError):
    """A file of unknown size turned out larger than the cap while it was being sent."""


def _quoted(value: str) -> str:
    # the HTML5 form encoding browsers and urllib3 use: no raw quote or line break in a header
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """Iterate it for the bytes; `content_type` for the header; `len()` when every size is known."""

    def __init__(
        self, fields: list[tuple[str, str]], files: list[tuple[str, FileSource]], max_file_bytes: int | None = None
    ) -> None:
        self.max_file_bytes = max_file_bytes
        self.boundary = "okbx" + secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._fields, self._files = fields, files
        self._sizes = [source.known_size() for _, source in files]
        self.sent = 0  # bytes of file content handed to the connection so far

    def _head(self, name: str, filename: str | None = None, content_type: str | None = None) -> bytes:
        disposition = f'form-data; name="{_quoted(name)}"'
        if filename is not None:
            disposition += f'; filename="{_quoted(filename)}"'
        lines = [f"--{self.boundary}", f"Content-Disposition: {disposition}"]
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    def _tail(self) -> bytes:
        return f"--{self.boundary}--\r\n".encode("ascii")

    def length(self) -> int | None:
        if any(size is None for size in self._sizes):
            return None
        total = sum(len(self._head(n)) + len(v.encode("utf-8")) + 2 for n, v in self._fields)
        for (name, source), size in zip(self._files, self._sizes, strict=True):
            total += len(self._head(name, source.name, source.content_type)) + (size or 0) + 2
        return total + len(self._tail())

    def __iter__(self) -> Iterator[bytes]:
        for name, value in self._fields:
            yield self._head(name) + value.encode("utf-8") + b"\r\n"
        for (name, source), size in zip(self._files, self._sizes, strict=True):
            yield self._head(name, source.name, source.content_type)
            count = 0
            for chunk in source.chunks():
                count += len(chunk)
                if size is not None and count > size:
                    raise SizeMismatch(f"{source.name!r} is longer than its declared {size} bytes")
                if self.max_file_bytes is not None and count > self.max_file_bytes:
                    raise OverCap(f"{source.name!r} is over the cap of {self.max_file_bytes} bytes")
                self.sent += len(chunk)
                yield chunk
            if size is not None and count != size:
                raise SizeMismatch(f"{source.name!r} ended after {count} of its declared {size} bytes")
            yield b"\r\n"
        yield self._tail()


class _Sized(MultipartBody):
    def __len__(self) -> int:
        return self.length() or 0


def streaming_body(
    fields: list[tuple[str, str]], files: list[tuple[str, FileSource]], *, max_file_bytes: int | None = None
) -> MultipartBody:
    """A body `requests` sends with a Content-Length when it can be known, else chunked; a file
    over `max_file_bytes` (found while sending one of unknown size) stops the upload."""
    body = _Sized(fields, files, max_file_bytes)
    return body if body.length() is not None else MultipartBody(fields, files, max_file_bytes)
