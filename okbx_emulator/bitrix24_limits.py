"""The two Bitrix24 cloud limits the emulator enforces (reference section 7).

* Request rate: a leaky bucket per portal that counts HTTP requests (a batch is one request).
  More than `size` pending requests at drain rate `rate` per second -> 503 QUERY_LIMIT_EXCEEDED.
* Operating time: per method, the execution seconds of the last ten one-minute buckets.  Once
  the sum exceeds the limit the method answers 429 OPERATION_TIME_LIMIT until buckets age out.

Both take "now" as Unix seconds from the caller, so an injected clock drives them.
"""

from __future__ import annotations

_MINUTE = 60
_WINDOW_MINUTES = 10


class LeakyBucket:
    def __init__(self, rate: float, size: int) -> None:
        self.rate, self.size = rate, size
        self.level = 0.0
        self.at: float | None = None

    def admit(self, now: float) -> bool:
        if self.at is not None:
            self.level = max(0.0, self.level - (now - self.at) * self.rate)
        self.at = now
        if self.level + 1 > self.size:
            return False  # refused requests do not fill the bucket
        self.level += 1
        return True


class OperatingBudget:
    """Charges a fixed simulated cost per call; `limit=None` tracks without blocking."""

    def __init__(self, limit: float | None, cost: float) -> None:
        self.limit, self.cost = limit, cost
        self._minutes: dict[str, dict[int, float]] = {}

    def blocked(self, method: str, now: float) -> bool:
        # the portal blocks once the accumulated time exceeds the limit, so the call that
        # crosses it still runs
        return self.limit is not None and self.used(method, now) > self.limit

    def charge(self, method: str, now: float) -> None:
        buckets = self._live(method, now)
        minute = int(now // _MINUTE)
        buckets[minute] = buckets.get(minute, 0.0) + self.cost

    def used(self, method: str, now: float) -> float:
        return round(sum(self._live(method, now).values()), 9)

    def reset_at(self, method: str | None, now: float) -> int:
        """Unix time when the oldest counted minute drops out of the window."""
        buckets = self._live(method, now) if method else {}
        oldest = min(buckets, default=int(now // _MINUTE))
        return (oldest + _WINDOW_MINUTES) * _MINUTE

    def _live(self, method: str, now: float) -> dict[int, float]:
        current = int(now // _MINUTE)
        buckets = self._minutes.setdefault(method, {})
        for minute in [m for m in buckets if m <= current - _WINDOW_MINUTES]:
            del buckets[minute]
        return buckets
