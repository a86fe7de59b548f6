"""Backoff, Retry-After parsing, retry decisions, the token bucket and the testing switch."""

from __future__ import annotations

import asyncio
import email.utils

import httpx
import jmespath
import pytest

from engine.http import Answer, Backoff, RateLimit, RetryPolicy, backoff, build_rate_limit
from engine.http import build_retry, recorded_waits, retry_after, set_testing
from engine.http.ratelimit import bucket_for, reset_buckets
from engine.http.sharedbucket import SharedBucket
from engine.http.waits import sleep

pytestmark = pytest.mark.usefixtures("http_testing")


def compile_path(expression: str):
    return jmespath.compile(expression).search


def answer(status: int = 200, body: object = None, **headers: str) -> Answer:
    return Answer(status, httpx.Headers(headers), body, "", "http://shop.test/")


BACKOFF_CASES = [  # attempt, initial, factor, maximum, jitter, rand, expected
    (1, 0.5, 2.0, 30.0, 0.0, 0.0, 0.5),
    (2, 0.5, 2.0, 30.0, 0.0, 0.0, 1.0),
    (4, 0.5, 2.0, 30.0, 0.0, 0.0, 4.0),
    (3, 1.0, 3.0, 30.0, 0.0, 0.0, 9.0),
    (1, 0.5, 2.0, 30.0, 0.5, 0.5, 0.75),
    (20, 0.5, 2.0, 30.0, 0.5, 0.9, 30.0),
    (6, 1.0, 2.0, 33.0, 2.0, 0.99, 33.0),
]


@pytest.mark.parametrize("attempt,initial,factor,maximum,jitter,rand,expected", BACKOFF_CASES)
def test_backoff_formula(attempt, initial, factor, maximum, jitter, rand, expected):
    """The wait is min(maximum, initial * factor**(attempt-1) + jitter * rand())."""
    got = backoff(attempt, initial=initial, factor=factor, maximum=maximum, jitter=jitter,
                  rand=lambda: rand)
    assert got == pytest.approx(expected)


def test_backoff_jitter_stays_in_range():
    """Real jitter adds between 0 and `jitter` seconds to the exponential base."""
    waits = [Backoff(initial=1, factor=2, max=100, jitter=0.5)(3) for _ in range(200)]
    assert all(4.0 <= w < 4.5 for w in waits) and len(set(waits)) > 1


RETRY_AFTER_CASES = [("7", 7.0), ("0.5", 0.5), ("-3", 0.0), ("", None), (None, None),
                     ("soon", None)]


@pytest.mark.parametrize("value,expected", RETRY_AFTER_CASES)
def test_retry_after_seconds(value, expected):
    """Retry-After in delta-seconds is read as seconds; absent or garbage is None."""
    assert retry_after(value) == expected


def test_retry_after_http_date():
    """Retry-After as an HTTP date is the seconds from now until that date."""
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after(date, now=lambda: 1_000_000.0) == pytest.approx(30.0)
    assert retry_after(date, now=lambda: 2_000_000.0) == 0.0


VERDICT_CASES = [  # answer, expected verdict
    (answer(200, {"ok": 1}), False),
    (answer(503), True),
    (answer(404), False),
    (answer(429, **{"Retry-After": "3"}), 3.0),
    (answer(429, **{"Retry-After": "9999"}), False),
    (answer(200, {"errors": [{"extensions": {"code": "THROTTLED"}}]}), True),
    (answer(200, {"errors": [{"extensions": {"code": "THROTTLED"}}]}, **{"Retry-After": "2"}), 2.0),
    (answer(200, {"errors": []}), False),
    (answer(200, "a string body"), False),
]


@pytest.mark.parametrize("given,expected", VERDICT_CASES)
def test_policy_verdict_on_answers(given, expected):
    """Listed statuses and the body predicate retry; Retry-After sets the wait unless too long."""
    policy = build_retry({"on_status": [429, 503],
                          "when": "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"},
                         compile_path)
    assert policy.on_answer(given) == expected


def test_policy_retries_transport_errors_only_when_configured():
    """Connect errors and timeouts retry unless on_transport_error is false."""
    error = httpx.ConnectTimeout("slow")
    assert RetryPolicy().on_error(error)
    assert not RetryPolicy(on_transport_error=False).on_error(error)
    assert not RetryPolicy().on_error(ValueError("not a transport error"))


def test_build_retry_reads_the_spec():
    """Every spec key reaches the policy; backoff settings become a Backoff."""
    policy = build_retry({"attempts": 6, "on_status": [500], "on_transport_error": False,
                          "backoff": {"initial": 1, "max": 8, "factor": 3, "jitter": 0}})
    assert (policy.attempts, set(policy.on_status), policy.on_transport_error) == (6, {500}, False)
    assert policy.backoff == Backoff(initial=1, max=8, factor=3, jitter=0)
    assert policy.wait(True, 2) == 3.0 and policy.wait(1.5, 2) == 1.5


