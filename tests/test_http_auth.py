"""Every auth kind, driven through HttpClient with httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import jmespath
import pytest

from engine.errors import ForeignHostError, StatusError
from engine.http import (AUTH_TYPES, Backoff, HttpClient, Request, RetryPolicy, build_auth,
                         recorded_waits)
from engine.http.auth import OAuth2ClientCredentials, OAuth2RefreshToken, renewal_delay

pytestmark = pytest.mark.usefixtures("http_testing")

TOKEN_URL = "https://shop.test/oauth/token"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def call(auth, app, *requests: Request, **client_options) -> list[httpx.Response]:
    """Send `requests` (default one GET /orders) through a client using `auth`; the statuses."""
    async def main() -> list[int]:
        async with HttpClient("https://shop.test/api", auth=auth,
                              transport=httpx.MockTransport(app), **client_options) as client:
            return [(await client.send(r)).status for r in requests or [Request(url="/orders")]]
    return asyncio.run(main())


class TokenServer:
    """A MockTransport app: the token endpoint plus an API that wants the current token."""

    def __init__(self, tokens: list[dict], api_statuses: list[int] | None = None) -> None:
        self.tokens, self.api_statuses = list(tokens), list(api_statuses or [])
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []
        self.api_auth: list[str | None] = []    # as sent: httpx reuses the request on a resend

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL:
            self.token_requests.append(request)
            return httpx.Response(200, json=self.tokens.pop(0))
        self.api_requests.append(request)
        self.api_auth.append(request.headers.get("authorization"))
        status = self.api_statuses.pop(0) if self.api_statuses else 200
        return httpx.Response(status, json=[])

    def form(self, index: int) -> dict[str, str]:
        return dict(httpx.QueryParams(self.token_requests[index].content.decode()))


def test_api_key_in_header():
    """api_key with in: header sends the key in that header."""
    seen = []
    call(build_auth({"type": "api_key", "in": "header", "name": "X-Api-Key", "value": "k1"}),
         lambda r: seen.append(r.headers.get("x-api-key")) or httpx.Response(200))
    assert seen == ["k1"]


def test_api_key_in_query_keeps_other_params():
    """api_key with in: query adds the key as a query parameter next to the request's own."""
    seen = []
    call(build_auth({"type": "api_key", "in": "query", "name": "api_key", "value": "k1"}),
         lambda r: seen.append(dict(r.url.params)) or httpx.Response(200),
         Request(url="/orders", params={"page": 2}))
    assert seen == [{"page": "2", "api_key": "k1"}]


def test_basic_auth_header():
    """basic sends Authorization: Basic base64(username:password)."""
    seen = []
    call(build_auth({"type": "basic", "username": "ck_1", "password": "cs_2"}),
         lambda r: seen.append(r.headers["authorization"]) or httpx.Response(200))
    assert seen == [basic("ck_1", "cs_2")]


def test_bearer_header():
    """bearer sends Authorization: Bearer <token>."""
    seen = []
    call(build_auth({"type": "bearer", "token": "t0k"}),
         lambda r: seen.append(r.headers["authorization"]) or httpx.Response(200))
    assert seen == ["Bearer t0k"]


def test_none_auth_is_none():
    """type none (or no auth at all) builds no auth object."""
    assert build_auth({"type": "none"}) is None and build_auth(None) is None


def test_client_credentials_basic_scopes_and_extra_fields():
    """The token request goes to token_url with basic client auth, scopes and extra fields;
    the API gets the bearer token, and the client's own headers stay off the token request."""
    server = TokenServer([{"access_token": "tok-1", "expires_in": 3600}])
    auth = build_auth({"type": "oauth2_client_credentials", "token_url": TOKEN_URL,
                       "client_id": "cid", "client_secret": "csecret", "scopes": ["read", "write"],
                       "extra_fields": {"audience": "wms"}})
    call(auth, server, headers={"X-Shop-Key": "shop-secret"})
    token_request = server.token_requests[0]
    assert token_request.headers["authorization"] == basic("cid", "csecret")
    assert "x-shop-key" not in token_request.headers
    assert server.form(0) == {"grant_type": "client_credentials", "scope": "read write",
                              "audience": "wms"}
    assert server.api_auth[0] == "Bearer tok-1"


def test_client_credentials_in_body():
    """client_auth: body puts client_id and client_secret in the form, not in a header."""
    server = TokenServer([{"access_token": "tok-1"}])
    call(build_auth({"type": "oauth2_client_credentials", "token_url": TOKEN_URL,
                     "client_id": "cid", "client_secret": "csecret", "client_auth": "body"}),
         server)
    assert "authorization" not in server.token_requests[0].headers
    assert server.form(0) == {"grant_type": "client_credentials", "client_id": "cid",
                              "client_secret": "csecret"}


