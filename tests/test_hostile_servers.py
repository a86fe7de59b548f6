"""A hostile or broken server cannot take a run down (issue 10, point 4): each case is a tiny
loopback HTTP server that misbehaves one way, read through a connector's client the way a flow
reads a page, and must end in a clear error naming the limit, within seconds.

The server speaks raw HTTP/1.1 over a socket so it can drip, lie about lengths and never stop.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine import ROOT, extract
from engine.errors import HTTPError, PagingError
from engine.http import Request, build_paginator
from engine.specs.model import Connector

Behaviour = Callable[[socket.socket, str], None]


def _head(connection: socket.socket, headers: dict[str, str], status: str = "200 OK") -> None:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    connection.sendall("\r\n".join(lines).encode())


def _answer(connection: socket.socket, body: bytes, content_type: str = "application/json") -> None:
    _head(connection, {"Content-Type": content_type, "Content-Length": str(len(body))})
    connection.sendall(body)


def drip(connection: socket.socket, path: str) -> None:
    """A valid JSON answer, one byte every 0.1 s: each read gets a byte well within the
    per-read timeout, and the body never ends in any useful time."""
    body = b'{"items": [' + b" " * 10_000 + b"]}"
    _head(connection, {"Content-Type": "application/json", "Content-Length": str(len(body))})
    for byte in body:
        connection.sendall(bytes([byte]))
        time.sleep(0.1)


def endless_cursors(connection: socket.socket, path: str) -> None:
    """Every page has one record and a next cursor never seen before."""
    number = int(path.rsplit("=c", 1)[1]) if "cursor=" in path else 0
    _answer(connection, b'{"items": [{"id": %d}], "next": "c%d"}' % (number, number + 1))


def deep_json(connection: socket.socket, path: str) -> None:
    """100,000 nested lists: std json raises RecursionError; a million crashed orjson before 3.9.15."""
    _answer(connection, b"[" * 100_000 + b"]" * 100_000)


def huge_declared(connection: socket.socket, path: str) -> None:
    """Declares 5 GB, then starts sending."""
    _head(connection, {"Content-Type": "application/json", "Content-Length": str(5 * 1024**3)})
    connection.sendall(b"[" + b"0," * 100_000)


def huge_undeclared(connection: socket.socket, path: str) -> None:
    """No length: a body that ends when the connection closes, far beyond the cap."""
    _head(connection, {"Content-Type": "application/json", "Connection": "close"})
    chunk = b'{"id": 1},' * 10_000
    connection.sendall(b"[")
    for _ in range(300):             # ~30 MB if nobody stops reading
        connection.sendall(chunk)


def gzip_bomb(connection: socket.socket, path: str) -> None:
    """50 KB on the wire that inflate to 50 MB."""
    body = gzip.compress(b"[" + b" " * 50_000_000 + b"]", compresslevel=9)
    _head(connection, {"Content-Type": "application/json", "Content-Encoding": "gzip",
                       "Content-Length": str(len(body))})
    connection.sendall(body)


def unknown_charset(connection: socket.socket, path: str) -> None:
    _answer(connection, b'{"items": []}', "application/json; charset=x-klingon")


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        received = b""
        while True:                                              # keep-alive: request after request
            while b"\r\n\r\n" not in received:
                try:
                    chunk = self.request.recv(65536)
                except OSError:
                    return                                       # the client closed
                if not chunk:
                    return
                received += chunk
            head, received = received.split(b"\r\n\r\n", 1)
            path = head.split(b" ", 2)[1].decode()
            try:
                self.server.behaviour(self.request, path)        # type: ignore[attr-defined]
            except OSError:
                return                                           # the client gave up: good


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def hostile() -> Iterator[Callable[[Behaviour], str]]:
    servers: list[_Server] = []

    def serve(behaviour: Behaviour) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.behaviour = behaviour                             # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def _read(url: str, limits: dict[str, Any], timeout: float = 5) -> list:
    """Read every page of /orders as a flow does, through a connector built from a spec."""
    connector = Connector.from_data({
        "name": "hostile", "kind": "cart",
        "http": {"base_url": "{{ config.url }}", "timeout": timeout, "limits": limits,
                 "retry": {"attempts": 1}}})
    paginator = build_paginator({"type": "cursor", "param": "cursor", "path": "next"}, extract.compile_path)
    records = extract.compile_path("items")

    async def read() -> list:
        found = []
        async with connector.client({"url": url}) as client:
            async for page in client.pages(Request(url="/orders"), paginator, records):
                found.extend(page.records)
        return found

    async def bounded() -> list:       # without the limits under test, a case hangs: fail instead
        return await asyncio.wait_for(read(), 20)

    return asyncio.run(bounded())


CASES = [
    pytest.param(drip, {"deadline": 1}, HTTPError, "no complete answer within the 1 s deadline", id="drip"),
    pytest.param(endless_cursors, {"max_pages": 50}, PagingError, "max_pages 50", id="endless-cursors"),
    pytest.param(endless_cursors, {"max_records": 30}, PagingError, "max_records 30", id="endless-records"),
    pytest.param(deep_json, {}, HTTPError, "nests too deeply (more than 1024 levels", id="deep-json"),
    pytest.param(huge_declared, {}, HTTPError, "(Content-Length: 5368709120)", id="huge-declared"),
    pytest.param(huge_undeclared, {"max_body": 1_000_000}, HTTPError,
                 "larger than the 1000000 bytes allowed (http.limits.max_body)", id="huge-undeclared"),
    pytest.param(gzip_bomb, {"max_body": 1_000_000}, HTTPError,
                 "larger than the 1000000 bytes allowed", id="gzip-bomb"),
    pytest.param(unknown_charset, {}, HTTPError, "charset 'x-klingon', which is unknown", id="unknown-charset"),
]


@pytest.mark.parametrize(("behaviour", "limits", "error", "message"), CASES)
def test_a_hostile_server_ends_in_a_clear_error(hostile, behaviour, limits, error, message) -> None:
    url = hostile(behaviour)
    started = time.monotonic()
    with pytest.raises(error) as caught:
        _read(url, limits, timeout=0.5 if behaviour is drip else 5)
    assert message in str(caught.value)
    assert "/orders" in str(caught.value)                       # which request, too
    assert time.monotonic() - started < 10


def test_the_deadline_defaults_to_four_timeouts(hostile) -> None:
    url = hostile(drip)
    started = time.monotonic()
    with pytest.raises(HTTPError, match="within the 2 s deadline"):
        _read(url, {}, timeout=0.5)
    assert 1.9 < time.monotonic() - started < 8


def _million() -> bytes:
    return b'{"items": [' + b",".join(b'{"id": %d, "sku": "A-1"}' % n for n in range(1_000_000)) + b'], "next": null}'

_CHILD = """
import resource, sys
from tests.test_hostile_servers import _read
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
records = _read(sys.argv[1], {})
assert len(records) == 1_000_000, len(records)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def test_a_million_record_page_is_read_without_gigabytes(hostile) -> None:
    """A page of 1,000,000 records (~27 MB, within the default max_body) is read whole, in a
    child process whose peak memory is measured: well under a gigabyte (docs/operations.md,
    "Limits": max_body is what bounds a page)."""
    page = _million()
    url = hostile(lambda connection, path: _answer(connection, page))
    child = subprocess.run([sys.executable, "-c", _CHILD, url], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert child.returncode == 0, child.stderr[-2000:]
    grown_mib = int(child.stdout.split()[-1]) / 1024          # ru_maxrss is in KiB on Linux
    print(f"peak memory grew by {grown_mib:.0f} MiB")
    assert grown_mib < 1024, f"peak memory grew by {grown_mib:.0f} MiB"
