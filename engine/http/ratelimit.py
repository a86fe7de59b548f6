"""Proactive rate limiting: one bucket per host, shared by every process of this machine.

Spec form (`http.rate_limit`)::

    rate_limit: {per_second: 5, burst: 10}     # burst defaults to max(1, per_second)

The bucket (`sharedbucket.SharedBucket`) is a small file per host and port under
`bucket_dir()`, so forked workers and concurrent runs in other processes draw on one budget;
it also holds what the API reports (`http.pacing`). It never blocks while holding its lock:
`take()` takes a token or says how long to wait, and the caller sleeps outside the lock.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .sharedbucket import SharedBucket


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimit:
    """`per_second` requests on average, up to `burst` at once."""

    per_second: float
    burst: float | None = None

    def __post_init__(self) -> None:
        if self.per_second <= 0:
            raise ValueError(f"rate_limit.per_second must be > 0, got {self.per_second}")


def bucket_dir() -> Path:
    """Where the hosts' bucket files live: `set_bucket_dir`, else `$SYNCENGINE_BUCKET_DIR`, else
    `<tmp>/syncengine-<uid>/buckets` (one directory for every process of this user)."""
    if _dir is not None:
        return _dir
    if os.environ.get("SYNCENGINE_BUCKET_DIR"):
        return Path(os.environ["SYNCENGINE_BUCKET_DIR"])
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"syncengine-{uid}" / "buckets"


def set_bucket_dir(path: str | Path | None) -> None:
    """Keep the bucket files under `path` (None: the default); forgets this process's buckets."""
    global _dir
    reset_buckets()
    _dir = Path(path) if path is not None else None


_dir: Path | None = None
_buckets: dict[str, SharedBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(host: str, limit: RateLimit | None) -> SharedBucket:
    """The machine-wide bucket of `host` (`name:port`): every client of every process of this
    machine shares it; when they disagree, the strictest token limit wins."""
    rate = limit.per_second if limit else 0.0
    burst = (limit.burst if limit.burst is not None else max(1.0, limit.per_second)) if limit else 0.0
    with _buckets_lock:
        bucket = _buckets.get(host)
        if bucket is None:
            name = re.sub(r"[^A-Za-z0-9.-]", "_", host) + ".bucket"
            bucket = _buckets[host] = SharedBucket(bucket_dir() / name, rate, float(burst))
        elif limit:
            bucket.tighten(rate, float(burst))
        return bucket


def reset_buckets() -> None:
    """Forget every host's bucket and remove the files this process made (tests)."""
    with _buckets_lock:
        for bucket in _buckets.values():
            bucket.close()
            if bucket.path is not None:
                bucket.path.unlink(missing_ok=True)
        _buckets.clear()


def build_rate_limit(spec: Mapping[str, Any] | None) -> RateLimit | None:
    """A `RateLimit` from the `http.rate_limit` dict, or None when there is none."""
    if not spec:
        return None
    unknown = sorted(set(spec) - {"per_second", "burst"})
    if unknown:
        raise ValueError(f"rate_limit: unknown key(s) {unknown}; valid: ['burst', 'per_second']")
    return RateLimit(float(spec["per_second"]), spec.get("burst"))
