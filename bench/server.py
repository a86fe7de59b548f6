"""A fast loopback cart + WMS for the benchmarks, meant to run in its own process.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length) in the wire shapes the
`woocommerce` and `extensiv` connectors read, and answers from pre-rendered bytes so that the
server is never what a benchmark measures:

- cart, `GET /wp-json/wc/v3/orders?page=N&per_page=P`: a JSON list of orders (~1.25 KB each,
  the WooCommerce order shape trimmed of what no mapping reads) with `X-WP-Total` and
  `X-WP-TotalPages`; order ids run 1001, 1002, ... so every order has its own key;
- WMS, `POST /AuthServer/api/Token` (a bearer token) and `POST /orders` (201 with
  `readOnly.orderId`), counting the orders it received.

Every answer can be delayed by `latency` seconds (without blocking other connections).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Callable
from urllib.parse import parse_qsl, urlsplit

import orjson

from samples.servers.data import OrderFactory
from samples.servers.woocommerce import render_order

CART_AUTH = b"Basic " + base64.b64encode(b"ck_bench:cs_bench")
TOKEN = b"bench-token"
_DROP = ("_links", "meta_data", "date_completed", "date_completed_gmt", "date_paid", "date_paid_gmt",
         "fee_lines", "coupon_lines", "refunds", "version", "prices_include_tax", "discount_tax",
         "shipping_tax", "cart_tax", "date_created", "date_modified", "parent_id", "customer_id")
Handler = Callable[[bytes, str, bytes, bytes], tuple[int, dict[str, str], bytes]]


def sample_orders(count: int = 400, seed: int = 7) -> list[dict[str, Any]]:
    """`count` distinct WooCommerce orders, trimmed to ~1.25 KB of JSON each."""
    orders = []
    for order in OrderFactory(seed).make(count):
        raw = render_order(order)
        for name in _DROP:
            raw.pop(name, None)
        for line in raw["line_items"]:
            for name in ("taxes", "meta_data", "tax_class", "subtotal_tax", "total_tax", "variation_id"):
                line.pop(name, None)
        for line in raw["shipping_lines"]:
            line.pop("taxes", None)
        orders.append(raw)
    return orders


class Cart:
    """Pages of `total` orders; an order's bytes are a pre-rendered tail behind its id."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tails = []
        for order in sample_orders():
            order.pop("id"), order.pop("number")
            self.tails.append(b"," + orjson.dumps(order)[1:])

    def page(self, number: int, size: int) -> bytes:
        first, last = (number - 1) * size, min(number * size, self.total)
        tails, k = self.tails, len(self.tails)
        parts = [b'{"id":%d,"number":"%d"%s' % (1001 + i, 1001 + i, tails[i % k]) for i in range(first, last)]
        return b"[" + b",".join(parts) + b"]"

    def __call__(self, method: bytes, target: str, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if b"\r\nauthorization: " + CART_AUTH.lower() not in head.lower():
            return 401, {}, b'{"code":"woocommerce_rest_cannot_view"}'
        query = dict(parse_qsl(urlsplit(target).query))
        size = int(query.get("per_page", 10))
        pages = -(-self.total // size)
        headers = {"X-WP-Total": str(self.total), "X-WP-TotalPages": str(pages)}
        return 200, headers, self.page(int(query.get("page", 1)), size)


class Wms:
    """Takes orders; `received` counts them."""

    def __init__(self) -> None:
        self.received = 0

    def __call__(self, method: bytes, target: str, head: bytes, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if target.startswith("/AuthServer/"):
            return 200, {}, b'{"access_token":"%s","token_type":"Bearer","expires_in":3600}' % TOKEN
        if b"bearer " + TOKEN not in head.lower():
            return 401, {}, b'{"ErrorCode":"Unauthorized"}'
        order = orjson.loads(body)
        self.received += 1
        answer = {"readOnly": {"orderId": 100000 + self.received}, "referenceNum": order.get("referenceNum")}
        return 201, {}, orjson.dumps(answer)


class _Connection(asyncio.Protocol):
    """One keep-alive connection: parse requests as they complete, answer each in turn."""

    def __init__(self, handler: Handler, latency: float) -> None:
        self.handler, self.latency, self.buffer = handler, latency, b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            length = _content_length(head)
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            method, target, _ = head.split(b"\r\n", 1)[0].split(b" ", 2)
            status, headers, payload = self.handler(method, target.decode(), head, body)
            self._answer(_response(status, headers, payload))

    def _answer(self, response: bytes) -> None:
        if self.latency:
            asyncio.get_running_loop().call_later(self.latency, self._write, response)
        else:
            self.transport.write(response)

    def _write(self, response: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(response)


def _content_length(head: bytes) -> int:
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = lower.find(b"\r\n", at + 2)
    return int(head[at + 17:end if end > 0 else len(head)])


def _response(status: int, headers: dict[str, str], payload: bytes) -> bytes:
    lines = [b"HTTP/1.1 %d %s" % (status, b"OK" if status < 300 else b"Error"),
             b"Content-Type: application/json; charset=UTF-8", b"Content-Length: %d" % len(payload)]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


async def _serve(total: int, latency: float, ready: Any, stop: Any) -> None:
    loop = asyncio.get_running_loop()
    cart, wms = Cart(total), Wms()
    servers = [await loop.create_server(lambda h=h: _Connection(h, latency), "127.0.0.1", 0, backlog=512)
               for h in (cart, wms)]
    ready.put(tuple(s.sockets[0].getsockname()[1] for s in servers))
    await loop.run_in_executor(None, stop.wait)
    for server in servers:
        server.close()
    ready.put(wms.received)


def serve(total: int, latency: float, ready: Any, stop: Any) -> None:
    """Process entry point: put (cart_port, wms_port) on `ready`, serve until `stop` (an Event)
    is set, then put the number of orders the WMS received."""
    asyncio.run(_serve(total, latency, ready, stop))
