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
from engine.ledger.stores import is_url

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


def integration_only(r: Rig) -> None:
    r.write()


def wms_orders(r: Rig) -> Counter:
    """Orders the WMS holds, per reference (it refuses a second one; the ledger must say delivered)."""
    with r.wms.state.lock:
        held = Counter(o["referenceNum"] for o in r.wms.state.created)
    with r.ledger() as ledger:
        assert ledger.counts().get("delivered") == len(held) == 6, ledger.counts()
    return held


#: the first two orders of each sample cart, as the WMS knows them
REFS = {"woocommerce": ("1001", "1002"), "shopify": ("#1001", "#1002"), "bigcommerce": ("100", "101")}


def shipped(r: Rig) -> None:
    r.write()
    assert r.cli("run", "--flow", "orders").code == 0
    r.wms_app.ship(r.wms_id(REFS[r.kind][0]), packages=2)


def woo_trackings(r: Rig) -> Counter:
    """Customer notes per tracking number (core tracking), and the order completed."""
    assert r.completed() == {"1001"}
    return Counter(number for numbers in r.trackings().values() for number in numbers)


def bigcommerce_trackings(r: Rig) -> Counter:
    """BigCommerce shipments per tracking number (one per WMS shipment), the order Shipped."""
    with r.cart.state.lock:
        assert r.cart.state.orders[0]["status_id"] == 2
    return Counter(number for numbers in r.trackings().values() for number in numbers)


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
    """One per cart product whose stock is what the WMS has available (SKU map reversed)."""
    with r.wms.state.lock:
        wms = dict(r.wms.state.stock)
    wanted = {cart: wms[stocked_as] for cart, stocked_as in r.sku_map.items() if stocked_as in wms}
    wanted |= {sku: n for sku, n in wms.items() if sku not in r.sku_map.values()}
    with r.cart.state.lock:
        products = list(r.cart.state.products.values())
    assert all(p.get("stock_quantity") == wanted[p["sku"]] for p in products if p["sku"] in wanted)
    return Counter(p["sku"] for p in products if p["sku"] in wanted)


def shopify_stock(r: Rig) -> Counter:
    """Sets applied per cart SKU (a resend under the same @idempotent key is answered, not applied),
    each level what the WMS has available."""
    with r.wms.state.lock:
        wms = dict(r.wms.state.stock)
    wanted = {cart: wms[stocked_as] for cart, stocked_as in r.sku_map.items() if stocked_as in wms}
    wanted |= {sku: n for sku, n in wms.items() if sku not in r.sku_map.values()}
    with r.cart.state.lock:
        skus = {v["inventoryItem"]["id"]: sku for sku, v in r.cart.state.variants.items()}
        assert all(r.cart.state.levels[item] == wanted[sku] for item, sku in skus.items() if sku in wanted)
        return Counter({skus[item]: n for item, n in r.cart.state.applied.items()})


def canceled_at_wms(r: Rig) -> None:
    r.write(flows={name: {"enabled": True} for name in ("orders", "wms_cancellations")})
    assert r.cli("run", "--flow", "orders").code == 0
    r.wms_app.cancel(r.wms_id(REFS[r.kind][1]), "Out of stock")


def shopify_cancels(r: Rig) -> Counter:
    """Orders canceled in the shop (a repeated orderCancel is refused, which fails the run)."""
    with r.cart.state.lock:
        canceled = Counter(o["name"] for o in r.cart.state.orders if o["cancelledAt"])
    with r.ledger() as ledger:
        assert {e.status for e in ledger.iter_status("canceled")} == {"canceled"}
    return canceled


def bigcommerce_stock(r: Rig) -> Counter:
    """One per inventory item whose level at location 1 is what the WMS has (SKU map reversed)."""
    wanted = r.stock_wanted()
    with r.cart.state.lock:
        levels = {sku: item["locations"][1] for sku, item in r.cart.state.inventory.items() if sku in wanted}
    assert levels == {sku: n for sku, n in wanted.items() if sku in levels}
    return Counter(levels.keys())


def bigcommerce_cancels(r: Rig) -> Counter:
    with r.cart.state.lock:
        canceled = Counter(str(o["id"]) for o in r.cart.state.orders if o["status_id"] == 5)
    with r.ledger() as ledger:
        assert ledger.get("101").status == "canceled"
    return canceled


def cart_cancels(r: Rig) -> Counter:
    with r.cart.state.lock:
        canceled = Counter(str(o["id"]) for o in r.cart.state.orders if o["status"] == "cancelled")
    with r.ledger() as ledger:
        assert ledger.get("1002").status == "canceled"
    return canceled


