"""The HTTP layer against real threaded HTTP servers on 127.0.0.1 (127.0.0.2: a foreign host)."""

from __future__ import annotations

import asyncio
import math

import jmespath
import pytest
from http_server import Call, LoopbackServer, Reply

from engine.errors import ForeignHostError, StatusError, TransportError
from engine.http import HttpClient, Request, build_paginator, build_retry, recorded_waits

pytestmark = pytest.mark.usefixtures("http_testing")

TOTAL = 25


def jp(expression: str):
    return jmespath.compile(expression).search


def shop(server: LoopbackServer):
    """A route paging TOTAL orders by page, offset or cursor, describing the next page every way."""
    def route(call: Call) -> Reply:
        query = call.query
        size = int(query.get("per_page") or query.get("limit") or 10)
        start = ((int(query["page"]) - 1) * size if "page" in query
                 else int(query.get("offset") or query.get("cursor") or 0))
        end = min(start + size, TOTAL)
        items = [{"id": i} for i in range(start + 1, end + 1)]
        more = end < TOTAL
        headers = {"X-Total-Pages": str(math.ceil(TOTAL / size)), "X-Total": str(TOTAL)}
        if more:
            headers |= {"X-Next-Cursor": str(end),
                        "Link": f'<{server.url("/orders")}?cursor={end}>; rel="next"'}
        return Reply(body={"items": items, "next_cursor": str(end) if more else None,
                           "next": server.url(f"/orders?cursor={end}") if more else None,
                           "has_more": more}, headers=headers)
    return route


def graphql(call: Call) -> Reply:
    """A Relay-style GraphQL endpoint over the same TOTAL orders."""
    variables = call.json()["variables"]
    start = int(variables.get("after") or 0)
    end = min(start + variables["first"], TOTAL)
    info = {"hasNextPage": end < TOTAL, "endCursor": str(end)}
    return Reply(body={"data": {"orders": {"nodes": [{"id": i} for i in range(start + 1, end + 1)],
                                           "pageInfo": info}}})


def fetch(server, paginate, request=None, records="items", **options):
    """(record ids, page count) of paging `request` on `server`."""
    async def main():
        async with HttpClient(server.url(), **options) as client:
            pager = build_paginator(paginate, jp)
            return [p async for p in client.pages(request or Request(url="/orders"), pager,
                                                  jp(records))]
    pages = asyncio.run(main())
    return [r["id"] for p in pages for r in p.records], len(pages)


def send(server, request=None, **options):
    async def main():
        async with HttpClient(server.url(), **options) as client:
            return await client.send(request or Request(url="/orders"))
    return asyncio.run(main())


GRAPHQL_REQUEST = Request("POST", "/graphql", json={"query": "query($after: String) {...}",
                                                     "variables": {"first": 10}})

PAGING_CASES = [  # paginate, request, records, pages expected
    ({"type": "page_number", "size_param": "per_page", "size": 10,
      "stop": [{"type": "short_page"}]}, None, "items", 3),
    ({"type": "page_number", "stop": [{"type": "total_pages", "header": "X-Total-Pages"}]},
     None, "items", 3),
    ({"type": "offset", "limit": 10, "stop": [{"type": "total_records", "header": "X-Total"}]},
     None, "items", 3),
    ({"type": "cursor", "param": "cursor", "path": "next_cursor"}, None, "items", 3),
    ({"type": "cursor", "param": "cursor", "source": "header", "header": "X-Next-Cursor"},
     None, "items", 3),
    ({"type": "link_header"}, None, "items", 3),
    ({"type": "next_url", "path": "next"}, None, "items", 3),
    ({"type": "page_number", "stop": [{"type": "has_more", "path": "has_more"}]}, None, "items", 3),
    ({"type": "graphql_cursor", "variable": "after", "cursor": "data.orders.pageInfo.endCursor",
      "has_next": "data.orders.pageInfo.hasNextPage"}, GRAPHQL_REQUEST, "data.orders.nodes", 3),
]


@pytest.mark.parametrize("paginate,request_,records,expected_pages", PAGING_CASES)
def test_each_paginator_against_a_real_server(http_server, paginate, request_, records,
                                              expected_pages):
    """Each paginator walks a real server paging its way and gets every record once, in order."""
    http_server.route("/orders", shop(http_server))
    http_server.route("/graphql", graphql)
    ids, count = fetch(http_server, paginate, request_, records)
    assert ids == list(range(1, TOTAL + 1)) and count == expected_pages
    assert len(http_server.calls) == expected_pages


