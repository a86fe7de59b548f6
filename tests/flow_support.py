"""Helpers for the orders-flow tests: sample servers, integrations written into tmp_path, the
command line run in-process or as a subprocess, and what the WMS ends up holding.

    with open_rig(tmp_path, "woocommerce", orders=40) as rig:   # cart + WMS on 127.0.0.1
        rig.write_integration()              # secrets as ${env:..}; set them with rig.environ
        result = rig.cli("run")              # engine.cli.run in this process
        assert rig.wms_refs() == Counter(rig.eligible_refs())

The WMS is :class:`FlowWms`, the sample Extensiv server plus two test-only knobs: it can accept
a duplicate referenceNum (so a duplicate send shows up in its state instead of being refused),
and it can stall *after* storing an order and before answering (a crash window).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine import ROOT, cli
from engine.ledger import Ledger, open_store
from samples.servers import KINDS
from samples.servers.base import Answer, Request, Server, _Handler
from samples.servers.extensiv import ExtensivApp, _hal

CONNECTORS = ROOT / "connectors"
LIST_PATHS = {"woocommerce": "/wp-json/wc/v3/orders", "shopify": "/admin/api/2026-10/graphql.json",
              "bigcommerce": "/stores/abc123/v2/orders"}
WMS_ORDERS = "/orders"
NAME = "flow-shop"

#: secret values the servers check; the integration reads them from these environment variables
CART_SECRETS = {
    "woocommerce": {"FLOW_CART_KEY": "ck_flow_7f3a9e", "FLOW_CART_SECRET": "cs_flow_b81c4d"},
    "shopify": {"FLOW_CART_TOKEN": "shpat_flow_5d2e77"},
    "bigcommerce": {"FLOW_CART_TOKEN": "bc_flow_c9a1f0"},
}
WMS_SECRETS = {"FLOW_WMS_CLIENT_ID": "wms-flow-client-3c", "FLOW_WMS_CLIENT_SECRET": "wms-flow-secret-91e"}
SHIP_METHODS = {"flat_rate": "UPS Ground", "Flat rate": "UPS Ground", "ups_ground": "UPS Ground",
                "UPS Ground": "UPS Ground", "fedex_2day": "FedEx 2Day", "FedEx 2Day": "FedEx 2Day"}


class FlowWms(ExtensivApp):
    """The sample Extensiv WMS with test-only knobs (see the module docstring)."""

    def __init__(self, *, accept_duplicates: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.accept_duplicates = accept_duplicates
        self.stall_at: int | None = None           # stall the answer once this many orders are stored
        self.stalled = threading.Event()           # set while an answer is stalled
        self.release = threading.Event()           # set to let stalled answers go
        self._in_flight = 0
        self._flight_lock = threading.Lock()

    def dispatch(self, request: Request) -> Answer:
        with self._flight_lock:
            self._in_flight += 1
        try:
            return super().dispatch(request)
        finally:
            with self._flight_lock:
                self._in_flight -= 1

    @property
    def in_flight(self) -> int:
        with self._flight_lock:
            return self._in_flight

    def create_order(self, request: Request) -> Answer:
        answer = self._store_anyway(request) if self.accept_duplicates else super().create_order(request)
        if answer.status == 201 and self.stall_at is not None and len(self.state.created) >= self.stall_at:
            self.stalled.set()
            self.release.wait(20)
        return answer

    def _store_anyway(self, request: Request) -> Answer:
        """Like Extensiv's create, minus the duplicate-referenceNum refusal."""
        body = request.json() or {}
        if not body.get("referenceNum") or not body.get("orderItems"):
            return super().create_order(request)
        with self.state.lock:
            order = self._new_order(body, body["customerIdentifier"]["id"])
        return _hal(201, order, {"Location": f"/orders/{order['readOnly']['orderId']}"})


class _NoDelayHandler(_Handler):
    """The sample servers' handler with TCP_NODELAY (headers and body leave at once instead of
    waiting 40 ms for a delayed ACK), counting the connections being served."""

    disable_nagle_algorithm = True

    def handle(self) -> None:
        counter = self.server.open_connections
        counter.change(+1)
        try:
            super().handle()
        except ConnectionError:
            pass                # a client killed mid-answer: expected in the crash tests
        finally:
            counter.change(-1)

    def finish(self) -> None:
        try:
            super().finish()
        except ConnectionError:
            self.server.connections.discard(self.connection)


