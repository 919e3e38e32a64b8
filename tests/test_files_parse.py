"""Pure parsers of files against answers recorded in ../shared/api/crm-billing.md §1.5, §2.8 and
routes-files.md §3-4: the mixed string and number values, `[]` for empty objects, relative
comment links, and links that never print."""

from __future__ import annotations

import json

import pytest

from okbx_sync.clients.files_parse import (
    parse_attachment,
    parse_attachment_link,
    parse_chat_files,
    parse_comment_attachments,
    parse_comment_files,
    parse_drive_object,
    parse_storages,
    parse_task_file,
    parse_task_file_ids,
    parse_upload_target,
)
from okbx_sync.clients.parse import ParseError

# crm-billing.md §1.5: a real webhook item (observed)
OKDESK_ITEM = json.loads(
    '{"id": 27595345, "is_public": false, "attachment_file_name": "140624-11-лс.pdf",'
    ' "description": null, "attachment_file_size": 419469, "created_at": "2024-07-05T12:15:31.243+07:00"}'
)
# crm-billing.md §2.8: the uploadFile answer
UPLOADED = {"ID": 6687, "NAME": "act.pdf", "TYPE": "file", "PARENT_ID": "1739", "FILE_ID": 28073, "SIZE": "405559"}
PORTAL = "https://portal.bitrix24.ru"


def test_an_okdesk_attachment_as_a_real_account_sends_it():
    found = parse_attachment(OKDESK_ITEM)
    assert (found.id, found.name, found.size, found.is_public, found.description) == (
        27595345, "140624-11-лс.pdf", 419469, False, None,
    )  # fmt: skip
    assert found.created_at is not None and found.created_at.utcoffset().total_seconds() == 7 * 3600
    with pytest.raises(ParseError):
        parse_attachment({**OKDESK_ITEM, "is_public": "false"})


def test_comment_files_keep_their_comment():
    comments = [
        {"id": 48883009, "content": "x", "public": True, "attachments": [OKDESK_ITEM]},
        {"id": 48883010, "content": "y", "public": False, "attachments": []},
    ]
    (found,) = parse_comment_attachments(comments, 153)
    assert found.comment_id == 48883009


def test_the_download_link_is_a_secret():
    found, url = parse_attachment_link(
        {**OKDESK_ITEM, "attachment_url": "https://static.okdesk.ru/attachments/attachments/000/000/150/original/a.jpg"}
    )
    assert found.id == 27595345 and url.reveal().endswith("/a.jpg") and "okdesk" not in repr(url)
    with pytest.raises(ParseError):
        parse_attachment_link({**OKDESK_ITEM, "attachment_url": "javascript:alert(1)"})


def test_a_drive_file_uses_id_not_file_id():
    found = parse_drive_object(UPLOADED)
    assert (found.id, found.file_id, found.parent_id, found.size, found.is_folder) == (6687, 28073, 1739, 405559, False)
    with pytest.raises(ParseError):
        parse_drive_object({**UPLOADED, "TYPE": "link"})


def test_storages_and_the_two_step_upload_target():
    row = {"ID": "5", "NAME": "Группа", "CODE": None, "MODULE_ID": "disk", "ENTITY_TYPE": "group"}
    (storage,) = parse_storages([row | {"ENTITY_ID": "42", "ROOT_OBJECT_ID": "1739"}])
    assert (storage.id, storage.entity_type, storage.entity_id, storage.root_folder_id) == (5, "group", "42", 1739)
    field, url = parse_upload_target({"field": "file", "uploadUrl": f"{PORTAL}/rest/upload.json?auth=a&token=disk|b"})
    assert field == "file" and "auth=a" in url.reveal() and "auth" not in str(url)


def test_a_tasks_files_are_attachment_ids_and_an_empty_field_is_false_or_empty():
    assert parse_task_file_ids({"task": {"id": "8017", "ufTaskWebdavFiles": [423, "424"]}}) == [423, 424]
    assert parse_task_file_ids({"task": {"id": "8017", "ufTaskWebdavFiles": False}}) == []
    assert parse_task_file_ids({"task": {"id": "8017", "ufTaskWebdavFiles": []}}) == []
    assert parse_task_file_ids([]) is None  # the task is missing


def test_an_attached_object_maps_to_its_drive_file_and_link():
    link = f"{PORTAL}/bitrix/tools/disk/uf.php?attachedId=495&auth[auth]=t&action=download&ncc=1"
    row = {"ID": "495", "OBJECT_ID": "6687", "MODULE_ID": "tasks", "ENTITY_TYPE": "tasks_task", "ENTITY_ID": "8017"}
    row |= {"CREATE_TIME": "2025-07-15T14:31:00+02:00", "CREATED_BY": "1", "NAME": "act.pdf", "SIZE": "405559"}
    found = parse_task_file(row | {"DOWNLOAD_URL": link})
    assert (found.id, found.object_id, found.entity_id, found.size) == (495, 6687, 8017, 405559)


def test_comment_links_are_relative_to_the_portal_and_none_is_an_empty_array():
    rows = [
        {"ID": "3157", "POST_MESSAGE": "Photos attached", "ATTACHED_OBJECTS": {
            "501": {"ATTACHMENT_ID": "501", "NAME": "a.png", "SIZE": "10", "FILE_ID": "28080",
                    "DOWNLOAD_URL": "/bitrix/tools/disk/uf.php?attachedId=501&auth[auth]=t&action=download&ncc=1",
                    "VIEW_URL": "/bitrix/tools/disk/uf.php?attachedId=501&auth[auth]=t&action=show&ncc=1"}}},
        {"ID": "3158", "POST_MESSAGE": "none", "ATTACHED_OBJECTS": []},
    ]  # fmt: skip
    found = parse_comment_files(rows, 8017, PORTAL)
    (file,) = found[3157]
    assert file.id == 501 and file.download_url is not None
    assert file.download_url.reveal().startswith(f"{PORTAL}/bitrix/tools/disk/uf.php?attachedId=501")
    assert found[3158] == []


def test_chat_files_are_tied_to_their_messages():
    raw = {
        "chat_id": 2537,
        "messages": [{"id": 84801, "author_id": 7, "text": "", "params": {"FILE_ID": ["6690"]}},
                     {"id": 84802, "author_id": 0, "text": "system", "params": []}],
        "files": [{"id": 6690, "chatId": 2537, "name": "скрин.png", "size": 4, "urlDownload": "/disk/x/6690/"}],
    }  # fmt: skip
    (file,) = parse_chat_files(raw)
    assert (file.id, file.name, file.size, file.message_id) == (6690, "скрин.png", 4, 84801)
