"""File names crossing over are made safe: one path component, no control or bidi characters, no
Windows device names, no leading or trailing dots and spaces, at most 255 bytes with the extension
kept, never empty; and a safe name is left as it is."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okbx_sync.filenames import DEFAULT_NAME, safe_filename

RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(10)), *(f"LPT{n}" for n in range(10))}
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
pieces = st.one_of(
    st.characters(),
    st.sampled_from(list('/\\:*?"<>|. \t\n\r\x00\x1b\x7f\u202e\u2066\u200b\u200d')),
    st.sampled_from(["CON", "..", "nul", "COM1", "LPT¹", ".txt", "я" * 20]),
)
tricky = st.lists(pieces, max_size=120).map("".join)


def assert_safe(name: str, max_bytes: int = 255) -> None:
    assert name and len(name.encode("utf-8")) <= max_bytes
    assert not set(name) & set('/\\:*?"<>|') and not set(name) & BIDI
    assert all(unicodedata.category(c) not in ("Cc", "Cs") for c in name)
    assert name[0] not in ". " and name[-1] not in ". "
    assert name.split(".")[0].rstrip(" ").upper() not in RESERVED
    assert name not in (".", "..")


@settings(max_examples=400)
@given(tricky)
def test_any_name_comes_out_safe_and_stays_so(name):
    safe = safe_filename(name)
    assert_safe(safe)
    assert safe_filename(safe) == safe


@settings(max_examples=200)
@given(tricky, st.integers(min_value=16, max_value=300))
def test_the_byte_cap_holds_for_any_cap(name, cap):
    safe = safe_filename(name, max_bytes=cap)
    assert_safe(safe, cap)
    assert safe_filename(safe, max_bytes=cap) == safe


@given(st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=60), st.sampled_from(["pdf", "docx", "png"]))
def test_an_ordinary_name_is_left_alone(stem, extension):
    name = unicodedata.normalize("NFC", f"{stem}.{extension}")
    if name.split(".")[0].upper() not in RESERVED and len(name.encode()) <= 255:
        assert safe_filename(name) == name


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "_.._etc_passwd"),
        ("C:\\Users\\x\\отчёт.pdf", "C__Users_x_отчёт.pdf"),
        ("CON", "CON_"),
        ("con.txt", "con_.txt"),
        ("Nul.tar.gz", "Nul_.tar.gz"),
        ("LPT9 .log", "LPT9 _.log"),
        ("console.txt", "console.txt"),
        ("  .bashrc  ", "bashrc"),
        ("report.pdf. . ", "report.pdf"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("a\x00b\x1b[31mc.txt", "ab[31mc.txt"),
        ("line\nbreak.txt", "line break.txt"),
        ("", DEFAULT_NAME),
        ("..", DEFAULT_NAME),
        ("\u202e\u202c", DEFAULT_NAME),
    ],
)
def test_examples(name, safe):
    assert safe_filename(name) == safe


def test_a_long_name_is_cut_in_bytes_keeping_its_extension_and_whole_characters():
    safe = safe_filename("я" * 300 + ".docx")
    assert safe.endswith(".docx") and len(safe.encode()) <= 255 and safe[:-5] == "я" * 125
    assert safe_filename("x" * 300 + "." + "e" * 40).endswith("x")  # a long "extension" is not one
    assert safe_filename("", default="вложение") == "вложение"
    assert safe_filename("CON", default="x") == "CON_"
    with pytest.raises(ValueError):
        safe_filename("a", max_bytes=3)


def test_a_cut_never_leaves_a_reserved_name_behind():
    """Found by the property above: the cut took off the `_` that made "CON" safe."""
    name = safe_filename("CON.txt0CONLPT¹", max_bytes=16)
    assert_safe(name, 16)
    assert safe_filename(name, max_bytes=16) == name


def test_a_long_extension_never_leaves_a_name_over_the_cap():
    """Found by the property test: an extension as long as the cap made the cut take a negative
    number of bytes (Python's [:-1]), leaving the name whole and over the cap."""
    name = safe_filename("00000.txt000\xa0CONLPT¹", max_bytes=16)
    assert len(name.encode("utf-8")) <= 16
