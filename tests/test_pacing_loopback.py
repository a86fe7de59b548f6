"""Pacing against loopback servers that enforce a quota (`samples/servers/quotas.py`) with real
waits: the engine's client, at full concurrency, is never refused; two processes share one
bucket. Small quotas and short windows keep each test to a second or two."""

from __future__ import annotations

import asyncio
import multiprocessing
import os

import jmespath
import pytest
from http_server import Reply

from engine.http import HttpClient, RateLimit, Request, build_pacing, build_retry, reset_buckets
from samples.servers.quotas import CostBucket, FixedWindow, LeakyBucket

COST = {"type": "cost_bucket", "available": "extensions.cost.throttleStatus.currentlyAvailable",
        "restore_rate": "extensions.cost.throttleStatus.restoreRate",
        "maximum": "extensions.cost.throttleStatus.maximumAvailable",
        "cost": "extensions.cost.requestedQueryCost", "actual": "extensions.cost.actualQueryCost"}
RETRY = {"attempts": 3, "on_status": [429], "when": "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"}


@pytest.fixture(autouse=True)
def fresh_buckets():
    """Each test starts with no bucket state (waits are real here)."""
    reset_buckets()
    yield
    reset_buckets()


def serve(server, quota, path="/q", cost=None):
    """Route `path` to `quota.admit` (with `cost` for a cost bucket)."""
    def answer(call):
        status, headers, body = quota.admit(cost) if cost is not None else quota.admit()
        return Reply(status, body, headers)
    server.route(path, answer)
    return server.url(path)


async def hammer(url, count, *, pacing=None, rate_limit=None, concurrency=4):
    """`count` requests to `url`, `concurrency` at a time, through one client."""
    async with HttpClient(url.rsplit("/", 1)[0], concurrency=concurrency, rate_limit=rate_limit,
                          pacing=build_pacing(pacing, lambda e: jmespath.compile(e).search),
                          retry=build_retry(RETRY, lambda e: jmespath.compile(e).search)) as client:
        await asyncio.gather(*(client.send(Request("POST", url, json={"query": "{ q }"}))
                               for _ in range(count)))


WINDOW_CASES = [  # style, window seconds, pacing
    ("seconds", 1.0, {"type": "remaining_reset", "remaining": "X-Rate-Limit-Remaining",
                      "reset": "X-Rate-Limit-Reset", "limit": "X-Rate-Limit-Limit"}),
    ("milliseconds", 0.5, {"type": "remaining_reset", "remaining": "X-Rate-Limit-Requests-Left",
                           "reset": "X-Rate-Limit-Time-Reset-Ms", "reset_unit": "milliseconds",
                           "limit": "X-Rate-Limit-Requests-Quota"}),
    ("ietf", 1.0, {"type": "ratelimit_fields"}),
]


@pytest.mark.parametrize("style,window,pacing", WINDOW_CASES, ids=[c[0] for c in WINDOW_CASES])
def test_a_fixed_window_is_never_exceeded(http_server, style, window, pacing):
    """12 requests, 4 in flight, against 5 a window: every one admitted, none refused."""
    quota = FixedWindow(quota=5, window=window, style=style)
    asyncio.run(hammer(serve(http_server, quota), 12, pacing=pacing))
    assert (quota.admitted, quota.refused) == (12, 0)


def test_a_leaky_bucket_is_never_overfilled(http_server):
    """20 requests, 4 in flight, against a 5-slot bucket leaking 10/s: none refused."""
    quota = LeakyBucket(capacity=5, leak=10.0)
    pacing = {"type": "used_limit", "header": "X-Shopify-Shop-Api-Call-Limit", "per_second": 10}
    asyncio.run(hammer(serve(http_server, quota), 20, pacing=pacing))
    assert (quota.admitted, quota.refused) == (20, 0)


def test_a_cost_bucket_is_never_throttled_after_the_first_answer(http_server):
    """Queries of cost 40 against 100 points restoring 200/s: after the first answer tells the
    cost, nothing more is throttled (only the first 4, sent blind, may be)."""
    quota = CostBucket(maximum=100, restore=200.0)
    url = serve(http_server, quota, cost=40)

    async def main():
        await hammer(url, 1, pacing=COST, concurrency=1)     # learns the query's cost
        await hammer(url, 15, pacing=COST)
    asyncio.run(main())
    assert (quota.admitted, quota.refused) == (16, 0)


def _child(url: str, count: int, pacing, rate_limit) -> None:
    asyncio.run(hammer(url, count, pacing=pacing, rate_limit=rate_limit, concurrency=3))


PROCESS_CASES = [  # id, quota, pacing, rate limit
    ("feedback", lambda: FixedWindow(quota=4, window=0.5, style="milliseconds"), WINDOW_CASES[1][2], None),
    ("rate-limit", lambda: LeakyBucket(capacity=3, leak=20.0), None, RateLimit(20, burst=1)),
]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("make,pacing,rate_limit", [c[1:] for c in PROCESS_CASES], ids=[c[0] for c in PROCESS_CASES])
def test_two_processes_share_one_bucket(http_server, make, pacing, rate_limit):
    """Two forked processes, 3 in flight each, draw on one machine-wide bucket: the server
    never sees more than its quota (one bucket per process would double it)."""
    quota = make()
    url = serve(http_server, quota)
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_child, args=(url, 8, pacing, rate_limit)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0]
    assert (quota.admitted, quota.refused) == (16, 0)
