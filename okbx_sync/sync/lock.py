"""One okbx run at a time per state store (cron overlap, a loop plus a manual run)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..clock import REAL_CLOCK, Clock
from ..errors import LockedError, StateError


@contextmanager
def run_lock(state_path: Path, wait_seconds: float = 0.0, clock: Clock = REAL_CLOCK) -> Iterator[None]:
    lock_path = state_path.with_name(state_path.name + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        from ..state.opening import explain

        why = f"{exc.strerror or exc}{explain(lock_path)}"
        raise StateError(f"cannot create the lock file {lock_path}: {why}") from None
    deadline = clock.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
                    raise LockedError(
                        f"another okbx run (pid {holder}) is using {state_path}; try again later or pass --wait SECONDS"
                    ) from None
                clock.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock, also when the process is killed
