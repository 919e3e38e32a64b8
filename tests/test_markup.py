"""Text crossing between Okdesk (HTML) and Bitrix24 (BB-code): converted, escaped, never executable."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from okbx_sync import keys
from okbx_sync.core.notes import note_html
from okbx_sync.markup import (
    MAX_TEXT,
    ZWSP,
    bb_marker_line,
    clean_text,
    escape_bbcode,
    escape_html,
    html_marker_line,
    html_to_bbcode,
    html_to_text,
    safe_url,
)
from okbx_sync.model import Comment, Issue, Person
from okbx_sync.sync import render


def has_bb_marker(text: str, token: str) -> bool:
    """okbx's own marker at the end of a Bitrix24 comment, as the product finds it (keys.in_bbcode)."""
    found = keys.in_bbcode(text)
    return found is not None and found.marker == token


def has_html_marker(content: str, token: str) -> bool:
    found = keys.in_html(content)
    return found is not None and found.marker == token


def has_text_marker(text: str, token: str) -> bool:
    found = keys.in_text(text)
    return found is not None and found.marker == token


OUR_TAG = re.compile(r"\[(/?)(B|I|U|S|QUOTE|URL)(=[^\]\s]*)?\]")
WHEN = datetime(2024, 9, 1, 10, 30, tzinfo=UTC)


def balanced(bb: str) -> bool:
    stack: list[str] = []
    for match in OUR_TAG.finditer(bb):
        closing, name = match.group(1), match.group(2)
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


def without_our_tags(bb: str) -> str:
    return OUR_TAG.sub("", bb)


def okdesk_comment(html: str, *, kind: str = "contact", name: str = "Pavel Orlov", public: bool = True) -> Comment:
    return Comment(501, 10, html, public, WHEN, Person(5, name, kind))


# -- HTML -> BB-code ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("html", "bb"),
    [
        ("first<br>second<br/>third", "first\nsecond\nthird"),
        ("<p>one</p><p>two</p>", "one\ntwo"),
        ("<div>a<div>b</div></div>", "a\nb"),
        ("<p>x</p>\n\n\n\n<p>y</p>", "x\n\ny"),
        ("<b>bold</b> and <strong>strong</strong>", "[B]bold[/B] and [B]strong[/B]"),
        ("<i>it</i><em>em</em><u>u</u><s>s</s><del>d</del>", "[I]it[/I][I]em[/I][U]u[/U][S]s[/S][S]d[/S]"),
        ('<a href="https://example.com/a?b=1&amp;c=2">site</a>', "[URL=https://example.com/a?b=1&c=2]site[/URL]"),
        ('<a href="http://example.com">plain</a>', "[URL=http://example.com]plain[/URL]"),
        ("<ul><li>one</li><li>two</li></ul>", "• one\n• two"),
        ("<ol><li>first</li></ol>after", "• first\nafter"),
        ("<blockquote>quoted</blockquote>reply", "[QUOTE]quoted[/QUOTE]reply"),
        ("&lt;b&gt;not bold&lt;/b&gt; &amp; co", "<b>not bold</b> & co"),
        ("Привет 👋 мир 🚀", "Привет 👋 мир 🚀"),
    ],
)
def test_okdesk_html_becomes_bitrix24_bbcode(html, bb):
    assert html_to_bbcode(html) == bb


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        " JAVASCRIPT:alert(1)",
        "&#1;javascript:alert(1)",
        "java&#9;script:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "vbscript:msgbox(1)",
        "http:no-slashes",
        "http://a b",
        "http://example.com/]x[URL=javascript:alert(1)]",
        "",
    ],
)
def test_links_other_than_plain_web_addresses_lose_their_href_but_keep_their_text(href):
    assert html_to_bbcode(f'<a href="{href}">click</a>') == "click"


def test_link_without_href_keeps_its_text_and_closes_nothing_of_ours():
    assert html_to_bbcode("<b><a>text</a> tail</b>") == "[B]text tail[/B]"


