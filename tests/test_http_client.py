"""HttpClient.send with MockTransport: request forms, retries, host guard, redaction, limits."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time

import httpx
import jmespath
import pytest

from engine.errors import ForeignHostError, HTTPError, StatusError, TransportError
from engine.http import NOTHING, HttpClient, RateLimit, Redactor, Request, RetryPolicy
from engine.http import build_paginator, build_retry, models, recorded_waits

pytestmark = pytest.mark.usefixtures("http_testing")

BASE = "https://shop.test/api"


def jp(expression: str):
    return jmespath.compile(expression).search


def sequence(*responses):
    """A MockTransport app answering with `responses` in turn (an exception is raised);
    `app.requests` holds what it received."""
    queue = list(responses)

    def app(request: httpx.Request) -> httpx.Response:
        app.requests.append(request)
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(reply, Exception):
            raise reply
        return reply
    app.requests = []
    return app


def send(app, request=None, accept=(), **options):
    async def main():
        async with HttpClient(BASE, transport=httpx.MockTransport(app), **options) as client:
            return await client.send(request or Request(url="/orders"), accept=accept)
    return asyncio.run(main())


def pages(app, paginate, request=None, **options):
    async def main():
        async with HttpClient(BASE, transport=httpx.MockTransport(app), **options) as client:
            pager = build_paginator(paginate, jp)
            return [p async for p in client.pages(request or Request(url="/orders"), pager,
                                                  jp("items"))]
    return asyncio.run(main())


def ok(body=None, **headers):
    return httpx.Response(200, json=body if body is not None else {}, headers=headers)


# --- request forms and answers ---------------------------------------------------------------

def test_params_headers_and_json_body():
    """Params go in the query, headers merge with the client's, json is sent as a JSON body."""
    app = sequence(ok({"id": 7}))
    answer = send(app, Request("POST", "/orders", params={"a": 1}, headers={"X-Req": "r"},
                               json={"ref": "A-1"}), headers={"X-Client": "c"})
    sent = app.requests[0]
    assert (sent.method, sent.url.path) == ("POST", "/api/orders")
    assert dict(sent.url.params) == {"a": "1"}
    assert sent.headers["x-req"] == "r" and sent.headers["x-client"] == "c"
    assert json.loads(sent.content) == {"ref": "A-1"}
    assert (answer.status, answer.body, answer.url) == (200, {"id": 7}, BASE + "/orders?a=1")


def test_form_body():
    """form is sent application/x-www-form-urlencoded."""
    app = sequence(ok())
    send(app, Request("POST", "/token", form={"grant_type": "x", "n": 2}))
    sent = app.requests[0]
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.content == b"grant_type=x&n=2"


def test_no_json_body_unless_given():
    """NOTHING means no body at all; a GET carries none."""
    app = sequence(ok())
    send(app, Request(url="/orders"))
    assert app.requests[0].content == b"" and Request().json is NOTHING


def test_answer_headers_are_case_insensitive_and_text_kept():
    """An Answer has case-insensitive headers, the parsed body and the text."""
    answer = send(sequence(httpx.Response(200, text="[1, 2]", headers={"X-Total": "2"})))
    assert answer.headers["x-total"] == answer.headers["X-TOTAL"] == "2"
    assert (answer.body, answer.text) == ([1, 2], "[1, 2]")


@pytest.mark.parametrize("text, body", [
    ('{"name": "Zoë", "total": "9.50", "lines": [{"qty": 2, "price": 1.5}]}',
     {"name": "Zoë", "total": "9.50", "lines": [{"qty": 2, "price": 1.5}]}),
    ("[]", []),
    ("null", None),
    ("  ", None),
    ("<html>busy</html>", None),
    ('{"ratio": NaN}', json.loads('{"ratio": NaN}')),
    ('{"text": "\\ud800"}', {"text": "\ud800"}),
], ids=["object", "empty list", "null", "blank", "not JSON", "NaN", "lone surrogate"])
def test_answer_body_is_parsed_as_std_json_parses_it(text, body):
    """The body is what json.loads makes of the text (orjson first, std json for what orjson
    refuses), or None when the text is not JSON."""
    answer = send(sequence(httpx.Response(200, text=text)))
    assert repr(answer.body) == repr(body) and answer.text == text



@pytest.mark.parametrize("content, content_type, body, text", [
    (b'{"name": "Zo\xeb"}', "application/json", {"name": "Zo\ufffd"}, '{"name": "Zo\ufffd"}'),
    (b'\xef\xbb\xbf{"a": 1}', "application/json", None, '\ufeff{"a": 1}'),
    (b'{"name": "Zo\xeb"}', "application/json; charset=latin-1", {"name": "Zoë"}, '{"name": "Zoë"}'),
], ids=["bad UTF-8", "BOM", "latin-1"])
def test_answer_body_is_parsed_from_the_decoded_text(content, content_type, body, text):
    """Bytes orjson refuses or that are not UTF-8 are decoded (bad bytes replaced), then parsed."""
    answer = send(sequence(httpx.Response(200, content=content, headers={"Content-Type": content_type})))
    assert (answer.body, answer.text) == (body, text)


