"""File contents and multipart bodies for both emulators.

A `Blob` is an immutable file content: bytes given by a test, a large synthetic content made on
the fly from a seed (a 100 MB test file costs no memory at all), or an upload kept in a temporary
file on disk once it is larger than `SPOOL_ABOVE`.  Each one is read in chunks, so a download is
streamed and never copied whole.

`parse_multipart` reads a `multipart/form-data` body from a file in chunks: form fields come back
as text, file parts go straight into blobs.  Both emulators use it; what a field may be called is
each emulator's business.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import IO
from urllib.parse import unquote

CHUNK = 1 << 16
SPOOL_ABOVE = 1 << 20  # an upload larger than this is kept on disk, not in memory
_PERIOD = 65521  # synthetic content repeats with a prime period: a chunk out of place changes the hash


class Blob:
    """An immutable file content, read in chunks; `sha256` for tests that check a transfer."""

    def __init__(self, size: int, *, data: bytes | None = None, seed: int | None = None, path: str | None = None):
        self.size, self._data, self._seed, self._path = size, data, seed, path
        if path is not None:  # the temporary file goes with the last reference to its blob
            weakref.finalize(self, _unlink, path)

    @classmethod
    def of(cls, data: bytes) -> Blob:
        return cls(len(data), data=bytes(data))

    @classmethod
    def synthetic(cls, size: int, seed: int = 0) -> Blob:
        """`size` bytes of reproducible pseudo-random content, generated while it is read."""
        if size < 0:
            raise ValueError("a file size cannot be negative")
        return cls(size, seed=seed)

    def chunks(self, chunk_size: int = CHUNK) -> Iterator[bytes]:
        if self._data is not None:
            for start in range(0, self.size, chunk_size):
                yield self._data[start : start + chunk_size]
        elif self._path is not None:
            with open(self._path, "rb") as source:
                while chunk := source.read(chunk_size):
                    yield chunk
        else:
            yield from _synthetic_chunks(self.size, self._seed or 0, min(chunk_size, _PERIOD))

    def read(self) -> bytes:
        """The whole content (for small files in tests)."""
        return self._data if self._data is not None else b"".join(self.chunks())

    @cached_property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for chunk in self.chunks():
            digest.update(chunk)
        return digest.hexdigest()


def synthetic_sha256(size: int, seed: int = 0) -> str:
    """What `Blob.synthetic(size, seed).sha256` is, for a client-side check of a transfer."""
    return Blob.synthetic(size, seed).sha256


def synthetic_chunks(size: int, seed: int = 0, chunk_size: int = CHUNK) -> Iterator[bytes]:
    """The content of `Blob.synthetic(size, seed)`, for a test or a benchmark that uploads it."""
    return _synthetic_chunks(size, seed, min(chunk_size, _PERIOD))


def _synthetic_chunks(size: int, seed: int, chunk_size: int) -> Iterator[bytes]:
    pattern = random.Random(seed).randbytes(_PERIOD)
    doubled = pattern + pattern
    offset = 0
    while offset < size:
        count = min(chunk_size, size - offset)
        start = offset % _PERIOD
        yield doubled[start : start + count]
        offset += count


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class BlobWriter:
    """Collects a content chunk by chunk: in memory while small, then in a temporary file."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._file: IO[bytes] | None = None
        self._path: str | None = None
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self._file is None and len(self._buffer) + len(chunk) <= SPOOL_ABOVE:
            self._buffer += chunk
            return
        if self._file is None:
            handle, self._path = tempfile.mkstemp(prefix="okbx-emulator-")
            self._file = os.fdopen(handle, "wb")
            self._file.write(self._buffer)
            self._buffer = bytearray()
        self._file.write(chunk)

    def blob(self) -> Blob:
        if self._file is None:
            return Blob.of(bytes(self._buffer))
        self._file.close()
        assert self._path is not None
        return Blob(self.size, path=self._path)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            assert self._path is not None
            _unlink(self._path)


# -- multipart/form-data ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FormPart:
    """One part of a form: a field (`text`) or a file (`blob`, with the part's `filename`)."""

    name: str
    text: str = ""
    filename: str | None = None
    content_type: str | None = None
    blob: Blob | None = None


class MultipartError(ValueError):
    """The body is not a well-formed multipart/form-data body."""


