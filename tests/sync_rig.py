"""Helpers for the shipments, inventory, cancellations, rules and schedule tests: a sample cart
and the sample Extensiv WMS on 127.0.0.1, an integration written into tmp_path with every flow
enabled and its secrets as `${env:..}` references, and the command line run in-process.

    with rig(tmp_path, monkeypatch) as r:           # WooCommerce + Extensiv
        r.write(split_shipments="wait_for_all")
        r.cli("run", "--flow", "orders")
        r.wms_app.ship(r.wms_id("1001"), packages=2)
"""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import ROOT, cli
from engine.http import reset_buckets, set_testing
from engine.ledger import Ledger, open_store
from samples.servers import Server, start
from samples.servers.extensiv import order_items

CONNECTORS = ROOT / "connectors"
NAME = "sync-shop"
SECRETS = {"woocommerce": {"SYNC_CART_KEY": "ck_sync_71c0", "SYNC_CART_SECRET": "cs_sync_e52a"},
           "shopify": {"SYNC_CART_TOKEN": "shpat_sync_9b14"},
           "bigcommerce": {"SYNC_CART_TOKEN": "bc_sync_3d27"},
           "extensiv-order-manager": {"SYNC_CART_TOKEN": "om_sync_6a19"},
           "magento2": {"SYNC_CART_TOKEN": "mage_sync_5e61"}}