def test_token_is_cached_until_expiry_minus_margin():
    """The token is reused until expires_in minus the margin has passed, then fetched again."""
    now = [0.0]
    server = TokenServer([{"access_token": "tok-1", "expires_in": 100},
                          {"access_token": "tok-2", "expires_in": 100}])
    auth = OAuth2ClientCredentials(TOKEN_URL, "cid", "cs", margin=10, clock=lambda: now[0])
    call(auth, server, Request(url="/a"), Request(url="/b"))
    now[0] = 89.0
    call(auth, server)
    assert len(server.token_requests) == 1
    now[0] = 90.0
    call(auth, server)
    assert len(server.token_requests) == 2
    assert server.api_auth == [
        "Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_401_fetches_a_new_token_once():
    """A 401 fetches a fresh token and retries once; a second 401 is an error, not a loop."""
    server = TokenServer([{"access_token": "old"}, {"access_token": "new"}], api_statuses=[401])
    assert call(OAuth2ClientCredentials(TOKEN_URL, "cid", "cs"), server) == [200]
    assert server.api_auth == ["Bearer old", "Bearer new"]
    always = TokenServer([{"access_token": "a"}, {"access_token": "b"}], api_statuses=[401, 401])
    with pytest.raises(StatusError) as raised:
        call(OAuth2ClientCredentials(TOKEN_URL, "cid", "cs"), always)
    assert raised.value.status == 401 and len(always.token_requests) == 2


def test_token_failure_is_a_masked_status_error():
    """A refused token request raises StatusError without echoing the client secret."""
    def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "invalid_client", "got": "csecret-123"})
    auth = build_auth({"type": "oauth2_client_credentials", "token_url": TOKEN_URL,
                       "client_id": "cid", "client_secret": "csecret-123"})
    with pytest.raises(StatusError, match="invalid_client") as raised:
        call(auth, app)
    assert "csecret-123" not in str(raised.value) and "***" in str(raised.value)
    assert "csecret-123" not in raised.value.body


def test_refresh_token_grant_and_rotation():
    """oauth2_refresh_token sends grant_type=refresh_token and adopts a rotated refresh token."""
    now = [0.0]
    server = TokenServer([{"access_token": "a1", "expires_in": 100, "refresh_token": "r2"},
                          {"access_token": "a2", "expires_in": 100}])
    auth = OAuth2RefreshToken(TOKEN_URL, "cid", "cs", "r1", client_auth="body",
                              clock=lambda: now[0])
    call(auth, server)
    now[0] = 1000.0
    call(auth, server)
    assert server.form(0)["grant_type"] == "refresh_token"
    assert [server.form(i)["refresh_token"] for i in (0, 1)] == ["r1", "r2"]
    assert server.api_auth[1] == "Bearer a2"


def test_token_paths_are_compiled_expressions():
    """token_path and expires_in_path read a non-standard token answer."""
    server = TokenServer([{"data": {"token": "deep", "ttl": 50}}])
    auth = build_auth({"type": "oauth2_client_credentials", "token_url": TOKEN_URL,
                       "client_id": "c", "client_secret": "s", "token_path": "data.token",
                       "expires_in_path": "data.ttl"}, lambda e: jmespath.compile(e).search)
    call(auth, server)
    assert server.api_auth[0] == "Bearer deep"
    assert auth.expires_at < float("inf")


@pytest.mark.parametrize("spec,message", [
    ({"type": "kerberos"}, r"unknown auth type 'kerberos'; valid: \['api_key', 'basic'"),
    ({"type": "bearer", "tokn": "x"}, "auth type 'bearer'.*tokn"),
    ({"type": "api_key", "in": "cookie", "name": "k", "value": "v"}, "header or query"),
    ({"type": "oauth2_client_credentials", "token_url": TOKEN_URL, "client_id": "c",
      "client_secret": "s", "client_auth": "jwt"}, "basic or body"),
])
def test_bad_auth_specs(spec, message):
    """An unknown type, key or option is a ValueError that says what is valid."""
    with pytest.raises(ValueError, match=message):
        build_auth(spec)


def test_registry_names_every_kind():
    """AUTH_TYPES holds exactly the kinds the spec language documents."""
    assert set(AUTH_TYPES) == {"none", "api_key", "basic", "bearer", "oauth2_client_credentials",
                               "oauth2_refresh_token"}


# --- token placement, body, retries, renewal, concurrency, token URL (issue 8, point 7) ------

