"""Proactive rate limiting: one token bucket per host, shared by every client in the process.

Spec form (`http.rate_limit`)::

    rate_limit: {per_second: 5, burst: 10}     # burst defaults to max(1, per_second)

The bucket never blocks while holding a lock: `reserve()` takes a token (going into debt when
none is left) and returns how long the caller must sleep for its turn. That keeps it correct
across tasks, event loops and threads, since the bookkeeping is a few arithmetic operations.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .waits import sleep


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """`per_second` requests on average, up to `burst` at once."""

    per_second: float
    burst: float | None = None

    def __post_init__(self) -> None:
        if self.per_second <= 0:
            raise ValueError(f"rate_limit.per_second must be > 0, got {self.per_second}")


class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate` per second; one request takes one."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._full, self._fraction = (rate, burst), 1.0
        self._tokens, self._stamp = burst, clock()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Take a token; return the seconds to wait before using it (0.0 if one was free)."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate) - 1
            self._stamp = now
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def tighten(self, rate: float, burst: float) -> None:
        """Adopt the stricter of the current and the given settings."""
        with self._lock:
            self._full = min(self._full[0], rate), min(self._full[1], burst)
            self._apply()

    def share(self, fraction: float) -> None:
        """Allow `fraction` of the configured rate and burst (this process's part when one
        read is split over several processes); `share(1)` restores the whole."""
        with self._lock:
            self._fraction = fraction
            self._apply()

    def _apply(self) -> None:
        rate, burst = self._full
        self.rate, self.burst = rate * self._fraction, max(1.0, burst * self._fraction)
        self._tokens = min(self._tokens, self.burst)

    async def acquire(self) -> None:
        """Wait (through the layer's `sleep`) until this request may go."""
        wait = self.reserve()
        if wait:
            await sleep(wait, "rate_limit")


_buckets: dict[str, TokenBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(host: str, limit: RateLimit) -> TokenBucket:
    """The process-wide bucket of `host`; when clients disagree, the strictest limit wins."""
    burst = limit.burst if limit.burst is not None else max(1.0, limit.per_second)
    with _buckets_lock:
        bucket = _buckets.get(host)
        if bucket is None:
            bucket = _buckets[host] = TokenBucket(limit.per_second, burst)
        else:
            bucket.tighten(limit.per_second, burst)
        return bucket


def reset_buckets() -> None:
    """Forget every host's bucket (tests)."""
    with _buckets_lock:
        _buckets.clear()


def build_rate_limit(spec: Mapping[str, Any] | None) -> RateLimit | None:
    """A `RateLimit` from the `http.rate_limit` dict, or None when there is none."""
    if not spec:
        return None
    unknown = sorted(set(spec) - {"per_second", "burst"})
    if unknown:
        raise ValueError(f"rate_limit: unknown key(s) {unknown}; valid: ['burst', 'per_second']")
    return RateLimit(float(spec["per_second"]), spec.get("burst"))