def _nested(levels: int, inner: str = "1") -> str:
    return "[" * levels + inner + "]" * levels


@pytest.mark.parametrize("text, charset", [
    (_nested(models.MAX_DEPTH - 1), "utf-8"),
    (_nested(models.MAX_DEPTH - 1), "latin-1"),
    (_nested(400, "NaN"), "utf-8"),            # orjson refuses NaN: std json reads it
], ids=["orjson", "decoded text", "std json"])
def test_json_nested_up_to_the_limit_is_read(text, charset):
    """Up to MAX_DEPTH levels (orjson's own limit) an answer is read, by orjson or by std json."""
    headers = {"Content-Type": f"application/json; charset={charset}"}
    answer = send(sequence(httpx.Response(200, content=text.encode(charset), headers=headers)))
    depth, value = 0, answer.body
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert depth == text.count("[") and (value == 1 or value != value)     # 1, or NaN


@pytest.mark.parametrize("text, charset", [
    (_nested(models.MAX_DEPTH + 1), "utf-8"),
    (_nested(100_000), "utf-8"),
    (_nested(100_000), "latin-1"),
    (_nested(100_000, "NaN"), "utf-8"),
    (_nested(1_000_000), "utf-8"),             # crashed orjson before 3.9.15
], ids=["one past", "100k", "100k decoded", "100k NaN", "a million"])
def test_json_nested_deeper_than_the_limit_is_an_error(text, charset):
    """Deeper than MAX_DEPTH, the request fails with a clear error, without crashing the process
    or a RecursionError escaping, whichever parser met it."""
    headers = {"Content-Type": f"application/json; charset={charset}"}
    with pytest.raises(HTTPError, match="nests too deeply"):
        send(sequence(httpx.Response(200, content=text.encode(charset), headers=headers)))


@pytest.mark.parametrize("content_type", [
    None, "application/json", "application/json; charset=UTF-8", 'text/plain; charset="ISO-8859-1"',
    "application/json;charset=klingon", "application/json; charset=", "application/json; Charset=Latin-1"])