def test_build_retry_rejects_unknown_keys():
    """An unknown retry key is a ValueError naming the valid ones."""
    with pytest.raises(ValueError, match="unknown key.*'tries'.*valid.*attempts"):
        build_retry({"tries": 3})


def test_token_bucket_lets_the_burst_through_then_spaces_requests(tmp_path):
    """A bucket lets `burst` through at once, then each request waits 1/rate for its token."""
    now = [100.0]
    bucket = SharedBucket(tmp_path / "b.bucket", rate=2.0, burst=2.0, clock=lambda: now[0])
    assert [bucket.take(0)[0] for _ in range(3)] == [0.0, 0.0, 0.5]
    now[0] += 0.5
    assert [bucket.take(0)[0], bucket.take(0)[0]] == [0.0, 0.5]
    now[0] += 10
    assert bucket.take(0)[0] == 0.0


def test_buckets_are_shared_per_host_and_strictest_wins():
    """Clients of the same host share one bucket, which keeps the strictest limit."""
    reset_buckets()
    first = bucket_for("shop.test:443", RateLimit(10, burst=20))
    second = bucket_for("shop.test:443", RateLimit(2))
    assert first is second and (first.rate, first.burst) == (2, 2)
    assert bucket_for("other.test:443", RateLimit(10)) is not first


def test_build_rate_limit():
    """The rate_limit dict becomes a RateLimit; none gives None; bad keys and rates are refused."""
    assert build_rate_limit(None) is None
    assert build_rate_limit({"per_second": 5, "burst": 10}) == RateLimit(5.0, 10)
    with pytest.raises(ValueError, match="unknown key"):
        build_rate_limit({"per_minute": 5})
    with pytest.raises(ValueError, match="> 0"):
        build_rate_limit({"per_second": 0})


def test_testing_switch_records_waits_without_sleeping():
    """With set_testing on, a long sleep returns at once and is recorded with its reason."""
    async def main() -> None:
        await asyncio.wait_for(sleep(3600, "backoff"), timeout=1)
    asyncio.run(main())
    assert recorded_waits() == [("backoff", 3600)]
    set_testing(True)
    assert recorded_waits() == []


REPLAY_CASES = [  # what the server does on the first try, is it retried for a write that must not repeat?
    ("read timeout", httpx.ReadTimeout("slow"), False),
    ("500", 500, False),
    ("502", 502, False),
    ("504", 504, False),
    ("connect error", httpx.ConnectError("refused"), True),
    ("reset while writing", httpx.WriteError("connection reset by peer"), True),
    ("disconnected before an answer", httpx.RemoteProtocolError("Server disconnected"), False),
    ("429", 429, True),
    ("503", 503, True),
]


def test_unsafe_write_is_retried_after_a_throttled_200():
    """A 200 that `retry.when` calls throttled (the server did not run the mutation) is retried
    even for a write that must not happen twice; a 200 that is not throttled is kept."""
    from engine.http import HttpClient, Request

    calls = []

    def app(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(200, json={"errors": [{"extensions": {"code": "THROTTLED"}}]})
        return httpx.Response(200, json={"data": {"orderCancel": {"job": {"id": "J1"}}}})

    async def main():
        policy = build_retry({"attempts": 3, "when": "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"},
                             compile_path)
        async with HttpClient("http://shop.test", retry=policy, transport=httpx.MockTransport(app)) as client:
            return await client.send(Request("POST", "/graphql.json", json={}), replay_safe=False)

    answer = asyncio.run(main())
    assert len(calls) == 2 and answer.body["data"]["orderCancel"]["job"]["id"] == "J1"


@pytest.mark.parametrize("name,first,retried", REPLAY_CASES, ids=[c[0] for c in REPLAY_CASES])
def test_unsafe_write_retries_only_failures_the_server_did_not_act_on(name, first, retried):
    """A replay-unsafe POST is retried after a refused connection, a reset while the request was
    being written, 429 or 503; never after a timeout, a disconnect after it was sent, or 500/502/504."""
    from engine.errors import HTTPError
    from engine.http import HttpClient, Request

    calls = []

    def app(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            if isinstance(first, Exception):
                raise first
            return httpx.Response(first)
        return httpx.Response(201, json={"id": 1})

    async def main():
        policy = build_retry({"attempts": 3, "on_status": [429, 500, 502, 503, 504], "on_transport_error": True})
        async with HttpClient("http://wms.test", retry=policy, transport=httpx.MockTransport(app)) as client:
            try:
                return (await client.send(Request("POST", "/orders", json={}), replay_safe=False)).status
            except HTTPError:
                return None

    status = asyncio.run(main())
    assert (status == 201, len(calls)) == ((True, 2) if retried else (False, 1))
