"""Rate-limit feedback (`http.pacing`): reading each form, the waits it asks for, and a throttle
budget that does not use retry attempts. Waits are recorded, not slept (`set_testing`)."""

from __future__ import annotations

import asyncio

import httpx
import jmespath
import pytest

from engine.errors import HTTPError
from engine.http import Answer, HttpClient, Reading, Request, build_pacing, build_retry
from engine.http import recorded_waits
from engine.http.pacing import CostBucket, RateLimitFields, RemainingReset, UsedLimit

# every test runs with the buckets in files, then in Redis (`bucket_kind`)
pytestmark = pytest.mark.usefixtures("bucket_kind", "http_testing")

BASE = "https://shop.test/api"
THROTTLED = "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"
COST = {"type": "cost_bucket", "available": "extensions.cost.throttleStatus.currentlyAvailable",
        "restore_rate": "extensions.cost.throttleStatus.restoreRate",
        "maximum": "extensions.cost.throttleStatus.maximumAvailable",
        "cost": "extensions.cost.requestedQueryCost", "actual": "extensions.cost.actualQueryCost"}


def compile_path(expression: str):
    return jmespath.compile(expression).search


def answer(status: int = 200, body: object = None, **headers: str) -> Answer:
    return Answer(status, httpx.Headers(headers), body, "", "http://shop.test/")


