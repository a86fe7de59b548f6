"""Credentials go only to the spec's own origin (scheme, host AND port), against two real
servers on 127.0.0.1: a paging link or a 307/308 redirect to the same host on another port is
refused before anything is sent there, whatever the auth places where."""

from __future__ import annotations

import asyncio

import pytest
from http_server import LoopbackServer, Reply

from engine.errors import ForeignHostError
from engine.extract import compile_path
from engine.http import HttpClient, Request, build_paginator
from engine.http.auth import OAuth2ClientCredentials, build_auth

pytestmark = pytest.mark.usefixtures("http_testing")

SECRET = "tok-origin-5c2e9"
AUTHS = {
    "bearer": {"type": "bearer", "token": SECRET},
    "api_key header": {"type": "api_key", "name": "X-Api-Key", "value": SECRET},
    "api_key query": {"type": "api_key", "name": "api_key", "value": SECRET, "in": "query"},
    "basic": {"type": "basic", "username": "shop", "password": SECRET},
}
WAYS = ["Link next page", "307 redirect", "308 redirect"]


@pytest.fixture
def other_port() -> LoopbackServer:
    """A second server on 127.0.0.1: the spec's host, another port."""
    with LoopbackServer("127.0.0.1") as server:
        yield server


async def _read(client: HttpClient, way: str) -> None:
    if way == "Link next page":
        pager = build_paginator({"type": "link_header"}, compile_path)
        async for _ in client.pages(Request(url="/orders"), pager, compile_path("items")):
            pass
    else:
        await client.send(Request("POST", "/orders", json={"id": 1}))


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("auth", list(AUTHS))
def test_no_credential_reaches_the_same_host_on_another_port(way, auth, http_server, other_port):
    """The answer points at 127.0.0.1:<other port>: ForeignHostError, and that port gets nothing."""
    elsewhere = other_port.url("/orders") + "?page=2"
    other_port.route("/orders", Reply(body={"items": []}))
    if way == "Link next page":
        http_server.route("/orders", Reply(body={"items": [{"id": 1}]},
                                           headers={"Link": f'<{elsewhere}>; rel="next"'}))
    else:
        http_server.route("/orders", Reply(int(way[:3]), headers={"Location": elsewhere}))

    async def main() -> None:
        async with HttpClient(http_server.url(), auth=build_auth(AUTHS[auth])) as client:
            await _read(client, way)
    with pytest.raises(ForeignHostError, match=r"refused (paging link|redirect) to http://127\.0\.0\.1:") as raised:
        asyncio.run(main())
    assert other_port.calls == []
    assert len(http_server.calls) == 1
    assert SECRET not in str(raised.value)


def test_a_token_url_on_another_port_is_refused_before_any_request(http_server, other_port):
    """An OAuth2 token_url on the base URL's host but another port is refused when the client is
    made: neither port hears anything; listed as `host:port` in token_hosts it is allowed."""
    other_port.route("/oauth/token", Reply(body={"access_token": "t", "expires_in": 60}))
    auth = OAuth2ClientCredentials(other_port.url("/oauth/token"), "cid", SECRET)
    with pytest.raises(ForeignHostError, match="neither the base URL's"):
        HttpClient(http_server.url(), auth=auth)
    assert other_port.calls == [] and http_server.calls == []
    port = other_port.url().rsplit(":", 1)[1].strip("/")
    listed = OAuth2ClientCredentials(other_port.url("/oauth/token"), "cid", SECRET,
                                     token_hosts=[f"127.0.0.1:{port}"])
    http_server.route("/orders", Reply(body=[]))

    async def main() -> int:
        async with HttpClient(http_server.url(), auth=listed) as client:
            return (await client.send(Request(url="/orders"))).status
    assert asyncio.run(main()) == 200
    assert [c.path for c in other_port.calls] == ["/oauth/token"]
