"""Any text crossing into either system arrives inert, clean and bounded (properties over arbitrary text)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from okbx_sync import keys
from okbx_sync.core.notes import note_html
from okbx_sync.markup import CUT, MAX_LINE, MAX_NAME, MAX_TEXT, MAX_TITLE, ZWSP
from okbx_sync.model import Comment, Issue, Person
from okbx_sync.sync import render

WHEN = datetime(2024, 9, 1, 10, 30, tzinfo=UTC)
# Everything okbx must never pass on: C0/C1 controls (tab, newline and CR aside), DEL, bidi overrides.
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Hostile pieces mixed into arbitrary text so that the interesting cases come up often.
NASTY = st.sampled_from(
    [
        "<script>alert(1)</script>",
        '<a href="javascript:alert(1)">x</a>',
        "[URL=javascript:alert(1)]x[/URL]",
        "[/QUOTE][B]",
        "\x00",
        "\x1b[31m",
        "\u202e",
        "\u2066",
        "\x85",
        "&amp;",
        "\n",
        "[okbx:time:1]",
    ]
)
TEXT = st.lists(st.text(max_size=30) | NASTY, max_size=12).map("".join)
HUGE = st.integers(min_value=0, max_value=3).map(lambda n: "<b>" * n + "y" * (MAX_TEXT + 10))
OUR_HTML_TAGS = re.compile(r'<br>|</?ul>|</?li>|<span class="okbx-marker">|</span>')
OUR_BB_TAGS = re.compile(r"\[/?(?:B|I|U|S|QUOTE)\]|\[URL=[^\]\s]*\]|\[/URL\]")


def visible_html(text: str) -> str:
    """What a reader of the Okdesk HTML sees: our tags removed, entities decoded."""
    return html.unescape(OUR_HTML_TAGS.sub("\n", text))


def assert_inert_html(text: str) -> None:
    assert "<" not in OUR_HTML_TAGS.sub("", text), text  # no tag but ours
    assert FORBIDDEN.search(text) is None


def assert_inert_bbcode(text: str, prefix: str = "") -> None:
    body = text.removeprefix(prefix)
    assert re.search(rf"\[(?!{ZWSP})", OUR_BB_TAGS.sub("", body)) is None, body  # every other `[` neutralised
    assert FORBIDDEN.search(text) is None


# -- into Okdesk ---------------------------------------------------------------------------------
@settings(max_examples=300)
@given(TEXT | HUGE)
def test_a_time_entry_comment_is_escaped_clean_one_line_bounded_and_ends_with_our_marker(text):
    token = "okbx:time:42"
    comment = render.time_entry_comment(text, token)
    assert_inert_html(comment)
    assert "\n" not in comment and "\r" not in comment
    assert (found := keys.in_text(comment)) is not None and found.marker == token
    shown = html.unescape(comment.removesuffix(f"[{token}]").rstrip())
    assert len(shown) <= MAX_LINE + len(CUT)
    if len(text) > MAX_LINE + 50:
        assert shown.endswith("(cut)")


@settings(max_examples=200)
@given(st.lists(st.tuples(TEXT, TEXT | HUGE, TEXT), max_size=4), TEXT, TEXT)
def test_the_summary_escapes_every_name_and_comment_from_bitrix24(rows, heading, footer):
    items = [
        {"id": n, "date": date, "user": user, "seconds": 60 * n, "comment": comment}
        for n, (user, comment, date) in enumerate(rows, 1)
    ]
    summary = render.report(heading, items, footer, "okbx:summary:7:1")
    assert_inert_html(summary)
    # each row is bounded: a name or a comment of a megabyte cannot swell the summary
    row_cap = 2 * MAX_NAME + MAX_LINE + 3 * len(CUT) + 40
    assert len(visible_html(summary)) <= len(heading) + len(footer) + 200 + len(items) * row_cap


@settings(max_examples=200)
@given(TEXT | HUGE)
def test_an_issue_note_shows_the_text_as_written_minus_controls_and_bounded(text):
    note = note_html(text, "okbx:inote:x:1:1")
    assert_inert_html(note)
    shown = visible_html(note.removesuffix('<br><span class="okbx-marker">okbx:inote:x:1:1</span>'))
    assert len(shown) <= MAX_TEXT + len(CUT)
    if len(text) <= MAX_TEXT and FORBIDDEN.search(text) is None:
        assert shown == text


# -- into Bitrix24 -------------------------------------------------------------------------------
@settings(max_examples=300)
@given(TEXT | HUGE)
def test_a_task_title_is_one_inert_line_within_the_cap(title):
    result = render.task_title(Issue(12, title, "to_programmers", WHEN))
    prefix = "[Okdesk #12] "
    assert result.startswith(prefix)
    assert_inert_bbcode(result, prefix)
    assert "\n" not in result and "\r" not in result
    assert len(result) <= len(prefix) + MAX_TITLE


@settings(max_examples=200)
@given(TEXT | HUGE, TEXT, TEXT, TEXT)
def test_a_task_description_keeps_only_our_tags(description, company, contact, priority):
    issue = Issue(12, "t", "to_programmers", WHEN, description, company, contact, priority)
    result = render.task_description(issue, "https://acme.okdesk.ru")
    assert_inert_bbcode(result)
    assert len(result) <= MAX_TEXT + 3 * MAX_NAME + 300


@settings(max_examples=200)
@given(TEXT | HUGE, TEXT, TEXT, st.sampled_from(["contact", "employee"]))
def test_a_forwarded_comment_keeps_only_our_tags_and_our_marker_at_the_end(content, name, company, kind):
    comment = Comment(501, 10, content, True, WHEN, Person(5, name, kind))
    result = render.forwarded_comment(comment, company, "okbx:comment:10:1:501")
    assert_inert_bbcode(result)
    assert result.endswith("[I]okbx:comment:10:1:501[/I]")
    assert len(result) <= MAX_TEXT + 2 * MAX_NAME + 300


@settings(max_examples=100)
@given(TEXT)
def test_a_task_note_neutralises_status_names_it_quotes(name):
    assert_inert_bbcode(render.task_note(f"now '{name}'", "okbx:note:left:1:1"))


def test_the_examples_from_the_issue_arrive_inert():
    hostile = '<script>x</script><a href="javascript:alert(1)">y</a>\x00\x1b[2J' + "z" * 1_000_000
    comment = render.time_entry_comment(hostile, "okbx:time:1")
    assert "<script>" not in comment and "&lt;script&gt;" in comment and "\x00" not in comment
    assert "\x1b" not in comment and len(comment) < MAX_LINE + 100 and "(cut) [okbx:time:1]" in comment
    title = render.task_title(Issue(3, "[URL=javascript:alert(1)]click[/URL] \u202etxt.exe", "s", WHEN))
    assert title == f"[Okdesk #3] [{ZWSP}URL=javascript:alert(1)]click[{ZWSP}/URL] txt.exe"
