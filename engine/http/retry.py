"""When to retry and how long to wait: a pure backoff function and a `RetryPolicy`.

Spec form (`http.retry`)::

    attempts: 6                                   # total tries including the first
    on_status: [429, 500, 502, 503, 504]
    on_transport_error: true                      # connect errors, timeouts, resets
    when: "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"   # on a 2xx JSON body
    backoff: {initial: 0.5, max: 30, factor: 2, jitter: 0.5}
    max_throttle_wait: 900                        # seconds one request may wait on throttles

A `Retry-After` header (seconds or an HTTP date) wins over the backoff; a throttle the API
explains is waited for without using an attempt (see `HttpClient._retrying`).
"""

from __future__ import annotations

import dataclasses
import email.utils
import random
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import httpx

from .models import Answer

DEFAULT_STATUSES = frozenset({429, 502, 503, 504})


def backoff(attempt: int, *, initial: float = 0.5, factor: float = 2.0, maximum: float = 30.0,
            jitter: float = 0.5, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `attempt` (1 is the first retry)::

        min(maximum, initial * factor ** (attempt - 1) + jitter * rand())

    `rand()` is uniform in [0, 1), so the jitter adds up to `jitter` seconds; the cap holds.
    """
    return min(maximum, initial * factor ** (attempt - 1) + jitter * rand())


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds asked for by a `Retry-After` value: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff settings in seconds; calling it gives the wait for an attempt."""

    initial: float = 0.5
    max: float = 30.0
    factor: float = 2.0
    jitter: float = 0.5

    def __call__(self, attempt: int) -> float:
        return backoff(attempt, initial=self.initial, factor=self.factor, maximum=self.max,
                       jitter=self.jitter)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which answers and errors to retry, how often, and how long to wait.

    `when` is a compiled predicate on a 2xx parsed body (e.g. GraphQL throttling inside a 200).
    A `Retry-After` longer than `max_retry_after` is not waited for: the call fails at once.
    A throttle whose wait the API states (Retry-After, or `http.pacing` feedback) does not use
    an attempt: one request waits on throttles and the rate limit `max_throttle_wait` seconds
    at most in all, then fails.
    The policy applies to every method: a caller sending a non-idempotent write relies on the
    engine's reconciliation (`find_order`), not on the absence of retries.
    """

    attempts: int = 3
    on_status: Collection[int] = DEFAULT_STATUSES
    on_transport_error: bool = True
    when: Callable[[Any], Any] | None = None
    backoff: Backoff = Backoff()
    max_retry_after: float = 300.0
    max_throttle_wait: float = 900.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry.attempts must be >= 1, got {self.attempts}")

    def on_answer(self, answer: Answer) -> bool | float:
        """False: keep `answer`. True: retry after the backoff. A float: retry after that long."""
        retry = self._throttled(answer.body) if answer.ok else answer.status in self.on_status
        if not retry:
            return False
        after = retry_after(answer.headers.get("retry-after"))
        if after is None:
            return True
        return after if after <= self.max_retry_after else False

    def on_error(self, error: Exception) -> bool:
        """True when a transport error (connect, timeout, read/write, protocol) is retried."""
        return self.on_transport_error and isinstance(error, httpx.TransportError)

    def wait(self, verdict: bool | float, attempt: int) -> float:
        """Seconds before the next try, given the verdict on try number `attempt`."""
        return self.backoff(attempt) if verdict is True else float(verdict)

    def _throttled(self, body: Any) -> bool:
        if self.when is None or body is None:
            return False
        try:
            return bool(self.when(body))
        except Exception:  # a predicate that cannot read this body does not ask for a retry
            return False


def build_retry(spec: Mapping[str, Any] | None,
                compile_path: Callable[[str], Callable[[Any], Any]] | None = None) -> RetryPolicy:
    """A `RetryPolicy` from the `http.retry` dict (None: the defaults); `when` is compiled here."""
    spec = dict(spec or {})
    if "backoff" in spec:
        spec["backoff"] = _construct(Backoff, spec["backoff"] or {}, "retry.backoff")
    if "on_status" in spec:
        spec["on_status"] = frozenset(spec["on_status"])
    if spec.get("when") is not None:
        if compile_path is None:
            raise ValueError("retry.when needs compile_path to compile its expression")
        spec["when"] = compile_path(spec["when"])
    return _construct(RetryPolicy, spec, "retry")


def _construct(cls: type, spec: Mapping[str, Any], where: str) -> Any:
    """`cls(**spec)`, with an unknown key reported as a ValueError listing the valid ones."""
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(spec) - set(valid))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {valid}")
    return cls(**spec)
