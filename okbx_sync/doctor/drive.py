"""Doctor checks for files (issue 15): the Drive folder the copies go to takes files from the webhook.

The `disk` scope itself is checked with the other scopes (bitrix24.py); without it this group is
left out.  Whether the webhook user may add files is asked without writing anything: step 1 of the
two-step upload hands out an upload link only to a user with the "add" right (the link is thrown
away).  The folder okbx would make ("Okdesk files" on the workgroup's drive) is checked through its
parent until it exists.
"""

from __future__ import annotations

from dataclasses import replace

from ..clients.bitrix24 import Bitrix24Client
from ..clients.bitrix24_disk import Bitrix24Drive
from ..config import Config
from ..errors import OkbxError
from ..sync.files.route import FOLDER
from .base import Check, Context, check_group, fail_text

NAME = "Bitrix24 Drive folder"
FIX = (
    "make the webhook's user a member of the workgroup (its drive then takes files), or set files.folder_id "
    "to a Drive folder the user may add files to; or switch files off with files.enabled: false"
)


@check_group(35, NAME, applies=lambda ctx: ctx.config.files.enabled)
def drive_group(ctx: Context) -> list[Check]:
    return drive_checks(ctx.config, ctx.bitrix)


def drive_checks(config: Config, bitrix: Bitrix24Client) -> list[Check]:
    """One check per task route's folder (the programmers' alone keeps the plain name)."""
    try:
        if "disk" not in set(bitrix.scopes()):
            return []  # the scopes check names it
    except (OkbxError, ValueError):
        return []  # the webhook check says why
    groups = {r.name: r.target.group_id for r in config.routes if r.kind == "task" and r.target.group_id}
    if config.files.folder_id is not None:  # one folder for every route
        groups = dict(list(groups.items())[:1]) or {"programmers": 0}
    checks = []
    for route, group_id in groups.items():
        name = NAME if route == "programmers" or len(groups) == 1 else f"Route {route}: {NAME}"
        checks += [replace(c, name=name) for c in _folder_check(config, bitrix, group_id)]
    return checks


def _folder_check(config: Config, bitrix: Bitrix24Client, group_id: int) -> list[Check]:
    drive, files = Bitrix24Drive(bitrix), config.files
    where = f"files.folder_id {files.folder_id}"
    try:
        if files.folder_id is not None:
            folder = files.folder_id
        else:
            storage = drive.group_storage(group_id)
            if storage is None and bitrix.group(group_id) is None:
                return []  # no such workgroup: the group check names it
            if storage is None:
                return [Check(NAME, False, f"the webhook user cannot see the drive of workgroup {group_id}", FIX)]
            made = [o for o in drive.children(storage.root_folder_id, name=FOLDER) if o.is_folder]
            folder = made[0].id if made else storage.root_folder_id
            where = f"the folder '{FOLDER}' on the drive of workgroup {group_id}" + (
                "" if made else " (made at the first file)"
            )
        writable = drive.can_add(folder)
    except (OkbxError, ValueError) as error:
        return [Check(NAME, False, f"cannot check {where}: {fail_text(error)}", FIX)]
    if not writable:
        return [Check(NAME, False, f"the webhook user may not add files to {where}", FIX)]
    caps = f"at most {files.max_file_mb} MB a file and {files.max_cycle_mb} MB a cycle"
    return [Check(NAME, True, f"file copies go to {where}, which takes files from the webhook; {caps}")]
