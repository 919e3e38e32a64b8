"""Okdesk attachments: the emulator against crm-billing.md §1.5 and routes-files.md §4, read and
written through okbx's real file client over HTTP (raw requests only where okbx must never go)."""

from __future__ import annotations

import io
import logging

import pytest
import requests
from files_support import HashSink, file_clients, sha256

from okbx_emulator.okdesk_files import OkdeskFiles as EmulatedFiles
from okbx_emulator.world import OKDESK_TOKEN
from okbx_sync.clients.http import TooLarge
from okbx_sync.clients.multipart import FileSource
from okbx_sync.clients.okdesk_files import Upload
from okbx_sync.errors import ApiError, NotFound

ITEM_KEYS = {"id", "attachment_file_name", "description", "attachment_file_size", "is_public", "created_at"}


@pytest.fixture
def fc(okbx, clock):
    with file_clients(okbx, clock) as clients:
        yield clients


@pytest.fixture
def issue(world):
    return world.okdesk.create_issue("Принтер не печатает", contact_id=world.people.client)


def comments_url(world, issue_id: int) -> str:
    return f"{world.okdesk_server.url}/api/v1/issues/{issue_id}/comments"


def test_files_show_on_the_issue_and_on_their_comment_without_a_url(world, fc, issue):
    ok, p = world.okdesk, world.people
    own = ok.files.add(issue, "photo.jpg", b"jpeg", is_public=True, description="фото")
    comment = ok.add_comment(issue, "логи во вложении", author_id=p.client, author_type="contact")
    logs = ok.files.add(issue, "log.txt", b"x" * 4149, comment_id=comment)
    shown = world.okdesk.issue(issue)["attachments"]
    assert [set(item) for item in shown] == [ITEM_KEYS] and shown[0]["attachment_file_size"] == 4
    (item,) = world.okdesk.comments(issue)[0]["attachments"]
    assert set(item) == ITEM_KEYS and item["id"] == logs and item["attachment_file_size"] == 4149
    (on_issue,) = fc.files.issue_attachments(issue)
    assert (on_issue.id, on_issue.name, on_issue.is_public, on_issue.description) == (own, "photo.jpg", True, "фото")
    (on_comment,) = fc.files.comment_attachments(issue)
    assert (on_comment.id, on_comment.comment_id, on_comment.size, on_comment.is_public) == (logs, comment, 4149, False)


def test_there_is_no_attachment_list_or_upload_endpoint(world, issue):
    url = f"{world.okdesk_server.url}/api/v1/issues/{issue}/attachments"
    assert requests.get(url, params={"api_token": OKDESK_TOKEN}, timeout=5).status_code == 404
    answer = requests.post(url, params={"api_token": OKDESK_TOKEN}, files={"file": ("a.txt", b"a")}, timeout=5)
    assert answer.status_code == 404


def test_a_file_downloads_through_a_fresh_link_without_the_token_and_arrives_intact(world, fc, issue):
    attachment = world.okdesk.files.add(issue, "выгрузка.zip", size=3_000_000, seed=5)
    raw = fc.okdesk.call("GET", f"/issues/{issue}/attachments/{attachment}", "x")
    assert set(raw) == ITEM_KEYS | {"attachment_url"} and OKDESK_TOKEN not in raw["attachment_url"]
    first = requests.get(raw["attachment_url"], timeout=5, allow_redirects=False)
    assert first.status_code == 302  # inferred: a static file server's hop (the production client follows it)
    sink = HashSink()
    found, done = fc.files.download(issue, attachment, sink)
    assert found.size == done.size == sink.size == 3_000_000
    assert done.sha256 == sink.sha256 == world.okdesk.files.blob(attachment).sha256


def test_the_link_works_for_30_seconds_on_the_emulators_clock(world, fc, issue, clock):
    attachment = world.okdesk.files.add(issue, "a.pdf", b"%PDF-1.4")
    link = fc.okdesk.call("GET", f"/issues/{issue}/attachments/{attachment}", "x")["attachment_url"]
    clock.advance(29)
    assert requests.get(link, timeout=5).content == b"%PDF-1.4"
    clock.advance(2)
    expired = requests.get(link, timeout=5)
    assert expired.status_code == 403 and b"expired" in expired.content
    assert fc.files.download(issue, attachment, io.BytesIO())[1].size == 8  # a fresh link each time


