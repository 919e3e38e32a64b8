"""Secrets never leak, and text crossing between the systems is data, never markup.

Part 1: every command (sync, dry-run, status, show, link, run; with -v and --log-file) under
failures (rate limits, lost answers, HTML 500s, a bad config, a closed port): neither the Okdesk
API token nor the Bitrix24 webhook secret may appear in stdout, stderr, the log file, or any byte
of the state directory (SQLite file, WAL, lock), neither plain nor URL-encoded.

Part 2: hostile comment text (script tags, BB-code links, a closing [/QUOTE], a forged okbx
marker, 30,000 characters, control characters, emoji) is forwarded once and neutralised; text
from Bitrix24 (elapsed-item comments, user names) is HTML-escaped in Okdesk.
"""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from e2e import FAST, CliResult, Okbx, hand_off, own_output, query_limit

from okbx_emulator.bitrix24 import Bitrix24Emulator
from okbx_emulator.http import HTML_500, EmulatorServer, Fault, Response
from okbx_emulator.okdesk import OkdeskEmulator
from okbx_emulator.world import OKDESK_TOKEN, WEBHOOK_SECRET, World

TASK_MARKER = re.compile(r"\[I\](okbx:[^\[\]\s]+)\[/I\]\s*$")
OUR_BB_TAGS = {"B", "/B", "I", "/I", "URL", "/URL", "QUOTE", "/QUOTE", "U", "/U", "S", "/S"}


def secret_forms(*secrets: str) -> set[str]:
    forms = set()
    for secret in secrets:
        forms |= {secret, quote(secret, safe=""), quote(secret), quote_plus(secret)}
    return forms


