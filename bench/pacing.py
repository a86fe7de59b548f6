"""Pacing bench: the engine's HttpClient against loopback servers that enforce a quota.

    python bench/pacing.py                      # ~2.5 min: five sustained runs, six starved ones
    python bench/pacing.py --seconds 10         # shorter sustained runs
    python bench/pacing.py --overhead           # only the bucket's bookkeeping per request

Servers (`samples/servers/quotas.py`, on 127.0.0.1 in a thread of this process: the rates are
a few requests a second, nothing here is CPU-bound):

- leaky bucket: 40 slots leaking 2/s, `X-Shopify-Shop-Api-Call-Limit: used/40`, 429 when full;
- GraphQL cost bucket: 1000 points restoring 50/s, each query requesting and costing 20
  points; an over-budget query is a 200 with a THROTTLED error and `extensions.cost`;
- fixed window: 10 requests per 5 s (a shortened 40 per 60 s), `X-Rate-Limit-Remaining` /
  `-Reset` (seconds, rounded up) / `-Limit`, 429 when spent.

Sustained: one client, `http.pacing` set to the server's form (no `rate_limit`), 8 requests
in flight for `--seconds` (15); printed: requests the server admitted per second in the second
half of the run (past the opening burst; for the fixed window: the whole windows of the run)
as % of the
quota's rate, and the 429/THROTTLED count. The leaky bucket runs again from two forked
processes at once (8 in flight each), which share the machine-wide bucket, and then from two
processes with a bucket directory each (as on two machines) sharing one budget through Redis
(`--redis`, default redis://127.0.0.1:6379/0, keys under a prefix of the run's own; skipped,
saying why, when it does not answer).

Bookkeeping: microseconds per request of `take` (rate limit only) and `take` + `settle` (with
feedback), for the file bucket, the in-memory one and the Redis one, next to a plain `PING`
round trip to the same Redis measured in the same run (the floor of any Redis call).

Starved: the quota is drained by another consumer, then one request is sent; printed: the time
it took to be admitted against the ideal (when the server would first admit it), with pacing
and, for contrast, with the exponential backoff alone (`attempts: 8`, 1 s doubling, no jitter).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jmespath  # noqa: E402

from engine.http import HttpClient, Request, build_pacing, build_retry, set_bucket_dir, use_budget  # noqa: E402
from samples.servers.quotas import CostBucket, FixedWindow, LeakyBucket  # noqa: E402

CONCURRENCY = 8
QUERY_COST = 20
THROTTLED = "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"
PACING = {
    "leaky": {"type": "used_limit", "header": "X-Shopify-Shop-Api-Call-Limit", "per_second": 2},
    "cost": {"type": "cost_bucket", "available": "extensions.cost.throttleStatus.currentlyAvailable",
             "restore_rate": "extensions.cost.throttleStatus.restoreRate",
             "maximum": "extensions.cost.throttleStatus.maximumAvailable",
             "cost": "extensions.cost.requestedQueryCost", "actual": "extensions.cost.actualQueryCost"},
    "window": {"type": "remaining_reset", "remaining": "X-Rate-Limit-Remaining",
               "reset": "X-Rate-Limit-Reset", "limit": "X-Rate-Limit-Limit"},
}


def compile_path(expression: str):
    return jmespath.compile(expression).search


class Quotas:
    """The quota behind each path; swapped between runs."""

    def __init__(self) -> None:
        self.by_path: dict[str, Any] = {}
        self.log: list[tuple[float, int]] = []          # (time admitted, status)

    def answer(self, path: str) -> tuple[int, dict[str, str], Any]:
        quota = self.by_path[path]
        status, headers, body = quota.admit(QUERY_COST) if isinstance(quota, CostBucket) else quota.admit()
        throttled = status == 429 or (isinstance(body, dict) and "errors" in body)
        self.log.append((time.monotonic(), 0 if throttled else 1))
        return status, headers, body


def serve(quotas: Quotas) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body = quotas.answer(self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {**headers, "Content-Type": "application/json",
                                "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def client(base: str, kind: str, paced: bool) -> HttpClient:
    retry = {"attempts": 8, "on_status": [429], "when": THROTTLED,
             "backoff": {"initial": 1, "factor": 2, "max": 30, "jitter": 0}}
    return HttpClient(base, concurrency=CONCURRENCY, retry=build_retry(retry, compile_path),
                      pacing=build_pacing(PACING[kind], compile_path) if paced else None)


def request(kind: str) -> Request:
    return Request("POST", f"/{kind}", json={"query": "{ orders(first: 10) { id } }"})


async def sustained(base: str, kind: str, seconds: float) -> None:
    """Keep CONCURRENCY requests going for `seconds`."""
    deadline = time.monotonic() + seconds
    async with client(base, kind, paced=True) as engine:
        async def worker() -> None:
            while time.monotonic() < deadline:
                await engine.send(request(kind))
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def nominal_rate(quota: Any) -> float:
    if isinstance(quota, LeakyBucket):
        return quota.leak
    if isinstance(quota, CostBucket):
        return quota.restore / QUERY_COST
    return quota.quota / quota.window


def _sustained_child(base: str, kind: str, seconds: float, directory: str | None) -> None:
    if directory is not None:                        # a machine of its own: only Redis is shared
        set_bucket_dir(directory)
    asyncio.run(sustained(base, kind, seconds))


def run_sustained(quotas: Quotas, base: str, kind: str, quota: Any, seconds: float,
                  processes: int = 1, own_dirs: bool = False) -> dict[str, Any]:
    quotas.by_path[f"/{kind}"], quotas.log = quota, []
    start = time.monotonic()
    if processes == 1:
        asyncio.run(sustained(base, kind, seconds))
    else:                                            # forked, sharing the machine-wide bucket
        context = multiprocessing.get_context("fork")
        tmp = quotas.tmp                             # type: ignore[attr-defined]
        children = [context.Process(target=_sustained_child, args=(
                        base, kind, seconds, f"{tmp}/machine{i}" if own_dirs else None))
                    for i in range(processes)]
        for child in children:
            child.start()
        for child in children:
            child.join()
    end = time.monotonic()
    half = start + (end - start) / 2
    if isinstance(quota, FixedWindow):               # the whole windows of the run, for a fair count
        first = -(-(start - quota.started) // quota.window)
        half = quota.started + first * quota.window
        end = quota.started + ((end - quota.started) // quota.window) * quota.window
    admitted = sum(ok for when, ok in quotas.log if half <= when < end)
    rate = admitted / (end - half) if end > half else 0.0
    return {"kind": kind, "admitted": quota.admitted, "refused": quota.refused, "rate": rate,
            "nominal": nominal_rate(quota), "percent": 100 * rate / nominal_rate(quota)}


def drain(kind: str) -> tuple[Any, float]:
    """A quota another consumer just emptied, and the seconds until it admits one request."""
    if kind == "leaky":
        quota = LeakyBucket(40, 2.0)
        while quota.admit()[0] == 200:
            pass
        quota.refused = 0                                # the drain's own refusal
        return quota, 1 / quota.leak
    if kind == "cost":
        quota = CostBucket(1000, 50.0)
        quota.admit(1000)                                # all 1000 points spent at once
        return quota, 460 / quota.restore                # the next query requests 460: 9.2 s
    quota = FixedWindow(10, 10.0)
    for _ in range(10):
        quota.admit()
    return quota, quota.window - (time.monotonic() - quota.started)


async def one(base: str, kind: str, paced: bool) -> None:
    async with client(base, kind, paced) as engine:
        if kind == "cost":                               # this query asks 460 points
            await engine.send(Request("POST", "/cost460", json={"query": "{ big }"}))
        else:
            await engine.send(request(kind))


def run_starved(quotas: Quotas, base: str, kind: str, paced: bool) -> dict[str, Any]:
    set_bucket_dir(Path(quotas.tmp) / f"{kind}-{paced}")
    quota, ideal = drain(kind)
    quotas.by_path[f"/{kind}"] = quota
    quotas.by_path["/cost460"] = _Cost460(quota) if kind == "cost" else None
    start = time.monotonic()
    try:
        asyncio.run(one(base, kind, paced))
        outcome = "ok"
    except Exception as exc:                             # backoff alone may give up
        outcome = f"failed: {type(exc).__name__}"
    waited = time.monotonic() - start
    return {"kind": kind, "paced": paced, "waited": waited, "ideal": ideal, "refused": quota.refused,
            "outcome": outcome}


class _Cost460:
    """The cost bucket, asked for 460 points a query."""

    def __init__(self, bucket: CostBucket) -> None:
        self.bucket = bucket

    def admit(self) -> tuple[int, dict[str, str], Any]:
        return self.bucket.admit(460)


def overhead(tmp: str, redis_url: str | None, n: int = 20000) -> dict[str, float]:
    """Microseconds per request of the bucket bookkeeping: one `take` (rate limit only), and
    `take` + `settle` (with feedback), in a file shared by processes, in memory and in Redis
    (when `redis_url`; then also a plain PING round trip, the baseline of a Redis call)."""
    from engine.http.sharedbucket import SharedBucket
    result = {}
    buckets: list[tuple[str, Any]] = [("file", SharedBucket(Path(tmp) / "overhead.bucket", rate=1e9, burst=1e9)),
                                      ("memory", SharedBucket(None, rate=1e9, burst=1e9))]
    if redis_url:
        from engine.http.redisbucket import RedisBucket
        budget = _redis_budget(redis_url)
        start = time.perf_counter()
        for _ in range(n // 4):
            budget.client.ping()
        result["PING, redis"] = (time.perf_counter() - start) / (n // 4) * 1e6
        buckets.append(("redis", RedisBucket(budget, "overhead.test:443", 1e9, 1e9, lambda: None)))  # type: ignore[arg-type,return-value]
    for where, bucket in buckets:
        n_here = n // 4 if where == "redis" else n
        start = time.perf_counter()
        for _ in range(n_here):
            bucket.take(0.0)
        result[f"take, {where}"] = (time.perf_counter() - start) / n_here * 1e6
        start = time.perf_counter()
        for _ in range(n_here):
            _, ticket = bucket.take(1.0)
            bucket.settle(1.0, ticket, available=1e9, capacity=1e9, rate=1e9)
        result[f"take + settle, {where}"] = (time.perf_counter() - start) / n_here * 1e6
        bucket.close()
        if where == "redis":
            bucket.forget()
    return result


def _redis_budget(url: str) -> Any:
    """A Budget on `url` under a key prefix of this run's own."""
    import uuid

    from engine.http.redisbucket import Budget
    import redis
    return Budget(redis.Redis.from_url(url), prefix=f"syncengine-bench-{uuid.uuid4().hex[:8]}:bucket:")


