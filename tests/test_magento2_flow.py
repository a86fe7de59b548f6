"""Magento 2 -> Extensiv end to end, through the CLI against both sample servers on 127.0.0.1:
orders (configurable products as their simple child, paging stopped by total_count), tracking
shipped by the configurable parent's item id, MSI stock, cancellations both ways, and each
Magento write hit by a fault happening exactly once over reruns."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from sync_rig import Rig, rig

from engine.flows.protocol import unresolved
from samples.servers.extensiv import order_items

ORDERS = "/rest/default/V1/orders"


def configurable_order(r: Rig) -> dict:
    """The first Magento order holding a configurable product."""
    with r.cart.state.lock:
        return next(o for o in r.cart.state.orders if any(i["product_type"] == "configurable" for i in o["items"]))


def wms_lines(r: Rig, ref: str) -> Counter:
    return Counter({i["itemIdentifier"]["sku"]: i["qty"] for i in order_items(r.wms_order(ref))})


def simple_lines(r: Rig, order: dict) -> Counter:
    """What the warehouse should get of a Magento order: its simple items, SKU map applied."""
    return Counter({r.sku_map.get(i["sku"], i["sku"]): i["qty_ordered"] for i in order["items"]
                    if i["product_type"] == "simple"})


def test_orders_reach_the_wms_as_simple_items_and_paging_stops_by_total_count(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten orders over pages of four: three page reads (the fourth would repeat the last page),
    every order once at the WMS with only its simple items (a configurable as its child), and a
    rerun delivers nothing."""
    with rig(tmp_path, monkeypatch, kind="magento2", orders=10) as r:
        def small_pages(spec: dict) -> None:
            spec["operations"]["list_orders"]["request"]["params"]["searchCriteria[pageSize]"] = 4
        r.patch("magento2", small_pages)
        r.write()
        first = r.cli("run", "--flow", "orders")
        assert first.code == 0, first
        assert len([p for m, p in r.cart_app.requests if p == ORDERS]) == 3
        since = {f["value"] for c in r.cart.state.searches for g in c["filter_groups"] for f in g["filters"]
                 if f["field"] == "updated_at"}
        assert since == {"2026-01-01 00:00:00"}             # start_date, as Magento writes dates
        with r.cart.state.lock:
            orders = list(r.cart.state.orders)
        assert sorted(o["referenceNum"] for o in r.wms.state.created) == sorted(o["increment_id"] for o in orders)
        for order in orders:
            assert wms_lines(r, order["increment_id"]) == simple_lines(r, order)
        order = configurable_order(r)
        parent = next(i for i in order["items"] if i["product_type"] == "configurable")
        assert wms_lines(r, order["increment_id"])[parent["sku"]] == parent["qty_ordered"]   # once, not twice
        again = r.cli("run", "--flow", "orders")
        assert again.code == 0 and len(r.wms.state.created) == 10
        later = r.cart.state.searches[-1]["filter_groups"][1]["filters"][0]["value"]
        assert re.fullmatch(r"2026-01-05 \d\d:\d\d:\d\d", later), later   # the watermark minus the overlap


def test_tracking_ships_the_configurable_by_its_parent_item_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The warehouse ships an order holding a configurable in two packages: one Magento shipment
    with both tracking numbers, its every item shipped, the order complete; a rerun adds nothing."""
    with rig(tmp_path, monkeypatch, kind="magento2") as r:
        r.write()
        assert r.cli("run", "--flow", "orders").code == 0
        order = configurable_order(r)
        r.wms_app.ship(r.wms_id(order["increment_id"]), packages=2)
        result = r.cli("run", "--flow", "shipments")
        assert result.code == 0, result
        oid = str(order["entity_id"])
        assert len(r.magento_tracks()[oid]) == 2
        assert r.cart.state.shipments[0]["email_sent"] == 1            # notify_customer defaults to true
        assert r.magento_states()[oid] == "complete"
        with r.cart.state.lock:
            assert all(i["qty_shipped"] == i["qty_ordered"] for i in order["items"])
        assert r.cli("run", "--flow", "shipments").code == 0
        assert len(r.cart.state.shipments) == 1


def test_a_partial_shipment_ships_only_its_items_and_the_rest_completes_the_order(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The warehouse ships one line of a two-line order, then a backorder with the rest: two
    Magento shipments, each naming only its own items; the order is complete after the second."""
    with rig(tmp_path, monkeypatch, kind="magento2", orders=10) as r:
        r.write()
        assert r.cli("run", "--flow", "orders").code == 0
        with r.cart.state.lock:
            order = next(o for o in r.cart.state.orders
                         if len([i for i in o["items"] if i["product_type"] == "simple"]) >= 2)
        ref, oid = order["increment_id"], str(order["entity_id"])
        first_sku = next(iter(wms_lines(r, ref)))
        backorder = r.ship_part(ref, {first_sku: wms_lines(r, ref)[first_sku]})
        assert r.cli("run", "--flow", "shipments").code == 0
        assert r.magento_states()[oid] == "processing"
        with r.cart.state.lock:
            shipped = [{r.sku_map.get(i["sku"], i["sku"]) for i in s["items"]} for s in r.cart.state.shipments]
        assert shipped == [{first_sku}]                    # as the WMS names it (SKU map applied)
        r.wms_app.ship(backorder, packages=1)
        assert r.cli("run", "--flow", "shipments").code == 0
        assert len(r.cart.state.shipments) == 2 and r.magento_states()[oid] == "complete"