def cost_body(available: float, requested: float = 10, throttled: bool = False) -> dict:
    body: dict = {"data": {"ok": True}} if not throttled else {
        "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}]}
    body["extensions"] = {"cost": {"requestedQueryCost": requested, "actualQueryCost": None,
                                   "throttleStatus": {"maximumAvailable": 1000.0,
                                                      "currentlyAvailable": available,
                                                      "restoreRate": 50.0}}}
    return body


READ_CASES = [  # id, feedback form, answer, expected reading
    ("used-limit", UsedLimit("X-Call-Limit", 2), answer(**{"X-Call-Limit": "32/40"}),
     Reading(available=8, capacity=40, rate=2)),
    ("used-limit-malformed", UsedLimit("X-Call-Limit", 2), answer(**{"X-Call-Limit": "32 of 40"}),
     Reading()),
    ("used-limit-absent", UsedLimit("X-Call-Limit", 2), answer(), Reading()),
    ("remaining-seconds", RemainingReset("X-Left", "X-Reset", limit="X-Limit"),
     answer(**{"X-Left": "12", "X-Reset": "54", "X-Limit": "40"}),
     Reading(available=12, capacity=40, reset=54)),
    ("remaining-milliseconds", RemainingReset("X-Left", "X-Reset", "milliseconds"),
     answer(**{"X-Left": "35", "X-Reset": "15000"}), Reading(available=35, reset=15)),
    ("remaining-epoch", RemainingReset("X-Left", "X-Reset", "epoch_seconds", now=lambda: 1000.0),
     answer(**{"X-Left": "0", "X-Reset": "1030"}), Reading(available=0, reset=30)),
    ("remaining-absent", RemainingReset("X-Left", "X-Reset"), answer(**{"X-Reset": "3"}), Reading()),
    ("ietf-one", RateLimitFields(), answer(RateLimit='"default";r=50;t=30'),
     Reading(available=50, reset=30)),
    ("ietf-quota-from-policy", RateLimitFields(),
     answer(RateLimit='"default";r=5;t=7', **{"RateLimit-Policy": '"default";q=100;w=60'}),
     Reading(available=5, capacity=100, reset=7)),
    ("ietf-fewest-left", RateLimitFields(),
     answer(RateLimit='"burst";r=40;t=1, "daily";r=3;t=600'), Reading(available=3, reset=600)),
    ("ietf-named-policy", RateLimitFields("burst"),
     answer(RateLimit='"burst";r=40;t=1, "daily";r=3;t=600'), Reading(available=40, reset=1)),
    ("ietf-malformed", RateLimitFields(), answer(RateLimit='default r=5 "'), Reading()),
    ("ietf-no-r", RateLimitFields(), answer(RateLimit='"default";t=5'), Reading()),
    ("cost", build_pacing(COST, compile_path), answer(body=cost_body(988, 252)),
     Reading(available=988, capacity=1000, rate=50, cost=252)),
    ("cost-not-json", build_pacing(COST, compile_path), answer(body="text"), Reading()),
    ("cost-no-rate", CostBucket(compile_path("a"), compile_path("r")), answer(body={"a": 5, "r": 0}),
     Reading()),
]


@pytest.mark.parametrize("form,given,expected", [case[1:] for case in READ_CASES],
                         ids=[case[0] for case in READ_CASES])
def test_each_form_reads_what_the_answer_says(form, given, expected):
    """Each feedback form reads its header or body; absent or malformed values read nothing."""
    assert form.read(given) == expected


BUILD_ERRORS = [
    ({"type": "leaky"}, "pacing.type must be one of"),
    ({"type": "used_limit", "header": "X", "per_second": 2, "burst": 4}, "unknown key.*burst"),
    ({"type": "remaining_reset", "remaining": "A", "reset": "B", "reset_unit": "minutes"}, "reset_unit"),
    ({"type": "used_limit", "header": "X"}, "per_second"),
]


@pytest.mark.parametrize("spec,message", BUILD_ERRORS)
def test_build_pacing_refuses_bad_settings(spec, message):
    """A bad pacing dict is a ValueError that says what is wrong."""
    with pytest.raises(ValueError, match=message):
        build_pacing(spec, compile_path)


def run_client(replies, pacing, requests=1, *, retry=None, query="{ orders }"):
    """Send `requests` GraphQL-shaped POSTs through a client whose transport plays `replies`
    (the last repeats); the requests the transport saw."""
    seen = []

    def app(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, body, headers = replies[min(len(seen), len(replies)) - 1]
        return httpx.Response(status, json=body, headers=headers)

    async def main():
        async with HttpClient(BASE, transport=httpx.MockTransport(app),
                              pacing=build_pacing(pacing, compile_path),
                              retry=build_retry(retry or {"attempts": 1}, compile_path)) as client:
            for _ in range(requests):
                await client.send(Request("POST", "/graphql.json", json={"query": query}))
    asyncio.run(main())
    return seen


WAIT_CASES = [  # id, pacing, replies (status, body, headers), expected recorded waits
    ("cost-throttled-waits-the-cost-math", COST,
     [(200, cost_body(40, 252, throttled=True), {}), (200, cost_body(800, 252), {})],
     [("rate_limit", (252 - 40) / 50)]),
    ("fixed-window-429-waits-the-reset", {"type": "remaining_reset", "remaining": "X-Left",
                                          "reset": "X-Reset"},
     [(429, {}, {"X-Left": "0", "X-Reset": "54"}), (200, {}, {"X-Left": "39", "X-Reset": "60"})],
     [("rate_limit", 54.0)]),
    ("milliseconds-reset", {"type": "remaining_reset", "remaining": "X-Left", "reset": "X-Reset-Ms",
                            "reset_unit": "milliseconds"},
     [(429, {}, {"X-Left": "0", "X-Reset-Ms": "9200"}), (200, {}, {"X-Left": "9", "X-Reset-Ms": "30000"})],
     [("rate_limit", 9.2)]),
    ("leaky-bucket-429-waits-one-leak", {"type": "used_limit", "header": "X-Call-Limit", "per_second": 2},
     [(429, {}, {"X-Call-Limit": "40/40"}), (200, {}, {"X-Call-Limit": "40/40"})],
     [("rate_limit", 0.5)]),
    ("ietf-429-waits-t", {"type": "ratelimit_fields"},
     [(429, {}, {"RateLimit": '"default";r=0;t=9'}), (200, {}, {"RateLimit": '"default";r=99;t=60'})],
     [("rate_limit", 9.0)]),
    ("a-zero-reset-still-waits-a-little", {"type": "remaining_reset", "remaining": "X-Left",
                                           "reset": "X-Reset"},
     [(429, {}, {"X-Left": "0", "X-Reset": "0"}), (200, {}, {"X-Left": "9", "X-Reset": "60"})],
     [("rate_limit", 0.1)]),
    ("retry-after-wins", {"type": "ratelimit_fields"},
     [(429, {}, {"RateLimit": '"default";r=0;t=9', "Retry-After": "12"}), (200, {}, {})],
     [("retry_after", 12.0)]),
]


@pytest.mark.parametrize("pacing,replies,expected", [case[1:] for case in WAIT_CASES],
                         ids=[case[0] for case in WAIT_CASES])
def test_a_throttled_answer_waits_what_the_api_says_without_using_an_attempt(pacing, replies, expected):
    """A 429 or THROTTLED answer waits exactly the wait its feedback states (no backoff), and
    with `attempts: 1` the retry still happens: a stated throttle uses no attempt."""
    seen = run_client(replies, pacing, retry={"attempts": 1, "on_status": [429], "when": THROTTLED})
    assert len(seen) == 2
    assert recorded_waits() == [(reason, pytest.approx(seconds, abs=0.01)) for reason, seconds in expected]


def test_a_query_waits_before_sending_when_the_bucket_lacks_its_cost():
    """After an answer says 100 points are left and the query costs 252, the next call of that
    query waits (252 - 100) / 50 s before it is sent, and is never throttled."""
    seen = run_client([(200, cost_body(100, 252), {})], COST, requests=2)
    assert len(seen) == 2
    assert recorded_waits() == [("rate_limit", pytest.approx(3.04, abs=0.01))]


def test_a_spent_window_holds_the_next_request_until_its_reset():
    """A 200 that says 0 requests are left for 5 s makes the next request wait 5 s, unthrottled."""
    pacing = {"type": "remaining_reset", "remaining": "X-Left", "reset": "X-Reset"}
    seen = run_client([(200, {}, {"X-Left": "0", "X-Reset": "5"})], pacing, requests=2)
    assert len(seen) == 2 and recorded_waits() == [("rate_limit", pytest.approx(5.0, abs=0.01))]


def test_a_starved_bucket_keeps_waiting_instead_of_giving_up():
    """Twenty THROTTLED answers in a row are each waited out (attempts: 2 is never used up)."""
    replies = [(200, cost_body(0, 500, throttled=True), {})] * 20 + [(200, cost_body(500, 500), {})]
    seen = run_client(replies, COST, retry={"attempts": 2, "when": THROTTLED})
    assert len(seen) == 21
    # each wait is the 10 s the bucket needs less the time since its answer (a loaded machine
    # takes a few ms between the two): never a backoff, never given up
    assert recorded_waits() == [("rate_limit", pytest.approx(10.0, abs=0.2))] * 20


def test_a_wait_beyond_max_throttle_wait_fails_at_once_saying_so():
    """A reset an hour away, with max_throttle_wait 600, fails the request instead of waiting."""
    pacing = {"type": "remaining_reset", "remaining": "X-Left", "reset": "X-Reset"}
    with pytest.raises(HTTPError, match=r"wait 3600.0s more, beyond retry.max_throttle_wait \(600s"):
        run_client([(429, {}, {"X-Left": "0", "X-Reset": "3600"})], pacing,
                   retry={"attempts": 3, "on_status": [429], "max_throttle_wait": 600})
    assert recorded_waits() == []


def test_an_unexplained_throttle_still_backs_off_as_an_attempt():
    """A 429 that states no wait is retried as before: after the backoff, using an attempt."""
    pacing = {"type": "used_limit", "header": "X-Call-Limit", "per_second": 2}
    seen = run_client([(429, {}, {}), (200, {}, {})], pacing,
                      retry={"attempts": 2, "on_status": [429], "backoff": {"initial": 1, "jitter": 0}})
    assert len(seen) == 2 and recorded_waits() == [("backoff", 1.0)]


def test_an_unusable_bucket_directory_keeps_the_bucket_in_the_process(tmp_path, bucket_kind):
    """When the bucket file cannot be made (its directory is a file), the rate limit still
    holds, in this process only, with a warning instead of a traceback."""
    if bucket_kind == "redis":
        pytest.skip("only the file bucket has a directory")
    from engine.http import RateLimit, set_bucket_dir
    (tmp_path / "file").write_text("")
    set_bucket_dir(tmp_path / "file" / "buckets")
    try:
        async def main():
            async with HttpClient(BASE, rate_limit=RateLimit(per_second=2, burst=1),
                                  transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
                for _ in range(2):
                    await client.send(Request(url="/x"))
        asyncio.run(main())
    finally:
        set_bucket_dir(None)
    assert recorded_waits() == [("rate_limit", pytest.approx(0.5, abs=0.01))]


def test_a_cost_bucket_gives_back_what_a_query_was_not_charged():
    """A query that asked 252 points but was charged 38 gives 214 back at once: the next one
    does not wait (the answer says 262 left), where without the refund it would wait 4.08 s."""
    def reply(available, actual):
        body = cost_body(available, 252)
        body["extensions"]["cost"]["actualQueryCost"] = actual
        return 200, body, {}
    seen = run_client([reply(300, 252), reply(262, 38), reply(224, 38)], COST, requests=3)
    assert len(seen) == 3 and recorded_waits() == []