def test_a_comments_file_downloads_through_the_issue_path_unless_the_account_says_otherwise(world, fc, issue):
    comment = world.okdesk.add_comment(issue, "см. файл", author_id=world.people.consultant)
    attachment = world.okdesk.files.add(issue, "a.txt", b"abc", comment_id=comment)
    assert fc.files.download(issue, attachment, io.BytesIO())[1].size == 3
    world.okdesk.files.comment_files_via_issue = False  # the open question's other answer
    with pytest.raises(NotFound):
        fc.files.download(issue, attachment, io.BytesIO())
    other = world.okdesk.create_issue("другая")
    world.okdesk.files.comment_files_via_issue = True
    with pytest.raises(NotFound):  # a file is served under its own issue only
        fc.files.download(other, attachment, io.BytesIO())


def test_a_comment_with_files_is_the_documented_multipart_form_and_the_bytes_arrive(world, fc, issue):
    big = FileSource("../../отчёт: итог?.pdf", io.BytesIO(b"%PDF" * 250_000))
    chunks = FileSource("notes.txt", iter([b"line 1\n", b"line 2\n"]))  # no size known: sent chunked
    comment, attached = fc.files.add_comment_with_files(
        issue, "Файлы из Битрикс24", [Upload(big, description="итог"), Upload(chunks, is_public=True)], public=False
    )
    assert comment.author.id == world.people.bot and comment.public is False
    assert [(a.name, a.size, a.is_public, a.description) for a in attached] == [
        ("_.._отчёт__итог_.pdf", 1_000_000, False, "итог"),  # made safe by okbx, then cleaned by the account
        ("notes.txt", 14, True, None),
    ]
    assert world.okdesk.files.blob(attached[0].id).sha256 == sha256(b"%PDF" * 250_000)
    assert world.okdesk.files.blob(attached[1].id).read() == b"line 1\nline 2\n"
    assert [a["id"] for a in world.okdesk.comments(issue)[-1]["attachments"]] == [a.id for a in attached]


@pytest.mark.parametrize(
    "file_field",
    [
        "comment[attachments][][attachment]",  # the sequential form: 422 (observed)
        "comment[attachments][0][attachment_file]",  # another name: 422 (observed)
        "comment[attachments_attributes][0][file]",  # apepenkov's form, which contradicts the apidoc
        "comment[files][0]",
        "file",  # outside the comment
    ],
)
def test_a_file_under_any_other_field_name_is_refused(world, issue, file_field):
    form = {"comment[content]": "x", "comment[author_id]": str(world.people.bot)}
    answer = requests.post(
        comments_url(world, issue), params={"api_token": OKDESK_TOKEN}, data=form,
        files={file_field: ("a.txt", b"abc")}, timeout=5,
    )  # fmt: skip
    assert answer.status_code == 422 and "errors" in answer.json()
    assert world.okdesk.comments(issue) == []  # nothing written


def test_files_in_a_json_body_are_refused(world, issue):
    body = {"comment": {"content": "x", "author_id": world.people.bot, "attachments": [{"attachment": "YWJj"}]}}
    answer = requests.post(comments_url(world, issue), params={"api_token": OKDESK_TOKEN}, json=body, timeout=5)
    assert answer.status_code == 422 and "attachments" in answer.json()["errors"]
    assert world.okdesk.comments(issue) == []


