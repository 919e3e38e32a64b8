"""The words okbx writes into both systems.  Pure functions; user text always escaped."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..markup import bb_marker_line, clean_text, escape_bbcode, escape_html, html_marker_line, html_to_bbcode
from ..model import Comment, Issue
from ..timeutil import human_duration


def task_title(issue: Issue) -> str:
    # Titles are plain text in Bitrix24; only control characters and length need care.
    title = " ".join(clean_text(issue.title).split())[:200]
    return f"[Okdesk #{issue.id}] {title}"


def issue_url(okdesk_url: str, issue_id: int) -> str:
    return f"{okdesk_url.rstrip('/')}/issues/{issue_id}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%d.%m.%Y %H:%M") if moment else "—"


def task_description(issue: Issue, okdesk_url: str) -> str:
    url = issue_url(okdesk_url, issue.id)
    lines = [
        f"[B]Okdesk issue #{issue.id}[/B]: [URL={url}]{url}[/URL]",
        f"[B]Company:[/B] {escape_bbcode(issue.company or '—')}",
        f"[B]Contact:[/B] {escape_bbcode(issue.contact or '—')}",
        f"[B]Priority:[/B] {escape_bbcode(issue.priority or '—')}",
        f"[B]Deadline:[/B] {_when(issue.deadline_at)}",
        "",
        html_to_bbcode(issue.description_html) or "(no description)",
    ]
    return "\n".join(lines)


def forwarded_comment(comment: Comment, company: str | None, token: str) -> str:
    if comment.author.kind == "contact":
        who = f"Client {escape_bbcode(comment.author.name)}"
        if company:
            who += f" ({escape_bbcode(company)})"
    elif comment.author.kind == "employee":
        who = f"Consultant {escape_bbcode(comment.author.name)}"
    else:  # written by Okdesk itself (no author, or an author type that is not a person)
        name = comment.author.name if comment.author.name != comment.author.kind else ""
        who = "Okdesk system message" + (f" ({escape_bbcode(name)})" if name else "")
    scope = "public comment" if comment.public else "internal comment, not visible to the client"
    body = html_to_bbcode(comment.content_html) or "(empty comment)"
    return f"[B]{who}[/B] in Okdesk ({scope}):\n{body}\n{bb_marker_line(token)}"


def task_note(text: str, token: str) -> str:
    return f"[B]okbx:[/B] {text}\n{bb_marker_line(token)}"


def link_comment(task_url: str, task_id: int, token: str) -> str:
    url = escape_html(task_url)
    return f'Passed to the programmers: Bitrix24 task #{task_id} <a href="{url}">{url}</a><br>{html_marker_line(token)}'


def issue_note(text: str, token: str) -> str:
    return f"{escape_html(text)}<br>{html_marker_line(token)}"


def time_entry_comment(comment: str, token: str) -> str:
    text = " ".join(comment.split())
    return f"{text} [{token}]" if text else f"[{token}]"


def report(heading: str, items: Iterable[dict[str, object]], footer: str, token: str) -> str:
    """items: {date, user, seconds, comment} dicts."""
    rows = list(items)
    total = sum(int(str(r["seconds"])) for r in rows)
    lines = [escape_html(heading), f"Time logged: {human_duration(total)} in {len(rows)} entries."]
    if rows:
        lines.append(
            "<ul>"
            + "".join(
                f"<li>{escape_html(str(r['date']))}, {escape_html(str(r['user']))}, "
                f"{human_duration(int(str(r['seconds'])))}: {escape_html(str(r['comment']) or '—')}</li>"
                for r in rows
            )
            + "</ul>"
        )
    if footer:
        lines.append(escape_html(footer))
    return "<br>".join(lines) + "<br>" + html_marker_line(token)
