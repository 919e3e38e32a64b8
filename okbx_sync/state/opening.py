"""Opening the state store: only okbx's own database, of a bounded size, and never by a reader.

* A database okbx did not create is refused (exit code 3) before anything is written to it: a
  store carries okbx's `PRAGMA application_id`; a store of an earlier release (none yet) is known
  by okbx's own tables (`meta(key, value)`, `links`, `ops`) and a schema version.  An empty file
  (created 0600 just before the first connect) or an empty database is a new store.
* The file must be a regular file no larger than MAX_STORE_BYTES (a link to /dev/zero is not a
  store).
* When a store cannot be opened, `explain` names the cause a person can act on: the file's owner
  and mode against the user okbx runs as, or a directory it cannot write.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from ..errors import StateError

APPLICATION_ID = 0x6F6B6278  # "okbx"
MAX_STORE_BYTES = 4 * 1024**3  # far above years of journal; a bigger file is not okbx's
OKBX_TABLES = {"meta", "links", "ops"}


class ForeignDatabase(StateError):
    """The file is a database of another program (or not a database at all)."""


def check_file(path: Path) -> None:
    """A store that exists must be a regular file of sensible size (a missing one is fine)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StateError(f"state store {path} cannot be opened: {exc.strerror or exc}{explain(path)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise StateError(f"state store {path} cannot be used: it is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise ForeignDatabase(f"state store {path} is not a regular file (a device or a pipe?); nothing was written")
    if info.st_size > MAX_STORE_BYTES:
        raise ForeignDatabase(
            f"state store {path} is larger than {MAX_STORE_BYTES // 1024**3} GiB: not an okbx store; "
            "nothing was written"
        )


def check_ours(conn: sqlite3.Connection, path: Path, schema_version: int) -> None:
    """Refuse a database okbx did not create; read only, so a refused file is left as it was.
    A schema above `schema_version` is left to the store's own refusal ("written by a newer okbx")."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        meta_columns = {r[1] for r in conn.execute("PRAGMA table_info(meta)")} if "meta" in tables else set()
    except sqlite3.DatabaseError as exc:
        raise ForeignDatabase(f"state store {path} is not an okbx state store ({exc}); nothing was written") from None
    tables = {t for t in tables if not t.startswith("sqlite_")}
    if app_id == APPLICATION_ID or (app_id == 0 and version > schema_version):
        return
    new = app_id == 0 and version == 0 and not tables
    earlier_release = app_id == 0 and version >= 1 and OKBX_TABLES <= tables and {"key", "value"} <= meta_columns
    if not (new or earlier_release):
        shown = ", ".join(sorted(tables)[:5]) or "none"
        raise ForeignDatabase(
            f"state store {path} is a database okbx did not create (its tables: {shown}); nothing was written. "
            "Point state.path at a file of okbx's own (a new one is created on the first run)"
        )


def stamp(conn: sqlite3.Connection) -> None:
    """Mark a store as okbx's (new stores, and stores of earlier releases on their first write)."""
    if conn.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")


def _user(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def explain(path: Path) -> str:
    """'; owned by root (uid 0) with mode 600, and okbx runs as okbx (uid 998)', or '' when nothing
    about owner, mode or directory explains a failure."""
    me = os.geteuid()
    try:
        info = path.stat()
    except FileNotFoundError:
        directory = next((p for p in path.parents if p.exists()), path.parent)
        if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK):
            owner = _user(directory.stat().st_uid)
            return f"; its directory {directory} is not writable for {_user(me)} (owner {owner})"
        return ""
    except OSError:
        return ""
    problems = []
    if not os.access(path, os.R_OK | os.W_OK):
        mode = stat.S_IMODE(info.st_mode)
        problems.append(f"owned by {_user(info.st_uid)} with mode {mode:o}, and okbx runs as {_user(me)}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        problems.append(f"its directory {path.parent} is not writable for {_user(me)} (WAL and lock files live there)")
    return "; " + "; ".join(problems) if problems else ""


def fix_for(path: Path) -> str:
    """What to do about `explain`'s cause."""
    try:
        info = path.stat()
    except OSError:
        return "create the directory, owned by the user okbx runs as, or point state.path elsewhere"
    if info.st_uid != os.geteuid():
        return (
            f"run okbx as {_user(info.st_uid).split(' ')[0]} (the store's owner), or give the store to the user "
            f"cron runs okbx as: chown that user {path}* (and its directory)"
        )
    return (
        f"let the user okbx runs as read and write {path} and its directory (chmod 600 {path}; chmod u+w the directory)"
    )