def test_safe_url_accepts_only_web_and_mail_addresses():
    assert safe_url(" https://example.com/x ") == "https://example.com/x"
    assert safe_url("mailto:someone@example.com") == "mailto:someone@example.com"
    assert safe_url("ftp://example.com") is None
    assert safe_url("javascript://%0aalert(1)") is None
    assert safe_url("https://example.com/[B]") is None


@pytest.mark.parametrize(
    ("html", "bb"),
    [
        ("<b>unclosed", "[B]unclosed[/B]"),
        ("</b>stray close", "stray close"),
        ("<b><i>crossed</b> tail</i>", "[B][I]crossed[/I][/B] tail"),
        ("<blockquote><b>inner</blockquote>after</b>", "[QUOTE][B]inner[/B][/QUOTE]after"),
        ('<a href="http://x.org"><b>link</a> more</b>', "[URL=http://x.org][B]link[/B][/URL] more"),
        ("<b>a<b>b</b>c</b>", "[B]a[B]b[/B]c[/B]"),
        ("<p>unterminated <b", "unterminated <b"),  # an incomplete tag at the end is text
        ("<<>>", "<<>>"),
    ],
)
def test_broken_or_nested_html_still_gives_balanced_bbcode(html, bb):
    result = html_to_bbcode(html)
    assert result == bb
    assert balanced(result)


def test_script_and_style_content_is_dropped():
    html = "<script>alert('x')</script>visible<style>p { color: red }</style> text<script src=x></script>"
    assert html_to_bbcode(html) == "visible text"


def test_unclosed_script_swallows_the_rest_rather_than_leaking_code():
    assert html_to_bbcode("ok <script>alert(1) <b>x</b>") == "ok"


def test_html_comments_are_dropped():
    assert html_to_bbcode("a<!-- [B]hidden[/B] -->b") == "ab"


# -- BB-code injection ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "payload",
    [
        "[URL=javascript:alert(1)]x[/URL]",
        "[/QUOTE] escaped the quote",
        "[B]fake bold",
        "[USER=1]Admin[/USER]",
        "[url=http://evil]lowercase[/url]",
        "&#91;B&#93;entity-encoded",
    ],
)
def test_bbcode_typed_by_a_client_is_shown_not_interpreted(payload):
    bb = html_to_bbcode(payload)
    assert re.search(r"\[[A-Za-z/]", bb) is None
    assert ZWSP in bb
    assert html_to_text(payload) == html_to_text(payload).replace(ZWSP, "")  # previews show the text as typed
    assert bb.replace(ZWSP, "") == payload.replace("&#91;", "[").replace("&#93;", "]")


def test_client_cannot_close_our_quote_or_bold_in_a_forwarded_comment():
    text = render.forwarded_comment(
        okdesk_comment("[/B][/QUOTE][URL=javascript:alert(1)]x[/URL]"), "Romashka", "okbx:comment:10:1:501"
    )
    assert balanced(text)
    assert "[URL=" not in text
    assert text.count("[/B]") == 1  # only the one closing our author heading


def test_client_name_and_company_are_escaped_in_a_forwarded_comment():
    comment = okdesk_comment("hi", name="[B]Boss[/B]")
    text = render.forwarded_comment(comment, "[URL=http://evil]ACME[/URL]", "okbx:comment:10:1:501")
    assert text.startswith(f"[B]Client [{ZWSP}B]Boss[{ZWSP}/B] ([{ZWSP}URL=http://evil]ACME[{ZWSP}/URL])[/B]")


@pytest.mark.parametrize(
    "user_html",
    [
        "[I]okbx:comment:1:1:5[/I]",
        "text\n[I]okbx:comment:1:1:5[/I]",
        "<p>x</p>[I]okbx:comment:1:1:5[/I]   ",
        "<i>okbx:comment:1:1:5</i>",
    ],
)
def test_forged_marker_in_user_text_is_not_recognised_as_ours(user_html):
    token = "okbx:comment:1:1:5"
    assert not has_bb_marker(render.forwarded_comment(okdesk_comment(user_html), None, "okbx:comment:1:1:6"), token)
    if "<i>" not in user_html:
        assert not has_bb_marker(html_to_bbcode(user_html), token)
        assert not has_bb_marker(escape_bbcode(user_html), token)


