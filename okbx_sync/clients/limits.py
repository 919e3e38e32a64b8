"""What one run may spend, and how fast: the request/time budget and the token-bucket throttle."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import OkbxError


class BudgetExhausted(OkbxError):
    """This cycle used up its request budget; the rest is left for the next cycle."""


class RequestBudget:
    """What one run may spend: a number of requests and, optionally, seconds of the monotonic
    clock (`sync.max_seconds`).  Either running out stops the run cleanly between requests."""

    def __init__(
        self, limit: int | None, *, seconds: float | None = None, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.used = 0
        self.seconds = seconds
        self._monotonic = monotonic
        self._started = monotonic()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return self._monotonic() - self._started

    def spend(self) -> None:
        with self._lock:
            if self.limit is not None and self.used >= self.limit:
                raise BudgetExhausted(f"request budget of {self.limit} per cycle used up")
            if self.seconds is not None and self.elapsed() >= self.seconds:
                raise BudgetExhausted(f"time budget of {self.seconds:g} s per run used up")
            self.used += 1

    def share_spent(self, share: float) -> bool:
        """Has the run spent `share` of either budget (reads leave the rest to the writes)?"""
        if self.limit is not None and self.used >= int(self.limit * share):
            return True
        return self.seconds is not None and self.elapsed() >= self.seconds * share


class Throttle:
    """Token bucket: `rate` requests per second sustained, `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._clock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._blocked_until:
                self._sleep(self._blocked_until - now)
                now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / self.rate
                self._sleep(wait)
                self._tokens = 1.0
                self._last = self._clock()
            self._tokens -= 1

    def cool_down(self, seconds: float) -> None:
        """After a rate-limit answer: empty the bucket and hold everything for `seconds`."""
        with self._lock:
            self._tokens = 0.0
            self._last = self._clock()  # refill starts now, not at the last request
            self._blocked_until = max(self._blocked_until, self._clock() + seconds)
