"""Plumbing shared by the loopback servers: routing, JSON answers, faults, paging.

Each server is an :class:`App` (routes + auth + state) run by :class:`Server` on
127.0.0.1 with ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive. Every
answer carries ``Content-Length``. A :class:`FaultPlan` lets tests make the
next matching requests fail (a status, a slow answer, an empty page, a malformed
record) before the app sees them.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One parsed HTTP request as an app sees it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    fault: Fault | None = None

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Answer:
    """What an app returns; ``body`` is JSON-encoded unless it is bytes."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json; charset=UTF-8"

    def encode(self) -> bytes:
        if self.status == 204 or self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body, ensure_ascii=False).encode()


@dataclass
class Fault:
    """One planned misbehaviour; fires for ``times`` matching requests."""

    path_prefix: str = "/"
    method: str | None = None
    times: int = 1
    status: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    body: Any = None
    empty_page: bool = False
    malformed: bool = False
    drop: str | None = None          # "before" / "after" the app acts: close without an answer
    acted_status: int | None = None  # the app acts, then this status goes out instead (a 502 from a proxy)
    delay_after: float = 0.0         # the app acts, then the answer waits (a client timeout mid-write)
    after: int = 0                   # let this many matching requests through first


class Dropped(Exception):
    """The connection is closed without an answer (a fault's `drop`)."""


class FaultPlan:
    """A thread-safe queue of :class:`Fault`; the first match is used up."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.fired: list[tuple[str, str]] = []

    def add(self, **kwargs: Any) -> Fault:
        fault = Fault(**kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if path.startswith(fault.path_prefix) and fault.method in (None, method):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    self.fired.append((method, path))
                    return fault
        return None


def fault_answer(fault: Fault) -> Answer | None:
    """The answer a status fault forces, or None when the app should go on."""
    if fault.status is None:
        return None
    headers = {}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"
    body = fault.body if fault.body is not None else {"message": f"injected {fault.status}"}
    return Answer(fault.status, body, headers)


Route = tuple[str, re.Pattern[str], Callable[..., Answer]]


class App:
    """Routes plus auth; subclasses add routes in ``__init__`` and override ``authorize``."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self.faults = FaultPlan()
        self.requests: list[tuple[str, str]] = []

    def route(self, method: str, pattern: str, handler: Callable[..., Answer]) -> None:
        self.routes.append((method, re.compile(pattern + r"/?$"), handler))

    def authorize(self, request: Request) -> Answer | None:
        """Return an error answer when the request is not allowed."""
        return None

    def dispatch(self, request: Request) -> Answer:
        self.requests.append((request.method, request.path))
        fault = self.faults.take(request.method, request.path)
        if fault is not None:
            time.sleep(fault.delay)
            forced = fault_answer(fault)
            if forced is not None:
                return forced
            if fault.drop == "before":
                raise Dropped()
            request.fault = fault
            if fault.drop == "after" or fault.acted_status or fault.delay_after:
                return self._after(request, fault)
        return self._route(request)

    def _after(self, request: Request, fault: Fault) -> Answer:
        """Act on the request, then lose or spoil the answer as the fault says."""
        answer = self._route(request)
        time.sleep(fault.delay_after)
        if fault.drop == "after":
            raise Dropped()
        if fault.acted_status:
            return Answer(fault.acted_status, {"message": f"injected {fault.acted_status} after acting"})
        return answer

    def _route(self, request: Request) -> Answer:
        denied = self.authorize(request)
        if denied is not None:
            return denied
        for method, pattern, handler in self.routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                return handler(request, **match.groupdict())
        return Answer(404, {"code": "rest_no_route", "message": "No route was found."})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # headers and body go out separately; don't wait 40 ms between
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        super().finish()
        self.server.connections.discard(self.connection)

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = Request(
            method=self.command,
            path=parts.path,
            query={k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        try:
            answer = self.server.app.dispatch(request)
        except Dropped:
            self.close_connection = True
            return
        payload = answer.encode()
        self.send_response(answer.status)
        if payload:
            self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if answer.status != 204:
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: App
    connections: set[socket.socket]


class Server:
    """A running loopback server: ``url``, ``state``, ``faults``, ``stop()``."""

    def __init__(self, app: App, port: int = 0) -> None:
        self.app = app
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.app = app
        self._httpd.connections = set()
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def state(self) -> Any:
        return self.app.state

    @property
    def faults(self) -> FaultPlan:
        return self.app.faults

    def add_orders(self, n: int) -> list[Any]:
        """Make ``n`` new orders appear in the cart (carts only)."""
        return self.app.add_orders(n)

    def stop(self) -> None:
        self._httpd.shutdown()
        for conn in list(self._httpd.connections):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def page_of(items: list[Any], page: int, size: int) -> list[Any]:
    """Items of 1-based ``page`` when split into pages of ``size``."""
    start = (max(page, 1) - 1) * size
    return items[start:start + size]


def total_pages(count: int, size: int) -> int:
    return (count + size - 1) // size


def parse_time(text: str) -> datetime:
    """ISO-8601 (``Z`` or offset or naive-as-UTC) to an aware datetime."""
    value = datetime.fromisoformat(text.strip().replace(" ", "+"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def int_param(query: dict[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


def apply_page_faults(request: Request, records: list[Any], malformed: Any) -> list[Any]:
    """Honour an ``empty_page`` or ``malformed`` fault on a list answer."""
    fault = request.fault
    if fault is None:
        return records
    if fault.empty_page:
        return []
    if fault.malformed and records:
        return [malformed(records[0]), *records[1:]]
    return records
