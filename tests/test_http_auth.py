"""Every auth kind, driven through HttpClient with httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64

import httpx
import jmespath
import pytest

from engine.errors import StatusError
from engine.http import AUTH_TYPES, HttpClient, Request, build_auth
from engine.http.auth import OAuth2ClientCredentials, OAuth2RefreshToken

pytestmark = pytest.mark.usefixtures("http_testing")

TOKEN_URL = "https://auth.elsewhere.test/oauth/token"


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