def test_answer_charset_is_read_as_httpx_reads_it(content_type):
    """The charset of a Content-Type, worked out once per value, is what httpx says."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = httpx.Response(200, headers=headers)
    assert models._charset(response.headers.get("content-type")) == response.charset_encoding
    assert models._charset(response.headers.get("content-type")) == response.charset_encoding  # cached


def test_request_helpers_make_new_requests():
    """with_params, with_variable and replace return changed copies, leaving the original."""
    base = Request("POST", "/graphql", params={"a": 1}, json={"query": "q", "variables": {"n": 1}})
    assert base.with_params({"b": 2}).params == {"a": 1, "b": 2}
    assert base.with_variable("after", "c").json == {"query": "q",
                                                    "variables": {"n": 1, "after": "c"}}
    assert base.replace(url="/x").url == "/x" and base.url == "/graphql"
    assert base.json == {"query": "q", "variables": {"n": 1}}


# --- statuses and retries --------------------------------------------------------------------

def test_accepted_status_is_an_answer():
    """A status listed in accept (409 already exists) is returned, not raised or retried."""
    app = sequence(httpx.Response(409, json={"existingId": 5}))
    answer = send(app, accept={409}, retry=RetryPolicy(on_status={409}))
    assert (answer.status, answer.body, len(app.requests)) == (409, {"existingId": 5}, 1)


def test_client_error_is_a_status_error_at_once():
    """A 404 not accepted raises StatusError with method, URL, status and a body excerpt."""
    app = sequence(httpx.Response(404, text="no such order " + "x" * 500))
    with pytest.raises(StatusError) as raised:
        send(app, Request(url="/orders/9", params={"page": 1}))
    error = raised.value
    assert error.status == 404 and len(app.requests) == 1
    assert "GET https://shop.test/api/orders/9?page=1 answered 404 after 1 attempt" in str(error)
    assert error.body.startswith("no such order") and len(error.body) == 200


def test_server_errors_retry_with_backoff_then_succeed():
    """A burst of 503 and 502 is retried with exponential backoff, then the 200 is returned."""
    app = sequence(httpx.Response(503), httpx.Response(502), ok({"fine": True}))
    answer = send(app, retry=build_retry({"attempts": 3, "backoff": {"jitter": 0}}))
    assert answer.body == {"fine": True} and len(app.requests) == 3
    assert recorded_waits() == [("backoff", 0.5), ("backoff", 1.0)]


def test_exhausted_retries_raise_status_error():
    """When every attempt fails the last status is raised, saying how many attempts ran."""
    app = sequence(httpx.Response(503, text="busy"))
    with pytest.raises(StatusError, match=r"answered 503 after 4 attempt\(s\): 'busy'"):
        send(app, retry=build_retry({"attempts": 4}))
    assert len(app.requests) == 4


def test_retry_after_seconds_wins_over_backoff():
    """A 429 waits the Retry-After seconds, then succeeds."""
    app = sequence(httpx.Response(429, headers={"Retry-After": "7"}), ok())
    assert send(app).status == 200
    assert recorded_waits() == [("retry_after", 7.0)]


def test_retry_after_http_date():
    """A Retry-After HTTP date waits until that moment."""
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    app = sequence(httpx.Response(503, headers={"Retry-After": date}), ok())
    assert send(app).status == 200
    [(reason, seconds)] = recorded_waits()
    assert reason == "retry_after" and 27 <= seconds <= 30


def test_retry_after_beyond_the_cap_fails_at_once():
    """A Retry-After longer than max_retry_after is not waited for: StatusError names it."""
    app = sequence(httpx.Response(429, headers={"Retry-After": "86400"}))
    with pytest.raises(StatusError, match=r"429 after 1 attempt\(s\) \(Retry-After: 86400\)"):
        send(app)


def test_body_predicate_retries_a_throttled_200():
    """A 200 whose body matches `when` (GraphQL THROTTLED) is retried; exhausted, it is an error."""
    throttled = {"errors": [{"extensions": {"code": "THROTTLED"}}]}
    policy = build_retry({"when": "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"}, jp)
    app = sequence(ok(throttled), ok({"data": 1}))
    assert send(app, retry=policy).body == {"data": 1} and len(app.requests) == 2
    with pytest.raises(StatusError, match="answered 200 after 3 attempt") as raised:
        send(sequence(ok(throttled)), retry=policy)
    assert raised.value.status == 200


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                   httpx.RemoteProtocolError("reset")])
def test_transport_errors_are_retried(error):
    """Connect errors, timeouts and resets are retried, then the answer comes back."""
    app = sequence(error, error, ok())
    assert send(app).status == 200 and len(app.requests) == 3


def test_transport_errors_exhausted():
    """A transport error on every attempt raises TransportError naming request and cause."""
    with pytest.raises(TransportError, match=r"GET https://shop.test/api/orders failed after "
                                             r"3 attempt\(s\): ConnectError: refused"):
        send(sequence(httpx.ConnectError("refused")))


def test_transport_errors_not_retried_when_off():
    """With on_transport_error false, the first transport error is final."""
    app = sequence(httpx.ConnectError("refused"), ok())
    with pytest.raises(TransportError, match=r"after 1 attempt"):
        send(app, retry=RetryPolicy(on_transport_error=False))


# --- host guard ------------------------------------------------------------------------------

def test_request_to_foreign_host_is_refused():
    """An absolute URL on another host raises ForeignHostError and nothing is sent."""
    app = sequence(ok())
    with pytest.raises(ForeignHostError, match="refused request to https://evil.test/x"):
        send(app, Request(url="https://evil.test/x"))
    assert app.requests == []


def test_same_host_redirect_is_followed():
    """A 302 to the same host is followed, keeping the credentials."""
    app = sequence(httpx.Response(302, headers={"Location": "/api/v2/orders"}), ok({"v": 2}))
    answer = send(app, auth=httpx.BasicAuth("u", "p"))
    assert answer.body == {"v": 2} and app.requests[1].url.path == "/api/v2/orders"
    assert "authorization" in app.requests[1].headers


def test_see_other_after_post_becomes_get():
    """A 303 after a POST is fetched with a bodiless GET."""
    app = sequence(httpx.Response(303, headers={"Location": "/api/orders/5"}), ok())
    send(app, Request("POST", "/orders", json={"a": 1}))
    assert (app.requests[1].method, app.requests[1].content) == ("GET", b"")


@pytest.mark.parametrize("location", ["https://evil.test/steal", "http://shop.test/api/orders",
                                      "//evil.test/x"])
def test_redirect_to_foreign_host_or_plain_http_is_refused(location):
    """A redirect to another host, or from https down to http, raises ForeignHostError."""
    app = sequence(httpx.Response(301, headers={"Location": location}), ok())
    with pytest.raises(ForeignHostError, match="refused redirect"):
        send(app, auth=httpx.BasicAuth("u", "p"))
    assert len(app.requests) == 1


@pytest.mark.parametrize("paginate,response", [
    ({"type": "link_header"},
     ok({"items": [1]}, Link='<https://evil.test/api/orders?page=2>; rel="next"')),
    ({"type": "next_url", "path": "next"},
     ok({"items": [1], "next": "https://evil.test/api/orders?page=2"})),
])
def test_paging_link_to_foreign_host_is_refused(paginate, response):
    """A Link header or next URL pointing to another host raises ForeignHostError."""
    app = sequence(response)
    with pytest.raises(ForeignHostError, match="refused paging link to https://evil.test"):
        pages(app, paginate)
    assert [r.url.host for r in app.requests] == ["shop.test"]


# --- redaction -------------------------------------------------------------------------------

def test_secrets_are_masked_in_status_errors():
    """A secret echoed in an error body, or in the URL, never reaches the exception text."""
    app = sequence(httpx.Response(401, text="bad key sk_live_123"))
    with pytest.raises(StatusError) as raised:
        send(app, Request(url="/orders", params={"api_key": "k-9", "page": 1}),
             secrets=["sk_live_123"])
    text = str(raised.value) + raised.value.body
    assert "sk_live_123" not in text and "k-9" not in text
    assert "api_key=***&page=1" in text and "bad key ***" in text


def test_auth_secrets_are_masked_without_being_listed():
    """The auth object's own secrets (a query api key) are masked in errors too."""
    from engine.http import build_auth
    auth = build_auth({"type": "api_key", "in": "query", "name": "consumer", "value": "ck_abc"})
    with pytest.raises(TransportError) as raised:
        send(sequence(httpx.ConnectError("refused for ck_abc")), auth=auth)
    assert "ck_abc" not in str(raised.value) and "***" in str(raised.value)


