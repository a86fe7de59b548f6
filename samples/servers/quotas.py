"""Rate-limit enforcers in the wire shapes of documented APIs, for tests and `bench/pacing.py`.

Each is thread-safe and decides one request at a time: `admit()` (or `admit(cost)`) returns
`(status, headers, body)`: the answer a real API gives when the request is within its quota,
or its throttled answer when it is not. They count what they admitted and refused.

- `LeakyBucket`: `capacity` slots that free `leak` per second; every answer carries
  `X-Shopify-Shop-Api-Call-Limit: used/capacity` and a refusal is a 429 with `Retry-After`
  (Shopify REST Admin API: https://shopify.dev/docs/api/admin-rest/usage/rate-limits, 40
  requests leaking 2/s on the standard plan).
- `FixedWindow`: `quota` requests per `window` seconds. `style="seconds"` answers
  `X-Rate-Limit-Limit`, `-Remaining`, `-Reset` (seconds until the next window, rounded up:
  ShipStation V1, https://www.shipstation.com/docs/api/requirements/ ; the rounding is a
  guess); `style="milliseconds"`: `X-Rate-Limit-Requests-Quota`, `-Requests-Left`,
  `-Time-Reset-Ms`, `-Time-Window-Ms` (BigCommerce:
  https://docs.bigcommerce.com/developer/docs/overview/api-fundamentals/rate-limits; the
  quota and window header names are a guess); `style="ietf"`: `RateLimit: "default";r=..;t=..`
  and `RateLimit-Policy: "default";q=..;w=..` (draft-ietf-httpapi-ratelimit-headers).
  A refusal is a 429 with the same headers.
- `CostBucket`: a GraphQL cost bucket of `maximum` points restoring `restore` a second; a
  query whose requested cost exceeds what is available is answered 200 with a THROTTLED error
  and `extensions.cost` (Shopify GraphQL Admin API:
  https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

Answer = tuple[int, dict[str, str], Any]


class _Quota:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock, self.lock = clock, threading.Lock()
        self.admitted = self.refused = 0
        self.started = clock()

    def _count(self, ok: bool) -> None:
        if ok:
            self.admitted += 1
        else:
            self.refused += 1


class LeakyBucket(_Quota):
    """`capacity` requests in the bucket at most, leaking `leak` a second."""

    def __init__(self, capacity: int = 40, leak: float = 2.0, clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.capacity, self.leak, self.level, self.stamp = capacity, leak, 0.0, clock()

    def admit(self) -> Answer:
        with self.lock:
            now = self.clock()
            self.level = max(0.0, self.level - (now - self.stamp) * self.leak)
            self.stamp = now
            ok = self.level + 1 <= self.capacity
            if ok:
                self.level += 1
            self._count(ok)
            headers = {"X-Shopify-Shop-Api-Call-Limit": f"{math.ceil(self.level)}/{self.capacity}"}
            if not ok:
                headers["Retry-After"] = f"{(self.level + 1 - self.capacity) / self.leak:.1f}"
                return 429, headers, {"errors": "Too Many Requests"}
            return 200, headers, {"ok": True}


class FixedWindow(_Quota):
    """`quota` requests in each `window` seconds, windows counted from the first request."""

    def __init__(self, quota: int = 40, window: float = 60.0, style: str = "seconds",
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.quota, self.window, self.style = quota, window, style
        self.index, self.used = 0, 0

    def admit(self) -> Answer:
        with self.lock:
            now = self.clock()
            index = int((now - self.started) // self.window)
            if index != self.index:
                self.index, self.used = index, 0
            ok = self.used < self.quota
            if ok:
                self.used += 1
            self._count(ok)
            reset = self.started + (index + 1) * self.window - now
            headers = self._headers(self.quota - self.used, reset)
            return (200, headers, {"ok": True}) if ok else (429, headers, {"message": "Too Many Requests"})

    def _headers(self, left: int, reset: float) -> dict[str, str]:
        if self.style == "milliseconds":
            return {"X-Rate-Limit-Requests-Quota": str(self.quota), "X-Rate-Limit-Requests-Left": str(left),
                    "X-Rate-Limit-Time-Reset-Ms": str(math.ceil(reset * 1000)),
                    "X-Rate-Limit-Time-Window-Ms": str(int(self.window * 1000))}
        if self.style == "ietf":
            return {"RateLimit": f'"default";r={left};t={math.ceil(reset)}',
                    "RateLimit-Policy": f'"default";q={self.quota};w={math.ceil(self.window)}'}
        return {"X-Rate-Limit-Limit": str(self.quota), "X-Rate-Limit-Remaining": str(left),
                "X-Rate-Limit-Reset": str(math.ceil(reset))}


class CostBucket(_Quota):
    """A GraphQL cost bucket: `maximum` points, restoring `restore` a second."""

    def __init__(self, maximum: float = 1000.0, restore: float = 50.0,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(clock)
        self.maximum, self.restore = maximum, restore
        self.available, self.stamp = maximum, clock()

    def admit(self, requested: float = 100.0, actual: float | None = None) -> Answer:
        with self.lock:
            now = self.clock()
            self.available = min(self.maximum, self.available + (now - self.stamp) * self.restore)
            self.stamp = now
            ok = self.available >= requested
            if ok:
                self.available -= requested if actual is None else actual
            self._count(ok)
            charged = requested if actual is None else actual
            cost = {"requestedQueryCost": requested, "actualQueryCost": charged if ok else None,
                    "throttleStatus": {"maximumAvailable": self.maximum,
                                       "currentlyAvailable": math.floor(self.available),
                                       "restoreRate": self.restore}}
            if not ok:
                return 200, {}, {"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                                 "extensions": {"cost": cost}}
            return 200, {}, {"data": {"ok": True}, "extensions": {"cost": cost}}
