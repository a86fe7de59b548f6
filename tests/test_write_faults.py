"""Every write flow against faults at the moment of the write: the connection dropped before or
after the server acted, a 5xx after it acted, an answer slower than the client's timeout. After
reruns every write has happened exactly once: not lost, not applied twice.

The carts and the WMS are the sample servers on 127.0.0.1; a fault fires once, on the write's
own request, and the servers act exactly as they would without it (see `Fault` in
samples/servers/base.py). A duplicate shows as a second tracking number, or as the WMS refusing
a second cancel of a closed order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sync_rig import Rig, rig

from engine.flows.protocol import unresolved

FAULTS = {
    "drop-before": {"drop": "before"},
    "drop-after": {"drop": "after"},
    "502-after": {"acted_status": 502},
    "500-before": {"status": 500},
    "timeout-after": {"delay_after": 1.5},
}


@dataclass(frozen=True)
class WriteFlow:
    """One write flow: how to make it owe one write, where that write goes, how to count it."""

    name: str
    kind: str
    flow: str
    prepare: Callable[[Rig], None]
    path: str
    method: str
    after: int                               # matching requests before the write (its precondition)
    effects: Callable[[Rig], Counter]        # what the other side holds; each must be 1


def shipped(r: Rig) -> None:
    r.write()
    assert r.cli("run", "--flow", "orders").code == 0
    r.wms_app.ship(r.wms_id("1001" if r.kind == "woocommerce" else "#1001"), packages=2)


def woo_trackings(r: Rig) -> Counter:
    with r.cart.state.lock:
        return Counter(t["tracking_number"] for items in r.cart.state.trackings.values() for t in items)


def shopify_trackings(r: Rig) -> Counter:
    with r.cart.state.lock:
        return Counter(t["number"] for f in r.cart.state.fulfillments for t in f["trackingInfo"])


def canceled_in_cart(r: Rig) -> None:
    r.write()
    assert r.cli("run", "--flow", "orders").code == 0
    r.cart_app.cancel(1001)


def wms_cancels(r: Rig) -> Counter:
    """Cancels the WMS acted on, per order (each appends to its notes; a second is refused as
    closed, which fails the run), and the ledger's word that the order is canceled."""
    with r.wms.state.lock:
        acted = Counter({o["referenceNum"]: (o.get("notes") or "").count("Canceled:")
                         for o in r.wms.state.orders.values() if o["readOnly"]["status"] == 2})
    with r.ledger() as ledger:
        assert ledger.get("1001").status == "canceled"
    return acted


def stocked(r: Rig) -> None:
    r.write()
    assert r.cli("run", "--flow", "orders").code == 0


def stock_levels(r: Rig) -> Counter:
    """One per SKU whose cart stock equals what the WMS says is available (minus open orders: none)."""
    with r.wms.state.lock:
        wanted = dict(r.wms.state.stock)
    wanted = {cart: wanted[wms] for cart, wms in (("POSTER-A2", "POSTER-A2-TUBE"),) if wms in wanted} | {
        sku: n for sku, n in wanted.items() if sku != "POSTER-A2-TUBE"}
    with r.cart.state.lock:
        held = {p["sku"]: p.get("stock_quantity") for p in r.cart.state.products}
    return Counter(sku for sku, n in wanted.items() if sku in held and held[sku] == n)


FLOWS = [
    WriteFlow("shipments-woocommerce", "woocommerce", "shipments", shipped,
              "/wp-json/wc-shipment-tracking/", "POST", 0, woo_trackings),
    WriteFlow("shipments-shopify", "shopify", "shipments", shipped,
              "/admin/api/", "POST", 1, shopify_trackings),
    WriteFlow("cancellations-extensiv", "woocommerce", "cancellations", canceled_in_cart,
              "/orders/", "POST", 0, wms_cancels),
]


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("case", FLOWS, ids=[f.name for f in FLOWS])
def test_a_write_hit_by_a_fault_happens_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     case: WriteFlow, fault: str) -> None:
    """Whatever happened to the write's answer, reruns leave it applied once and nothing unresolved."""
    with rig(tmp_path, monkeypatch, kind=case.kind) as r:
        r.patch(case.kind, lambda spec: spec["http"].update(timeout=1))
        r.patch("extensiv", lambda spec: spec["http"].update(timeout=1))
        case.prepare(r)
        server = r.wms if case.flow == "cancellations" else r.cart
        prefix = case.path if case.flow != "cancellations" else "/orders/"
        server.faults.add(path_prefix=prefix, method=case.method, after=case.after, **FAULTS[fault])
        codes = [r.cli("run", "--flow", case.flow).code for _ in range(3)]
        effects = case.effects(r)
        assert effects and set(effects.values()) == {1}, effects
        assert codes[-1] == 0, codes
        with r.ledger() as ledger:
            assert unresolved(ledger) == []
