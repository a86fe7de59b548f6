"""Extensiv Order Manager (the sample Skubana-like server) -> Extensiv 3PL Warehouse Manager (the
sample WMS), both on 127.0.0.1, through the shipped connectors: orders in, tracking back as
external shipments, on-hand stock set, cancels both ways, and reruns that move nothing again;
then each Order Manager write hit by a fault that loses its answer is applied exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sync_rig import Rig, rig

from engine.flows.protocol import unresolved

KIND = "extensiv-order-manager"
ALL = ("orders", "shipments", "inventory", "cancellations", "wms_cancellations")
BASE = 100000          # the sample's orderId = BASE + the order number


def om_order(r: Rig, number: str) -> dict:
    with r.cart.state.lock:
        return next(o for o in r.cart.state.orders if o["orderNumber"] == number)


def om_trackings(r: Rig) -> Counter:
    """Tracking numbers Order Manager holds as shipments, per (orderId, number)."""
    with r.cart.state.lock:
        return Counter((s["orderId"], s["trackingNumber"]) for s in r.cart.state.shipments)


def om_stock(r: Rig) -> dict[str, int]:
    with r.cart.state.lock:
        return {sku: n for (sku, warehouse, location), n in r.cart.state.stock.items()
                if (warehouse, location) == (5, "GLOBAL")}


def wanted_stock(r: Rig) -> dict[str, int]:
    """The WMS's levels under the Order Manager SKUs (the SKU map reversed)."""
    back = {wms: cart for cart, wms in r.sku_map.items()}
    with r.wms.state.lock:
        return {back.get(sku, sku): n for sku, n in r.wms.state.stock.items()}


def wms_status(r: Rig, ref: str) -> int:
    return r.wms_order(ref)["readOnly"]["status"]


def run_all(r: Rig) -> list[int]:
    return [r.cli("run", "--flow", flow).code for flow in ALL]


def test_orders_tracking_stock_and_cancels_both_ways_then_reruns_move_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Six orders reach the WMS under their Order Manager number (orderId in poNum); two packages
    come back as two external shipments; stock is set on hand; the merchant's cancel reaches the
    WMS, the warehouse's cancel reaches Order Manager; another round of every flow changes nothing."""
    with rig(tmp_path, monkeypatch, kind=KIND) as r:
        r.write(flows={flow: {"enabled": True} for flow in ALL})
        first = r.cli("run", "--flow", "orders")
        assert first.code == 0 and "delivered 6" in first.out, first.out
        with r.wms.state.lock:
            sent = {o["referenceNum"]: o["poNum"] for o in r.wms.state.created}
        assert sent == {str(n): str(BASE + n) for n in range(1001, 1007)}

        r.wms_app.ship(r.wms_id("1001"), packages=2)
        r.wms_app.cancel(r.wms_id("1002"), "Out of stock")
        r.cart_app.cancel(BASE + 1003, "Buyer cancelled")
        assert run_all(r)[1:] == [0, 0, 0, 0]

        numbers = [p["trackingNumber"] for p in r.wms_order("1001")["readOnly"]["packages"]]
        assert om_trackings(r) == Counter({(BASE + 1001, n): 1 for n in numbers})
        assert om_order(r, "1001")["orderStatus"] == "SHIPPED"
        assert om_stock(r) == wanted_stock(r)
        assert wms_status(r, "1003") == 2
        assert om_order(r, "1002")["orderStatus"] == "CANCELLED"
        assert om_order(r, "1002")["cancelReason"].endswith("Canceled: Out of stock")   # the WMS's notes

        before = (om_trackings(r), om_stock(r), len(r.wms.state.created), len(r.cart_app.requests))
        assert run_all(r) == [0] * 5
        assert (om_trackings(r), om_stock(r), len(r.wms.state.created)) == before[:3]
        writes = [(m, p) for m, p in r.cart_app.requests[before[3]:] if m != "GET"]
        assert writes == []                                   # nothing sent again, nothing bounced back
        with r.ledger() as ledger:
            assert {ledger.get(str(BASE + n)).status for n in (1002, 1003)} == {"canceled"}
            assert unresolved(ledger) == []


def shipped(r: Rig) -> None:
    r.wms_app.ship(r.wms_id("1001"), packages=2)


def canceled_at_wms(r: Rig) -> None:
    r.wms_app.cancel(r.wms_id("1002"), "Out of stock")


def trackings_once(r: Rig) -> bool:
    held = om_trackings(r)
    return len(held) == 2 and set(held.values()) == {1}


def stock_set(r: Rig) -> bool:
    return om_stock(r) == wanted_stock(r)


def canceled_once(r: Rig) -> bool:
    """CANCELLED in Order Manager (a second cancel is refused 400, which would fail the run)."""
    with r.ledger() as ledger:
        return om_order(r, "1002")["orderStatus"] == "CANCELLED" and ledger.get(str(BASE + 1002)).status == "canceled"


def canceled_by_merchant(r: Rig) -> None:
    r.cart_app.cancel(BASE + 1003, "Buyer cancelled")


def wms_canceled_once(r: Rig) -> bool:
    """Canceled at the WMS (a second cancel of the closed order is refused, failing the run)."""
    with r.ledger() as ledger:
        return wms_status(r, "1003") == 2 and ledger.get(str(BASE + 1003)).status == "canceled"


WRITES = {
    "shipments": (shipped, "/v1.1/shipment/external", "PUT", trackings_once),
    "cancellations": (canceled_by_merchant, "/orders/", "POST", wms_canceled_once),   # the WMS's write
    "inventory": (lambda r: None, "/v1.1/inventory/adjust", "POST", stock_set),
    "wms_cancellations": (canceled_at_wms, "/v1/orders/cancel", "POST", canceled_once),
}
FAULTS = {"drop-after": {"drop": "after"}, "502-after": {"acted_status": 502}, "500-before": {"status": 500}}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("flow", WRITES, ids=list(WRITES))
def test_an_order_manager_write_whose_answer_is_lost_happens_exactly_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flow: str, fault: str) -> None:
    """The answer of a tracking, stock or cancel write (and of the WMS cancel a merchant's cancel
    makes) is lost (dropped, or a 5xx after or before
    the server acted): reruns leave it applied once and nothing unresolved."""
    prepare, path, method, done = WRITES[flow]
    with rig(tmp_path, monkeypatch, kind=KIND) as r:
        r.write(flows={name: {"enabled": True} for name in ("orders", flow)})
        assert r.cli("run", "--flow", "orders").code == 0
        prepare(r)
        server = r.wms if flow == "cancellations" else r.cart
        server.faults.add(path_prefix=path, method=method, **FAULTS[fault])
        codes = []
        while len(codes) < 3 and 0 not in codes:
            codes.append(r.cli("run", "--flow", flow).code)
        assert [m for m, _ in server.faults.fired] == [method]
        assert done(r) and codes[-1] == 0, codes
        with r.ledger() as ledger:
            assert unresolved(ledger) == []