def redis_unreachable(url: str) -> str | None:
    """None when `url` answers, else why not (the Redis rows are then skipped)."""
    try:
        import redis
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:                             # noqa: BLE001 - any reason is printed
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each sustained run")
    parser.add_argument("--overhead", action="store_true", help="only the bucket's cost per request")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", metavar="URL",
                        help="the Redis of the shared-budget rows (default: redis://127.0.0.1:6379/0)")
    args = parser.parse_args(argv)
    import tempfile
    quotas = Quotas()
    quotas.tmp = tempfile.mkdtemp(prefix="syncengine-bench-buckets-")  # type: ignore[attr-defined]
    why = redis_unreachable(args.redis)
    if why:
        print(f"Redis rows skipped: {args.redis}: {why}")
    costs = overhead(quotas.tmp, None if why else args.redis)  # type: ignore[attr-defined]
    print("bucket bookkeeping per request:", ", ".join(f"{name} {micros:.1f} µs" for name, micros in costs.items()))
    if not why:
        ping = costs["PING, redis"]
        print(f"  redis / PING: take {costs['take, redis'] / ping:.2f}x, take + settle "
              f"{costs['take + settle, redis'] / ping:.2f}x; redis / file: take + settle "
              f"{costs['take + settle, redis'] / costs['take + settle, file']:.1f}x")
    if args.overhead:
        return 0
    server, base = serve(quotas)
    _answer = quotas.answer

    def answer(path: str):                               # "/cost460" has its own admit
        quota = quotas.by_path.get(path)
        if isinstance(quota, _Cost460):
            status, headers, body = quota.admit()
            quotas.log.append((time.monotonic(), 0 if "errors" in body else 1))
            return status, headers, body
        return _answer(path)
    quotas.answer = answer                               # type: ignore[method-assign]
    try:
        print(f"sustained, {CONCURRENCY} in flight, {args.seconds:g} s each (rate over the second half):")
        for kind, make, processes, shared in (("leaky", lambda: LeakyBucket(40, 2.0), 1, "file"),
                                              ("cost", lambda: CostBucket(1000, 50.0), 1, "file"),
                                              ("window", lambda: FixedWindow(10, 5.0), 1, "file"),
                                              ("leaky", lambda: LeakyBucket(40, 2.0), 2, "file"),
                                              ("leaky", lambda: LeakyBucket(40, 2.0), 2, "redis")):
            if shared == "redis" and why:
                continue
            set_bucket_dir(Path(quotas.tmp) / f"{kind}{processes}")  # type: ignore[attr-defined]
            prefix = f"syncengine-bench-{time.time_ns()}:bucket:"
            if shared == "redis":
                use_budget(args.redis, prefix=prefix)
            try:
                r = run_sustained(quotas, base, kind, make(), args.seconds, processes, own_dirs=shared == "redis")
            finally:
                use_budget(None)
                if shared == "redis":                    # the children's hashes
                    import redis
                    client = redis.Redis.from_url(args.redis)
                    for key in client.scan_iter(match=prefix + "*"):
                        client.delete(key)
            label = kind if processes == 1 else f"{kind}, {processes} processes" + (
                " through Redis" if shared == "redis" else "")
            print(f"  {label:34s} {r['rate']:5.2f}/s of {r['nominal']:.2f}/s = {r['percent']:5.1f}% of quota; "
                  f"admitted {r['admitted']}, 429/THROTTLED {r['refused']}")
        print("starved (quota drained by another consumer, then one request):")
        for kind in ("leaky", "cost", "window"):
            for paced in (True, False):
                r = run_starved(quotas, base, kind, paced)
                how = "pacing " if paced else "backoff"
                print(f"  {kind:7s} {how} waited {r['waited']:6.2f} s, ideal {r['ideal']:6.2f} s "
                      f"({r['waited'] - r['ideal']:+.2f} s), refused {r['refused']}, {r['outcome']}")
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