WMS_SECRETS = {"SYNC_WMS_ID": "wms-sync-id-4d", "SYNC_WMS_SECRET": "wms-sync-secret-8f"}
SS_SECRETS = {"SYNC_SS_KEY": "ss-sync-key-2a", "SYNC_SS_SECRET": "ss-sync-secret-7c"}   # wms="shipstation"
SHIP_METHODS = {"flat_rate": "UPS Ground", "ups_ground": "UPS Ground", "fedex_2day": "FedEx 2Day"}


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Rig:
    """A cart, the WMS and a project directory in tmp_path."""

    root: Path
    kind: str
    cart: Server
    wms: Server
    wms_kind: str = "extensiv"
    state_url: str | None = None               # a postgresql:// ledger instead of <root>/state

    @property
    def cart_app(self) -> Any:
        return self.cart.app

    @property
    def wms_app(self) -> Any:
        return self.wms.app

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def location(self) -> str:
        """What `--state` is given: the state directory or the PostgreSQL URL."""
        return self.state_url or str(self.state)

    def write(self, **overrides: Any) -> Path:
        """Write the integration (every flow enabled) with `overrides` on top; returns its path."""
        data = integration(self.kind, self.cart.url, self.wms.url, self.wms_kind)
        data.update(overrides)
        path = self.root / "integrations" / f"{NAME}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
        return path

    @property
    def connectors(self) -> Path:
        """The project's connectors, or this rig's patched copy of them (`patch`)."""
        copy_ = self.root / "connectors"
        return copy_ if copy_.is_dir() else CONNECTORS

    def patch(self, name: str, change: Any) -> None:
        """Run with a copy of the connectors in which `change(spec)` edited connector `name`."""
        if not (self.root / "connectors").is_dir():
            shutil.copytree(CONNECTORS, self.root / "connectors")
        path = next((self.root / "connectors").glob(f"*/{name}.yaml"))
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        change(spec)
        path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")

    def args(self, command: str, *extra: str) -> list[str]:
        if command == "status":
            return [command, "--state", self.location, *extra]
        return [command, "--connectors", str(self.connectors), "--integrations", str(self.root / "integrations"),
                "--state", self.location, *extra]

    def cli(self, command: str, *extra: str, before: tuple[str, ...] = ()) -> Result:
        """`syncengine [before] <command>` in this process (`before`: -v, --log-format json)."""
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.run([*before, *self.args(command, *extra)], stdout, stderr)
        result = Result(code, stdout.getvalue(), stderr.getvalue())
        assert "Traceback" not in result.out + result.err and "internal error" not in result.err, result
        return result

    @property
    def sku_map(self) -> dict[str, str]:
        return integration(self.kind, self.cart.url, self.wms.url, self.wms_kind)["sku_map"]

    def ledger(self) -> Ledger:
        return open_store(self.location).open(NAME)

    def wms_id(self, ref: str) -> int:
        """The WMS order id of the (open, latest) order with referenceNum `ref`."""
        with self.wms.state.lock:
            found = [o for o in self.wms.state.created if o["referenceNum"] == ref]
        assert found, f"the WMS has no order {ref}"
        return found[-1]["readOnly"]["orderId"]

    def wms_order(self, ref: str) -> dict:
        return self.wms.state.orders[self.wms_id(ref)]

    def ship_part(self, ref: str, shipped: dict[str, int], packages: int = 1) -> int:
        """Ship part of an order the way a 3PL splits it: the original ships `shipped` (SKU ->
        units) and a new open backorder with the same referenceNum keeps the rest; its id."""
        state, oid = self.wms.state, self.wms_id(ref)
        with state.lock:
            order = state.orders[oid]
            items = order_items(order)
            rest = [{"itemIdentifier": i["itemIdentifier"], "qty": i["qty"] - shipped.get(i["itemIdentifier"]["sku"], 0)}
                    for i in items]
            items[:] = [i for i in items if shipped.get(i["itemIdentifier"]["sku"])]
            for item in items:
                item["qty"] = shipped[item["itemIdentifier"]["sku"]]
            body = copy.deepcopy({**order, "orderItems": [i for i in rest if i["qty"] > 0]})
            backorder = self.wms_app._new_order(body, order["readOnly"]["customerIdentifier"]["id"])
        self.wms_app.ship(order["readOnly"]["orderId"], packages)
        return backorder["readOnly"]["orderId"]

    def trackings(self) -> dict[str, list[str]]:
        """Cart order id -> tracking numbers the cart holds: BigCommerce's order shipments, or
        WooCommerce's customer notes "<carrier> tracking <number>" (core), then the Shipment
        Tracking extension's items."""
        held: dict[str, list[str]] = {}
        if self.kind == "bigcommerce":
            with self.cart.state.lock:
                return {str(oid): [s["tracking_number"] for s in shipments]
                        for oid, shipments in self.cart.state.shipments.items() if shipments}
        with self.cart.state.lock:
            for oid, notes in self.cart.state.notes.items():
                held.setdefault(str(oid), []).extend(
                    n["note"].rsplit(" tracking ", 1)[1] for n in notes if n["customer_note"] and " tracking " in n["note"])
            for oid, items in self.cart.state.trackings.items():
                held.setdefault(str(oid), []).extend(t["tracking_number"] for t in items)
        return {oid: numbers for oid, numbers in held.items() if numbers}

    def carriers(self, order_id: int) -> set[str]:
        """The carriers named in a WooCommerce order's tracking notes."""
        with self.cart.state.lock:
            return {n["note"].rsplit(" tracking ", 1)[0] for n in self.cart.state.notes.get(order_id, [])}

    def completed(self) -> set[str]:
        """The WooCommerce orders whose status is `completed`."""
        with self.cart.state.lock:
            return {str(o["id"]) for o in self.cart.state.orders if o["status"] == "completed"}

    def status(self) -> str:
        return self.cli("status").out

    def stock_wanted(self) -> dict[str, int]:
        """Cart SKU -> the level the WMS says it should have (its stock, the SKU map reversed)."""
        with self.wms.state.lock:
            wms = dict(self.wms.state.stock)
        wanted = {cart: wms[stocked_as] for cart, stocked_as in self.sku_map.items() if stocked_as in wms}
        return wanted | {sku: n for sku, n in wms.items() if sku not in self.sku_map.values()}

    def magento_tracks(self) -> dict[str, list[str]]:
        """Magento order id -> the tracking numbers of its shipments, in order."""
        held: dict[str, list[str]] = {}
        with self.cart.state.lock:
            for shipment in self.cart.state.shipments:
                held.setdefault(str(shipment["order_id"]), []).extend(t["track_number"] for t in shipment["tracks"])
        return held

    def magento_stock(self) -> dict[str, float]:
        """SKU -> quantity of the Magento sample's MSI source items on source `default`."""
        with self.cart.state.lock:
            return {sku: item["quantity"] for (sku, source), item in self.cart.state.source_items.items()
                    if source == "default"}

    def magento_states(self) -> dict[str, str]:
        """Magento order id -> its state (processing, complete, canceled ...)."""
        with self.cart.state.lock:
            return {str(o["entity_id"]): o["state"] for o in self.cart.state.orders}


