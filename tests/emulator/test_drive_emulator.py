"""Bitrix24 Drive and task files: the emulator against routes-files.md §3 and crm-billing.md §2.8,
through okbx's real Drive client over HTTP (raw method calls where okbx must never go)."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from files_support import HashSink, file_clients, sha256

from okbx_emulator.bitrix24 import Bitrix24Emulator
from okbx_emulator.http import EmulatorServer
from okbx_emulator.world import GROUP_ID
from okbx_sync.clients.http import TooLarge
from okbx_sync.clients.multipart import FileSource
from okbx_sync.errors import ApiError

FILE_KEYS = {
    "ID", "NAME", "CODE", "STORAGE_ID", "TYPE", "PARENT_ID", "DELETED_TYPE", "GLOBAL_CONTENT_VERSION", "FILE_ID",
    "SIZE", "CREATE_TIME", "UPDATE_TIME", "DELETE_TIME", "CREATED_BY", "UPDATED_BY", "DELETED_BY", "DOWNLOAD_URL",
    "DETAIL_URL",
}  # fmt: skip
ATTACHED_KEYS = {"ID", "OBJECT_ID", "MODULE_ID", "ENTITY_TYPE", "ENTITY_ID", "CREATE_TIME", "CREATED_BY"}
ATTACHED_KEYS |= {"DOWNLOAD_URL", "NAME", "SIZE"}


@pytest.fixture
def fc(okbx, clock):
    with file_clients(okbx, clock) as clients:
        yield clients


@pytest.fixture
def folder(fc):
    storage = fc.drive.group_storage(GROUP_ID)
    assert storage is not None
    return fc.drive.folder(storage.root_folder_id, "Okdesk").id


@pytest.fixture
def task(world):
    return world.bitrix.create_task("[Okdesk #1] Принтер", responsible_id=world.people.bx_ivan, group_id=GROUP_ID)


def refused(fc, method: str, params: dict, *, write: bool = True) -> ApiError:
    with pytest.raises(ApiError) as caught:
        fc.bitrix.call(method, params, write=write)
    return caught.value


def test_storages_name_their_owner_and_root_folder(world, fc):
    rows = fc.bitrix.call("disk.storage.getlist", {})
    kinds = {(r["ENTITY_TYPE"], r["ENTITY_ID"]) for r in rows}
    assert ("group", str(GROUP_ID)) in kinds and ("user", str(world.bitrix.user_id)) in kinds
    assert ("user", str(world.people.bx_ivan)) not in kinds  # another user's drive is not the webhook user's
    assert all(r["MODULE_ID"] == "disk" and r["ROOT_OBJECT_ID"].isdigit() for r in rows)
    assert fc.bitrix.call("disk.storage.getTypes", {}) == ["user", "common", "group"]
    storage = fc.drive.group_storage(GROUP_ID)
    assert storage is not None and storage.entity_id == str(GROUP_ID)
    assert fc.bitrix.call("disk.storage.getchildren", {"id": storage.id}) == []
    assert fc.drive.group_storage(999) is None


def test_a_folder_is_made_once_and_found_by_name(fc, folder):
    storage = fc.drive.group_storage(GROUP_ID)
    assert fc.drive.folder(storage.root_folder_id, "okdesk").id == folder  # names compare without case
    assert refused(fc, "disk.folder.addsubfolder", {"id": storage.root_folder_id, "data": {"NAME": "Okdesk"}}).code == (
        "DISK_OBJ_22000"
    )
    assert refused(fc, "disk.folder.addsubfolder", {"id": folder, "data": {}}).code == "DISK_BASE_SERVICE_22001"


def test_inline_upload_answers_the_documented_object_with_distinct_id_and_file_id(fc, folder):
    content = base64.b64encode(b"%PDF-1.4").decode()
    file = fc.bitrix.call(
        "disk.folder.uploadfile",
        {"id": folder, "data": {"NAME": "act.pdf"}, "fileContent": ["ignored.pdf", content]},
        write=True,
    )
    assert set(file) == FILE_KEYS and file["NAME"] == "act.pdf" and file["TYPE"] == "file"
    assert file["ID"] != file["FILE_ID"] and file["SIZE"] == "8" and file["PARENT_ID"] == str(folder)
    sink = io.BytesIO()
    fc.drive.download(fc.drive.file(file["ID"]), sink)
    assert sink.getvalue() == b"%PDF-1.4"


@pytest.mark.parametrize(
    ("folder_id", "params", "code"),
    [
        (None, {"data": {"NAME": "a"}, "fileContent": ["a", "YQ=="]}, "ERROR_ARGUMENT"),
        (999999, {"data": {"NAME": "a"}, "fileContent": ["a", "YQ=="]}, "ERROR_NOT_FOUND"),
        ("F", {"data": {}, "fileContent": ["a", "YQ=="]}, "DISK_BASE_SERVICE_22001"),
        ("F", {"data": {"NAME": "a"}, "fileContent": ["a", "%%%not base64"]}, "ERROR_COULD_NOT_SAVE_FILE"),
        ("F", {"data": {"NAME": "a"}, "fileContent": ["a", ""]}, "ERROR_COULD_NOT_SAVE_FILE"),
    ],
)
def test_inline_upload_errors(fc, folder, folder_id, params, code):
    target = {} if folder_id is None else {"id": folder if folder_id == "F" else folder_id}
    error = refused(fc, "disk.folder.uploadfile", {**target, **params})
    assert error.code == code and error.status == 400
    assert fc.drive.children(folder) == []


def test_two_step_upload_takes_its_options_at_step_one_and_its_name_from_the_part(world, fc, folder):
    step1 = fc.bitrix.call("disk.folder.uploadfile", {"id": folder, "generateUniqueName": True}, write=True)
    assert step1["field"] == "file" and "/rest/upload.json?auth=" in step1["uploadUrl"]
    answer = requests.post(step1["uploadUrl"], files={"file": ("отчёт.pdf", b"one")}, timeout=5)
    assert answer.status_code == 200 and answer.json()["result"]["NAME"] == "отчёт.pdf"
    again = requests.post(step1["uploadUrl"], files={"file": ("отчёт.pdf", b"two")}, timeout=5)
    assert again.json()["result"]["NAME"] == "отчёт (1).pdf"  # generateUniqueName was signed in step 1
    plain = fc.bitrix.call("disk.folder.uploadfile", {"id": folder}, write=True)
    clash = requests.post(plain["uploadUrl"], files={"file": ("отчёт.pdf", b"3")}, timeout=5)
    assert clash.status_code == 400 and clash.json()["error"] == "DISK_OBJ_22000"
    wrong_field = requests.post(plain["uploadUrl"], files={"upload": ("x.pdf", b"3")}, timeout=5)
    assert wrong_field.status_code == 400
    forged = requests.post(plain["uploadUrl"].replace("auth=", "auth=0"), files={"file": ("y.pdf", b"3")}, timeout=5)
    assert forged.status_code == 401


def test_a_streamed_upload_and_download_keep_every_byte(world, fc, folder):
    data = bytes(range(256)) * 20_000  # 5 MB
    uploaded = fc.drive.upload(folder, FileSource("dump.bin", io.BytesIO(data)))
    assert uploaded.size == len(data) and world.bitrix.drive.blob(uploaded.id).sha256 == sha256(data)
    chunked = fc.drive.upload(folder, FileSource("parts.bin", iter([b"a" * 70_000, b"b" * 70_000])))
    assert world.bitrix.drive.blob(chunked.id).read() == b"a" * 70_000 + b"b" * 70_000
    sink = HashSink()
    done = fc.drive.download(fc.drive.file(uploaded.id), sink)
    assert done.sha256 == sink.sha256 == sha256(data)


def test_a_large_synthetic_file_costs_the_test_nothing(world, fc, folder):
    drive = world.bitrix.drive
    big = drive.add_file(folder, "big.iso", size=20_000_000, seed=3)
    sink = HashSink()
    fc.drive.download(fc.drive.file(big), sink)
    assert sink.size == 20_000_000 and sink.sha256 == drive.blob(big).sha256


def test_name_clash_and_unique_names(fc, folder):
    fc.drive.upload(folder, FileSource("a.txt", io.BytesIO(b"1")))
    with pytest.raises(ApiError) as clash:
        fc.drive.upload(folder, FileSource("A.TXT", io.BytesIO(b"2")))
    assert clash.value.code == "DISK_OBJ_22000"
    assert fc.drive.upload(folder, FileSource("a.txt", io.BytesIO(b"2")), unique_name=True).name == "a (1).txt"
    assert [o.name for o in fc.drive.children(folder, name="a.txt")] == ["a.txt"]


def test_folder_listing_pages_by_50(world, fc, folder):
    for n in range(53):
        world.bitrix.drive.add_file(folder, f"f{n:02}.txt", b"x")
    first = fc.bitrix.call("disk.folder.getchildren", {"id": folder})
    assert len(first) == 50
    assert len(fc.drive.children(folder)) == 53


def test_a_folder_without_the_add_right_refuses_uploads(world, fc, folder):
    world.bitrix.drive.set_rights(folder, add=set())
    error = refused(fc, "disk.folder.uploadfile", {"id": folder, "data": {"NAME": "a"}, "fileContent": ["a", "YQ=="]})
    assert (error.code, error.status) == ("ACCESS_DENIED", 403)  # inferred status
    with pytest.raises(ApiError) as two_step:
        fc.drive.upload(folder, FileSource("b.txt", io.BytesIO(b"b")))
    assert two_step.value.code == "ACCESS_DENIED"
    world.bitrix.drive.set_rights(folder, read=set(), add=set())
    assert refused(fc, "disk.folder.getchildren", {"id": folder}, write=False).code == "ACCESS_DENIED"


def test_a_workgroup_drive_is_for_its_members_and_administrators(world, okbx, clock):
    world.bitrix.admins.clear()
    with file_clients(okbx, clock) as fc:
        assert fc.drive.group_storage(GROUP_ID) is None
        world.bitrix.set_group_members(GROUP_ID, [world.bitrix.user_id])
        assert fc.drive.group_storage(GROUP_ID) is not None


def test_a_webhook_without_the_disk_scope_is_refused():
    emulator = Bitrix24Emulator(secret="s", rate_per_second=None)  # default scopes: no disk
    with EmulatorServer(emulator) as server:
        for method in ("disk.storage.getlist", "disk.folder.uploadfile", "disk.attachedObject.get"):
            answer = requests.post(f"{server.url}/rest/1/s/{method}", json={"id": 1}, timeout=5)
            assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"


def test_attaching_a_drive_file_to_a_task_and_reading_it_back(world, fc, folder, task):
    uploaded = fc.drive.upload(folder, FileSource("act.pdf", io.BytesIO(b"%PDF")))
    attachment = fc.drive.attach_to_task(task, uploaded.id)
    assert attachment != uploaded.id and fc.drive.task_file_ids(task) == [attachment]
    raw = fc.bitrix.call("disk.attachedObject.get", {"id": attachment})
    assert set(raw) == ATTACHED_KEYS and raw["OBJECT_ID"] == str(uploaded.id) and raw["ENTITY_TYPE"] == "tasks_task"
    assert "uf.php?attachedId=" in raw["DOWNLOAD_URL"]
    (file,) = fc.drive.task_files(task)
    sink = io.BytesIO()
    fc.drive.download(file, sink)
    assert sink.getvalue() == b"%PDF"
    fresh, done = fc.drive.download_attachment(attachment, HashSink())
    assert fresh.object_id == uploaded.id and done.sha256 == sha256(b"%PDF")
    assert fc.drive.attach_to_task(task, uploaded.id) == attachment  # inferred: the same file again adds nothing
    assert fc.drive.task_file_ids(999) is None


def test_selecting_one_of_three_user_fields_returns_all_three(fc, task):
    got = fc.bitrix.call("tasks.task.get", {"taskId": task, "select": ["ID", "UF_CRM_TASK"]})["task"]
    assert {"ufCrmTask", "ufTaskWebdavFiles", "ufMailMessage"} <= set(got)
    query = {"filter": {"ID": task}, "select": ["ID", "UF_MAIL_MESSAGE"]}
    (listed,) = fc.bitrix.call("tasks.task.list", query)["tasks"]
    assert {"ufCrmTask", "ufTaskWebdavFiles", "ufMailMessage"} <= set(listed)


@pytest.mark.parametrize(
    ("params", "code", "text"),
    [
        ({"taskId": "T"}, "100", "Could not find value for parameter {fileId}"),
        ({"taskId": "T", "fileId": "abc"}, "100", "Should be value of type int"),
        ({"taskId": "abc", "fileId": "F"}, "0", "wrong task id"),
        ({"taskId": 999, "fileId": "F"}, "0", "Access denied"),
        ({"taskId": "T", "fileId": 424242}, "ERROR_CORE", "Insufficient permissions."),
    ],
)
def test_task_attach_errors(world, fc, folder, task, params, code, text):
    file = world.bitrix.drive.add_file(folder, "a.txt", b"a")
    params = {k: (task if v == "T" else file if v == "F" else v) for k, v in params.items()}
    error = refused(fc, "tasks.task.files.attach", params)
    assert error.status == 400 and error.code == code and text in error.message


def test_a_webhook_user_who_may_not_edit_the_task_cannot_attach(world, fc, folder, task):
    world.bitrix.admins.clear()
    world.bitrix.set_task_people(task, created_by=world.people.bx_olga, auditors=[world.bitrix.user_id])
    file = world.bitrix.drive.add_file(folder, "a.txt", b"a")
    world.bitrix.set_group_members(GROUP_ID, [world.bitrix.user_id])  # it may read the file
    error = refused(fc, "tasks.task.files.attach", {"taskId": task, "fileId": file})
    assert (error.code, error.message) == ("0", "Access denied (internal error)")


def test_uf_task_webdav_files_takes_n_prefixed_drive_ids_and_is_replaced_whole_on_update(world, fc, folder):
    drive = world.bitrix.drive
    one, two = drive.add_file(folder, "1.txt", b"1"), drive.add_file(folder, "2.txt", b"2")
    created = fc.bitrix.call(
        "tasks.task.add",
        {"fields": {"TITLE": "t", "RESPONSIBLE_ID": 7, "UF_TASK_WEBDAV_FILES": [f"n{one}", str(two), "n999999"]}},
        write=True,
    )["task"]
    task_id = int(created["id"])
    (first,) = fc.drive.task_file_ids(task_id)  # a bare number and an unknown id attach nothing
    assert fc.drive.attached_object(first).object_id == one
    fc.bitrix.call(
        "tasks.task.update", {"taskId": task_id, "fields": {"UF_TASK_WEBDAV_FILES": [str(first), f"n{two}"]}}
    )
    ids = fc.drive.task_file_ids(task_id)
    assert len(ids) == 2 and ids[0] == first
    fc.bitrix.call("tasks.task.update", {"taskId": task_id, "fields": {"TITLE": "t2"}})  # field omitted: kept
    assert fc.drive.task_file_ids(task_id) == ids
    fc.bitrix.call("tasks.task.update", {"taskId": task_id, "fields": {"UF_TASK_WEBDAV_FILES": []}})
    assert fc.drive.task_file_ids(task_id) == []
    assert refused(fc, "disk.attachedObject.get", {"id": first}, write=False).code == "ERROR_NOT_FOUND"


def test_download_links_refuse_a_request_without_a_user_agent(world, fc, folder, task):
    file = fc.drive.upload(folder, FileSource("a.txt", io.BytesIO(b"abc")))
    url = fc.drive.file(file.id).download_url.reveal()
    assert requests.get(url, headers={"User-Agent": ""}, timeout=5).status_code == 403
    assert requests.get(url, timeout=5).content == b"abc"
    world.bitrix.drive.refuse_technical_agents = True  # "may fail": a stricter portal
    assert requests.get(url, timeout=5).status_code == 403
    assert fc.drive.download(fc.drive.file(file.id), io.BytesIO()).size == 3  # okbx sends a browser's headers


def test_link_lifetime_is_an_option_on_the_emulators_clock(world, fc, folder, clock):
    file = fc.drive.upload(folder, FileSource("a.txt", io.BytesIO(b"abc")))
    world.bitrix.drive.link_seconds = 60  # unknown (open question 5)
    stale = fc.drive.file(file.id)
    clock.advance(61)
    with pytest.raises(ApiError):
        fc.drive.download(stale, io.BytesIO())
    assert fc.drive.download(fc.drive.file(file.id), io.BytesIO()).size == 3  # disk.file.get: a fresh link


def test_a_classic_comment_carries_drive_files_with_relative_links(world, fc, folder, task):
    file = fc.drive.upload(folder, FileSource("log.txt", io.BytesIO(b"log")))
    comment = fc.drive.add_comment_with_files(task, "Лог во вложении", [file.id])
    other = fc.bitrix.call("task.commentitem.add", {"TASKID": task, "FIELDS": {"POST_MESSAGE": "без файлов"}})
    rows = {int(r["ID"]): r for r in fc.bitrix.call("task.commentitem.getlist", {"TASKID": task})}
    (item,) = rows[comment]["ATTACHED_OBJECTS"].values()
    assert set(item) == {"ATTACHMENT_ID", "NAME", "SIZE", "FILE_ID", "DOWNLOAD_URL", "VIEW_URL"}
    assert (
        item["DOWNLOAD_URL"].startswith("/bitrix/tools/disk/uf.php?attachedId=")
        and rows[other]["ATTACHED_OBJECTS"] == []
    )
    single = fc.bitrix.call("task.commentitem.get", {"TASKID": task, "ITEMID": comment})
    assert list(single["ATTACHED_OBJECTS"]) == list(rows[comment]["ATTACHED_OBJECTS"])
    (got,) = fc.drive.comment_files(task)[comment]
    sink = io.BytesIO()
    fc.drive.download(got, sink)
    assert sink.getvalue() == b"log" and fc.drive.comment_files(task)[other] == []


def test_a_comment_naming_a_file_it_cannot_read_is_refused(world, fc, folder, task):
    error = refused(
        fc, "task.commentitem.add", {"TASKID": task, "FIELDS": {"POST_MESSAGE": "x", "UF_FORUM_MESSAGE_DOC": ["n4242"]}}
    )
    assert (error.code, error.message) == ("ERROR_CORE", "File not found")
    assert world.bitrix.comments(task) == []


@pytest.fixture
def new_card(world):
    world.bitrix.new_task_card = True
    task_id = world.bitrix.create_task("chat task", responsible_id=world.people.bx_ivan, group_id=GROUP_ID)
    return task_id, world.bitrix.task(task_id)["CHAT_ID"]


def test_files_go_to_the_task_chat_on_the_new_card(world, fc, new_card):
    _, chat = new_card
    folder = fc.drive.chat_folder(chat)
    uploaded = fc.drive.upload(folder, FileSource("скрин.png", io.BytesIO(b"\x89PNG")))
    message = fc.drive.post_to_chat(chat, [uploaded.id], "Скриншот из Okdesk")
    (seen,) = fc.drive.chat_files(chat)
    assert (seen.id, seen.name, seen.size, seen.message_id) == (uploaded.id, "скрин.png", 4, message)
    sink = io.BytesIO()
    fc.drive.download_file(seen.id, sink)  # chat links are browser-session links: disk.file.get
    assert sink.getvalue() == b"\x89PNG"
    assert refused(fc, "im.disk.file.commit", {"CHAT_ID": chat, "FILE_ID": []}).code == "FILES_ERROR"
    assert refused(fc, "im.disk.file.commit", {"CHAT_ID": 0, "FILE_ID": [1]}).code == "CHAT_ID_EMPTY"
    assert refused(fc, "im.disk.folder.get", {"DIALOG_ID": ""}, write=False).code == "DIALOG_ID_EMPTY"


def test_a_chat_the_webhook_user_cannot_open_is_refused(world, fc, new_card):
    _, chat = new_card
    world.bitrix.admins.clear()
    error = refused(fc, "im.disk.file.commit", {"CHAT_ID": chat, "FILE_ID": [1]})
    assert (error.code, error.status) == ("ACCESS_ERROR", 403)


def test_im_v2_upload_and_its_one_time_download(world, fc, new_card):
    _, chat = new_card
    content = base64.b64encode(b"hello").decode()
    result = fc.bitrix.call(
        "im.v2.File.upload", {"dialogId": f"chat{chat}", "fields": {"name": "a.txt", "content": content}}, write=True
    )
    assert result["file"]["size"] == 5 and result["dialogId"] == f"chat{chat}"
    url = fc.bitrix.call("im.v2.File.download", {"dialogId": f"chat{chat}", "fileId": result["file"]["id"]})[
        "downloadUrl"
    ]
    assert requests.get(url, timeout=5).content == b"hello"
    assert requests.get(url, timeout=5).status_code == 401  # documented: reuse is not guaranteed
    missing = refused(fc, "im.v2.File.download", {"dialogId": f"chat{chat}", "fileId": 1}, write=False)
    assert missing.code == "FILE_NOT_FOUND"


def test_okbx_caps_what_it_moves(world, okbx, clock, folder):
    big = world.bitrix.drive.add_file(folder, "big.bin", size=2_000_000)
    with file_clients(okbx, clock, max_bytes=1_000_000) as capped:
        with pytest.raises(TooLarge):
            capped.drive.download(capped.drive.file(big), HashSink())
        with pytest.raises(TooLarge):
            capped.drive.upload(folder, FileSource("x.bin", io.BytesIO(b"0" * 1_000_001)))
        with pytest.raises(TooLarge):
            capped.drive.upload(folder, FileSource("y.bin", iter([b"0" * 600_000] * 2)))
    assert [o["NAME"] for o in world.bitrix.drive.files_in(folder)] == ["big.bin"]


def test_no_drive_link_reaches_an_error(world, fc, folder, clock):
    file = fc.drive.upload(folder, FileSource("a.txt", io.BytesIO(b"abc")))
    stale = fc.drive.file(file.id)
    world.bitrix.drive.link_seconds = 1
    clock.advance(2)
    with pytest.raises(ApiError) as caught:
        fc.drive.download(stale, io.BytesIO())
    url = stale.download_url.reveal()
    assert url.split("auth=")[1].split("&")[0] not in str(caught.value) and "token=" not in str(caught.value)
    assert "***" in repr(stale)


def test_a_drive_upload_is_never_sent_twice(world, fc, folder):
    from okbx_emulator.http import Fault

    world.bitrix_server.inject(Fault("upload.json", when="after", kind="drop"))
    with pytest.raises(ApiError) as lost:
        fc.drive.upload(folder, FileSource("a.txt", io.BytesIO(b"a")))
    assert lost.value.ambiguous and world.bitrix_server.count("upload.json") == 1
    assert [o.name for o in fc.drive.children(folder, name="a.txt")] == ["a.txt"]  # the look finds it
