"""One host's pacing state shared through Redis by every process of every machine.

`RedisBucket` has `SharedBucket`'s interface and rules (token bucket, feedback bucket, hold,
units in flight per process); its state is one Redis hash per host and port,
`syncengine:bucket:<host>:<port>`, changed by one Lua script (`bucket.lua`) per operation, so
each `take` or `settle` is atomic however many workers share the host. The script reads the
Redis server's clock (`TIME`): machines whose clocks disagree still agree on the bucket.

- A host's hash expires after `IDLE` seconds without a request (but not before its hold or
  its window ends), so hosts nobody calls any more vanish.
- Each process's units in flight are kept under an id that no other machine can have
  (hostname, pid, start time) with a lease of `LEASE` seconds, renewed by every operation of
  that process and by a heartbeat thread while it has units out. A killed worker's units stop
  counting when its lease ends, instead of starving the others forever.
- When Redis fails mid-run, the bucket warns once and falls back to the per-machine file
  bucket (`sharedbucket.py`); it tries Redis again `RETRY_REDIS` seconds later. Meanwhile each
  machine paces on its own, and the API's own 429 handling (Retry-After, throttle feedback)
  still applies. (docs/operations.md, "Rate budgets across machines")
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from . import waits
from .sharedbucket import SharedBucket, Ticket

log = logging.getLogger("syncengine.http")
LEASE = 30.0          # seconds a process's units in flight count after its last sign of life
IDLE = 3600.0         # seconds an unused host's state is kept
RETRY_REDIS = 30.0    # seconds on the file bucket after Redis failed, before trying it again
NAMES = ("ta", "ts", "tr", "tb", "fa", "fs", "fr", "fc", "fe", "fq", "fh", "fw")


class Budget:
    """A Redis server holding the hosts' buckets: `client` is a redis-py client; hash keys are
    `prefix` + `host:port`."""

    def __init__(self, client: Any, prefix: str = "syncengine:bucket:", lease: float | None = None) -> None:
        import redis

        self.client, self.prefix, self.lease = client, prefix, lease or LEASE
        self.errors = (redis.RedisError, OSError)
        self.script = client.register_script(resources.files(__package__).joinpath("bucket.lua").read_text())
        self._process: tuple[int, str] = (-1, "")
        self._beat: tuple[int, threading.Event | None] = (-1, None)
        self._lock = threading.Lock()
        self.out: dict[RedisBucket, float] = {}     # this process's units in flight, per bucket

    def process(self) -> str:
        """This process's id: hostname, pid and start time (new in a forked child)."""
        pid = os.getpid()
        if self._process[0] != pid:                  # the parent's units are not this one's
            self._process, self.out = (pid, f"{socket.gethostname()}:{pid}:{time.time_ns()}"), {}
        return self._process[1]

    def call(self, key: str, op: str, rate: float, burst: float, *args: float) -> list[str]:
        """Run the script's `op` on `key`; raises one of `self.errors` when Redis fails."""
        argv = [op, self.process(), repr(waits.skipped()), repr(self.lease), repr(IDLE),
                repr(rate), repr(burst), *(_arg(value) for value in args)]
        return self.script(keys=[key], args=argv)

    def heartbeat(self) -> None:
        """Renew this process's leases while it has units out (a thread, started per process)."""
        with self._lock:
            if self._beat[0] == os.getpid():
                return
            stop = threading.Event()
            self._beat = (os.getpid(), stop)
        threading.Thread(target=self._renew, args=(stop,), name="syncengine-budget", daemon=True).start()

    def _renew(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease / 3):
            for bucket, units in list(self.out.items()):
                if units > 0:
                    bucket._call("touch")

    def close(self) -> None:
        if self._beat[1] is not None:
            self._beat[1].set()
        self._beat = (-1, None)


