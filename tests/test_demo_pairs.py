"""Every cart × WMS pair the demo runs, through a whole day on the sample servers on 127.0.0.1:
orders in, an order shipped by the warehouse and its tracking back in the cart, stock set
from the warehouse (Extensiv: ShipStation has no inventory API), an order canceled by the
shopper canceled at the warehouse and one canceled by the warehouse canceled in the cart.
Clean, and with one kind of fault (5xx before acting, 502 after acting, 429 with Retry-After,
a connection dropped after acting) on every read and write of both sides; reruns until the
runs exit 0, then every effect is there exactly once and nothing is unresolved.

The same checks for every pair, so a pair the demo adds joins the table with its adapters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sync_rig import Rig, rig

from engine.flows.protocol import unresolved

ALL_FLOWS = ("orders", "shipments", "inventory", "cancellations", "wms_cancellations")


@dataclass(frozen=True)
class Cart:
    """How a test sees one sample cart: its orders by the reference the WMS gets, whether one is
    canceled, the tracking numbers it holds per reference, its stock by SKU."""

    kind: str
    prefix: str                                     # where every API path of the cart starts
    cancel: Callable[[Rig, str], None]
    canceled: Callable[[Rig, str], bool]
    trackings: Callable[[Rig], dict[str, list[str]]]
    stock: Callable[[Rig], dict[str, float]]


def _orders(r: Rig) -> list[dict[str, Any]]:
    with r.cart.state.lock:
        return list(r.cart.state.orders)


def _by_id(r: Rig, ref: str, field: str = "id") -> dict[str, Any]:
    return next(o for o in _orders(r) if str(o[field]) == ref)


def _shopify_trackings(r: Rig) -> dict[str, list[str]]:
    names = {o["id"]: o["name"] for o in _orders(r)}
    held: dict[str, list[str]] = {}
    with r.cart.state.lock:
        for fulfillment in r.cart.state.fulfillments:
            held.setdefault(names[fulfillment["orders"][0]], []).extend(t["number"] for t in fulfillment["trackingInfo"])
    return held


def _shopify_stock(r: Rig) -> dict[str, float]:
    with r.cart.state.lock:
        return {sku: r.cart.state.levels[v["inventoryItem"]["id"]] for sku, v in r.cart.state.variants.items()}


def _woo_stock(r: Rig) -> dict[str, float]:
    with r.cart.state.lock:
        return {p["sku"]: p["stock_quantity"] for p in r.cart.state.products.values()}


def _bc_stock(r: Rig) -> dict[str, float]:
    with r.cart.state.lock:
        return {sku: item["locations"][1] for sku, item in r.cart.state.inventory.items()}


def _magento_trackings(r: Rig) -> dict[str, list[str]]:
    refs = {str(o["entity_id"]): o["increment_id"] for o in _orders(r)}
    return {refs[oid]: numbers for oid, numbers in r.magento_tracks().items()}


CARTS = {
    "woocommerce": Cart("woocommerce", "/wp-json/",
                        lambda r, ref: r.cart_app.cancel(int(ref)),
                        lambda r, ref: _by_id(r, ref)["status"] == "cancelled",
                        lambda r: r.trackings(), _woo_stock),
    "shopify": Cart("shopify", "/admin/",
                    lambda r, ref: r.cart_app.cancel(_by_id(r, ref, "name")["id"]),
                    lambda r, ref: _by_id(r, ref, "name")["cancelledAt"] is not None,
                    _shopify_trackings, _shopify_stock),
    "bigcommerce": Cart("bigcommerce", "/stores/",
                        lambda r, ref: r.cart_app.cancel(int(ref)),
                        lambda r, ref: _by_id(r, ref)["status_id"] == 5,
                        lambda r: r.trackings(), _bc_stock),
    "magento2": Cart("magento2", "/rest/",
                     lambda r, ref: r.cart_app.cancel(_by_id(r, ref, "increment_id")["entity_id"]),
                     lambda r, ref: _by_id(r, ref, "increment_id")["state"] == "canceled",
                     _magento_trackings, lambda r: r.magento_stock()),
}


@dataclass(frozen=True)
class Wms:
    """How a test sees one sample WMS: the references of the orders it holds (one per create),
    shipping one (its tracking numbers back), canceling one, and whether one is canceled."""

    kind: str
    refs: Callable[[Rig], list[str]]
    ship: Callable[[Rig, str], list[str]]
    cancel: Callable[[Rig, str], None]
    canceled: Callable[[Rig, str], bool]
    inventory: bool


def _ss_order(r: Rig, ref: str) -> dict[str, Any]:
    with r.wms.state.lock:
        [order] = [o for o in r.wms.state.created if o["orderNumber"] == ref]
        return order


def _extensiv_refs(r: Rig) -> list[str]:
    with r.wms.state.lock:
        return [o["referenceNum"] for o in r.wms.state.created]


def _ss_refs(r: Rig) -> list[str]:
    with r.wms.state.lock:
        return [o["orderNumber"] for o in r.wms.state.created]


WMSS = {
    "extensiv": Wms("extensiv", _extensiv_refs,
                    lambda r, ref: [p["trackingNumber"] for p in
                                    r.wms_app.ship(r.wms_id(ref), packages=1)["readOnly"]["packages"]],
                    lambda r, ref: r.wms_app.cancel(r.wms_id(ref), "Out of stock"),
                    lambda r, ref: r.wms_order(ref)["readOnly"]["status"] == 2, inventory=True),
    "shipstation": Wms("shipstation", _ss_refs,
                       lambda r, ref: [s["trackingNumber"] for s in r.wms_app.ship(_ss_order(r, ref)["orderId"])],
                       lambda r, ref: r.wms_app.cancel(_ss_order(r, ref)["orderId"]),
                       lambda r, ref: _ss_order(r, ref)["orderStatus"] == "cancelled", inventory=False),
}

#: The pairs `syncengine demo` runs (samples/integrations, samples/demo.py).
PAIRS = [("woocommerce", "extensiv"), ("shopify", "extensiv"), ("bigcommerce", "extensiv"),
         ("magento2", "extensiv"), ("woocommerce", "shipstation")]

FAULTS: dict[str, dict[str, Any] | None] = {
    "clean": None,
    "500-before": {"status": 500, "times": 2},     # not acted: retried or rerun
    "502-after": {"acted_status": 502},            # acted, answer an error: resolved before any resend
    "429": {"status": 429, "retry_after": 0.01, "times": 2},
    "drop-after": {"drop": "after"},               # acted, answer lost
}


def _faults(r: Rig, cart: Cart, fault: dict[str, Any] | None) -> None:
    """The fault on the next reads and writes of both sides (each fires once per method)."""
    if fault is None:
        return
    for method in ("GET", "POST", "PUT"):
        r.cart.faults.add(path_prefix=cart.prefix, method=method, **fault)
        r.wms.faults.add(path_prefix="/", method=method, **fault)


def _until_clean(r: Rig, flow: str) -> None:
    codes = []
    while len(codes) < 4 and 0 not in codes:
        codes.append(r.cli("run", "--flow", flow).code)
    assert codes[-1] == 0, (flow, codes, r.status())


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("pair", PAIRS, ids=[f"{c}-{w}" for c, w in PAIRS])
def test_a_day_of_a_demo_pair_applies_every_effect_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        pair: tuple[str, str], fault: str) -> None:
    cart, wms = CARTS[pair[0]], WMSS[pair[1]]
    with rig(tmp_path, monkeypatch, kind=cart.kind, wms=wms.kind, orders=4) as r:
        r.patch(cart.kind, lambda spec: spec["http"].update(timeout=1))
        r.patch(wms.kind, lambda spec: spec["http"].update(timeout=1))
        flows = [f for f in ALL_FLOWS if wms.inventory or f != "inventory"]
        r.write(flows={name: {"enabled": True} for name in flows})

        _faults(r, cart, FAULTS[fault])
        _until_clean(r, "orders")
        refs = _refs_once(r, wms, 4)
        shipped, wms_canceled, cart_canceled = refs[0], refs[1], refs[2]
        numbers = wms.ship(r, shipped)
        wms.cancel(r, wms_canceled)
        cart.cancel(r, cart_canceled)
        if wms.inventory:
            with r.wms.state.lock:                  # the warehouse counts again
                r.wms.state.stock = {sku: n - 7 for sku, n in r.wms.state.stock.items()}

        for flow in flows[1:]:
            _faults(r, cart, FAULTS[fault])
            _until_clean(r, flow)
        for flow in flows:                          # a quiet day after: nothing new, nothing resent
            assert r.cli("run", "--flow", flow).code == 0

        assert _refs_once(r, wms, 4) == refs
        held = cart.trackings(r)
        assert held == {shipped: numbers}, (held, numbers)
        assert wms.canceled(r, cart_canceled) and cart.canceled(r, wms_canceled)
        assert not cart.canceled(r, refs[3]) and not wms.canceled(r, refs[3])
        if wms.inventory:
            wanted = r.stock_wanted()
            have = cart.stock(r)
            assert {sku: have[sku] for sku in wanted if sku in have} == \
                   {sku: n for sku, n in wanted.items() if sku in have} and set(wanted) & set(have)
        with r.ledger() as ledger:
            assert unresolved(ledger) == []
        if FAULTS[fault] is not None:                # faults were met on both sides
            assert len(r.cart.faults._faults) < 3 * len(flows) and len(r.wms.faults._faults) < 3 * len(flows)


def _refs_once(r: Rig, wms: Wms, count: int) -> list[str]:
    """The WMS's order references: `count` of them, each created once."""
    made = Counter(wms.refs(r))
    assert len(made) == count and set(made.values()) == {1}, made
    return sorted(made)