FLOWS = [
    WriteFlow("orders-extensiv", "woocommerce", "orders", integration_only, "/orders", "POST", 0, wms_orders),
    WriteFlow("shipments-woocommerce", "woocommerce", "shipments", shipped,
              "/wp-json/wc/v3/orders/1001/notes", "POST", 0, woo_trackings),
    WriteFlow("shipments-shopify", "shopify", "shipments", shipped,
              "/admin/api/", "POST", 1, shopify_trackings),
    WriteFlow("cancellations-extensiv", "woocommerce", "cancellations", canceled_in_cart,
              "/orders/", "POST", 0, wms_cancels),
    WriteFlow("inventory-woocommerce", "woocommerce", "inventory", stocked,
              "/wp-json/wc/v3/products/", "PUT", 0, stock_levels),
    WriteFlow("inventory-shopify", "shopify", "inventory", stocked,
              "/admin/api/", "POST", 1, shopify_stock),
    WriteFlow("wms_cancellations-woocommerce", "woocommerce", "wms_cancellations", canceled_at_wms,
              "/wp-json/wc/v3/orders/", "PUT", 0, cart_cancels),
    WriteFlow("wms_cancellations-shopify", "shopify", "wms_cancellations", canceled_at_wms,
              "/admin/api/", "POST", 0, shopify_cancels),
    WriteFlow("shipments-bigcommerce", "bigcommerce", "shipments", shipped,
              "/stores/abc123/v2/orders/100/shipments", "POST", 0, bigcommerce_trackings),
    WriteFlow("inventory-bigcommerce", "bigcommerce", "inventory", stocked,
              "/stores/abc123/v3/inventory/adjustments/absolute", "PUT", 0, bigcommerce_stock),
    WriteFlow("wms_cancellations-bigcommerce", "bigcommerce", "wms_cancellations", canceled_at_wms,
              "/stores/abc123/v2/orders/101", "PUT", 0, bigcommerce_cancels),
]


#: the PostgreSQL leg (the whole table again would add minutes): every fault on the orders flow,
#: and on each other write flow the faults that leave its outcome unknown, resolved through the
#: write journal in the ledger (a verify read, a skip_when re-read, an idempotency key)
ON_POSTGRES = [("orders-extensiv", fault) for fault in FAULTS] + [
    ("shipments-woocommerce", "drop-after"), ("shipments-woocommerce", "timeout-after"),
    ("cancellations-extensiv", "502-after"), ("inventory-shopify", "drop-after"),
    ("inventory-woocommerce", "timeout-after"), ("wms_cancellations-shopify", "drop-after"),
]
_BY_NAME = {case.name: case for case in FLOWS}
CASES = [pytest.param("disk", case, fault, id=f"disk-{case.name}-{fault}") for case in FLOWS for fault in FAULTS] + \
        [pytest.param("postgres", _BY_NAME[name], fault, id=f"postgres-{name}-{fault}") for name, fault in ON_POSTGRES]


def state_url(ledger_state: str) -> str | None:
    return ledger_state if is_url(ledger_state) else None


@pytest.mark.parametrize(("ledger_state", "case", "fault"), CASES, indirect=["ledger_state"])
def test_a_write_hit_by_a_fault_happens_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ledger_state: str,
                                                     case: WriteFlow, fault: str) -> None:
    """Whatever happened to the write's answer, reruns leave it applied once and nothing unresolved."""
    with rig(tmp_path, monkeypatch, kind=case.kind, state_url=state_url(ledger_state)) as r:
        r.patch(case.kind, lambda spec: spec["http"].update(timeout=1))
        r.patch("extensiv", lambda spec: spec["http"].update(timeout=1))
        case.prepare(r)
        server = r.wms if case.flow in ("orders", "cancellations") else r.cart
        server.faults.add(path_prefix=case.path, method=case.method, after=case.after, **FAULTS[fault])
        codes = []
        while len(codes) < 3 and 0 not in codes:          # reruns until one goes through cleanly
            codes.append(r.cli("run", "--flow", case.flow).code)
        effects = case.effects(r)
        assert effects and set(effects.values()) == {1}, effects
        assert codes[-1] == 0, codes
        with r.ledger() as ledger:
            assert unresolved(ledger) == []


def test_a_write_that_cannot_be_resolved_yet_fails_the_run_and_shows_in_status(tmp_path: Path, ledger_state: str,
                                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer is lost and the verify read keeps failing: nothing is resent, the run counts the
    write unresolved and exits 1, `status` lists it; once the cart answers, the next run finds the
    tracking there and sends nothing more."""
    with rig(tmp_path, monkeypatch, state_url=state_url(ledger_state)) as r:
        shipped(r)
        notes = "/wp-json/wc/v3/orders/1001/notes"
        r.cart.faults.add(path_prefix=notes, method="POST", drop="after")
        r.cart.faults.add(path_prefix=notes, method="GET", status=500, times=50)
        first = r.cli("run", "--flow", "shipments")
        assert first.code == 1 and "unresolved 1" in first.out, first.out
        assert "write unresolved" in r.status()
        assert sum(woo_trackings(r).values()) == 2           # one package taken, one with its answer lost
        r.cart.faults.clear()
        second = r.cli("run", "--flow", "shipments")
        assert second.code == 0 and "unresolved 0" in second.out, second.out
        assert set(woo_trackings(r).values()) == {1} and "write unresolved" not in r.status()