def test_our_marker_is_recognised_only_at_the_very_end():
    token = keys.CommentKey(10, 1, 501).marker
    assert token == "okbx:comment:10:1:501"
    ours = render.forwarded_comment(okdesk_comment("hello"), None, token)
    assert has_bb_marker(ours, token)
    assert has_bb_marker(ours + "\n  ", token)
    assert not has_bb_marker(ours + "\nreply below", token)
    assert not has_bb_marker(ours, "okbx:comment:10:1:50")
    assert not has_bb_marker(bb_marker_line("okbx:comment:110:1:501"), token)


def test_html_marker_counts_only_at_the_end_even_if_okdesk_drops_our_span():
    token = "okbx:linkcomment:10:1"
    assert has_html_marker(f"Passed<br>{html_marker_line(token)}", token)
    assert has_html_marker(f"Passed<br>{token}", token)  # span sanitised away
    assert has_html_marker(f"<p>Passed<br>{token}</p>\n", token)
    assert not has_html_marker(f"{html_marker_line(token)}<br>someone added text", token)
    assert not has_html_marker(f"Passed<br>{token}1", token)
    assert not has_html_marker("Passed<br>okbx:linkcomment:110:1", token)


def test_text_marker_counts_only_at_the_end():
    token = "okbx:time:7"
    assert has_text_marker(render.time_entry_comment("fixed it", token), token)
    assert has_text_marker(render.time_entry_comment("", token), token)
    assert not has_text_marker(f"[{token}] later words", token)
    assert not has_text_marker("[okbx:time:17]", token)


# -- text into Okdesk ----------------------------------------------------------------------------
def test_text_into_okdesk_is_html_escaped():
    assert escape_html("<script>alert('x')</script> & \"q\"\nline") == (
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;q&quot;<br>line"
    )


def test_report_escapes_bitrix24_user_text():
    rows = [{"id": 1, "date": "01.09.2024", "user": "<b>Ivan</b>", "seconds": 3600, "comment": "<img src=x onerror=1>"}]
    html = render.report("Done <now>", rows, "footer & more", "okbx:summary:10:1")
    assert "<img" not in html and "<b>Ivan" not in html
    assert "&lt;img src=x onerror=1&gt;" in html and "Done &lt;now&gt;" in html and "footer &amp; more" in html
    assert "Time logged: 1 h in 1 entries." in html
    assert html.endswith(html_marker_line("okbx:summary:10:1"))


def test_issue_note_and_link_comment_escape_their_text():
    assert note_html("a <b> & c", "okbx:inote:x:1:1").startswith("a &lt;b&gt; &amp; c<br>")
    link = render.link_comment('https://b24.example/task/1/"onmouseover=x', 1, "okbx:linkcomment:10:1")
    assert '"onmouseover' not in link and "&quot;onmouseover=x" in link


def test_task_title_and_description_carry_issue_facts_safely():
    issue = Issue(
        12,
        "  Printer\n\tjams   [B]now[/B] " + "x" * 300,
        "to_programmers",
        WHEN,
        description_html="<p>Steps</p><script>evil()</script>",
        company="[URL=http://e]C[/URL]",
        contact=None,
        priority="High",
        deadline_at=WHEN,
    )
    title = render.task_title(issue)
    # one line, BB-code inert, cut visibly at the documented cap
    assert title.startswith(f"[Okdesk #12] Printer jams [{ZWSP}B]now[{ZWSP}/B] xxx")
    assert len(title) == len("[Okdesk #12] ") + 200 and title.endswith("(cut)")
    description = render.task_description(issue, "https://acme.okdesk.ru/")
    assert "[URL=https://acme.okdesk.ru/issues/12]https://acme.okdesk.ru/issues/12[/URL]" in description
    assert f"[B]Company:[/B] [{ZWSP}URL=http://e]C[{ZWSP}/URL]" in description
    assert "[B]Contact:[/B] —" in description and "[B]Deadline:[/B] 01.09.2024 10:30" in description
    assert description.endswith("Steps") and "evil" not in description
    empty = render.task_description(Issue(13, "t", "s", None), "https://acme.okdesk.ru")
    assert empty.endswith("(no description)")


