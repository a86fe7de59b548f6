"""One host's pacing state, shared by every process of this machine through a small file.

Two budgets live in the file of a host (`<dir>/<host>_<port>.bucket`, 224 bytes):

- the **token bucket** the spec declares (`http.rate_limit`): `rate` per second, up to `burst`;
- the **feedback bucket** the API reports (`http.pacing`): units `available` now, refilled
  continuously at `rate` up to `capacity` (leaky and cost buckets), or back to `quota` when the
  window ends (fixed windows); a `hold` until which nothing is sent (a Retry-After); and the
  units each process has in flight, so an answer's count is corrected for the requests sent
  after it (`available = reported - in flight elsewhere`).

Every operation is one `flock` + `pread` + `pwrite` of the whole state (~10 µs, measured in
bench/README.md); a process that forks reopens the file, since an inherited descriptor shares
its lock with the parent. Without `fcntl` (Windows) the state lives in this process only.
Waits never happen under the lock: `take` either takes the units or says how long to wait.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from .waits import clock as default_clock

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process's state only
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("syncengine.http")
NAN = math.nan
Ticket = float                 # the window number a request went in
STALE = 60.0                   # seconds idle after which a file's token settings are redone
SLOTS = 8                      # processes whose units in flight are tracked at once
# t_avail t_stamp t_rate t_burst | f_avail f_stamp f_rate f_cap f_end f_quota f_hold f_windows
# | (pid, units) * SLOTS
(T_AVAIL, T_STAMP, T_RATE, T_BURST, F_AVAIL, F_STAMP, F_RATE, F_CAP, F_END, F_QUOTA, F_HOLD,
 F_WINDOWS) = range(12)
SLOT0 = 12
_STATE = struct.Struct(f"<{SLOT0 + 2 * SLOTS}d")
POLL = 0.05                    # seconds between looks while answers in flight are awaited


class SharedBucket:
    """The token and feedback budgets of one host; `path=None` keeps them in this process."""

    def __init__(self, path: Path | None, rate: float, burst: float,
                 clock: Callable[[], float] = default_clock) -> None:
        self.path, self._clock = path, clock
        self._lock, self._fd, self._pid = threading.Lock(), -1, -1
        self._memory: list[float] = self._fresh(rate, burst)
        self.costs: dict[tuple, float] = {}     # each query's last reported cost (this process)
        self._initial = (rate, burst)
        with self._state() as state:
            now = clock()
            if not now - STALE < state[T_STAMP] <= now:     # new (NaN), idle, or another boot's
                fresh = self._fresh(rate, burst)
                keep = state[F_HOLD] == state[F_HOLD] and state[F_STAMP] <= now
                state[:] = fresh[:F_AVAIL] + (state[F_AVAIL:] if keep else fresh[F_AVAIL:])
            else:
                _tighten(state, rate, burst)

    # -- what callers use --------------------------------------------------------------

    @property
    def rate(self) -> float:
        return self._read()[T_RATE]

    @property
    def burst(self) -> float:
        return self._read()[T_BURST]

    def tighten(self, rate: float, burst: float) -> None:
        """Adopt the stricter of the current and the given token-bucket settings."""
        with self._state() as state:
            _tighten(state, rate, burst)

    def take(self, cost: float = 1.0) -> tuple[float, Ticket]:
        """Take one token and `cost` feedback units if both are there, else take nothing:
        `(seconds to wait first, 0.0 when taken; a ticket)`. The ticket (the window number)
        goes with the request to `settle`, to tell a late answer from an ended window."""
        with self._state() as state:
            now = self._clock()
            _refill(state, now)
            wait = max(state[F_HOLD] - now, _token_wait(state), _feedback_wait(state, cost, now))
            if wait > 0:
                return wait, state[F_WINDOWS]
            if state[T_RATE] > 0:
                state[T_AVAIL] -= 1
            if state[F_AVAIL] == state[F_AVAIL]:
                state[F_AVAIL] -= cost
            _add_in_flight(state, os.getpid(), cost)
            return 0.0, state[F_WINDOWS]

    def settle(self, cost: float, ticket: Ticket, available: float | None = None,
               capacity: float | None = None, rate: float | None = None,
               reset: float | None = None, refund: float = 0.0) -> None:
        """A request that took `cost` units with `ticket` was answered; adopt what the answer
        reported: units `available` now, the `capacity`, a continuous refill `rate`, `reset`
        seconds until the window's quota (`capacity`) is back, and a `refund` of units taken
        but not charged (a cost bucket charging less than the query asked).

        Answers arrive out of order, so a report only ever lowers the count (which our own
        takes, refills and refunds raise): a window's count only falls until its reset, and
        the earliest reset is the truest. An answer about a window that has ended since the
        request went is ignored."""
        with self._state() as state:
            now = self._clock()
            _refill(state, now)
            _add_in_flight(state, os.getpid(), -cost)
            if reset is not None and ticket < state[F_WINDOWS]:
                return                                      # a late answer from an ended window
            if capacity is not None:
                state[F_CAP] = state[F_QUOTA] = capacity
            if rate is not None:
                state[F_RATE] = rate
            if reset is not None:
                end = now + max(0.0, reset)
                state[F_END] = end if state[F_END] != state[F_END] else min(state[F_END], end)
            if available is not None:
                left = available - _in_flight(state)
                known = state[F_AVAIL] == state[F_AVAIL]
                state[F_AVAIL] = min(state[F_AVAIL] + refund, left) if known else left
                state[F_STAMP] = now

    def hold(self, seconds: float) -> None:
        """Send nothing to this host for `seconds` (what a Retry-After asked)."""
        with self._state() as state:
            state[F_HOLD] = max(state[F_HOLD], self._clock() + seconds)

    def release(self, cost: float) -> None:
        """A request that took `cost` units ended without an answer."""
        with self._state() as state:
            _add_in_flight(state, os.getpid(), -cost)

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = -1

    # -- the state ---------------------------------------------------------------------

    def _fresh(self, rate: float, burst: float) -> list[float]:
        state = [burst, self._clock(), rate, burst] + [NAN, 0.0, 0.0, NAN, NAN, NAN, 0.0, 0.0]
        return state + [0.0] * (2 * SLOTS)

    def _read(self) -> list[float]:
        with self._state() as state:
            return list(state)

    def _state(self) -> _Locked:
        return _Locked(self)

    def _open(self) -> int:
        """The file's descriptor, (re)opened in this process (a forked child must not share
        its parent's open file: flock locks belong to the open file)."""
        if self._pid != os.getpid():
            self._lock = threading.Lock()
            self._pid = os.getpid()
            assert self.path is not None
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self._fd


