"""Text crossing from one system to the other: Okdesk HTML <-> Bitrix24 BB-code, safely.

User text is data, never markup: BB-code brackets coming from Okdesk are neutralised with a
zero-width space after `[` (Bitrix24 has no escape syntax for BB-code), and text going into
Okdesk is HTML-escaped.  Only the tags we emit ourselves survive, so a client cannot inject
`[URL=javascript:...]`, close our `[QUOTE]`, or forge one of okbx's markers.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import ClassVar
from urllib.parse import urlsplit

ZWSP = "\u200b"
CUT = " … (cut)"
# Caps on user text, counted in characters before escaping (escaping may add entities and
# zero-width spaces).  Neither API documents a limit: these keep a hostile or runaway text
# from becoming a megabyte comment, and stay far below what either system is known to accept.
MAX_TEXT = 20000  # a forwarded comment, a task description, one issue note
MAX_LINE = 1000  # one-line texts: a time-entry comment, a row of the summary
MAX_NAME = 200  # a person's or company's name
MAX_TITLE = 200  # a Bitrix24 task title after the "[Okdesk #id] " prefix
# C0 controls except tab/newline/CR, DEL, C1 controls, lone surrogates, and the Unicode
# bidirectional embeddings/overrides/isolates (a right-to-left override can make
# "exe.txt" read as "txt.exe").
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean_text(text: str, limit: int = MAX_TEXT) -> str:
    """Drop control and bidi-override characters and cap the length with a visible "(cut)"."""
    text = _CONTROL.sub("", text)
    if len(text) > limit:
        text = text[:limit] + CUT
    return text


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """Cleaned, with every run of whitespace (newlines included) folded into one space."""
    return clean_text(" ".join(_CONTROL.sub("", text).split()), limit)


def neutralise_bbcode(text: str) -> str:
    """Already-clean text made inert in BB-code: a zero-width space after every `[`."""
    return text.replace("[", "[" + ZWSP)


def escape_bbcode(text: str, limit: int = MAX_TEXT) -> str:
    return neutralise_bbcode(clean_text(text, limit))


def escape_html(text: str, limit: int = MAX_TEXT) -> str:
    return html.escape(clean_text(text, limit), quote=True).replace("\n", "<br>")


def safe_url(url: str) -> str | None:
    url = url.strip()
    if urlsplit(url).scheme.lower() not in ("http", "https", "mailto"):
        return None
    if any(c in url for c in "[]\n\r ") or (url.startswith("mailto:") is False and "//" not in url):
        return None
    return url


class _HtmlToBBCode(HTMLParser):
    _SIMPLE: ClassVar[dict[str, str]] = {
        "b": "B",
        "strong": "B",
        "i": "I",
        "em": "I",
        "u": "U",
        "s": "S",
        "strike": "S",
        "del": "S",
    }
    _BLOCK: ClassVar[set[str]] = {"p", "div", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._open: list[str] = []  # BB tags we opened, closed in order even on broken HTML
        self._skip = 0  # inside <script>/<style>
        self._link_stack: list[bool] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag in self._BLOCK:
            self._newline()
        elif tag == "li":
            self._newline()
            self.out.append("• ")
        elif tag in self._SIMPLE:
            self._push(self._SIMPLE[tag])
        elif tag == "blockquote":
            self._newline()
            self._push("QUOTE")
        elif tag == "a":
            href = safe_url(dict(attrs).get("href") or "")
            self._link_stack.append(href is not None)
            if href:
                self.out.append(f"[URL={href}]")
                self._open.append("URL")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag in self._BLOCK or tag == "li":
            self._newline()
        elif tag in self._SIMPLE:
            self._pop(self._SIMPLE[tag])
        elif tag == "blockquote":
            self._pop("QUOTE")
        elif tag == "a" and self._link_stack and self._link_stack.pop():
            self._pop("URL")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.out.append(escape_bbcode(data))

    def _newline(self) -> None:
        if self.out and not "".join(self.out[-2:]).endswith("\n"):
            self.out.append("\n")

    def _push(self, tag: str) -> None:
        self.out.append(f"[{tag}]")
        self._open.append(tag)

    def _pop(self, tag: str) -> None:
        if tag in self._open:
            while self._open:
                top = self._open.pop()
                self.out.append(f"[/{top}]")
                if top == tag:
                    break

    def result(self) -> str:
        self.close()
        while self._open:
            self.out.append(f"[/{self._open.pop()}]")
        text = "".join(self.out)
        text = re.sub(r"[ \t]+\n", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()


def html_to_bbcode(source: str) -> str:
    parser = _HtmlToBBCode()
    parser.feed(clean_text(source))
    return parser.result()


def html_to_text(source: str) -> str:
    """Plain text of Okdesk HTML, for one-line previews."""
    text = re.sub(r"\[/?[A-Z]+(=[^\]]*)?\]", "", html_to_bbcode(source))
    return text.replace(ZWSP, "")


# -- markers ---------------------------------------------------------------------------------
# Each remote write carries one, so that after a crash between the write and its record the
# next run can find the write and adopt it instead of repeating it.


def bb_marker_line(token: str) -> str:
    return f"[I]{token}[/I]"


def html_marker_line(token: str) -> str:
    return f'<span class="okbx-marker">{token}</span>'
