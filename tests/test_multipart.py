"""okbx's streamed multipart body says what it sends: its length is exact, and the emulators'
parser (the server side) reads back every field and every file byte for byte, whatever the bytes
are (boundary look-alikes included), from files and from iterators of unknown size."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okbx_emulator.files import parse_multipart
from okbx_sync.clients.multipart import FileSource, MultipartBody, SizeMismatch, streaming_body

names = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=40)
contents = st.lists(st.sampled_from([b"\r\n--", b"okbx", b"\r\n", b"--", b"\x00", b"x" * 70_000]), max_size=6).map(
    b"".join
) | st.binary(max_size=5000)


def parse(body: MultipartBody) -> list:
    data = b"".join(body)
    return data, parse_multipart(io.BytesIO(data), body.boundary)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["comment[content]", "comment[public]", "a[0][b]"]), names), max_size=3),
    st.lists(st.tuples(names, contents, st.booleans()), min_size=1, max_size=3),
)
def test_what_is_sent_is_what_the_server_reads(fields, files):
    sources = [
        (f"f[{n}]", FileSource(name, io.BytesIO(content) if sized else iter([content[:7], content[7:]])))
        for n, (name, content, sized) in enumerate(files)
    ]
    body = streaming_body(fields, sources)
    data, parts = parse(body)
    if all(sized for _, _, sized in files):
        assert len(body) == len(data)  # requests sends this as the Content-Length
    else:
        assert body.length() is None  # sent chunked
    assert [(p.name, p.text) for p in parts[: len(fields)]] == fields
    got = parts[len(fields) :]
    assert [p.filename for p in got] == [name for name, _, _ in files]
    assert [p.blob.read() for p in got] == [content for _, content, _ in files]


def test_a_file_that_is_not_the_size_it_declared_fails_the_upload():
    short = streaming_body([], [("file", FileSource("a", iter([b"abc"]), size=5))])
    with pytest.raises(SizeMismatch):
        b"".join(short)
    long = streaming_body([], [("file", FileSource("a", iter([b"abcdef"]), size=5))])
    with pytest.raises(SizeMismatch):
        b"".join(long)


def test_the_size_of_a_file_is_read_from_its_current_position():
    handle = io.BytesIO(b"0123456789")
    handle.seek(4)
    assert FileSource("a", handle).known_size() == 6
    assert FileSource("a", iter([b"x"])).known_size() is None
