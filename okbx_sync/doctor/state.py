"""Doctor check of the state store: it is okbx's, it opens, and the user doctor runs as could write
it and its directory.  Read only: doctor creates and changes nothing, not even a missing store."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import OkbxError
from ..state import opening
from ..state.store import Store
from .base import Check, Context, check_group

NAME = "State store"


@check_group(40, NAME)
def state_checks(ctx: Context) -> list[Check]:
    return [_state_check(ctx.config.state.path)]


def _writable_dir(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)


def _state_check(path: Path) -> Check:
    fix = "set state.path to a file in a directory the okbx user can write"
    if not path.exists():
        ancestor = next((p for p in path.parents if p.exists()), path.parent)
        if not ancestor.is_dir():
            return Check(NAME, False, f"state store {path} cannot be created: {ancestor} is not a directory", fix)
        if not _writable_dir(ancestor):
            return Check(NAME, False, f"state store {path} cannot be created{opening.explain(path)}", fix)
        return Check(NAME, True, f"state store {path} does not exist yet; it will be created on the first run")
    try:
        Store(path, read_only=True).close()  # refuses a foreign, damaged or newer store; writes nothing
    except OkbxError as error:
        return Check(NAME, False, str(error), _fix_for(str(error), path))
    cause = opening.explain(path)
    if cause:
        return Check(
            NAME, False, f"state store {path} opens for reading, but{cause.removeprefix(';')}", opening.fix_for(path)
        )
    return Check(NAME, True, f"state store {path} opens, and it and its directory are writable")


def _fix_for(message: str, path: Path) -> str:
    if "newer okbx" in message:
        return "upgrade okbx to the release that wrote the store"
    if "did not create" in message or "not a regular file" in message or "larger than" in message:
        return "point state.path at okbx's own store (or a new file), never at another program's database"
    if "is a directory" in message:
        return "set state.path to a file inside that directory, e.g. " + str(path / "okbx.sqlite3")
    return opening.fix_for(path) if opening.explain(path) else "restore the store from a backup, or move it away"
