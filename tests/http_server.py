"""A small threaded HTTP server on loopback for integration tests of the HTTP layer.

    with LoopbackServer() as server:                       # free port on 127.0.0.1
        server.route("/orders", Reply(body=[{"id": 1}]))   # always this answer
        server.route("/flaky", [Reply(503), Reply(body={})])   # per-call sequence; last repeats
        server.route("/pages", lambda call: Reply(body=call.query))   # computed from the call
        server.url("/orders")                              # "http://127.0.0.1:PORT/orders"
        server.calls                                       # every request seen, in order

HTTP/1.1 keep-alive like a real API; `max_in_flight` records the most requests handled at
once. Leaving the `with` block stops the server and joins its handler threads.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclasses.dataclass
class Reply:
    """One answer: `body` is JSON-encoded unless it is bytes or str; `delay` in seconds."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    delay: float = 0.0

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return self.body.encode() if isinstance(self.body, str) else json.dumps(self.body).encode()


@dataclasses.dataclass(frozen=True)
class Call:
    """One request as the server saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


Route = Reply | list[Reply] | Callable[[Call], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = False      # so server_close() joins handler threads
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass                    # a client that hung up mid-answer (timeout tests) is expected


class LoopbackServer:
    """Routes by path (any method); unknown paths answer 404."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.calls: list[Call] = []
        self.max_in_flight = 0
        self._routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self._server = _Server((host, 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def host(self) -> str:
        return self._server.server_address[0]

    def url(self, path: str = "") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def route(self, path: str, route: Route) -> None:
        """Answer `path` with a Reply, a per-call list of Replies (last repeats) or a function."""
        self._routes[path] = list(route) if isinstance(route, list) else route

    def paths(self) -> list[str]:
        """The path and query of every call, in order (`/orders?page=2`)."""
        return [c.path + ("?" + "&".join(f"{k}={v}" for k, v in c.query.items()) if c.query else "")
                for c in self.calls]

    def reply_to(self, call: Call) -> Reply:
        with self._lock:
            self.calls.append(call)
            route = self._routes.get(call.path)
            if isinstance(route, list):
                route = route.pop(0) if len(route) > 1 else route[0]
        if route is None:
            return Reply(404, {"error": "not found"})
        return route if isinstance(route, Reply) else route(call)

    def enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


def _handler_for(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True     # headers and body go out as separate writes
        timeout = 5

        def handle_one_request_body(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            call = Call(self.command, parts.path, dict(parse_qsl(parts.query)),
                        {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
            server.enter()
            try:
                reply = server.reply_to(call)
                time.sleep(reply.delay)
                self._write(reply)
            finally:
                server.leave()

        def _write(self, reply: Reply) -> None:
            data = reply.encode()
            self.send_response(reply.status)
            headers = {"Content-Type": "application/json", **reply.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one_request_body

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