class RedisBucket:
    """The token and feedback budgets of `host` in `budget`'s Redis; `fallback()` makes the
    per-machine bucket used while Redis fails."""

    def __init__(self, budget: Budget, host: str, rate: float, burst: float,
                 fallback: Callable[[], SharedBucket]) -> None:
        self.budget, self.key = budget, budget.prefix + host
        self._initial, self._make_fallback = (rate, burst), fallback
        self._fallback: SharedBucket | None = None
        self._down_until = -math.inf
        self.costs: dict[tuple, float] = {}     # each query's last reported cost (this process)
        self._call("init")

    # -- what callers use (as SharedBucket) ---------------------------------------------

    @property
    def rate(self) -> float:
        return self._read()[2]

    @property
    def burst(self) -> float:
        return self._read()[3]

    def tighten(self, rate: float, burst: float) -> None:
        """Adopt the stricter of the current and the given token-bucket settings."""
        self._initial = (min(rate, self._initial[0]) if self._initial[0] > 0 else rate,
                         min(burst, self._initial[1]) if self._initial[1] > 0 else burst)
        self._call("tighten", rate, burst)

    def take(self, cost: float = 1.0) -> tuple[float, Ticket]:
        """Take one token and `cost` feedback units if both are there, else take nothing:
        `(seconds to wait first, 0.0 when taken; a ticket)` (see `SharedBucket.take`)."""
        answer = self._call("take", cost)
        if answer is None:
            return self._fallback.take(cost)        # type: ignore[union-attr]
        wait, ticket = float(answer[0]), float(answer[1])
        if not wait:
            self._count(cost)
        return wait, ticket

    def settle(self, cost: float, ticket: Ticket, available: float | None = None,
               capacity: float | None = None, rate: float | None = None,
               reset: float | None = None, refund: float = 0.0) -> None:
        """Adopt what an answer reported (see `SharedBucket.settle`)."""
        self._count(-cost)
        if self._call("settle", cost, ticket, available, capacity, rate, reset, refund) is None:
            self._fallback.settle(cost, ticket, available, capacity, rate, reset, refund)  # type: ignore[union-attr]

    def hold(self, seconds: float) -> None:
        """Send nothing to this host for `seconds` (what a Retry-After asked)."""
        if self._call("hold", seconds) is None:
            self._fallback.hold(seconds)            # type: ignore[union-attr]

    def release(self, cost: float) -> None:
        """A request that took `cost` units ended without an answer."""
        self._count(-cost)
        if self._call("release", cost) is None:
            self._fallback.release(cost)            # type: ignore[union-attr]

    def in_flight(self) -> float:
        """Units in flight in every live process sharing this host (tests, diagnostics)."""
        return self._read()[len(NAMES)]

    def close(self) -> None:
        self.budget.out.pop(self, None)
        if self._fallback is not None:
            self._fallback.close()

    def forget(self) -> None:
        """Delete this host's state from Redis (tests)."""
        try:
            self.budget.client.delete(self.key)
        except self.budget.errors:
            pass

    # -- Redis, or the file bucket while Redis fails --------------------------------------

    def _read(self) -> list[float]:
        answer = self._call("read")
        if answer is None:
            state = self._fallback._read()           # type: ignore[union-attr]
            return state[:len(NAMES)] + [0.0]
        return [float(value) for value in answer]

    def _call(self, op: str, *args: float | None) -> list[str] | None:
        """The script's answer, or None when Redis failed (then use `self._fallback`)."""
        if time.monotonic() < self._down_until:
            return None
        try:
            answer = self.budget.call(self.key, op, *self._initial, *args)
        except self.budget.errors as exc:
            if self._fallback is None:
                self._fallback = self._make_fallback()
            if self._down_until == -math.inf:
                log.warning("rate budget in Redis unusable for %s (%s): pacing on this machine's "
                            "own bucket, trying Redis again every %gs", self.key, _line(exc), RETRY_REDIS)
            self._down_until = time.monotonic() + RETRY_REDIS
            return None
        if self._down_until != -math.inf:
            log.warning("rate budget in Redis usable again for %s", self.key)
            self._down_until = -math.inf
        return answer

    def _count(self, units: float) -> None:
        self.budget.process()
        out = self.budget.out
        out[self] = max(0.0, out.get(self, 0.0) + units)
        if units > 0:
            self.budget.heartbeat()


def _arg(value: float | None) -> str:
    """A script argument: `""` is None (Lua's tonumber gives nil)."""
    return "" if value is None else repr(float(value))


def _line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
