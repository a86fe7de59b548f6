"""Each host's rate budget shared through Redis (`--budget redis://...`): processes that share no
bucket file (as on separate machines) keep a quota server's limit together, a killed process's
units in flight stop counting when its lease ends, and Redis going down mid-run falls back to
this machine's bucket with one warning. Waits are real; quotas are small and windows short."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time

import pytest
import redis_support
from test_pacing_loopback import WINDOW_CASES, hammer, serve

from engine.http import RateLimit, reset_buckets, set_bucket_dir, use_broker_budget, use_budget
from engine.http import ratelimit, redisbucket
from engine.http.ratelimit import bucket_for
from samples.servers.quotas import FixedWindow, LeakyBucket

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _machine(url: str, count: int, pacing, rate_limit, directory: str) -> None:
    """A worker as on a machine of its own: a bucket directory nobody else uses."""
    set_bucket_dir(directory)
    asyncio.run(hammer(url, count, pacing=pacing, rate_limit=rate_limit, concurrency=3))


PROCESS_CASES = [  # id, quota, pacing, rate limit
    ("feedback", lambda: FixedWindow(quota=4, window=0.5, style="milliseconds"), WINDOW_CASES[1][2], None),
    ("rate-limit", lambda: LeakyBucket(capacity=3, leak=20.0), None, RateLimit(20, burst=1)),
]


@needs_fork
@pytest.mark.parametrize("make,pacing,rate_limit", [c[1:] for c in PROCESS_CASES], ids=[c[0] for c in PROCESS_CASES])
def test_three_machines_share_one_budget_through_redis(http_server, redis_budget, tmp_path, make, pacing, rate_limit):
    """Three processes, 3 in flight each and no bucket file in common, draw on one Redis
    budget: the server admits all 24 requests and refuses none (a file bucket per machine
    would triple the rate)."""
    quota = make()
    url = serve(http_server, quota)
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_machine, args=(url, 8, pacing, rate_limit, str(tmp_path / f"m{i}")))
                for i in range(3)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0, 0, 0]
    assert (quota.admitted, quota.refused) == (24, 0)


def _take_and_wait(ready) -> None:
    bucket_for("quota.test:443", None).take(5.0)
    ready.set()
    time.sleep(600)


@needs_fork
def test_a_killed_process_units_in_flight_are_released_when_its_lease_ends(redis_budget, monkeypatch):
    """A live process's 5 units in flight count beyond its lease (its heartbeat renews it); once
    it is killed, they stop counting within a lease or so, instead of starving the others."""
    monkeypatch.setattr(redisbucket, "LEASE", 1.0)
    prefix = redis_support.prefix()
    use_budget(redis_budget, prefix=prefix)
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    child = context.Process(target=_take_and_wait, args=(ready,))
    child.start()
    try:
        assert ready.wait(30)
        bucket = bucket_for("quota.test:443", None)
        assert bucket.in_flight() == 5.0
        time.sleep(2.5)                                  # over two leases: renewed while alive
        assert bucket.in_flight() == 5.0
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
    deadline = time.monotonic() + 30
    while bucket.in_flight() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bucket.in_flight() == 0.0
    redis_support.forget(redis_budget, prefix)


def test_an_idle_host_budget_expires(redis_budget):
    """A host's hash carries a TTL (an hour, longer while a hold lasts), so idle hosts vanish."""
    bucket = bucket_for("quota.test:443", RateLimit(5))
    client = ratelimit._budget.client
    assert 0 < client.pttl(bucket.key) <= redisbucket.IDLE * 1000
    bucket.hold(7200)
    assert client.pttl(bucket.key) > 7200 * 1000


def test_redis_going_down_mid_run_falls_back_to_the_machine_bucket(http_server, caplog):
    """Redis stops after 8 requests: the next 8 still keep the rate limit (none refused), on this
    machine's bucket, and the run says so once, as a warning."""
    if os.environ.get("SYNCENGINE_TEST_REDIS") == "off":
        pytest.skip("SYNCENGINE_TEST_REDIS=off")
    server = redis_support.Throwaway.start()
    if isinstance(server, str):
        pytest.skip(server)
    try:
        use_budget(server.url)
        quota = LeakyBucket(capacity=3, leak=20.0)
        url = serve(http_server, quota)
        asyncio.run(hammer(url, 8, rate_limit=RateLimit(20, burst=1)))
        server.stop()
        with caplog.at_level(logging.WARNING, "syncengine.http"):
            asyncio.run(hammer(url, 8, rate_limit=RateLimit(20, burst=1)))
    finally:
        server.stop()
        use_budget(None)
    assert (quota.admitted, quota.refused) == (16, 0)
    warned = [r.getMessage() for r in caplog.records if "Redis" in r.getMessage()]
    assert len(warned) == 1 and "pacing on this machine's own bucket" in warned[0], warned


def test_a_worker_shares_budgets_in_its_redis_broker(redis_budget, monkeypatch):
    """`use_broker_budget` keeps budgets in a Redis broker, on files for any other broker, and
    `$SYNCENGINE_BUDGET` overrides either (`file`: this machine's files)."""
    monkeypatch.delenv("SYNCENGINE_BUDGET", raising=False)
    try:
        assert use_broker_budget(redis_budget) and ratelimit._budget is not None
        assert not use_broker_budget("amqp://guest@127.0.0.1//") and ratelimit._budget is None
        monkeypatch.setenv("SYNCENGINE_BUDGET", "file")
        assert not use_broker_budget(redis_budget) and ratelimit._budget is None
    finally:
        reset_buckets()