class _Counter:
    def __init__(self) -> None:
        self.value, self._lock = 0, threading.Lock()

    def change(self, by: int) -> None:
        with self._lock:
            self.value += by


def serve(app: Any) -> Server:
    """`app` on a free 127.0.0.1 port (see `_NoDelayHandler`)."""
    server = Server(app)
    server._httpd.open_connections = _Counter()
    server._httpd.RequestHandlerClass = _NoDelayHandler
    return server


def connections(server: Server) -> int:
    """How many client connections `server` is serving right now."""
    return server._httpd.open_connections.value


class Gate:
    """Holds the requests to `method path` that reach `server` from the `after`+1-th on, until opened."""

    def __init__(self, server: Server, method: str, path: str, after: int = 0) -> None:
        self.reached, self.opened = threading.Event(), threading.Event()
        self._seen = 0
        app, dispatch = server.app, server.app.dispatch

        def held(request: Request) -> Answer:
            if (request.method, request.path) == (method, path):
                self._seen += 1
                if self._seen > after and not self.opened.is_set():
                    self.reached.set()
                    self.opened.wait(20)
            return dispatch(request)

        app.dispatch = held


@dataclass
class Result:
    """What one command line did."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class FlowRig:
    """A cart server, a WMS server and a project directory (connectors, integrations, state)."""

    root: Path
    kind: str
    cart: Server
    wms: Server
    connectors: Path = CONNECTORS
    environ: dict[str, str] = field(default_factory=dict)
    gates: list[Gate] = field(default_factory=list)
    state_url: str | None = None               # a postgresql:// ledger instead of <root>/state

    @property
    def integrations(self) -> Path:
        return self.root / "integrations"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def location(self) -> str:
        """What `--state` is given: the state directory or the PostgreSQL URL."""
        return self.state_url or str(self.state)

    @property
    def wms_app(self) -> FlowWms:
        return self.wms.app

    def write_integration(self, name: str = NAME, **overrides: Any) -> Path:
        """Write an orders-only integration binding this cart to the WMS; returns its path."""
        data = integration(self.kind, self.cart.url, self.wms.url, name)
        data.update(overrides)
        path = self.integrations / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def hold(self, server: Server, method: str, path: str, after: int = 0) -> Gate:
        """A Gate on `server`, opened at the latest when the rig closes."""
        gate = Gate(server, method, path, after)
        self.gates.append(gate)
        return gate

    def open_gates(self) -> None:
        """Let every held request go (gates and the WMS's stalled answers)."""
        for gate in self.gates:
            gate.opened.set()
        self.wms_app.release.set()

    def quiet(self, timeout: float = 10.0) -> None:
        """Wait until neither server has a connection open (a killed client's requests are done)."""
        wait_for(lambda: connections(self.cart) == 0 and connections(self.wms) == 0, timeout,
                 "the servers to finish the requests in flight")

    def patch_connector(self, name: str, change: Callable[[dict], None]) -> Path:
        """Use a copy of the connectors in which `change` edited connector `name`."""
        if self.connectors == CONNECTORS:
            self.connectors = self.root / "connectors"
            shutil.copytree(CONNECTORS, self.connectors)
        path = next(self.connectors.glob(f"*/{name}.yaml"))
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(spec)
        path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    def args(self, command: str, *extra: str) -> list[str]:
        """`command` with this rig's project and state directories."""
        if command == "status":
            return [command, "--state", self.location, *extra]
        return [command, "--connectors", str(self.connectors), "--integrations", str(self.integrations),
                "--state", self.location, *extra]

    def ledger(self, name: str = NAME) -> Ledger:
        """This rig's ledger of integration `name` (close it after use)."""
        return open_store(self.location).open(name)

    def cli(self, command: str, *extra: str) -> Result:
        """Run `syncengine <command>` in this process (engine.cli.run)."""
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.run(self.args(command, *extra), stdout, stderr)
        return Result(code, stdout.getvalue(), stderr.getvalue())

    def list_calls(self) -> int:
        """How many order-list requests the cart has answered."""
        return sum(1 for _, path in self.cart.app.requests if path == LIST_PATHS[self.kind])

    def creates(self) -> int:
        """How many create-order requests reached the WMS."""
        return sum(1 for method, path in self.wms.app.requests if (method, path) == ("POST", WMS_ORDERS))

    def wms_refs(self) -> Counter:
        """referenceNum -> how many orders the WMS holds with it."""
        with self.wms.state.lock:
            return Counter(order["referenceNum"] for order in self.wms.state.created)

    def eligible_refs(self) -> list[str]:
        """The reference (order number) of every order the cart holds, as the WMS should get it."""
        with self.cart.state.lock:
            orders = list(self.cart.state.orders)
        return [order_number(self.kind, order) for order in orders]


def order_number(kind: str, order: dict) -> str:
    """The canonical order_number the connector maps from one cart order."""
    return order["name"] if kind == "shopify" else str(order.get("number", order["id"]))


def integration(kind: str, cart_url: str, wms_url: str, name: str = NAME) -> dict[str, Any]:
    """An orders-only integration of `kind` -> extensiv, secrets as ${env:..} references."""
    source = {
        "woocommerce": {"site_url": cart_url, "consumer_key": "${env:FLOW_CART_KEY}",
                        "consumer_secret": "${env:FLOW_CART_SECRET}"},
        "shopify": {"shop_url": cart_url, "access_token": "${env:FLOW_CART_TOKEN}",
                    "location_id": "gid://shopify/Location/76543210"},
        "bigcommerce": {"api_url": cart_url, "store_hash": "abc123", "access_token": "${env:FLOW_CART_TOKEN}"},
    }[kind]
    return {
        "name": name, "spec_version": 1,
        "source": {"connector": kind, "config": source},
        "destination": {"connector": "extensiv", "config": {
            "base_url": wms_url, "client_id": "${env:FLOW_WMS_CLIENT_ID}",
            "client_secret": "${env:FLOW_WMS_CLIENT_SECRET}", "user_login_id": "42",
            "customer_id": 7, "facility_id": 1}},
        "start_date": "2026-01-01T00:00:00Z",
        "overlap": "10m",
        "flows": {"orders": {"enabled": True}},
        "hold_minutes": 0,
        "sku_map": {"POSTER-A2": "POSTER-A2-TUBE"},
        "ship_method_map": {"map": SHIP_METHODS, "on_unmapped": "default", "default": "USPS Priority"},
    }


def start_cart(kind: str, orders: int) -> Server:
    """A sample cart of `kind` holding `orders` orders, checking this module's secrets."""
    secrets = CART_SECRETS[kind]
    options: dict[str, Any] = {"orders": orders, "seed": 3}
    if kind == "woocommerce":
        options.update(consumer_key=secrets["FLOW_CART_KEY"], consumer_secret=secrets["FLOW_CART_SECRET"])
    else:
        options["access_token"] = secrets["FLOW_CART_TOKEN"]
    return serve(KINDS[kind](**options))


def start_wms(*, accept_duplicates: bool = False) -> Server:
    """The FlowWms on a free 127.0.0.1 port, checking this module's secrets."""
    return serve(FlowWms(accept_duplicates=accept_duplicates, client_id=WMS_SECRETS["FLOW_WMS_CLIENT_ID"],
                          client_secret=WMS_SECRETS["FLOW_WMS_CLIENT_SECRET"], user_login_id="42"))


@contextlib.contextmanager
def open_rig(root: Path, kind: str, *, orders: int = 40, accept_duplicates: bool = True) -> Iterator[FlowRig]:
    """A cart and a WMS running for the block; stalled WMS answers are released on the way out."""
    with start_cart(kind, orders) as cart, start_wms(accept_duplicates=accept_duplicates) as wms:
        rig = FlowRig(root, kind, cart, wms, environ={**CART_SECRETS[kind], **WMS_SECRETS})
        try:
            yield rig
        finally:
            rig.open_gates()


def secret_values(rig: FlowRig) -> list[str]:
    return list(rig.environ.values())


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `condition` every 5 ms until it is truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.005)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def subprocess_run(rig: FlowRig, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `python -m engine run ...` for the rig (cwd: the repository root); output to `log`."""
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "engine", *rig.args("run")], cwd=ROOT, env=env,
                                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
