"""Finding okbx's markers in what the remote side returns, and the lines a report ends with."""

from __future__ import annotations

import re

from .base import _TOKEN, PREFIX, Key, parse


# -- finding markers in what the remote side returns -------------------------------------------
def _last_token(plain: str) -> Key | None:
    tail = plain.rstrip()
    if tail.endswith("]"):  # the plain-text form of a time entry: "... [okbx:time:5]"
        tail = tail[:-1]
    start = tail.rfind(PREFIX)
    if start < 0:
        return None
    match = _TOKEN.match(tail[start:])
    return parse(match.group(1)) if match else None


def in_bbcode(text: str) -> Key | None:
    """The key of a Bitrix24 comment okbx wrote ("...\\n[I]okbx:...[/I]"), or None."""
    tail = text.rstrip()
    if not tail.endswith("[/I]"):
        return None
    return _last_token(tail[: -len("[/I]")])


def strip_tags(content: str) -> str:
    return re.sub(r"<[^>]*>", "", content)


def in_html(content: str) -> Key | None:
    """The key of an Okdesk comment okbx wrote (its marker span may have been sanitised away)."""
    return _last_token(strip_tags(content))


def in_text(text: str) -> Key | None:
    """The key of an Okdesk time entry okbx wrote ("... [okbx:time:5]")."""
    tail = text.rstrip()
    return _last_token(tail) if tail.endswith("]") else None


ITEMS_LINE = "Bitrix24 time items:"
_ITEMS = re.compile(re.escape(ITEMS_LINE) + r" ([0-9]+(?:, [0-9]+)*)\s*$")


def items_line(item_ids: list[int]) -> str:
    """The line a report ends with before its marker: which elapsed items it copied, so a store
    rebuilt from the markers knows them even where a person deleted the time entry since."""
    listed = ", ".join(str(i) for i in sorted(item_ids)) or "none"
    return f"{ITEMS_LINE} {listed}"


def reported_items(content: str) -> list[int]:
    """The elapsed items a report of okbx lists (its line just before the marker)."""
    plain = strip_tags(content.replace("<br>", "\n")).rstrip()
    start = plain.rfind(PREFIX)
    if start < 0:
        return []
    found = _ITEMS.search(plain[:start])
    return [int(i) for i in found.group(1).split(", ")] if found else []