def test_429_waits_retry_after_then_succeeds(http_server):
    """A 429 with Retry-After is waited for as asked, then the request succeeds."""
    http_server.route("/orders", [Reply(429, {"error": "slow down"}, {"Retry-After": "2"}),
                                  Reply(body=[{"id": 1}])])
    assert send(http_server).body == [{"id": 1}]
    assert recorded_waits() == [("retry_after", 2.0)] and len(http_server.calls) == 2


def test_burst_of_server_errors_then_success(http_server):
    """500, 502 and 503 in a row are retried with backoff until the 200."""
    http_server.route("/orders", [Reply(500), Reply(502), Reply(503), Reply(body={"ok": True})])
    answer = send(http_server, retry=build_retry({"attempts": 5, "on_status": [500, 502, 503]}))
    assert answer.body == {"ok": True} and len(http_server.calls) == 4
    assert [reason for reason, _ in recorded_waits()] == ["backoff"] * 3


def test_server_errors_exhausting_retries(http_server):
    """A server that keeps failing ends in StatusError after the configured attempts."""
    http_server.route("/orders", Reply(503, "maintenance"))
    with pytest.raises(StatusError, match=r"answered 503 after 2 attempt\(s\): 'maintenance'"):
        send(http_server, retry=build_retry({"attempts": 2}))


def test_slow_answer_times_out_then_retry_succeeds(http_server):
    """An answer slower than the timeout is abandoned and retried; the fast retry wins."""
    http_server.route("/orders", [Reply(body=[], delay=1.0), Reply(body=[{"id": 1}])])
    assert send(http_server, timeout=0.2).body == [{"id": 1}]
    assert len(http_server.calls) == 2      # the slow first answer was abandoned, not awaited


def test_timeouts_exhausted_raise_transport_error(http_server):
    """Timing out on every attempt raises TransportError naming the request."""
    http_server.route("/orders", Reply(body=[], delay=0.5))
    with pytest.raises(TransportError, match=r"GET http://127.0.0.1:\d+/orders failed after "
                                             r"2 attempt\(s\): ReadTimeout"):
        send(http_server, timeout=0.1, retry=build_retry({"attempts": 2}))


def test_204_is_an_empty_last_page(http_server):
    """A 204 No Content page ends paging as an empty page, not an error."""
    http_server.route("/orders", lambda call: Reply(body={"items": [{"id": 1}]})
                      if call.query["page"] in ("1", "2") else Reply(204))
    ids, count = fetch(http_server, {"type": "page_number", "stop": [{"type": "no_content"}]})
    assert ids == [1, 1] and count == 3


def test_concurrent_page_number_fetch_yields_in_order(http_server):
    """Once the total is known, pages are fetched 4 at a time yet yielded in page order."""
    def route(call: Call) -> Reply:
        page = int(call.query["page"])
        return Reply(body={"items": [{"id": page}]}, headers={"X-Total-Pages": "12"},
                     delay=0.12 if page % 3 == 0 else 0.03)
    http_server.route("/orders", route)
    ids, count = fetch(http_server, {"type": "page_number", "concurrency": 4,
                                     "stop": [{"type": "total_pages", "header": "X-Total-Pages"}]},
                       concurrency=4)
    assert ids == list(range(1, 13)) and count == 12
    assert http_server.max_in_flight >= 3


def test_paging_link_to_another_host_is_refused(http_server, http_foreign_server):
    """A Link header pointing to another host is refused before any request goes there."""
    http_foreign_server.route("/orders", Reply(body={"items": []}))
    http_server.route("/orders", Reply(body={"items": [{"id": 1}]}, headers={
        "Link": f'<{http_foreign_server.url("/orders")}?page=2>; rel="next"'}))
    with pytest.raises(ForeignHostError, match="refused paging link to http://127.0.0.2"):
        fetch(http_server, {"type": "link_header"})
    assert http_foreign_server.calls == [] and len(http_server.calls) == 1


def test_redirect_to_another_host_is_refused(http_server, http_foreign_server):
    """A redirect to another host is refused; the credentials never reach it."""
    http_server.route("/orders", Reply(302, headers={"Location": http_foreign_server.url("/x")}))
    with pytest.raises(ForeignHostError, match="refused redirect"):
        send(http_server, headers={"Authorization": "Bearer t"})
    assert http_foreign_server.calls == []