class _Locked:
    """`with bucket._state() as state:` the state as a list, written back on the way out."""

    def __init__(self, bucket: SharedBucket) -> None:
        self.bucket = bucket

    def __enter__(self) -> list[float]:
        bucket = self.bucket
        if bucket.path is not None and fcntl is not None:
            try:
                fd = bucket._open()
            except OSError as exc:              # no usable directory: this process only
                log.warning("rate-limit bucket %s unusable (%s): it is kept in this process only",
                            bucket.path, exc)
                bucket.path = None
        if bucket.path is None or fcntl is None:
            bucket._lock.acquire()
            self.state = bucket._memory
            return self.state
        bucket._lock.acquire()
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = os.pread(fd, _STATE.size, 0)
        self.state = list(_STATE.unpack(data)) if len(data) == _STATE.size else [NAN] * (SLOT0 + 2 * SLOTS)
        return self.state

    def __exit__(self, *exc_info: object) -> None:
        bucket = self.bucket
        try:
            if bucket.path is not None and fcntl is not None:
                try:
                    if exc_info[0] is None:
                        os.pwrite(bucket._fd, _STATE.pack(*self.state), 0)
                finally:
                    fcntl.flock(bucket._fd, fcntl.LOCK_UN)
        finally:
            bucket._lock.release()


def _tighten(state: list[float], rate: float, burst: float) -> None:
    """The stricter token settings (a rate of 0 means none declared)."""
    if rate > 0 and (state[T_RATE] <= 0 or rate < state[T_RATE]):
        state[T_RATE] = rate
    if rate > 0:
        state[T_BURST] = min(state[T_BURST], burst) if state[T_BURST] > 0 else burst
        state[T_AVAIL] = min(state[T_AVAIL], state[T_BURST])


def _refill(state: list[float], now: float) -> None:
    """Bring both budgets to `now`: tokens and continuous feedback refill; a window that ended
    gives its quota back (or one probe request when the quota is unknown), less the units
    still in flight."""
    if state[T_RATE] > 0:
        state[T_AVAIL] = min(state[T_BURST], state[T_AVAIL] + (now - state[T_STAMP]) * state[T_RATE])
    state[T_STAMP] = now
    if state[F_AVAIL] != state[F_AVAIL]:
        return
    if state[F_RATE] > 0:
        top = state[F_CAP] if state[F_CAP] == state[F_CAP] else math.inf
        state[F_AVAIL] = min(top, state[F_AVAIL] + (now - state[F_STAMP]) * state[F_RATE])
    if state[F_END] == state[F_END] and now >= state[F_END]:
        quota = state[F_QUOTA]
        # requests still in flight may land in the new window: they count against its quota
        state[F_AVAIL] = (quota if quota == quota else 1.0) - _in_flight(state)
        state[F_WINDOWS], state[F_END] = state[F_WINDOWS] + 1, NAN
    state[F_STAMP] = now


def _token_wait(state: list[float]) -> float:
    if state[T_RATE] <= 0 or state[T_AVAIL] >= 1:
        return 0.0
    return (1 - state[T_AVAIL]) / state[T_RATE]


def _feedback_wait(state: list[float], cost: float, now: float) -> float:
    """Seconds until `cost` units are there; 0 when they are, or when nothing will refill them
    (then the request goes, and its answer says what to do)."""
    available = state[F_AVAIL]
    if available != available:               # nothing reported yet: one request asks first
        return POLL if cost > 0 and _in_flight(state) > 0 else 0.0
    if available >= cost:
        return 0.0
    if state[F_END] == state[F_END]:
        return state[F_END] - now
    if state[F_RATE] > 0:
        return (cost - available) / state[F_RATE]
    if state[F_WINDOWS] > 0 and _in_flight(state) > 0:
        return POLL                          # a new window's quota is spent: its answers will say
    return 0.0                               # until when; with none in flight, one request asks


def _add_in_flight(state: list[float], pid: int, units: float) -> None:
    """Count `units` more (or fewer) in flight for process `pid`."""
    free = None
    for slot in range(SLOT0, SLOT0 + 2 * SLOTS, 2):
        if state[slot] == pid:
            state[slot + 1] = max(0.0, state[slot + 1] + units)
            return
        if free is None and (state[slot + 1] <= 0 or not _alive(int(state[slot]))):
            free = slot
    if free is not None and units > 0:
        state[free], state[free + 1] = pid, units


def _in_flight(state: list[float]) -> float:
    """Units in flight in every live process of this machine."""
    total = 0.0
    for slot in range(SLOT0, SLOT0 + 2 * SLOTS, 2):
        if state[slot + 1] > 0:
            if _alive(int(state[slot])):
                total += state[slot + 1]
            else:
                state[slot + 1] = 0.0
    return total


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    try:                                      # a zombie (exited, not yet reaped) is dead too
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2][:2] != b" Z"
    except OSError:
        return True
