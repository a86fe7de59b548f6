"""Every wait the HTTP layer makes goes through `sleep`, so a testing switch can zero them all.

    set_testing(True)          # waits return at once and are recorded
    ...
    recorded_waits()           # [("retry_after", 2.0), ("backoff", 0.5), ("rate_limit", 0.2)]

Like stamina's `set_testing`: tests exercise the real retry and rate-limit decisions without
spending the time, and assert the waits that were asked for. `clock()` is the time the rate
limit reads: monotonic time plus every wait skipped while testing, so a bucket sees the time
it asked for pass.
"""

from __future__ import annotations

import asyncio
import time

from . import observe

_testing = False
_waits: list[tuple[str, float]] = []
_skipped = 0.0


def clock() -> float:
    """Monotonic seconds (one clock for every process of the machine) plus skipped waits."""
    return time.monotonic() + _skipped


def skipped() -> float:
    """Seconds of waits skipped while testing: what `clock()` adds to the monotonic time (a
    bucket that reads another clock, the Redis server's, adds it too)."""
    return _skipped


def set_testing(on: bool = True) -> None:
    """Make every wait zero (and record it) while `on`; clears the record either way."""
    global _testing
    _testing = on
    _waits.clear()


def is_testing() -> bool:
    """True while `set_testing(True)` is in force."""
    return _testing


def recorded_waits() -> list[tuple[str, float]]:
    """The `(reason, seconds)` waits asked for since `set_testing(True)`, oldest first."""
    return list(_waits)


async def sleep(seconds: float, reason: str) -> None:
    """Wait `seconds` (`reason`: backoff, retry_after, pacing), or record it when testing."""
    global _skipped
    observe.waited(reason, seconds)
    if _testing:
        _waits.append((reason, seconds))
        _skipped += max(0.0, seconds)
        await asyncio.sleep(0)
    elif seconds > 0:
        await asyncio.sleep(seconds)