def test_secrets_are_masked_in_logs(caplog):
    """Retry log lines show the sanitized URL with secrets masked."""
    caplog.set_level(logging.INFO, logger="syncengine.http")
    app = sequence(httpx.Response(503), ok())
    send(app, Request(url="/orders", params={"token": "t-1", "q": "s3cr3t"}), secrets=["s3cr3t"])
    assert "retrying GET https://shop.test/api/orders?token=***&q=***" in caplog.text
    assert "t-1" not in caplog.text and "s3cr3t" not in caplog.text


@pytest.mark.parametrize("url,expected", [
    ("https://user:pw@shop.test/a?api_key=abc&page=2", "https://shop.test/a?api_key=***&page=2"),
    ("https://shop.test/a?Signature=xyz&x=1", "https://shop.test/a?Signature=***&x=1"),
    ("https://shop.test/a?q=my%2Fsecret", "https://shop.test/a?q=***"),
    ("https://shop.test/plain", "https://shop.test/plain"),
])
def test_redactor_sanitizes_urls(url, expected):
    """URLs lose userinfo, secret-named query values and known secrets, even URL-encoded."""
    assert Redactor(["my/secret"]).url(url) == expected


# --- rate limit and concurrency --------------------------------------------------------------

def test_rate_limit_spaces_requests():
    """With per_second 2 and burst 1 the second and third request each wait their 0.5 s turn."""
    async def main():
        limit = RateLimit(per_second=2, burst=1)
        async with HttpClient(BASE, transport=httpx.MockTransport(sequence(ok())),
                              rate_limit=limit) as client:
            for _ in range(3):
                await client.send(Request(url="/x"))
    asyncio.run(main())
    waits = recorded_waits()
    assert [r for r, _ in waits] == ["rate_limit", "rate_limit"]
    assert [round(s, 1) for _, s in waits] == [0.5, 0.5]


def test_rate_limit_is_shared_by_clients_of_one_host():
    """Two clients of the same host draw from one bucket."""
    async def main():
        for _ in range(2):
            async with HttpClient(BASE, transport=httpx.MockTransport(sequence(ok())),
                                  rate_limit=RateLimit(per_second=1, burst=1)) as client:
                await client.send(Request(url="/x"))
    asyncio.run(main())
    assert [r for r, _ in recorded_waits()] == ["rate_limit"]


def test_concurrency_caps_requests_in_flight():
    """No more than `concurrency` requests are in flight at once."""
    state = {"now": 0, "max": 0}

    async def app(request: httpx.Request) -> httpx.Response:
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return ok()

    async def main():
        async with HttpClient(BASE, transport=httpx.MockTransport(app), concurrency=2) as client:
            await asyncio.gather(*(client.send(Request(url="/x")) for _ in range(6)))
    asyncio.run(main())
    assert state["max"] == 2


# --- page contents ---------------------------------------------------------------------------

def test_page_that_is_not_json_is_an_error():
    """A 200 page with a non-JSON body raises instead of passing as an empty page."""
    with pytest.raises(HTTPError, match="is not JSON: '<html>oops"):
        pages(sequence(httpx.Response(200, text="<html>oops</html>")), None)


def test_records_expression_must_select_a_list():
    """A records expression that selects an object is an error, not a silent empty page."""
    with pytest.raises(HTTPError, match="selected a dict, not a list"):
        pages(sequence(ok({"items": {"id": 1}})), None)
