"""OAuth2 against real servers on 127.0.0.1: the token endpoint's faults are retried, the
token goes where the spec places it, is renewed by its lifetime and fetched once for many."""

from __future__ import annotations

import asyncio
import socket

import pytest
from flow_support import FlowRig
from http_server import LoopbackServer, Reply

from engine.errors import TransportError
from engine.http import HttpClient, Request, recorded_waits
from engine.http.auth import OAuth2ClientCredentials
from engine.specs.model import Connector

pytestmark = pytest.mark.usefixtures("http_testing")

TOKEN = {"access_token": "tok-loop-1", "scope": "read_orders", "expires_in": 86399}
SECRET = "cs-loopback-4f1a"


def connector(token_url: str, base_url: str, token_hosts: tuple[str, ...] = ()) -> Connector:
    """A cart whose OAuth2 token goes in X-Shop-Token, requested with a JSON body."""
    return Connector.from_data({
        "name": "shop", "kind": "cart", "spec_version": 1,
        "http": {"base_url": base_url, "retry": {"attempts": 3},
                 "auth": {"type": "oauth2_client_credentials", "token_url": token_url,
                          "client_id": "{{ config.client_id }}",
                          "client_secret": "{{ config.client_secret }}",
                          "client_auth": "body", "token_body": "json", "token_hosts": list(token_hosts),
                          "place": {"header": "X-Shop-Token", "value": "{{ token }}"}}},
        "operations": {}})


def orders_route(call) -> Reply:
    """The API: 200 for the current token in X-Shop-Token, 401 otherwise."""
    ok = call.headers.get("x-shop-token") == TOKEN["access_token"]
    return Reply(200 if ok else 401, [] if ok else {"errors": "Invalid API key or access token"})


def get_orders(client_factory, n: int = 1) -> list[int]:
    async def main() -> list[int]:
        async with client_factory() as client:
            answers = await asyncio.gather(*(client.send(Request(url="/orders")) for _ in range(n)))
            return [a.status for a in answers]
    return asyncio.run(main())


def spec_client(server: LoopbackServer):
    shop = connector(server.url("/oauth/token"), server.url("/api"))
    return lambda: shop.client({"client_id": "cid", "client_secret": SECRET}, secrets=[SECRET])


@pytest.mark.parametrize("first,waits", [
    (Reply(502, {"error": "bad gateway"}), [("backoff",)]),
    (Reply(429, {"error": "slow down"}, {"Retry-After": "3"}), [("retry_after", 3.0)]),
])
def test_a_token_endpoint_fault_is_retried_and_the_call_proceeds(http_server, first, waits):
    """A 502 (backoff) or a 429 (its Retry-After) from the token endpoint is retried, then the
    call goes out with the token in the spec's header, requested with a JSON body."""
    http_server.route("/oauth/token", [first, Reply(body=TOKEN)])
    http_server.route("/api/orders", orders_route)
    assert get_orders(spec_client(http_server)) == [200]
    token_calls = [c for c in http_server.calls if c.path == "/oauth/token"]
    assert len(token_calls) == 2
    assert token_calls[1].headers["content-type"] == "application/json"
    assert token_calls[1].json() == {"grant_type": "client_credentials", "client_id": "cid",
                                     "client_secret": SECRET}
    api = [c for c in http_server.calls if c.path == "/api/orders"]
    assert [c.headers.get("x-shop-token") for c in api] == ["tok-loop-1"]
    assert "authorization" not in api[0].headers
    assert [w[:len(waits[0])] for w in recorded_waits()] == waits


def test_a_refused_connection_to_the_token_endpoint_is_retried_then_a_clear_error(http_server):
    """Connection refused at the token endpoint is retried per the policy, then raised as a
    TransportError naming the token request, without the client secret."""
    with socket.socket() as probe:                 # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    shop = connector(f"http://127.0.0.1:{port}/oauth/token", http_server.url("/api"), (f"127.0.0.1:{port}",))
    with pytest.raises(TransportError, match=r"OAuth2 token request: POST .* after 3 attempt") as raised:
        get_orders(lambda: shop.client({"client_id": "cid", "client_secret": SECRET}, secrets=[SECRET]))
    assert SECRET not in str(raised.value)
    assert [reason for reason, _ in recorded_waits()] == ["backoff", "backoff"]
    assert http_server.calls == []


def test_a_five_second_token_serves_several_calls(http_server):
    """A token that lives 5 s is fetched once for calls over its first 4.5 s, then again."""
    now = [0.0]
    http_server.route("/oauth/token", Reply(body={"access_token": "tok-loop-1", "expires_in": 5}))
    http_server.route("/api/orders", orders_route)
    auth = OAuth2ClientCredentials(http_server.url("/oauth/token"), "cid", SECRET,
                                   place={"header": "X-Shop-Token"}, clock=lambda: now[0])

    async def main() -> None:
        async with HttpClient(http_server.url("/api"), auth=auth) as client:
            for now[0] in (0.0, 1.0, 2.0, 3.0, 4.0, 4.4, 4.5):
                assert (await client.send(Request(url="/orders"))).status == 200
    asyncio.run(main())
    assert [c.path for c in http_server.calls].count("/oauth/token") == 2
    assert [c.path for c in http_server.calls].count("/api/orders") == 7


def test_concurrent_calls_make_one_token_request(http_server):
    """Eight calls sent at once while no token is held cause exactly one token request."""
    http_server.route("/oauth/token", Reply(body=TOKEN, delay=0.2))
    http_server.route("/api/orders", orders_route)
    shop = connector(http_server.url("/oauth/token"), http_server.url("/api"))
    data = {**shop.data, "http": {**shop.data["http"], "concurrency": 8}}
    shop = Connector.from_data(data)
    statuses = get_orders(lambda: shop.client({"client_id": "cid", "client_secret": SECRET}), n=8)
    assert statuses == [200] * 8
    assert [c.path for c in http_server.calls].count("/oauth/token") == 1


def test_a_502_from_the_wms_token_endpoint_does_not_fail_the_run(flow_rigs):
    """One 502 from the WMS's OAuth2 token endpoint is retried: the run exits 0 and every
    order reaches the warehouse once."""
    rig: FlowRig = flow_rigs(orders=5)
    rig.wms.faults.add(path_prefix="/AuthServer/api/Token", method="POST", status=502)
    result = rig.cli("run")
    assert result.code == 0, result.text
    assert rig.wms.faults.fired == [("POST", "/AuthServer/api/Token")]
    held = rig.wms_refs()
    assert sorted(held) == sorted(rig.eligible_refs()) and set(held.values()) == {1}
