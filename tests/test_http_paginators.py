"""Every paginator and stop condition, against a MockTransport API that pages every way."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re

import httpx
import jmespath
import pytest

from engine.errors import PagingError
from engine.http import PAGINATORS, STOP_CONDITIONS, HttpClient, Request, build_paginator
from engine.http import parse_link_header

pytestmark = pytest.mark.usefixtures("http_testing")

RECORDS = [{"id": i} for i in range(1, 26)]
ALL_IDS = list(range(1, 26))


def jp(expression: str):
    return jmespath.compile(expression).search


def api(request: httpx.Request) -> httpx.Response:
    """25 records, 10 a page unless asked; paged by page, offset or cursor, described every way."""
    query = request.url.params
    size = int(query.get("per_page") or query.get("limit") or 10)
    start = ((int(query["page"]) - 1) * size if "page" in query
             else int(query.get("offset") or query.get("cursor") or 0))
    items = RECORDS[start:start + size]
    end = start + len(items)
    more = end < len(RECORDS)
    pages = math.ceil(len(RECORDS) / size)
    headers = {"X-Total": str(len(RECORDS)), "X-Total-Pages": str(pages)}
    if more:
        headers["X-Next-Cursor"] = str(end)
        headers["Link"] = (f'<https://shop.test/api/orders?cursor={end}>; rel="next", '
                           f'<https://shop.test/api/orders?cursor=20>; rel="last"')
    body = {"items": items, "total": len(RECORDS), "pages": pages, "has_more": more,
            "last": not more, "next_cursor": str(end) if more else None,
            "next": f"/api/orders?cursor={end}" if more else None}
    return httpx.Response(200, json=body, headers=headers)


def api_204(request: httpx.Request) -> httpx.Response:
    """Like `api`, but past the end it answers 204 No Content."""
    response = api(request)
    return response if response.json()["items"] else httpx.Response(204)


def collect(paginate, app=api, records="items", request=None, **client_options):
    """All pages of GET /orders (or `request`) paged by the `paginate` spec."""
    async def main():
        async with HttpClient("https://shop.test/api", transport=httpx.MockTransport(app),
                              **client_options) as client:
            pager = build_paginator(paginate, jp)
            return [p async for p in client.pages(request or Request(url="/orders"), pager,
                                                  jp(records))]
    return asyncio.run(main())


def ids(pages) -> list[int]:
    return [r["id"] for p in pages for r in p.records]


PAGINATOR_CASES = [  # paginate spec, expected record counts per page
    ({"type": "page_number", "param": "page", "size_param": "per_page", "size": 10,
      "stop": [{"type": "short_page"}]}, [10, 10, 5]),
    ({"type": "page_number", "stop": [{"type": "total_pages", "header": "X-Total-Pages"}]},
     [10, 10, 5]),
    ({"type": "page_number"}, [10, 10, 5, 0]),
    ({"type": "page_number", "start": 2, "stop": [{"type": "empty_page"}]}, [10, 5, 0]),
    ({"type": "offset", "limit": 10, "stop": [{"type": "total_records", "path": "total"}]},
     [10, 10, 5]),
    ({"type": "offset", "limit": 7}, [7, 7, 7, 4, 0]),
    ({"type": "cursor", "param": "cursor", "source": "body", "path": "next_cursor"}, [10, 10, 5]),
    ({"type": "cursor", "param": "cursor", "source": "header", "header": "X-Next-Cursor"},
     [10, 10, 5]),
    ({"type": "link_header"}, [10, 10, 5]),
    ({"type": "next_url", "path": "next"}, [10, 10, 5]),
    ({"type": "none"}, [10]),
    (None, [10]),
]


@pytest.mark.parametrize("paginate,counts", PAGINATOR_CASES)
def test_paginators_walk_all_records(paginate, counts):
    """Each paginator fetches the pages in order and stops where its stop conditions say."""
    pages = collect(paginate)
    assert [len(p.records) for p in pages] == counts
    assert [p.number for p in pages] == list(range(1, len(counts) + 1))
    first = 11 if paginate and paginate.get("start") == 2 else 1
    assert ids(pages) == list(range(first, first + sum(counts)))


STOP_CASES = [  # stop list, pages fetched, logged reason
    ([{"type": "empty_page"}], 4, "empty page"),
    ([{"type": "short_page"}], 3, "short page (5 < 10 records)"),
    ([{"type": "short_page", "size": 20}], 1, "short page (10 < 20 records)"),
    ([{"type": "total_pages", "header": "X-Total-Pages"}], 3, "page 3 of 3 (X-Total-Pages)"),
    ([{"type": "total_pages", "path": "pages"}], 3, "page 3 of 3 (body)"),
    ([{"type": "total_records", "header": "X-Total"}], 3, "25 of 25 records (X-Total)"),
    ([{"type": "total_records", "path": "total"}], 3, "25 of 25 records (body)"),
    ([{"type": "has_more", "path": "has_more"}], 3, "has_more flag is False"),
    ([{"type": "has_more", "path": "last", "negate": True}], 3, "has_more flag is True (negated)"),
    ([{"type": "max_pages", "pages": 2}], 2, "max_pages 2 reached"),
    ([{"type": "max_pages", "pages": 9}, {"type": "short_page"}], 3, "short page"),
    ([{"type": "total_pages", "path": "missing"}, {"type": "empty_page"}], 4, "empty page"),
]


@pytest.mark.parametrize("stop,fetched,reason", STOP_CASES)
def test_stop_conditions(stop, fetched, reason, caplog):
    """Paging stops at the first stop condition that holds, and logs why at INFO."""
    caplog.set_level(logging.INFO, logger="syncengine.http")
    pages = collect({"type": "page_number", "size_param": "per_page", "size": 10, "stop": stop})
    assert len(pages) == fetched
    assert f"stopped after {fetched} pages" in caplog.text and reason in caplog.text


def test_no_content_is_an_empty_page():
    """A 204 is an empty page that ends paging, not an error and not parsed as JSON."""
    pages = collect({"type": "page_number", "stop": [{"type": "no_content"}]}, app=api_204)
    assert [(p.answer.status, len(p.records)) for p in pages] == [(200, 10), (200, 10),
                                                                   (200, 5), (204, 0)]
    assert pages[-1].answer.body is None


def test_graphql_cursor_sets_the_variable():
    """graphql_cursor puts endCursor into variables[after] of the JSON body, keeping the rest."""
    sent = []

    def graphql(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        sent.append(payload["variables"])
        start = int(payload["variables"].get("after") or 0)
        nodes = RECORDS[start:start + payload["variables"]["first"]]
        end = start + len(nodes)
        info = {"hasNextPage": end < len(RECORDS), "endCursor": str(end)}
        return httpx.Response(200, json={"data": {"orders": {"nodes": nodes, "pageInfo": info}}})

    request = Request("POST", "/graphql", json={"query": "query($after: String) {...}",
                                                 "variables": {"first": 10}})
    pages = collect({"type": "graphql_cursor", "variable": "after",
                     "cursor": "data.orders.pageInfo.endCursor",
                     "has_next": "data.orders.pageInfo.hasNextPage"},
                    app=graphql, records="data.orders.nodes", request=request)
    assert ids(pages) == ALL_IDS
    assert sent == [{"first": 10}, {"first": 10, "after": "10"}, {"first": 10, "after": "20"}]


REPEAT_CASES = [
    ({"type": "cursor", "param": "cursor", "path": "next_cursor"},
     {"items": [{"id": 1}], "next_cursor": "abc"}, "repeated 'abc'"),
    ({"type": "next_url", "path": "next"},
     {"items": [{"id": 1}], "next": "/api/orders?page=2"},
     "repeated 'https://shop.test/api/orders?page=2'"),
    ({"type": "offset", "limit": 10, "stop": [{"type": "total_records", "path": "total"}]},
     {"items": [], "total": 5}, "repeated 0"),
]


@pytest.mark.parametrize("paginate,body,message", REPEAT_CASES)
def test_repeated_reference_is_a_paging_error(paginate, body, message):
    """A cursor, next URL or offset that repeats raises PagingError instead of looping."""
    with pytest.raises(PagingError, match=re.escape(message)):
        collect(paginate, app=lambda r: httpx.Response(200, json=body))


def test_page_number_fetches_ahead_in_order():
    """With concurrency, once the total is known the rest is fetched in parallel, in order."""
    state = {"now": 0, "max": 0}

    async def slow(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        page = int(request.url.params["page"])
        await asyncio.sleep(0.05 if page % 2 else 0.01)   # odd pages answer after even ones
        state["now"] -= 1
        items = [{"id": page}] if page <= 9 else []
        return httpx.Response(200, json={"items": items}, headers={"X-Total-Pages": "9"})

    pages = collect({"type": "page_number", "concurrency": 4,
                     "stop": [{"type": "total_pages", "header": "X-Total-Pages"}]},
                    app=slow, concurrency=4)
    assert ids(pages) == list(range(1, 10)) and [p.number for p in pages] == list(range(1, 10))
    assert state["max"] == 4


def test_parallel_fetch_respects_max_pages():
    """Fetching ahead never asks for more pages than max_pages allows."""
    asked = []

    def app(request: httpx.Request) -> httpx.Response:
        asked.append(int(request.url.params["page"]))
        return httpx.Response(200, json={"items": [{"id": 1}], "pages": 50})

    pages = collect({"type": "page_number", "concurrency": 3,
                     "stop": [{"type": "total_pages", "path": "pages"},
                              {"type": "max_pages", "pages": 5}]}, app=app)
    assert len(pages) == 5 and sorted(asked) == [1, 2, 3, 4, 5]


LINK_CASES = [
    ('<https://a.test/x?page=2>; rel="next", <https://a.test/x?page=9>; rel="last"',
     {"next": "https://a.test/x?page=2", "last": "https://a.test/x?page=9"}),
    ('<https://a.test/x?p=2&q=1>;rel=next', {"next": "https://a.test/x?p=2&q=1"}),
    ('<https://a.test/x?page=9>; rel="next last"; title="end"',
     {"next": "https://a.test/x?page=9", "last": "https://a.test/x?page=9"}),
    ('<https://a.test/x?page=1>; rel="prev"', {"prev": "https://a.test/x?page=1"}),
    ('<https://a.test/x,y>; REL="Next"', {"next": "https://a.test/x,y"}),
    ("", {}),
]


@pytest.mark.parametrize("header,expected", LINK_CASES)
def test_parse_link_header(header, expected):
    """RFC 8288 Link headers give {rel: url}, with quoted, unquoted and multiple rels."""
    assert parse_link_header(header) == expected


@pytest.mark.parametrize("spec,message", [
    ({"type": "scroll"}, r"unknown paginator type 'scroll'; valid: \['cursor', 'graphql_cursor'"),
    ({"type": "page_number", "stop": [{"type": "forever"}]}, r"unknown stop type 'forever'; valid"),
    ({"type": "cursor", "param": "c", "source": "header"}, "source: header with header"),
    ({"type": "cursor", "param": "c", "source": "body", "header": "X"}, "source: body with path"),
    ({"type": "page_number", "pagesize": 5}, "paginator type 'page_number'.*pagesize"),
    ({"type": "cursor", "param": "c", "path": "n", "stop": [{"type": "short_page"}]},
     "short_page on paginator 'cursor' needs a size"),
    ({"type": "none", "stop": [{"type": "total_pages"}]}, "exactly one of header or path"),
])
def test_bad_paginator_specs(spec, message):
    """Unknown types and missing or stray keys are ValueErrors that say what is valid."""
    with pytest.raises(ValueError, match=message):
        build_paginator(spec, jp)


def test_registries_name_every_documented_type():
    """PAGINATORS and STOP_CONDITIONS hold exactly the types the spec language documents."""
    assert set(PAGINATORS) == {"none", "page_number", "offset", "cursor", "link_header",
                               "next_url", "graphql_cursor"}
    assert set(STOP_CONDITIONS) == {"empty_page", "short_page", "total_pages", "total_records",
                                    "has_more", "no_content", "max_pages"}


def test_one_paginator_serves_many_runs():
    """A built paginator keeps no state between runs: paging twice gives the same pages."""
    pager = build_paginator({"type": "cursor", "param": "cursor", "path": "next_cursor"}, jp)

    async def main():
        async with HttpClient("https://shop.test/api", transport=httpx.MockTransport(api)) as c:
            runs = [[p async for p in c.pages(Request(url="/o"), pager, jp("items"))]
                    for _ in range(2)]
        return runs
    first, second = asyncio.run(main())
    assert ids(first) == ids(second) == ALL_IDS