_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')
_FIELD_LIMIT = 1 << 20  # a text field larger than this is refused (fields are names and comments)


def boundary_of(content_type: str) -> str | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    params = _params(content_type)
    return params.get("boundary") or None


def _params(header: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, raw in _PARAM.findall(header):
        value = raw.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        found[key.lower()] = value
    return found


def _html5_unescape(value: str) -> str:
    # browsers and urllib3 write a quote or a line break in a file name as %22, %0D, %0A
    return value.replace("%22", '"').replace("%0D", "\r").replace("%0A", "\n")


def parse_multipart(body: IO[bytes], boundary: str) -> list[FormPart]:
    """Every part of the body, read in chunks; file contents go to blobs, never to one string."""
    reader = _Reader(body, ("\r\n--" + boundary).encode("latin-1"))
    if not reader.skip_preamble():
        raise MultipartError("no opening boundary")
    parts: list[FormPart] = []
    while True:
        ending = reader.read(2)
        if ending == b"--":
            return parts
        if ending != b"\r\n":
            raise MultipartError("malformed boundary line")
        parts.append(_read_part(reader))


def _read_part(reader: _Reader) -> FormPart:
    headers: dict[str, str] = {}
    for line in reader.header_lines():
        name, colon, value = line.partition(":")
        if not colon:
            raise MultipartError("malformed part header")
        headers[name.strip().lower()] = value.strip()
    disposition = headers.get("content-disposition", "")
    if not disposition.lower().startswith("form-data"):
        raise MultipartError("a part without Content-Disposition: form-data")
    params = _params(disposition)
    if "name" not in params:
        raise MultipartError("a part without a name")
    name = _html5_unescape(params["name"])
    if "filename" not in params and "filename*" not in params:
        content = bytearray()
        for chunk in reader.part_chunks():
            content += chunk
            if len(content) > _FIELD_LIMIT:
                raise MultipartError(f"field {name!r} is too large")
        return FormPart(name, text=content.decode("utf-8", errors="replace"))
    filename = _html5_unescape(params.get("filename", ""))
    if encoded := params.get("filename*"):  # RFC 5987: UTF-8''%D0%B8...
        filename = unquote(encoded.split("''", 1)[-1], encoding="utf-8", errors="replace")
    writer = BlobWriter()
    try:
        for chunk in reader.part_chunks():
            writer.write(chunk)
    except BaseException:
        writer.discard()
        raise
    return FormPart(name, filename=filename, content_type=headers.get("content-type"), blob=writer.blob())


class _Reader:
    """A buffered reader that finds the boundary without holding more than a chunk or two."""

    def __init__(self, source: IO[bytes], delimiter: bytes) -> None:
        self._source, self._delimiter, self._buffer = source, delimiter, b""

    def _fill(self, wanted: int) -> bool:
        while len(self._buffer) < wanted:
            chunk = self._source.read(CHUNK)
            if not chunk:
                return False
            self._buffer += chunk
        return True

    def read(self, count: int) -> bytes:
        self._fill(count)
        taken, self._buffer = self._buffer[:count], self._buffer[count:]
        return taken

    def skip_preamble(self) -> bool:
        # the first boundary may open the body without the CRLF in front of it
        self._buffer = b"\r\n"
        try:
            for _ in self.part_chunks():
                pass
        except MultipartError:
            return False
        return True

    def header_lines(self) -> Iterator[str]:
        while True:
            while (end := self._buffer.find(b"\r\n")) < 0:
                if len(self._buffer) > 16384 or not self._fill(len(self._buffer) + 1):
                    raise MultipartError("part headers too long or cut off")
            line, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            if not line:
                return
            yield line.decode("utf-8", errors="replace")

    def part_chunks(self) -> Iterator[bytes]:
        """The part's content up to the next delimiter, which is consumed."""
        keep = len(self._delimiter) - 1
        while True:
            found = self._buffer.find(self._delimiter)
            if found >= 0:
                chunk, self._buffer = self._buffer[:found], self._buffer[found + len(self._delimiter) :]
                if chunk:
                    yield chunk
                return
            if len(self._buffer) > keep:
                chunk, self._buffer = self._buffer[:-keep], self._buffer[-keep:]
                yield chunk
            more = self._source.read(CHUNK)
            if not more:
                raise MultipartError("body ended before the closing boundary")
            self._buffer += more
