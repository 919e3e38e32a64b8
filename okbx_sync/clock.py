"""Where okbx reads the time and where it waits.

Everything that waits (retry backoff, the throttle, the lock wait, the run loop) and the state
store's "now" take a `Clock`.  Production uses the real one; tests pass one they advance, so a
retry delay or a backoff costs a test nothing and is still observable (`sleep` is recorded).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Clock:
    now: Callable[[], datetime] = field(default=_utc_now)  # wall time, for the state store and plans
    monotonic: Callable[[], float] = field(default=time.monotonic)  # for intervals and deadlines
    sleep: Callable[[float], None] = field(default=time.sleep)


REAL_CLOCK = Clock()