def oauth(**options) -> OAuth2ClientCredentials:
    """Client credentials against TOKEN_URL (client_id cid, secret csecret-123)."""
    return OAuth2ClientCredentials(TOKEN_URL, "cid", "csecret-123", **options)


class FlakyTokens(TokenServer):
    """A TokenServer whose token endpoint first gives each of `faults` (a status, a
    (status, headers) pair, or an exception to raise), then tokens."""

    def __init__(self, faults: list, tokens: list[dict] | None = None) -> None:
        super().__init__(tokens or [{"access_token": "tok-1", "expires_in": 3600}])
        self.faults = list(faults)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == TOKEN_URL and self.faults:
            self.token_requests.append(request)
            fault = self.faults.pop(0)
            if isinstance(fault, Exception):
                raise fault
            status, headers = fault if isinstance(fault, tuple) else (fault, {})
            return httpx.Response(status, json={"error": "busy"}, headers=headers)
        return super().__call__(request)


def test_token_in_a_custom_header_without_bearer():
    """place: {header: X-Shopify-Access-Token} sends the bare token there and no Authorization."""
    server = TokenServer([{"access_token": "tok-1"}])
    seen = []
    call(oauth(place={"header": "X-Shopify-Access-Token"}),
         lambda r: server(r) if "oauth" in r.url.path else
         (seen.append((r.headers.get("x-shopify-access-token"), r.headers.get("authorization")))
          or httpx.Response(200, json=[])))
    assert seen == [("tok-1", None)]


def test_token_in_the_query_is_masked_in_errors():
    """place: {query: access_token} adds the token as a parameter; an error echoing the URL
    never shows the token."""
    server = TokenServer([{"access_token": "tok-secret-1"}])

    def app(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return server(request)
        server.api_requests.append(request)
        return httpx.Response(418, json={"url": str(request.url)})
    with pytest.raises(StatusError) as raised:
        call(oauth(place={"query": "access_token", "value": lambda t: f"v1.{t}"}), app,
             Request(url="/orders", params={"page": 2}))
    assert dict(server.api_requests[0].url.params) == {"page": "2", "access_token": "v1.tok-secret-1"}
    assert "tok-secret-1" not in str(raised.value) and "access_token=v1.***" in str(raised.value)


def test_json_token_body():
    """token_body: json sends the grant, extra fields and body credentials as one JSON object."""
    server = TokenServer([{"access_token": "tok-1"}])
    call(oauth(token_body="json", client_auth="body", extra_fields={"audience": "wms"}), server)
    request = server.token_requests[0]
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"grant_type": "client_credentials", "audience": "wms",
                                           "client_id": "cid", "client_secret": "csecret-123"}


@pytest.mark.parametrize("faults,waits", [
    ([502], [("backoff", 0.5)]),
    ([500, 503, 504], None),
    ([(429, {"Retry-After": "7"})], [("retry_after", 7.0)]),
    ([httpx.ConnectError("refused")], [("backoff", 0.5)]),
])
def test_token_request_is_retried_like_any_request(faults, waits):
    """A 5xx, a 429 (its Retry-After waited) or a transport error from the token endpoint is
    retried with the client's policy, and the API call then proceeds."""
    server = FlakyTokens(faults)
    retry = RetryPolicy(attempts=4, on_status={429, 500, 502, 503, 504},
                        backoff=Backoff(initial=0.5, jitter=0))
    assert call(oauth(), server, retry=retry) == [200]
    assert len(server.token_requests) == len(faults) + 1
    assert server.api_auth == ["Bearer tok-1"]
    if waits is not None:
        assert recorded_waits() == waits


def test_a_reset_token_request_is_retried_even_for_a_write():
    """A connection reset on the token request of a write (replay_safe=False) is retried: a
    token request may be repeated, and the write itself has not gone out yet."""
    server = FlakyTokens([httpx.ReadError("connection reset by peer")])

    async def main() -> int:
        async with HttpClient("https://shop.test/api", auth=oauth(),
                              transport=httpx.MockTransport(server)) as client:
            answer = await client.send(Request("POST", "/orders", json={}), replay_safe=False)
            return answer.status
    assert asyncio.run(main()) == 200
    assert len(server.token_requests) == 2 and len(server.api_requests) == 1


@pytest.mark.parametrize("status", [400, 401])
def test_refused_credentials_are_not_retried(status):
    """A 400/401 from the token endpoint is one request and a StatusError naming the token
    request, with the client secret masked."""
    def app(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "invalid_client", "echo": "csecret-123"})
    auth = oauth()
    with pytest.raises(StatusError, match="OAuth2 token request: POST https://shop.test/oauth") as raised:
        call(auth, app, retry=RetryPolicy(attempts=5, on_status={500}))
    assert raised.value.status == status and recorded_waits() == []
    assert "csecret-123" not in str(raised.value) and "csecret-123" not in raised.value.body