def test_the_documented_form_written_by_hand_is_accepted(world, issue):
    form = [
        ("comment[content]", "Файл из Битрикс24"), ("comment[author_id]", str(world.people.bot)),
        ("comment[public]", "false"), ("comment[attachments][0][description]", "акт"),
        ("comment[attachments][0][is_public]", "true"),
    ]  # fmt: skip
    answer = requests.post(
        comments_url(world, issue), params={"api_token": OKDESK_TOKEN}, data=form,
        files={"comment[attachments][0][attachment]": ("act.pdf", b"%PDF")}, timeout=5,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    (item,) = answer.json()["attachments"]
    assert (item["attachment_file_name"], item["is_public"], item["description"]) == ("act.pdf", True, "акт")


def test_a_file_over_the_accounts_limit_is_too_large(world, fc, issue):
    world.okdesk.files.max_attachment_bytes = 1000  # unknown on real accounts: 413 here (inferred)
    with pytest.raises(TooLarge) as refused:
        fc.files.add_comment_with_files(
            issue, "x", [Upload(FileSource("a.bin", io.BytesIO(b"0" * 1001)))], public=False
        )
    assert refused.value.status == 413 and world.okdesk.comments(issue) == []


def test_okbx_caps_what_it_moves_and_stops_reading_cleanly(world, okbx, clock, issue):
    attachment = world.okdesk.files.add(issue, "huge.bin", size=5_000_000)
    with file_clients(okbx, clock, max_download_bytes=1_000_000, max_upload_bytes=10) as capped:
        with pytest.raises(TooLarge):  # the listed size is over the cap: no byte is read
            capped.files.download(issue, attachment, HashSink())
        capped.files.max_download_bytes = None
        sink = HashSink()
        with pytest.raises(TooLarge):
            capped.okdesk.download(
                capped.okdesk.call("GET", f"/issues/{issue}/attachments/{attachment}", "x")["attachment_url"],
                "link", sink, max_bytes=100_000,
            )  # fmt: skip
        assert sink.size <= 100_000
        with pytest.raises(TooLarge):  # a known size over the cap: nothing is sent
            capped.files.add_comment_with_files(
                issue, "x", [Upload(FileSource("a", io.BytesIO(b"x" * 11)))], public=False
            )
        with pytest.raises(TooLarge):  # an unknown size: the upload stops when the cap is passed
            capped.files.add_comment_with_files(
                issue, "x", [Upload(FileSource("a", iter([b"x" * 6] * 2)))], public=False
            )
        assert capped.files.issue_attachments(issue)  # the client still works after an aborted download
    assert world.okdesk.comments(issue) == []


def test_names_are_cleaned_the_way_paperclip_does_unless_the_account_keeps_them(world, issue):
    assert world.okdesk.files._stored_name("счёт #12 (итог).pdf") == "счёт__12_(итог).pdf"
    assert EmulatedFiles(world.okdesk, ValueError, paperclip_names=False)._stored_name("a b.pdf") == "a b.pdf"


def test_no_link_token_or_file_content_reaches_an_error_or_a_log(world, fc, issue, clock, caplog):
    secret_bytes = b"TOP-SECRET-CONTENT-" * 100
    attachment = world.okdesk.files.add(issue, "secret.txt", secret_bytes)
    caplog.set_level(logging.DEBUG, logger="okbx_sync")  # urllib3 stays at WARNING, as logsetup sets it
    fc.files.download(issue, attachment, io.BytesIO())
    fc.files.add_comment_with_files(issue, "x", [Upload(FileSource("s.txt", io.BytesIO(secret_bytes)))], public=False)
    link = fc.okdesk.call("GET", f"/issues/{issue}/attachments/{attachment}", "x")["attachment_url"]
    clock.advance(31)
    with pytest.raises(ApiError) as expired:
        fc.okdesk.download(link, "GET attachment link", io.BytesIO(), max_bytes=None)
    token = link.split("token=")[1]
    assert token not in str(expired.value) and expired.value.status == 403
    assert "TOP-SECRET" not in caplog.text and token not in caplog.text and OKDESK_TOKEN not in caplog.text


def test_an_upload_is_never_sent_twice(world, fc, issue):
    from okbx_emulator.http import Fault, Response

    op = "POST /issues/{id}/comments"
    world.okdesk_server.inject(Fault(op, when="after", kind="drop"))  # applied, the answer lost
    with pytest.raises(ApiError) as lost:
        fc.files.add_comment_with_files(issue, "x", [Upload(FileSource("a.txt", io.BytesIO(b"a")))], public=False)
    assert lost.value.ambiguous and world.okdesk_server.count(op) == 1
    limited = Response.json(429, {"errors": "Превышен лимит запросов"}, headers={"Retry-After": "1"})
    world.okdesk_server.inject(Fault(op, when="before", response=limited))  # "not executed", yet not repeated
    with pytest.raises(ApiError):
        fc.files.add_comment_with_files(issue, "y", [Upload(FileSource("b.txt", io.BytesIO(b"b")))], public=False)
    assert world.okdesk_server.count(op) == 2
    assert [len(c["attachments"]) for c in world.okdesk.comments(issue)] == [1]  # the one the lost answer made