class Evidence:
    """Everything okbx printed or wrote, to be searched for secrets at the end."""

    def __init__(self, okbx: Okbx, secrets: tuple[str, ...] = (OKDESK_TOKEN, WEBHOOK_SECRET)) -> None:
        self.okbx = okbx
        self.forms = secret_forms(*secrets)
        self.texts: list[tuple[str, str]] = []

    def run(self, *args: str) -> CliResult:
        result = self.okbx(*args)
        self.texts.append((f"okbx {' '.join(args)} (stdout)", result.stdout))
        self.texts.append((f"okbx {' '.join(args)} (stderr)", result.stderr))
        own = own_output(result.output)
        assert "Traceback" not in own or "-v" in args, result.output
        return result

    def add(self, label: str, text: str) -> None:
        self.texts.append((label, text))

    def files(self) -> Iterator[tuple[str, bytes]]:
        for path in sorted(self.okbx.directory.rglob("*")):
            if path.is_file():
                yield str(path), path.read_bytes()

    def assert_clean(self) -> None:
        assert self.texts, "nothing was captured"
        leaks = [(label, form) for label, text in self.texts for form in self.forms if form in text]
        for label, data in self.files():
            leaks += [(label, form) for form in self.forms if form.encode() in data]
            leaks += [(label, form) for form in self.forms if form.encode("utf-16-le") in data]
        assert not leaks, f"secrets leaked: {leaks}"

    def run_everything(self, issue: int, *, log_file: Path) -> None:
        """Every read-only and writing command once, verbose, with a log file where it exists."""
        self.run("sync", "-v", "--log-file", str(log_file))
        self.run("sync", "--dry-run", "-v", "--log-file", str(log_file))
        self.run("status")
        self.run("status", "--json", "-v")
        self.run("show", str(issue))
        self.run("show", str(issue), "--json")
        self.add("log file", log_file.read_text(encoding="utf-8") if log_file.exists() else "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SCENARIOS: dict[str, list[tuple[str, Fault]]] = {
    "healthy": [],
    "query-limit-storm": [("bitrix", Fault(op="tasks.task.add", when="before", response=query_limit(), times=6))],
    "operation-time-limit": [
        (
            "bitrix",
            Fault(
                op="task.commentitem.add",
                when="before",
                response=Response.json(429, {"error": "OPERATION_TIME_LIMIT", "error_description": "blocked"}),
            ),
        )
    ],
    "okdesk-429-exhausted": [
        (
            "okdesk",
            Fault(
                op="GET /issues/list",
                when="before",
                response=Response.json(429, {"errors": "Превышен лимит"}, headers={"Retry-After": "0"}),
                times=6,
            ),
        )
    ],
    "lost-answers": [
        ("bitrix", Fault(op="tasks.task.add", when="after", kind="drop")),
        ("okdesk", Fault(op="POST /issues/{id}/comments", when="after", kind="drop")),
    ],
    "html-500s": [
        ("okdesk", Fault(op="GET /issues/{id}", when="before", response=Response.html(500, HTML_500), times=4)),
        ("bitrix", Fault(op="batch", when="before", response=Response.html(502, HTML_500), times=4)),
    ],
    "html-500-quoting-the-url": [
        (
            "okdesk",
            Fault(
                op="GET /issues/list",
                when="before",
                response=Response.html(500, f"<h1>500</h1><p>GET /api/v1/issues/list?api_token={OKDESK_TOKEN}</p>"),
                times=4,
            ),
        )
    ],
    "json-500-quoting-the-secrets": [
        (
            "okdesk",
            Fault(
                op="GET /issues/{id}",
                when="before",
                response=Response.json(500, {"errors": f"internal error at ?api_token={OKDESK_TOKEN}"}),
                times=4,
            ),
        ),
        (
            "bitrix",
            Fault(
                op="tasks.task.list",
                when="before",
                response=Response.json(
                    500, {"error": "INTERNAL", "error_description": f"at /rest/1/{WEBHOOK_SECRET}/"}
                ),
                times=4,
            ),
        ),
    ],
    "timeouts": [
        ("okdesk", Fault(op="GET /issues/{id}/comments", when="before", kind="hang", hang_seconds=1.0, times=4)),
    ],
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_secret_in_any_output_log_or_state_file_under_failures(world, okbx, clock, tmp_path, scenario):
    okbx.reconfigure(sync=FAST, okdesk={"timeout_seconds": 0.3})
    p = world.people
    issue = hand_off(world, comment="Please look")
    log_file = tmp_path / "okbx.log"
    evidence = Evidence(okbx)
    evidence.run("sync", "-v", "--log-file", str(log_file))  # a link exists before the faults
    task = int(world.bitrix.tasks()[0]["ID"])
    world.bitrix.log_time(task, p.bx_ivan, 600, "fixed")
    world.bitrix.complete_task(task)
    second = hand_off(world, "Second", comment="more")
    for side, fault in SCENARIOS[scenario]:
        (world.okdesk_server if side == "okdesk" else world.bitrix_server).inject(fault)
    evidence.run_everything(issue, log_file=log_file)
    evidence.run("show", str(second))
    world.okdesk_server.clear_faults()
    world.bitrix_server.clear_faults()
    clock.advance(1.1)  # sync.retry_base_seconds
    evidence.run_everything(second, log_file=log_file)
    evidence.assert_clean()


@pytest.mark.parametrize("side", ["okdesk", "bitrix"])
def test_no_secret_from_a_4xx_error_that_quotes_it(world, okbx, tmp_path, side):
    okbx.reconfigure(sync=FAST)
    issue = hand_off(world, comment="Please look")
    if side == "okdesk":
        answer = Response.json(422, {"errors": f"bad request /api/v1/issues/{issue}/comments?api_token={OKDESK_TOKEN}"})
        world.okdesk_server.inject(Fault(op="POST /issues/{id}/comments", when="before", response=answer))
    else:
        answer = Response.json(400, {"error": "ERROR_CORE", "error_description": f"bad call {world.webhook_url}"})
        world.bitrix_server.inject(Fault(op="task.commentitem.add", when="before", response=answer))
    evidence = Evidence(okbx)
    result = evidence.run("sync", "-v", "--log-file", str(tmp_path / "okbx.log"))
    assert result.exit_code == 1 and "failed: issue" in result.stderr
    evidence.run("status")
    evidence.run("show", str(issue))
    evidence.add("log file", (tmp_path / "okbx.log").read_text(encoding="utf-8"))
    evidence.assert_clean()


def test_no_secret_when_both_systems_refuse_the_connection(world, okbx, tmp_path):
    port = free_port()  # closed: nothing listens there
    okbx.reconfigure(sync=FAST, okdesk={"url": f"http://127.0.0.1:{port}"})
    hand_off(world)
    evidence = Evidence(okbx)
    log_file = tmp_path / "okbx.log"
    result = evidence.run("sync", "-v", "--log-file", str(log_file))
    assert result.exit_code == 1 and "Connection refused" in result.stderr
    okbx.reconfigure(sync=FAST)
    okbx.env["BITRIX24_WEBHOOK_URL"] = f"http://127.0.0.1:{port}/rest/1/{WEBHOOK_SECRET}/"
    result = evidence.run("sync", "-v", "--log-file", str(log_file))
    assert result.exit_code == 1 and "Connection refused" in result.stderr
    evidence.run("link", "1", "5", "-v")
    evidence.run("status", "--json")
    evidence.add("log file", log_file.read_text(encoding="utf-8"))
    evidence.assert_clean()


@pytest.mark.parametrize(
    "yaml_text",
    [
        "okdesk:\n  url: ftp://x\n  colour: red\n  api_token: ${OKDESK_API_TOKEN}\nbitrix24:\n"
        "  webhook_url: ${BITRIX24_WEBHOOK_URL}/extra\n",
        # the secrets under the wrong keys (a swapped copy-paste): their values must not be echoed
        "okdesk:\n  url: ${OKDESK_API_TOKEN}\n  api_token: ${BITRIX24_WEBHOOK_URL}\n  bot_employee_id: "
        "${OKDESK_API_TOKEN}\n  handoff_status: ${OKDESK_API_TOKEN}\n  requests_per_second: ${OKDESK_API_TOKEN}\n"
        "bitrix24:\n  webhook_url: ${OKDESK_API_TOKEN}\n  group_id: ${BITRIX24_WEBHOOK_URL}\n"
        "  responsible_id: 1\n  tags: ${BITRIX24_WEBHOOK_URL}\ntime:\n  default_employee_id: ${OKDESK_API_TOKEN}\n",
        "okdesk: [${OKDESK_API_TOKEN}\n",  # not even YAML
    ],
    ids=["typos", "secrets-under-wrong-keys", "broken-yaml"],
)
def test_no_secret_in_configuration_errors(world, okbx, tmp_path, yaml_text):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    evidence = Evidence(okbx)
    for command in (
        ("sync", "-v"),
        ("sync", "--dry-run"),
        ("status",),
        ("show", "1"),
        ("link", "1", "1"),
        ("retry", "1"),
        ("run", "--every", "30s", "-v"),
    ):
        result = evidence.run(*command, "--config", str(bad))
        assert result.exit_code == 2, (command, result.output)
        assert "invalid configuration" in result.stderr
    evidence.assert_clean()


def test_no_secret_from_link(world, okbx, tmp_path):
    okbx.reconfigure(sync=FAST)
    issue = world.okdesk.create_issue("Existing", "x")
    world.okdesk.set_status(issue, "to_programmers", by_employee_id=world.people.consultant)
    task = world.bitrix.create_task("Existing task", responsible_id=world.people.bx_ivan, group_id=42)
    evidence = Evidence(okbx)
    assert evidence.run("link", str(issue), str(task), "-v").exit_code == 0
    assert evidence.run("link", str(issue), str(task), "-v").exit_code == 2
    assert evidence.run("link", "999", str(task), "-v").exit_code == 2
    world.bitrix_server.inject(
        Fault(op="tasks.task.get", when="before", response=Response.html(502, HTML_500), times=4)
    )
    other = world.okdesk.create_issue("Other", "x")
    assert evidence.run("link", str(other), "12345", "--force", "-v").exit_code == 1
    evidence.assert_clean()


def test_no_secret_from_the_run_loop_and_its_log_file(world, okbx, clock, tmp_path):
    okbx.reconfigure(sync=FAST)
    hand_off(world, comment="Please look")
    world.bitrix_server.inject(Fault(op="tasks.task.add", when="after", kind="drop"))
    log_file = tmp_path / "run.log"

    def stop_after_two_cycles() -> None:  # as systemd would, while the loop waits for the next cycle
        if log_file.exists() and log_file.read_text().count("okbx sync:") >= 2:
            signal.raise_signal(signal.SIGTERM)  # handled by `okbx run`: it stops after the nap

    clock.on_sleep = stop_after_two_cycles
    result = okbx("run", "--every", "1s", "-v", "--log-file", str(log_file))
    assert result.exit_code == 0, result.output
    assert "SIGTERM received" in result.stderr
    assert log_file.read_text().count("okbx sync:") >= 2
    evidence = Evidence(okbx)
    evidence.add("run stdout", result.stdout)
    evidence.add("run stderr", result.stderr)
    evidence.add("run log", log_file.read_text())
    evidence.run("status", "--json")
    evidence.assert_clean()
    assert len(world.bitrix.tasks()) == 1


def test_no_secret_in_any_encoding_with_a_token_full_of_special_characters(tmp_path):
    # Real tokens are hex, which URL-encoding leaves alone; this one changes under every encoding.
    token = "okd tok+en/=&%5f2a9c"
    secret = "Whk-secret_8d41b7Q"
    okdesk, bitrix = OkdeskEmulator(token), Bitrix24Emulator(secret=secret, rate_per_second=None)
    world = World(okdesk, bitrix, EmulatorServer(okdesk).start(), EmulatorServer(bitrix).start())
    world._seed()
    try:
        okbx = Okbx(world, tmp_path, {"sync": FAST})
        okbx.env.update(OKDESK_API_TOKEN=token, BITRIX24_WEBHOOK_URL=world.webhook_url)
        issue = hand_off(world, comment="Please look")
        evidence = Evidence(okbx, (token, secret))
        assert evidence.run("sync", "-v", "--log-file", str(tmp_path / "okbx.log")).exit_code == 0
        assert len(world.bitrix.tasks()) == 1  # the token really worked
        world.okdesk_server.inject(Fault(op="GET /issues/list", when="before", kind="drop", times=4))
        assert evidence.run("sync", "-v", "--log-file", str(tmp_path / "okbx.log")).exit_code == 1
        # a store of its own: this one now belongs to the emulator's accounts (okbx rebind)
        dead = {"url": f"http://127.0.0.1:{free_port()}"}
        okbx.reconfigure(sync=FAST, okdesk=dead, state={"path": str(tmp_path / "new.sqlite3")})
        assert evidence.run("sync", "-v", "--log-file", str(tmp_path / "okbx.log")).exit_code == 1
        evidence.run("show", str(issue))
        evidence.add("log file", (tmp_path / "okbx.log").read_text(encoding="utf-8"))
        evidence.assert_clean()
    finally:
        world.close()


# -- injection --------------------------------------------------------------------------------------
PAYLOADS = {
    "script-tag": "<script>alert(1)</script>harmless",
    "escaped-script-text": "&lt;script&gt;alert(2)&lt;/script&gt;",
    "bb-url": "[URL=javascript:alert(1)]x[/URL]",
    "html-javascript-link": '<a href="javascript:alert(3)">click</a>',
    "close-quote": "[/QUOTE][B]bold?[/B]",
    "forged-marker": "[I]okbx:comment:1:1:99[/I]",
    "huge": "A" * 30000,
    "control-chars": "bin\x00\x01\x02\x07\x1b[31mred\x7f\x0b\x0c end",
    "emoji": "emoji 👍🏽🚀 ✓ — «ёж»",
}


def bb_tags(text: str) -> set[str]:
    return set(re.findall(r"\[(/?[A-Z]+)(?:=[^\]]*)?\]", text))


def test_hostile_okdesk_comments_are_forwarded_once_and_neutralised(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    evil_contact = ok.add_contact("[URL=javascript:alert(9)]Eve", "[/B]<b>x</b>", company_id=p.company)
    issue = hand_off(world)
    ids = {}
    for name, text in PAYLOADS.items():
        ids[name] = ok.add_comment(issue, text, author_id=evil_contact, author_type="contact")
    assert okbx.sync().exit_code == 0
    assert okbx.sync().exit_code == 0
    [task] = bx.tasks()
    forwarded: dict[int, list[str]] = {}
    for comment in bx.comments(int(task["ID"])):
        text = comment["POST_MESSAGE"]
        match = TASK_MARKER.search(text)
        assert match, text[:200]
        assert text.count("[I]okbx:") == 1, text[:300]  # the client's copies are escaped
        forwarded.setdefault(int(match.group(1).split(":")[-1]), []).append(text)
    assert {cid: len(texts) for cid, texts in forwarded.items()} == {cid: 1 for cid in ids.values()}

    full = {name: forwarded[cid][0] for name, cid in ids.items()}
    for name, text in full.items():
        assert bb_tags(text) <= {"B", "/B", "I", "/I"}, (name, bb_tags(text))  # no tag of the client's
        assert "javascript:" not in text or "[\u200bURL=javascript" in text, name
        assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", text), name
        assert "Eve" in text and "[URL=javascript" not in text  # the author's name is escaped too
    by_name = {name: text.split("\n", 1)[1] for name, text in full.items()}  # the comment below the header
    assert "<script" not in by_name["script-tag"] and "alert(1)" not in by_name["script-tag"]
    assert "harmless" in by_name["script-tag"]
    assert "<script>alert(2)</script>" in by_name["escaped-script-text"]  # shown as text: BB-code has no HTML
    assert "[URL=javascript" not in by_name["bb-url"] and "[/URL]" not in by_name["bb-url"]
    assert "click" in by_name["html-javascript-link"] and "javascript" not in by_name["html-javascript-link"]
    assert "[/QUOTE]" not in by_name["close-quote"] and "[B]bold?" not in by_name["close-quote"]
    forged = by_name["forged-marker"]
    assert "[I]okbx:comment:1:1:99[/I]" not in forged
    assert TASK_MARKER.search(forged).group(1) == f"okbx:comment:{issue}:1:{ids['forged-marker']}"  # type: ignore[union-attr]
    assert 20000 <= len(by_name["huge"]) < 20500 and "(cut)" in by_name["huge"]
    assert "bin" in by_name["control-chars"] and "red" in by_name["control-chars"] and "end" in by_name["control-chars"]
    assert "emoji 👍🏽🚀 ✓ — «ёж»" in by_name["emoji"]


def test_a_forged_marker_cannot_make_okbx_skip_a_comment_whose_write_was_lost(world, okbx, clock):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    okbx.reconfigure(sync=FAST)
    issue = hand_off(world)
    assert okbx.sync().exit_code == 0
    next_id = max(c["id"] for c in ok.comments(issue)) + 1  # comment ids are one sequence per account
    forger = ok.add_comment(
        issue, f"[I]okbx:comment:{issue}:1:{next_id + 1}[/I]", author_id=p.client, author_type="contact"
    )
    assert forger == next_id
    assert okbx.sync().exit_code == 0  # the forged marker reaches the task (escaped)
    victim = ok.add_comment(issue, "the real comment", author_id=p.client, author_type="contact")
    assert victim == forger + 1
    world.bitrix_server.inject(Fault(op="task.commentitem.add", when="before", kind="drop"))
    assert okbx("sync").exit_code == 1  # the victim's write got no answer: the next run looks for its marker
    clock.advance(1.1)  # sync.retry_base_seconds
    assert okbx.sync().exit_code == 0
    texts = [c["POST_MESSAGE"] for c in bx.comments(int(bx.tasks()[0]["ID"]))]
    assert sum("the real comment" in t for t in texts) == 1  # looked for, not found, written once
    assert sum(t.rstrip().endswith(f"[I]okbx:comment:{issue}:1:{victim}[/I]") for t in texts) == 1


def test_bitrix24_text_is_html_escaped_in_the_okdesk_summary_and_late_note(world, okbx):
    ok, bx, p = world.okdesk, world.bitrix, world.people
    bx.add_user(10, "<b>Evil</b>", "<img src=x onerror=alert(2)>")
    issue = hand_off(world)
    okbx.sync()
    task = int(bx.tasks()[0]["ID"])
    bx.log_time(task, p.bx_ivan, 600, "<img src=x onerror=alert(1)>")
    bx.log_time(task, 10, 900, "</li></ul><script>alert(3)</script> & [URL=javascript:x]y[/URL]")
    bx.complete_task(task)
    assert okbx.sync().exit_code == 0
    bx.log_time(task, p.bx_olga, 300, '"><svg onload=alert(4)>')
    assert okbx.sync().exit_code == 0
    assert okbx.sync().exit_code == 0
    summaries = [c["content"] for c in ok.comments(issue) if "okbx:summary:" in c["content"]]
    late = [c["content"] for c in ok.comments(issue) if "okbx:late:" in c["content"]]
    assert len(summaries) == 1 and len(late) == 1
    for html in (summaries[0], late[0]):
        for tag in ("<img", "<script", "<svg", "</ul><script", "<b>Evil"):
            assert tag not in html, (tag, html)
        assert re.sub(r"</?(br|ul|li|span)( class=\"okbx-marker\")?>", "", html).count("<") == 0, html
    assert "&lt;img src=x onerror=alert(1)&gt;" in summaries[0]
    assert "&lt;b&gt;Evil&lt;/b&gt;" in summaries[0] and "&lt;script&gt;alert(3)&lt;/script&gt;" in summaries[0]
    assert "&lt;svg onload=alert(4)&gt;" in late[0]
    assert not any("alert" in c["content"] for c in ok.comments(issue) if "okbx:" not in c["content"])
    assert len(ok.time_entries(issue)) == 3


def test_hostile_issue_title_and_description_are_neutralised_in_the_task(world, okbx):
    ok, p = world.okdesk, world.people
    issue = ok.create_issue(
        "Export\x00 fails [URL=javascript:alert(1)]now[/URL]\n\r\x1b",
        '<p>See <a href="javascript:alert(2)">this</a> [URL=javascript:alert(3)]y[/URL] [/QUOTE]'
        "<script>alert(4)</script><img src=x onerror=alert(5)></p>",
        company_id=p.company,
        contact_id=p.client,
    )
    ok.set_status(issue, "to_programmers", by_employee_id=p.consultant)
    assert okbx.sync().exit_code == 0
    [task] = world.bitrix.tasks()
    assert not re.search(r"[\x00-\x1f\x7f]", task["TITLE"])
    description = task["DESCRIPTION"]
    assert "javascript" not in description.replace("[\u200bURL=javascript:alert(3)]", "")
    assert "[/QUOTE]" not in description and "alert(4)" not in description and "<img" not in description
    assert bb_tags(description) <= {"B", "/B", "URL", "/URL"}
    assert re.findall(r"\[URL=([^\]]*)\]", description) == [f"{world.okdesk_server.url}/issues/{issue}"]
