"""Idempotency keys and the markers that carry them: one constructor each, one parser.

A key names one remote write ("comment:12:1:55" = Okdesk comment 55 of issue 12, forwarded into
the task created in handoff 1).  It is the primary key of the write's op in the state store,
and the write carries it as a marker (`okbx:` + the key) at the very end of its text, so that
any run, with or without the store, can find the write again on the remote side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..markup import marker as _marker

PREFIX = "okbx:"
# kinds and parts are ASCII words and numbers; anything else after "okbx:" is not ours
_TOKEN = re.compile(r"okbx:([a-z]+(?::[a-z0-9_-]+)+)$")


@dataclass(frozen=True)
class Key:
    kind: str
    parts: tuple[str, ...]

    @classmethod
    def of(cls, kind: str, *parts: object) -> Key:
        return cls(kind, tuple(str(p) for p in parts))

    @classmethod
    def parse(cls, text: str) -> Key:
        kind, *parts = text.split(":")
        return cls(kind, tuple(parts))

    @property
    def text(self) -> str:
        return ":".join((self.kind, *self.parts))

    @property
    def marker(self) -> str:
        return _marker(self.kind, *self.parts)

    def __str__(self) -> str:
        return self.text

    def int_part(self, index: int) -> int | None:
        try:
            return int(self.parts[index])
        except (IndexError, ValueError):
            return None


# -- the writes okbx makes ----------------------------------------------------------------------
def task(issue_id: int, cycle: int) -> Key:
    return Key.of("task", issue_id, cycle)


def link_comment(issue_id: int, task_cycle: int) -> Key:
    return Key.of("linkcomment", issue_id, task_cycle)


def comment(issue_id: int, task_cycle: int, comment_id: int) -> Key:
    return Key.of("comment", issue_id, task_cycle, comment_id)


def task_note(note: str) -> Key:
    """A note from okbx into the task; `note` is "<why>:<issue>:<cycle>"."""
    return Key.of("note", *note.split(":"))


def issue_note(note: str) -> Key:
    """A note from okbx into the issue; `note` is "<why>:<issue>:<cycle>"."""
    return Key.of("inote", *note.split(":"))


def time_entry(item_id: int) -> Key:
    return Key.of("time", item_id)


def summary(issue_id: int, cycle: int) -> Key:
    return Key.of("summary", issue_id, cycle)


def late_note(issue_id: int, first_item_id: int) -> Key:
    return Key.of("late", issue_id, first_item_id)


def status_return(issue_id: int, cycle: int) -> Key:
    return Key.of("return", issue_id, cycle)


def renew(issue_id: int, cycle: int) -> Key:
    return Key.of("renew", issue_id, cycle)


def deadline(issue_id: int, value: str, previous: str = "") -> Key:
    return Key.of(
        "deadline", issue_id, re.sub(r"[^0-9]", "", value) or "none", re.sub(r"[^0-9]", "", previous) or "none"
    )


def deadline_baseline(issue_id: int, value: str) -> Key:
    """Not a write: the deadline okbx takes as given for a link older than deadline sync."""
    return Key.of("deadline", issue_id, re.sub(r"[^0-9]", "", value) or "none", "baseline")


def close(issue_id: int, cycle: int) -> Key:
    return Key.of("close", issue_id, cycle)


def gone(what: str, issue_id: int, cycle: int) -> Key:
    return Key.of("gone", what, issue_id, cycle)


# -- finding markers in what the remote side returns -------------------------------------------
def _last_token(plain: str) -> Key | None:
    tail = plain.rstrip()
    if tail.endswith("]"):  # the plain-text form of a time entry: "... [okbx:time:5]"
        tail = tail[:-1]
    start = tail.rfind(PREFIX)
    if start < 0:
        return None
    match = _TOKEN.match(tail[start:])
    return Key.parse(match.group(1)) if match else None


def in_bbcode(text: str) -> Key | None:
    """The key of a Bitrix24 comment okbx wrote ("...\\n[I]okbx:...[/I]"), or None."""
    tail = text.rstrip()
    if not tail.endswith("[/I]"):
        return None
    return _last_token(tail[: -len("[/I]")])


def in_html(content: str) -> Key | None:
    """The key of an Okdesk comment okbx wrote (its marker span may have been sanitised away)."""
    return _last_token(re.sub(r"<[^>]*>", "", content))


def in_text(text: str) -> Key | None:
    """The key of an Okdesk time entry okbx wrote ("... [okbx:time:5]")."""
    tail = text.rstrip()
    return _last_token(tail) if tail.endswith("]") else None
