"""The keys of files travelling (issue 15)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import Key


@dataclass(frozen=True)
class FileKey(Key):  # files (issue 15): a Drive file has no field but its name: filenames.key_tag
    kind: ClassVar[str] = "file"  # Okdesk file `attachment_id`, copied to the Drive once
    issue_id: int
    attachment_id: int


@dataclass(frozen=True)
class AttachKey(Key):
    kind: ClassVar[str] = "attach"  # its Drive copy attached to the task of handoff `cycle`
    issue_id: int
    cycle: int
    attachment_id: int


@dataclass(frozen=True)
class FilesBackKey(Key):  # an Okdesk comment carrying task files back has its first file's key
    kind: ClassVar[str] = "files"  # task attachment dealt with: carried back, noted, or okbx's own copy
    issue_id: int
    attachment_id: int
