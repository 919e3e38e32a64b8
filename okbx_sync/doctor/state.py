"""Doctor check of the state store: it opens, and its directory is writable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import OkbxError, StateError
from ..state.store import Store
from .base import Check, Context, check_group


@check_group(40, "State store")
def state_checks(ctx: Context) -> list[Check]:
    return [_state_check(ctx.config.state.path)]


def _state_check(path: Path) -> Check:
    name = "State store"
    fix = "set state.path to a file in a directory the okbx user can write"
    try:
        if path.exists():
            if path.is_dir():
                return Check(name, False, f"state.path {path} is a directory, not a file", fix)
            store = Store(path)  # raises StateError for a newer schema or a damaged file
            store.close()
            if not os.access(path, os.W_OK):
                return Check(name, False, f"state store {path} is read-only", fix)
            _probe(path.parent)
            return Check(name, True, f"state store {path} opens and its directory is writable")
        ancestor = path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            return Check(name, False, f"state store {path} cannot be created: {ancestor} is not a directory", fix)
        _probe(ancestor)
        return Check(name, True, f"state store {path} does not exist yet; it will be created on the first run")
    except OkbxError as error:
        fix = "upgrade okbx, or point state.path elsewhere" if isinstance(error, StateError) else fix
        return Check(name, False, str(error), fix)
    except OSError as error:
        return Check(name, False, f"state store {path} is not writable: {error.strerror or error}", fix)


def _probe(directory: Path) -> None:
    """Create and remove a temporary file: the only reliable writability test (root ignores modes)."""
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".okbx-doctor-", delete=True):
        pass
