"""The per-run circuit breaker of `HttpClient` (`http/breaker.py`), with MockTransport: which
failures count, what resets the count, and that an open breaker sends nothing."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from engine.errors import HostDownError, StatusError, TransportError
from engine.http import HttpClient, Request, RetryPolicy
from engine.http.breaker import Breaker, describe

pytestmark = pytest.mark.usefixtures("http_testing")

BASE = "https://wms.test"


def run(replies: list, down_after: int = 3, attempts: int = 1) -> tuple[list, list[str], Breaker]:
    """Send one request per reply (an int status, or an exception the transport raises); what
    each send ended in, the requests the server saw, the breaker."""
    seen: list[str] = []
    queue = list(replies)

    def app(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        reply = queue.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return httpx.Response(reply, json={})

    async def go() -> tuple[list, Breaker]:
        results = []
        async with HttpClient(BASE, transport=httpx.MockTransport(app), down_after=down_after,
                              retry=RetryPolicy(attempts=attempts, on_status={503})) as client:
            for n in range(len(replies)):
                try:
                    results.append((await client.send(Request("POST", f"/{n}"), replay_safe=False)).status)
                except (StatusError, TransportError) as exc:
                    results.append(type(exc).__name__)
            return results, client.breaker

    results, breaker = asyncio.run(go())
    return results, seen, breaker


def refused() -> httpx.ConnectError:
    error = httpx.ConnectError("All connection attempts failed")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    return error


def test_after_the_threshold_nothing_more_is_sent():
    """Three refused requests in a row open the breaker: the next sends reach no server and
    raise HostDownError, which says why."""
    results, seen, breaker = run([refused(), refused(), refused(), 201, 201])
    assert results == ["TransportError"] * 3 + ["HostDownError"] * 2
    assert seen == ["/0", "/1", "/2"]
    assert breaker.reason == "wms.test:443 refused 3 in a row"


def test_an_answer_in_between_starts_the_count_over():
    """A 2xx or a 4xx between failures resets the count: the breaker never opens."""
    results, seen, breaker = run([503, 503, 201, 503, 503, 400, 503, 503], down_after=3)
    assert "HostDownError" not in results and len(seen) == 8 and not breaker.open


@pytest.mark.parametrize(("failure", "kind"), [
    (503, "answered 503"),
    (httpx.ReadTimeout("slow"), "timed out"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), "dropped the connection"),
    (httpx.ConnectError("Name or service not known"), "unreachable"),
])
def test_each_kind_of_failure_counts_and_is_named(failure, kind):
    """5xx, timeouts, dropped connections and unreachable hosts count, each named in the reason."""
    _, _, breaker = run([failure, failure], down_after=2)
    assert breaker.reason == f"wms.test:443 {kind} 2 in a row"


def test_a_request_retrying_against_a_refusing_host_stops_once_the_breaker_opens():
    """A request whose tries were all refused stops before its next try once the breaker is
    open (another request's failure opened it): HostDownError, `unsent`."""
    calls, box = [], {}

    def app(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        box["client"].breaker.failed("refused")      # meanwhile, another request fails for good
        raise refused()

    async def go() -> HostDownError:
        async with HttpClient(BASE, transport=httpx.MockTransport(app), down_after=1,
                              retry=RetryPolicy(attempts=6)) as client:
            box["client"] = client
            with pytest.raises(HostDownError) as caught:
                await client.send(Request("GET", "/a"))
            return caught.value

    error = asyncio.run(go())
    assert calls == ["/a"] and error.unsent


def test_mixed_failures_are_described_with_the_last():
    assert describe("h:1", ["refused", "timed out"]) == "h:1 failed 2 requests in a row (last: timed out)"