def test_token_endpoint_failing_every_try_is_a_clear_error():
    """A token endpoint that answers 502 to every try fails after the retries, saying so."""
    server = FlakyTokens([502] * 3)
    with pytest.raises(StatusError, match=r"OAuth2 token request: .* answered 502 after 3 attempt"):
        call(oauth(), server, retry=RetryPolicy(attempts=3))
    assert server.api_requests == []


@pytest.mark.parametrize("lifetime,margin,renew_after", [
    (86400, 60, 86340), (3600, 60, 3540), (300, 60, 270), (5, 60, 4.5), (0, 60, 0),
    (100, 10, 90), (None, 60, float("inf")),
])
def test_renewal_delay_scales_with_the_lifetime(lifetime, margin, renew_after):
    """A token is renewed min(margin, 10% of its lifetime) before it expires."""
    assert renewal_delay(lifetime, margin) == pytest.approx(renew_after)


def test_a_five_second_token_is_not_fetched_before_every_call():
    """A 5 s token serves every call of its first 4.5 s, then one new token is fetched."""
    now = [0.0]
    server = TokenServer([{"access_token": f"tok-{i}", "expires_in": 5} for i in (1, 2)])
    auth = oauth(clock=lambda: now[0])
    for second in (0.0, 1.0, 2.0, 3.0, 4.0, 4.4):
        now[0] = second
        call(auth, server)
    assert len(server.token_requests) == 1
    now[0] = 4.5
    call(auth, server)
    assert len(server.token_requests) == 2 and server.api_auth[-1] == "Bearer tok-2"


def concurrent_calls(auth, app, n: int) -> list[int]:
    """Send `n` GETs at once through one client; their statuses."""
    async def main() -> list[int]:
        async with HttpClient("https://shop.test/api", auth=auth, concurrency=n,
                              transport=httpx.MockTransport(app)) as client:
            answers = await asyncio.gather(*(client.send(Request(url=f"/o/{i}")) for i in range(n)))
            return [a.status for a in answers]
    return asyncio.run(main())


def test_concurrent_requests_share_one_token_request():
    """Ten requests that all need a token at once cause one token request."""
    server = TokenServer([{"access_token": f"tok-{i}"} for i in range(10)])

    async def app(request: httpx.Request) -> httpx.Response:
        for _ in range(3):                   # let the other requests run meanwhile
            await asyncio.sleep(0)
        return server(request)
    assert concurrent_calls(oauth(), app, 10) == [200] * 10
    assert len(server.token_requests) == 1 and set(server.api_auth) == {"Bearer tok-0"}


def test_concurrent_401s_renew_the_token_once():
    """Requests refused with the same stale token get one new token between them."""
    server = TokenServer([{"access_token": f"tok-{i}"} for i in range(10)], api_statuses=[401] * 4)

    async def app(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        return server(request)
    assert concurrent_calls(oauth(), app, 4) == [200] * 4
    assert len(server.token_requests) == 2
    assert server.api_auth.count("Bearer tok-1") == 4


@pytest.mark.parametrize("token_url,hosts,refused", [
    ("https://shop.test/oauth/token", (), None),
    ("https://auth.elsewhere.test/token", ("auth.elsewhere.test",), None),
    ("https://auth.elsewhere.test/token", (), "neither the base URL's"),
    ("http://shop.test/oauth/token", (), "https only"),
    ("http://127.0.0.1:8080/token", ("127.0.0.1:8080",), None),
    ("http://127.0.0.1:8080/token", ("127.0.0.1",), "neither the base URL's"),
    ("https://shop.test:8443/oauth/token", (), "neither the base URL's"),
    ("https://shop.test:443/oauth/token", (), None),
    ("http://localhost/token", ("localhost",), None),
])
def test_token_url_must_be_https_on_a_declared_host(token_url, hosts, refused):
    """token_url is https (http only on loopback) on the base URL's host and port or a token_hosts
    one (`host` means the default port, `host:port` another); anything else is refused when the client is made, before credentials go anywhere."""
    auth = OAuth2ClientCredentials(token_url, "cid", "cs", token_hosts=hosts)
    if refused is None:
        HttpClient("https://shop.test/api", auth=auth)
        return
    with pytest.raises(ForeignHostError, match=refused):
        HttpClient("https://shop.test/api", auth=auth)
