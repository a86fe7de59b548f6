"""A per-run circuit breaker for one host: after `threshold` requests in a row failed for
reasons that say the host is down, the rest of the run sends it nothing.

    breaker = Breaker("127.0.0.1:8080", threshold=5)
    breaker.check()                    # HostDownError once open: the request is never sent
    breaker.failed("refused")          # a request that failed after every retry
    breaker.succeeded()                # any answer that is not a 5xx: the count starts over

What counts as a failure (`kind_of`): connection refused or unreachable, a timeout, a dropped
connection, a 5xx after every retry. A 4xx, a 429 the budget gave up on, a foreign host or a body
too large say nothing about the host being down and leave the count as it is, apart from a 4xx
(an answer: the host is up). The breaker lives as long as its client, one run of one
integration: the next run tries the host again.
"""

from __future__ import annotations

import httpx

from engine.errors import HostDownError, StatusError, SyncEngineError, TransportError

#: consecutive failures that open the breaker when the connector's `http.down_after` is not set
DEFAULT_THRESHOLD = 5


class Breaker:
    """The down-detector of one host for one run (see the module docstring)."""

    def __init__(self, origin: str, threshold: int = DEFAULT_THRESHOLD) -> None:
        if threshold < 1:
            raise ValueError(f"down_after must be >= 1, got {threshold}")
        self.origin, self.threshold = origin, threshold
        self._kinds: list[str] = []          # the failures in a row so far
        self.reason: str | None = None       # set once open: why the host counts as down
        self.answered = False                # the host answered at least once this run

    @property
    def open(self) -> bool:
        return self.reason is not None

    def check(self) -> None:
        """Raise HostDownError when the host is down for this run (nothing is sent)."""
        if self.reason is not None:
            raise HostDownError(f"not sent: {self.reason}; nothing more goes to {self.origin} in this run")

    def succeeded(self) -> None:
        self.answered = True
        if self.reason is None:
            self._kinds.clear()

    def failed(self, kind: str) -> None:
        if self.reason is not None:
            return
        self._kinds.append(kind)
        if len(self._kinds) >= self.threshold:
            self.reason = describe(self.origin, self._kinds)

    def record(self, error: SyncEngineError | None) -> None:
        """Count the outcome of one request: None (an answer kept) or the error it raised."""
        if error is None:
            self.succeeded()
            return
        kind = kind_of(error)
        if kind is not None:
            self.failed(kind)
        elif isinstance(error, StatusError):
            self.succeeded()                 # a 4xx: the host is up and answering


def kind_of(error: SyncEngineError) -> str | None:
    """The failure `error` says the host is down by ("refused", "timed out", "answered 503"),
    or None when it does not."""
    if isinstance(error, HostDownError):
        return None
    if isinstance(error, StatusError):
        return f"answered {error.status}" if error.status >= 500 else None
    if not isinstance(error, TransportError):
        return None
    cause = error.__cause__
    if isinstance(cause, httpx.TimeoutException):
        return "timed out"
    if isinstance(cause, httpx.ConnectError):
        return "refused" if _refused(cause) else "unreachable"
    return "dropped the connection"


def _refused(error: BaseException) -> bool:
    """Was the connection refused (somewhere down `error`'s chain of causes)? A name that does
    not resolve or a route that fails is "unreachable" instead."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, ConnectionRefusedError) or "refused" in str(error).lower():
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


def describe(origin: str, kinds: list[str]) -> str:
    """`127.0.0.1:8080 refused 5 in a row`, or with mixed failures
    `127.0.0.1:8080 failed 5 requests in a row (last: timed out)`."""
    if len(set(kinds)) == 1:
        return f"{origin} {kinds[0]} {len(kinds)} in a row"
    return f"{origin} failed {len(kinds)} requests in a row (last: {kinds[-1]})"