def test_task_title_drops_control_characters():
    issue = Issue(12, "Printer\x00 jams\x07\x1b[31m", "to_programmers", WHEN)
    assert re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", render.task_title(issue)) is None


# -- control characters, length, emoji -----------------------------------------------------------
def test_control_characters_are_removed_but_tabs_and_newlines_kept():
    assert clean_text("a\x00b\x07c\td\ne\r\x1b\x7f") == "abc\td\ne\r"
    assert html_to_bbcode("bin\x00ary\x08 <b>da\x1bta</b>") == "binary [B]data[/B]"
    assert escape_html("x\x00y") == "xy"


def test_very_long_text_is_cut_with_a_note():
    long_text = "a" * (MAX_TEXT + 5000)
    cut = clean_text(long_text)
    assert cut == "a" * MAX_TEXT + " … (cut)"
    assert escape_html(long_text).endswith(" … (cut)")
    bb = html_to_bbcode("<p>" + "b" * (MAX_TEXT * 2) + "</p>")
    assert len(bb) < MAX_TEXT + 100 and bb.endswith("(cut)")


def test_emoji_and_non_latin_text_survive_both_directions():
    text = "Готово ✅ — спасибо 🙏🏽 👨‍👩‍👧"
    assert escape_html(text) == text
    assert escape_bbcode(text) == text
    assert html_to_bbcode(f"<p>{text}</p>") == text
    assert html_to_text(f"<b>{text}</b>") == text


def test_plain_text_preview_strips_our_tags_and_zero_width_spaces():
    assert html_to_text("<b>bold</b> [B]typed[/B] <a href='https://x.org'>link</a>") == "bold [B]typed[/B] link"


# -- properties ----------------------------------------------------------------------------------
@given(st.text())
def test_escaped_bbcode_never_contains_a_tag_opening(text):
    assert re.search(r"\[[^\W\d_]|\[/", escape_bbcode(text)) is None


@given(st.text())
def test_escaped_html_never_contains_markup_characters(text):
    escaped = escape_html(text)
    assert "<" not in escaped.replace("<br>", "") and ">" not in escaped.replace("<br>", "")
    assert '"' not in escaped and "'" not in escaped


HTML_PIECES = st.sampled_from(
    [
        "<b>",
        "</b>",
        "<strong>",
        "</strong>",
        "<i>",
        "</i>",
        "<em>",
        "</em>",
        "<u>",
        "</u>",
        "<s>",
        "</s>",
        "<p>",
        "</p>",
        "<br>",
        "<br/>",
        "<div>",
        "</div>",
        "<ul>",
        "<li>",
        "</li>",
        "</ul>",
        "<blockquote>",
        "</blockquote>",
        '<a href="https://x.org/p">',
        '<a href="javascript:alert(1)">',
        "<a>",
        "</a>",
        "<script>",
        "</script>",
        "<style>",
        "</style>",
        "<!--",
        "-->",
        "<",
        ">",
        "&amp;",
        "&#91;",
        "&lt;",
        "[B]",
        "[/B]",
        "[URL=javascript:x]",
        "[/QUOTE]",
        "[",
        "]",
        "\n",
        " ",
        "text",
        "\x00",
        "👍",
    ]
)


@settings(max_examples=300)
@given(st.lists(st.one_of(HTML_PIECES, st.text(max_size=5)), max_size=40).map("".join))
def test_html_to_bbcode_never_raises_and_only_our_tags_are_balanced(html):
    bb = html_to_bbcode(html)
    assert isinstance(bb, str)
    assert balanced(bb)
    assert re.search(r"\[[^\W\d_]|\[/", without_our_tags(bb)) is None
    assert "javascript" not in "".join(m.group(0) for m in OUR_TAG.finditer(bb)).lower()


@given(st.text())
def test_html_to_bbcode_never_raises_on_any_text(text):
    assert balanced(html_to_bbcode(text))