def integration(kind: str, cart_url: str, wms_url: str, wms: str = "extensiv") -> dict[str, Any]:
    """Every flow enabled (but inventory for ShipStation), `kind` -> `wms`, secrets as ${env:..} references."""
    source = {
        "woocommerce": {"site_url": cart_url, "consumer_key": "${env:SYNC_CART_KEY}",
                        "consumer_secret": "${env:SYNC_CART_SECRET}"},
        "shopify": {"shop_url": cart_url, "access_token": "${env:SYNC_CART_TOKEN}",
                    "location_id": "gid://shopify/Location/76543210"},
        "bigcommerce": {"api_url": cart_url, "store_hash": "abc123", "access_token": "${env:SYNC_CART_TOKEN}",
                        "location_id": 1},
        "extensiv-order-manager": {"api_url": cart_url, "access_token": "${env:SYNC_CART_TOKEN}", "warehouse_id": 5},
        "magento2": {"base_url": cart_url, "access_token": "${env:SYNC_CART_TOKEN}"},
    }[kind]
    return {
        "name": NAME, "spec_version": 1,
        "source": {"connector": kind, "config": source},
        "destination": {"connector": "extensiv", "config": {
            "base_url": wms_url, "client_id": "${env:SYNC_WMS_ID}", "client_secret": "${env:SYNC_WMS_SECRET}",
            "user_login_id": "42", "customer_id": 7, "facility_id": 1}} if wms == "extensiv" else
        {"connector": "shipstation", "config": {          # ShipStation has no inventory API
            "base_url": wms_url, "api_key": "${env:SYNC_SS_KEY}", "api_secret": "${env:SYNC_SS_SECRET}",
            "order_key_prefix": "sync-"}},
        "start_date": "2026-01-01T00:00:00Z",
        "flows": {name: {"enabled": True} for name in ("orders", "shipments", "inventory", "cancellations")
                  if wms == "extensiv" or name != "inventory"},
        "sku_map": {"POSTER-A2": "POSTER-A2-TUBE"},
        "ship_method_map": {"map": SHIP_METHODS, "on_unmapped": "default", "default": "USPS Priority"},
        "carrier_map": {"FDX": "FedEx"},
    }


@contextlib.contextmanager
def rig(root: Path, monkeypatch: pytest.MonkeyPatch, kind: str = "woocommerce", orders: int = 6,
        cart_options: dict[str, Any] | None = None, wms: str = "extensiv", state_url: str | None = None,
        **wms_options: Any) -> Iterator[Rig]:
    """A cart of `kind` holding `orders` orders (with `cart_options`, e.g. `shipment_tracking`)
    and the WMS `wms` (with `wms_options`, e.g. its `time_zone`), both on 127.0.0.1, for the block."""
    secrets = SECRETS[kind]
    for name, value in {**secrets, **WMS_SECRETS, **SS_SECRETS}.items():
        monkeypatch.setenv(name, value)
    options: dict[str, Any] = {"orders": orders, "seed": 5, **(cart_options or {})}
    if kind == "woocommerce":
        options.update(consumer_key=secrets["SYNC_CART_KEY"], consumer_secret=secrets["SYNC_CART_SECRET"])
    else:
        options["access_token"] = secrets["SYNC_CART_TOKEN"]
    set_testing(True)
    reset_buckets()
    try:
        if wms == "shipstation":
            wms_options = {"api_key": SS_SECRETS["SYNC_SS_KEY"], "api_secret": SS_SECRETS["SYNC_SS_SECRET"], **wms_options}
        else:
            wms_options = {"client_id": WMS_SECRETS["SYNC_WMS_ID"], "client_secret": WMS_SECRETS["SYNC_WMS_SECRET"],
                           **wms_options}
        with start(kind, **options) as cart, start(wms, **wms_options) as server:
            yield Rig(root, kind, cart, server, wms, state_url)
    finally:
        set_testing(False)
        reset_buckets()
