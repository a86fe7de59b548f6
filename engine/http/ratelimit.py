"""Proactive rate limiting: one bucket per host, shared by every process of this machine, or by
every process of every machine through Redis (`use_budget`).

Spec form (`http.rate_limit`)::

    rate_limit: {per_second: 5, burst: 10}     # burst defaults to max(1, per_second)

The bucket (`sharedbucket.SharedBucket`) is a small file per host and port under
`bucket_dir()`, so forked workers and concurrent runs in other processes draw on one budget;
it also holds what the API reports (`http.pacing`). It never blocks while holding its lock:
`take()` takes a token or says how long to wait, and the caller sleeps outside the lock.

`use_budget("redis://host:6379/0")` (the CLI's `--budget`, `$SYNCENGINE_BUDGET`) keeps every
host's bucket in Redis instead (`redisbucket.RedisBucket`), so workers on several machines
share one budget per host; `use_broker_budget(broker_url)` does so when a Celery broker is
Redis.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from engine.errors import ConfigError

from .sharedbucket import SharedBucket

if TYPE_CHECKING:
    from .redisbucket import Budget, RedisBucket


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
_budget: Budget | None = None
_buckets: dict[str, SharedBucket | RedisBucket] = {}
_buckets_lock = threading.Lock()


def bucket_for(host: str, limit: RateLimit | None) -> SharedBucket | RedisBucket:
    """The shared bucket of `host` (`name:port`): every client of every process of this
    machine shares it (of every machine, with `use_budget`); when they disagree, the
    strictest token limit wins."""
    rate = limit.per_second if limit else 0.0
    burst = float((limit.burst if limit.burst is not None else max(1.0, limit.per_second)) if limit else 0.0)
    with _buckets_lock:
        bucket = _buckets.get(host)
        if bucket is None:
            name = re.sub(r"[^A-Za-z0-9.-]", "_", host) + ".bucket"

            def machine() -> SharedBucket:
                return SharedBucket(bucket_dir() / name, rate, burst)
            if _budget is not None:
                from .redisbucket import RedisBucket
                bucket = _buckets[host] = RedisBucket(_budget, host, rate, burst, machine)
            else:
                bucket = _buckets[host] = machine()
        elif limit:
            bucket.tighten(rate, burst)
        return bucket


def reset_buckets() -> None:
    """Forget every host's bucket and remove the files (and Redis hashes) this process made
    (tests)."""
    with _buckets_lock:
        for bucket in _buckets.values():
            bucket.close()
            if isinstance(bucket, SharedBucket):
                if bucket.path is not None:
                    bucket.path.unlink(missing_ok=True)
            else:
                bucket.forget()
        _buckets.clear()


def use_budget(url: str | None, *, prefix: str = "syncengine:bucket:") -> None:
    """Keep every host's bucket in the Redis at `url` (`redis://HOST:PORT/DB`, `rediss://`,
    `unix://`), shared by every process that names the same server; None or `file`: this
    machine's files (the default). Raises ConfigError, in one line, when Redis cannot be reached or
    redis-py is not installed. Forgets this process's buckets."""
    global _budget
    budget = _connect(url, prefix) if url and url != "file" else None
    if budget is None and _budget is None:
        return
    reset_buckets()
    if _budget is not None:
        _budget.close()
    _budget = budget


def use_broker_budget(broker_url: str | None) -> bool:
    """What `syncengine worker` calls with its Celery broker URL: a worker whose broker is Redis
    shares the hosts' budgets there, unless `$SYNCENGINE_BUDGET` names another place (`file`:
    this machine's files). True when the budget is in Redis."""
    chosen = os.environ.get("SYNCENGINE_BUDGET") or broker_url or ""
    if chosen.split(":", 1)[0] in ("redis", "rediss", "unix"):
        use_budget(chosen)
        return True
    use_budget(None)
    return False


def _connect(url: str, prefix: str) -> Budget:
    if url.split(":", 1)[0] not in ("redis", "rediss", "unix"):
        raise ConfigError(f"--budget: expected redis://HOST:PORT/DB (or rediss://, unix://), got {url!r}")
    try:
        import redis
    except ImportError:
        raise ConfigError("--budget needs redis-py: pip install 'syncengine[cluster]'") from None
    from .redact import everywhere, remember_secrets
    from .redisbucket import Budget

    password = urlsplit(url).password
    if password:
        remember_secrets([unquote(password)])
    where = everywhere().url(url)
    try:
        # one immediate retry, not redis-py's backoff of seconds: the bucket is asked on the
        # event loop, and while Redis fails it falls back to this machine's bucket at once
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                      retry=Retry(NoBackoff(), 1))
        client.ping()
    except (redis.RedisError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"rate budget at {where} unreachable: {first}") from None
    return Budget(client, prefix)


def build_rate_limit(spec: Mapping[str, Any] | None) -> RateLimit | None:
    """A `RateLimit` from the `http.rate_limit` dict, or None when there is none."""
    if not spec:
        return None
    unknown = sorted(set(spec) - {"per_second", "burst"})
    if unknown:
        raise ValueError(f"rate_limit: unknown key(s) {unknown}; valid: ['burst', 'per_second']")
    return RateLimit(float(spec["per_second"]), spec.get("burst"))
