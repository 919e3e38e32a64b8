"""What a route gives the files planner, and the words okbx writes about files.

A route names its target's Drive folder (`DriveTarget`) and hands its rules over (`FileRoute`), so
the planner never reads another route's settings.  The words are pure functions of names and
sizes; a file's name comes from a person in the other system and is neutralised like any text.
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import keys
from ...config import Config, FilesConfig, RouteConfig
from ...markup import MAX_NAME, bb_marker_line, escape_bbcode, escape_html, html_marker_line, one_line
from ...model import Attachment
from ..render import issue_url

FOLDER = "Okdesk files"  # made on the workgroup's drive when no folder is configured


@dataclass(frozen=True)
class DriveTarget:
    """Where a route's copies go: `folder_id`, else a folder FOLDER on workgroup `group_id`'s
    drive; each issue gets its own subfolder there (`issue_folder`)."""

    group_id: int
    folder_id: int | None = None


def big_file_key(issue_id: int, cycle: int, attachment_id: int) -> keys.TaskNoteKey:
    """The task's note that an Okdesk file is over the cap (handoff `cycle`): one per file."""
    return keys.TaskNoteKey("bigfile", issue_id, cycle, str(attachment_id))


def issue_folder(issue_id: int) -> str:
    return f"Okdesk #{issue_id}"


@dataclass(frozen=True)
class FileRoute:
    policy: FilesConfig
    drive: DriveTarget
    okdesk_url: str
    bot_employee_id: int

    def travels(self, file: Attachment) -> bool:
        """Public files always; internal ones (Okdesk's `is_public: false`) when the policy says so."""
        return file.is_public or self.policy.internal_files

    def too_large(self, size: int) -> bool:
        return size > self.policy.max_file_bytes


def file_route(config: Config, route: RouteConfig | None) -> FileRoute | None:
    """A task route's files: its workgroup's drive, or the configured folder (None: files are off,
    or the route's target is not a task: a deal's timeline carries no files okbx copies)."""
    files = config.files
    if not files.enabled or route is None or route.kind != "task" or route.target.group_id is None:
        return None
    target = DriveTarget(route.target.group_id, files.folder_id)
    return FileRoute(files, target, config.okdesk.url, config.okdesk.bot_employee_id)


def cycle_files(config: Config) -> FileRoute | None:
    """The files rules of a cycle (the caps, internal files): those of its task routes (None: off)."""
    return next((f for r in config.routes if (f := file_route(config, r)) is not None), None)


# -- words ------------------------------------------------------------------------------------------
def size_text(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def file_name(name: str) -> str:
    """A person's file name as okbx shows it in a text (one line, capped)."""
    return one_line(name or "(no name)", MAX_NAME)


def big_file_note(file: Attachment, route: FileRoute, issue_id: int, token: str) -> str:
    """The task's note about an Okdesk file over the cap (BB-code)."""
    where = f"comment #{file.comment_id}" if file.comment_id else "the issue itself"
    scope = "public" if file.is_public else "internal (not visible to the client)"
    text = (
        f"The {scope} file “{file_name(file.name)}” ({size_text(file.size)}) of {where} was not copied: it is "
        f"larger than okbx's limit of {route.policy.max_file_mb} MB per file (files.max_file_mb). "
        f"Find it in the Okdesk issue: {issue_url(route.okdesk_url, issue_id)}"
    )
    return f"[B]okbx:[/B] {escape_bbcode(text)}\n{bb_marker_line(token)}"


FILES_LINE = "Bitrix24 files:"


def files_line(attachment_ids: list[int]) -> str:
    """The line before the marker of a comment carrying task files: every task attachment it dealt
    with, so a store rebuilt from the markers never carries one twice (`reported_files`)."""
    return f"{FILES_LINE} {', '.join(str(i) for i in sorted(attachment_ids)) or 'none'}"


def reported_files(content: str) -> list[int]:
    """The task attachments a comment of okbx lists (`files_line`), from its HTML."""
    plain = content.replace("<br>", "\n")
    start = plain.rfind(FILES_LINE)
    if start < 0:
        return []
    listed = plain[start + len(FILES_LINE) :].split("\n", 1)[0].split("<", 1)[0]
    return [int(part) for part in listed.replace(",", " ").split() if part.isdigit()]


def files_back_html(
    heading: str, copied: list[tuple[str, int]], left: list[tuple[str, int, str]], where: str, ids: list[int],
    token: str,
) -> str:  # fmt: skip
    """The Okdesk comment carrying task files: what it carries, what it could not and why, where
    those are, the files line and the marker (HTML, user text escaped)."""
    lines = [escape_html(heading)]
    if copied:
        names = "".join(f"<li>{escape_html(file_name(n))} ({size_text(s)})</li>" for n, s in copied)
        lines.append(f"Attached to this comment:<ul>{names}</ul>")
    if left:
        names = "".join(
            f"<li>{escape_html(file_name(n))} ({size_text(s)}): {escape_html(why)}</li>" for n, s, why in left
        )
        lines.append(f"Not copied; find them in the task {escape_html(where)}:<ul>{names}</ul>")
    lines.append(files_line(ids))
    return "<br>".join(lines) + "<br>" + html_marker_line(token)
