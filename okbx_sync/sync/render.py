"""The words okbx writes into both systems.  Pure functions; user text always neutralised.

Into Bitrix24 (titles, descriptions, comments): control and bidi-override characters dropped,
BB-code brackets made inert, lengths capped.  Into Okdesk (comments, time-entry comments,
summaries): the same cleaning, then HTML-escaped.  The caps are in `markup` (MAX_*).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from datetime import datetime

from .. import keys
from ..markup import (
    CUT,
    MAX_LINE,
    MAX_NAME,
    MAX_TITLE,
    bb_marker_line,
    escape_bbcode,
    escape_html,
    html_marker_line,
    html_to_bbcode,
    neutralise_bbcode,
    one_line,
)
from ..model import Comment, Issue
from ..timeutil import human_duration


def task_title(issue: Issue) -> str:
    # One line; brackets neutralised too, since Bitrix24 renders BB-code in some title views.
    # The cap counts the neutralised text, so the zero-width spaces cannot push it past MAX_TITLE.
    title = neutralise_bbcode(one_line(issue.title, limit=10 * MAX_TITLE))
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - len(CUT)].removesuffix("[") + CUT
    return f"[Okdesk #{issue.id}] {title}"


def issue_url(okdesk_url: str, issue_id: int) -> str:
    return f"{okdesk_url.rstrip('/')}/issues/{issue_id}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%d.%m.%Y %H:%M") if moment else "—"


def _bb_name(name: str | None) -> str:
    return neutralise_bbcode(one_line(name or "—", MAX_NAME))


def task_description(issue: Issue, okdesk_url: str) -> str:
    url = issue_url(okdesk_url, issue.id)
    lines = [
        f"[B]Okdesk issue #{issue.id}[/B]: [URL={url}]{url}[/URL]",
        f"[B]Company:[/B] {_bb_name(issue.company)}",
        f"[B]Contact:[/B] {_bb_name(issue.contact)}",
        f"[B]Priority:[/B] {_bb_name(issue.priority)}",
        f"[B]Deadline:[/B] {_when(issue.deadline_at)}",
        "",
        html_to_bbcode(issue.description_html) or "(no description)",
    ]
    return "\n".join(lines)


def forwarded_comment(comment: Comment, company: str | None, token: str) -> str:
    if comment.author.kind == "contact":
        who = f"Client {_bb_name(comment.author.name)}"
        if company:
            who += f" ({_bb_name(company)})"
    elif comment.author.kind == "employee":
        who = f"Consultant {_bb_name(comment.author.name)}"
    else:  # written by Okdesk itself (no author, or an author type that is not a person)
        name = comment.author.name if comment.author.name != comment.author.kind else ""
        who = "Okdesk system message" + (f" ({_bb_name(name)})" if name else "")
    scope = "public comment" if comment.public else "internal comment, not visible to the client"
    body = html_to_bbcode(comment.content_html) or "(empty comment)"
    return f"[B]{who}[/B] in Okdesk ({scope}):\n{body}\n{bb_marker_line(token)}"


def task_note(text: str, token: str) -> str:
    return f"[B]okbx:[/B] {escape_bbcode(text)}\n{bb_marker_line(token)}"


def link_comment(task_url: str, task_id: int, token: str, route: str | None = None) -> str:
    url = escape_html(task_url)
    whom = "the programmers" if route is None else f"route {route}"
    return f'Passed to {whom}: Bitrix24 task #{task_id} <a href="{url}">{url}</a><br>{html_marker_line(token)}'


def time_entry_comment(comment: str, token: str) -> str:
    # The field's format is not documented (inferred: plain text, maybe rendered as HTML): escaping
    # <, > and & keeps it inert either way; quotes stay readable, as this is never an attribute.
    text = html.escape(one_line(comment, MAX_LINE), quote=False)
    return f"{text} [{token}]" if text else f"[{token}]"


def report(
    heading: str, items: Iterable[dict[str, object]], footer: str, token: str, item_ids: Iterable[int] = ()
) -> str:
    """items: {date, user, seconds, comment} dicts; item_ids: the elapsed items it copied, listed
    on the line before the marker (a rebuilt store reads them back: keys.reported_items)."""
    rows = list(items)
    total = sum(int(str(r["seconds"])) for r in rows)
    lines = [escape_html(heading), f"Time logged: {human_duration(total)} in {len(rows)} entries."]
    if rows:
        lines.append(
            "<ul>"
            + "".join(
                f"<li>{escape_html(one_line(str(r['date']), MAX_NAME))}, "
                f"{escape_html(one_line(str(r['user']), MAX_NAME))}, "
                f"{human_duration(int(str(r['seconds'])))}: {escape_html(one_line(str(r['comment']), MAX_LINE) or '—')}"
                "</li>"
                for r in rows
            )
            + "</ul>"
        )
    if footer:
        lines.append(escape_html(footer))
    lines.append(keys.items_line(list(item_ids)))
    return "<br>".join(lines) + "<br>" + html_marker_line(token)
