"""File names that are safe to write anywhere a file crossing over may land.

A name comes from a person in the other system; it becomes a name in Okdesk, on the Bitrix24
Drive, and later on whoever's disk downloads it.  `safe_filename` keeps what a person would
recognise and removes what could do harm:

1. Unicode is normalised (NFC), so the same name typed two ways is one name;
2. control characters (C0, DEL, C1) and bidirectional overrides and isolates are dropped (a
   "gpj.exe" shown as "exe.jpg" is the classic trick);
3. path separators and the characters Windows forbids (`/ \\ : * ? " < > |`) become `_`, so a
   name is one path component and never `..`;
4. leading dots and spaces go (no hidden files, no `..`), and so do trailing dots and spaces
   (Windows drops them silently, which would merge names);
5. a Windows reserved device name (CON, PRN, AUX, NUL, COM0-9, LPT0-9 and their superscript
   forms, with any extension) gets a `_` after the stem;
6. the name is cut to `max_bytes` of UTF-8 (255 is what common file systems allow), keeping the
   extension when it is short, never splitting a character;
7. whatever ends up empty becomes `default`.

The function is pure and idempotent: a safe name stays as it is.
"""

from __future__ import annotations

import re
import unicodedata

from . import keys

MAX_BYTES = 255
DEFAULT_NAME = "file"
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_FORBIDDEN = re.compile(r'[/\\:*?"<>|]')
_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|(COM|LPT)[0-9¹²³])", re.IGNORECASE)
_MAX_EXTENSION_BYTES = 16  # a longer "extension" is just part of the name


def _dropped(char: str) -> bool:
    # format characters go (bidi controls among them) except the joiners some scripts and emoji need
    return char in _BIDI or (
        unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn") and char not in "\u200c\u200d"
    )


def _spacing(char: str) -> bool:
    return char in "\t\n\r" or unicodedata.category(char) in ("Zl", "Zp")


def safe_filename(name: str, *, max_bytes: int = MAX_BYTES, default: str = DEFAULT_NAME) -> str:
    if max_bytes < 16:
        raise ValueError("max_bytes must leave room for a name (at least 16)")
    text = unicodedata.normalize("NFC", name)
    for _ in range(4):  # each pass can only shorten or fix; a safe name is a fixed point
        cleaned = _once(text, max_bytes)
        if cleaned == text:
            break
        text = cleaned
    if not text:
        return DEFAULT_NAME if default == DEFAULT_NAME else safe_filename(default, max_bytes=max_bytes)
    return text


def _once(text: str, max_bytes: int) -> str:
    text = "".join(" " if _spacing(char) else char for char in text if _spacing(char) or not _dropped(char))
    text = _FORBIDDEN.sub("_", text).strip(" .")
    first, dot, rest = text.partition(".")
    if _RESERVED.fullmatch(first.rstrip(" ")):  # Windows reads "CON.tar.gz" as the device CON
        text = f"{first}_{dot}{rest}"
    text = _cut(text, max_bytes).strip(" .")
    first, dot, rest = text.partition(".")
    if _RESERVED.fullmatch(first.rstrip(" ")):  # the cut took the "_" off again: same length now
        text = f"{first.rstrip(' ')[:-1]}_{dot}{rest}"
    return text


def _cut(name: str, max_bytes: int) -> str:
    """At most `max_bytes` of UTF-8; a short extension survives the cut."""
    if len(name.encode("utf-8")) <= max_bytes:
        return name
    stem, dot, extension = name.rpartition(".")
    # an extension is kept when it is short and leaves at least half the room to the name itself
    short = len(extension.encode("utf-8")) <= min(_MAX_EXTENSION_BYTES, max_bytes // 2 - 1)
    keep_extension = dot and stem.strip(" .") and short
    tail = f".{extension}" if keep_extension else ""
    body = stem if keep_extension else name
    room = max(0, max_bytes - len(tail.encode("utf-8")))
    cut = body.encode("utf-8")[:room].decode("utf-8", errors="ignore")
    return unicodedata.normalize("NFC", cut.rstrip(" .")) + tail


# -- a name carrying okbx's key (a Drive file has no other field for it; issue 15) -----------------
def key_tag(key: keys.Key) -> str:
    """The key as a file name carries it: "[okbx-file-12-345]" (a file name has no colon)."""
    return f"[okbx-{key.text.replace(':', '-')}]"


def key_in_name(name: str) -> keys.Key | None:
    """The key a name carries (`tagged_name`), or None."""
    tags = re.findall(r"\[okbx-([a-z]+(?:-[0-9]{1,18})+)\]", name.casefold())
    return keys.parse(tags[-1].replace("-", ":")) if tags else None


def tagged_name(key: keys.Key, original: str) -> str:
    """The original name, made safe, with the key's tag before its extension; the name is cut to
    fit 255 bytes, never the tag."""
    safe = safe_filename(original)
    stem, dot, extension = safe.rpartition(".")
    # an "extension" with a bracket may be a tag ("notes.[okbx-file-1-2]"): okbx's must be the last
    if not dot or not stem or len(extension.encode("utf-8")) > _MAX_EXTENSION_BYTES or "[" in extension:
        stem, extension = safe, ""
    tail = f" {key_tag(key)}" + (f".{extension}" if extension else "")
    room = MAX_BYTES - len(tail.encode("utf-8"))
    return safe_filename(stem.encode("utf-8")[:room].decode("utf-8", errors="ignore").rstrip(" .") + tail)