def test_stock_is_set_on_the_msi_source_and_only_changes_are_pushed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Every WMS SKU's available quantity lands on source `default` under the cart SKU; a rerun
    with nothing changed sends nothing."""
    with rig(tmp_path, monkeypatch, kind="magento2") as r:
        r.write()
        assert r.cli("run", "--flow", "inventory").code == 0
        stock = r.magento_stock()
        with r.wms.state.lock:
            wms = dict(r.wms.state.stock)
        reverse = {v: k for k, v in r.sku_map.items()}
        assert stock == {reverse.get(sku, sku): float(n) for sku, n in wms.items()}
        pushes = len(r.cart_app.requests)
        assert r.cli("run", "--flow", "inventory").code == 0
        assert [p for _, p in r.cart_app.requests[pushes:] if "source-items" in p] == []


def test_cancellations_go_both_ways_and_never_bounce(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An order canceled in Magento is canceled at the WMS; one the WMS canceled is canceled in
    Magento (once: the next run sees it canceled and asks nothing)."""
    with rig(tmp_path, monkeypatch, kind="magento2") as r:
        r.write(flows={name: {"enabled": True} for name in ("orders", "cancellations", "wms_cancellations")})
        assert r.cli("run", "--flow", "orders").code == 0
        r.cart_app.cancel(1001)
        r.wms_app.cancel(r.wms_id("000001002"), "Out of stock")
        assert r.cli("run", "--flow", "cancellations").code == 0
        assert r.cli("run", "--flow", "wms_cancellations").code == 0
        assert r.wms_order("000001001")["readOnly"]["status"] == 2
        assert r.magento_states()["1002"] == "canceled"
        cancels = [p for m, p in r.cart_app.requests if p.endswith("/cancel")]
        assert cancels == ["/rest/default/V1/orders/1002/cancel"]
        assert r.cli("run", "--flow", "cancellations").code == 0
        assert r.cli("run", "--flow", "wms_cancellations").code == 0
        assert [p for m, p in r.cart_app.requests if p.endswith("/cancel")] == cancels
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "canceled" and ledger.get("1002").status == "canceled"


FAULTS = {
    "500-before": {"status": 500},
    "429": {"status": 429, "retry_after": 0},
    "drop-after": {"drop": "after"},
    "502-after": {"acted_status": 502},
}


def _shipped(r: Rig) -> str:
    r.write()
    assert r.cli("run", "--flow", "orders").code == 0
    order = configurable_order(r)
    r.wms_app.ship(r.wms_id(order["increment_id"]), packages=2)
    return f"/rest/default/V1/order/{order['entity_id']}/ship"


def _stocked(r: Rig) -> str:
    r.write()
    return "/rest/default/V1/inventory/source-items"


def _canceled_at_wms(r: Rig) -> str:
    r.write(flows={name: {"enabled": True} for name in ("orders", "wms_cancellations")})
    assert r.cli("run", "--flow", "orders").code == 0
    r.wms_app.cancel(r.wms_id("000001002"), "Out of stock")
    return "/rest/default/V1/orders/1002/cancel"


def _once_tracked(r: Rig) -> None:
    numbers = Counter(n for numbers in r.magento_tracks().values() for n in numbers)
    assert len(r.cart.state.shipments) == 1 and len(numbers) == 2 and set(numbers.values()) == {1}, numbers


def _stock_set(r: Rig) -> None:
    with r.wms.state.lock:
        wms = dict(r.wms.state.stock)
    reverse = {v: k for k, v in r.sku_map.items()}
    assert r.magento_stock() == {reverse.get(sku, sku): float(n) for sku, n in wms.items()}


def _canceled(r: Rig) -> None:
    assert r.magento_states()["1002"] == "canceled"
    with r.ledger() as ledger:
        assert ledger.get("1002").status == "canceled"


WRITES = {"shipments": (_shipped, _once_tracked), "inventory": (_stocked, _stock_set),
          "wms_cancellations": (_canceled_at_wms, _canceled)}


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("flow", WRITES, ids=list(WRITES))
def test_a_magento_write_hit_by_a_fault_happens_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             flow: str, fault: str) -> None:
    """Whatever happened to the answer of a ship, stock or cancel call, reruns leave it applied
    once (no second shipment, no second track, no second ship or cancel call reaching Magento)
    and nothing unresolved."""
    with rig(tmp_path, monkeypatch, kind="magento2") as r:
        r.patch("magento2", lambda spec: spec["http"].update(timeout=1))
        prepare, effects = WRITES[flow]
        path = prepare(r)
        r.cart.faults.add(path_prefix=path, method="POST", **FAULTS[fault])
        codes = []
        while len(codes) < 3 and 0 not in codes:
            codes.append(r.cli("run", "--flow", flow).code)
        assert codes[-1] == 0, codes
        effects(r)
        sent = sum(1 for method, p in r.cart_app.requests if method == "POST" and p == path)
        refused_unseen = 1 if fault in ("500-before", "429") else 0    # answered before the app acted
        if flow != "inventory":                                        # inventory may resend: an absolute value
            assert sent - refused_unseen == 1, (sent, fault)
        with r.ledger() as ledger:
            assert unresolved(ledger) == []


def test_a_fractional_quantity_is_quarantined_not_rounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An item sold by a decimal quantity (1.5) holds its order in quarantine; the others go on."""
    with rig(tmp_path, monkeypatch, kind="magento2") as r:
        with r.cart.state.lock:
            r.cart.state.orders[0]["items"][-1]["qty_ordered"] = 1.5
        r.write()
        result = r.cli("run", "--flow", "orders")
        assert "quarantined 1" in result.out, result.out
        assert "000001001" not in {o["referenceNum"] for o in r.wms.state.created}
        assert len(r.wms.state.created) == 5
