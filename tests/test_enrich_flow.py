"""`enrich` sub-requests and `truncated_when` against the sample carts on 127.0.0.1: the
BigCommerce-like cart's order sub-resources (`/orders/{id}/products`, `/shipping_addresses`) and
the Shopify-like cart's nested `Order.lineItems` connection."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from engine.ledger import DiskLedger
from samples.servers.base import Answer, Request
from samples.servers.extensiv import order_items

pytestmark = pytest.mark.usefixtures("http_testing")

SUB = "/stores/abc123/v2/orders/{}/products"


def enriching(spec: dict) -> None:
    """The bigcommerce connector reading lines and ship-to from the order's sub-resources
    (GET /orders/{id}/products and /shipping_addresses) instead of `include=consignments`."""
    read = spec["operations"]["list_orders"]
    del read["request"]["params"]["include"]
    read["enrich"] = [
        {"request": {"path": "/orders/{{ record.id }}/products"}, "records": "@", "into": "products"},
        {"request": {"path": "/orders/{{ record.id }}/shipping_addresses"}, "into": "shipping_addresses"},
    ]
    read["map"] = _rewire(read["map"])
    read["map"]["lines"]["each"] = "products"
    spec["examples"] = [e for e in spec["examples"] if e["operation"] != "list_orders"]   # no canned sub-answers


def _rewire(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rewire(v) for k, v in value.items()}
    return value.replace("consignments[0].shipping[0]", "shipping_addresses[0]") if isinstance(value, str) else value


def items_by_ref(rig) -> dict[str, int]:
    with rig.wms.state.lock:
        return {order["referenceNum"]: len(order_items(order)) for order in rig.wms.state.created}


def cart_lines(rig) -> dict[str, int]:
    with rig.cart.state.lock:
        return {str(o["id"]): len(o["consignments"][0]["shipping"][0]["line_items"]) for o in rig.cart.state.orders}


def ledger_entry(rig, key: str):
    with DiskLedger(rig.state, "flow-shop") as ledger:
        return ledger.get(key)


def test_enrich_merges_each_orders_sub_resources(flow_rigs):
    """Every order is delivered with the lines and ship-to its sub-resources hold."""
    rig = flow_rigs("bigcommerce", orders=12)
    rig.patch_connector("bigcommerce", enriching)
    result = rig.cli("run")
    assert result.code == 0, result.text
    assert items_by_ref(rig) == cart_lines(rig)
    with rig.wms.state.lock:
        cities = {o["referenceNum"]: o["shipTo"]["city"] for o in rig.wms.state.created}
    with rig.cart.state.lock:
        assert cities == {str(o["id"]): o["billing_address"]["city"] for o in rig.cart.state.orders}


@pytest.mark.parametrize("status", [500, 404])
def test_a_failing_sub_request_quarantines_that_order_only(flow_rigs, status):
    """A sub-request that fails after the retries (500) or at once (404) quarantines its order with
    the reason and its record as read; every other order is delivered; `retry` enriches it again
    once the cart answers, and delivers it whole."""
    rig = flow_rigs("bigcommerce", orders=8)
    rig.patch_connector("bigcommerce", enriching)
    rig.cart.faults.add(path_prefix=SUB.format(103), status=status, times=1000)
    result = rig.cli("run")
    assert result.code == 1
    expected = cart_lines(rig)
    assert items_by_ref(rig) == {ref: n for ref, n in expected.items() if ref != "103"}
    entry = ledger_entry(rig, "103")
    assert entry.status == "quarantined"
    assert f"enrich products failed" in entry.reason and str(status) in entry.reason
    assert set(entry.raw["products"]) == {"url", "resource"} and entry.data["enrich"] == "again"   # as read
    rig.cart.faults.clear()
    result = rig.cli("retry")
    assert result.code == 0, result.text
    assert items_by_ref(rig) == expected
    assert ledger_entry(rig, "103").status == "delivered"


def test_enrichment_stays_within_the_connectors_concurrency(flow_rigs):
    """Sub-requests run concurrently, never more at once than the connector's http.concurrency."""
    rig = flow_rigs("bigcommerce", orders=20)
    rig.patch_connector("bigcommerce", enriching)
    app, dispatch = rig.cart.app, rig.cart.app.dispatch
    lock, now, most = threading.Lock(), [0], [0]

    def counted(request: Request) -> Answer:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        try:
            if request.path.endswith(("/products", "/shipping_addresses")):
                time.sleep(0.02)            # so that requests overlap when they may
            return dispatch(request)
        finally:
            with lock:
                now[0] -= 1

    app.dispatch = counted
    assert rig.cli("run").code == 0
    assert 1 < most[0] <= 3                 # bigcommerce.yaml: http.concurrency 3


def test_dry_run_enriches_too(flow_rigs):
    """A dry run sends the sub-requests (reads are safe) and shows each order with its lines."""
    rig = flow_rigs("bigcommerce", orders=3)
    rig.patch_connector("bigcommerce", enriching)
    result = rig.cli("run", "--dry-run")
    assert result.code == 0, result.text
    assert sum(path.endswith("/products") for _, path in rig.cart.app.requests) == 3
    assert result.out.count("would POST") == 3 and items_by_ref(rig) == {}
    assert "TSHIRT" in result.out or "MUG" in result.out or "POSTER" in result.out or "SOCKS" in result.out


def test_nested_lines_are_paged_to_the_last_one(flow_rigs):
    """An order with 420 lines (100 in the list answer) gets the other 320 from two pages of
    order(id) { lineItems(first: 250, after) } and reaches the WMS with all 420."""
    rig = flow_rigs("shopify", orders=3)
    [big] = rig.cart.app.add_orders(1, lines=420)
    result = rig.cli("run")
    assert result.code == 0, result.text
    counts = items_by_ref(rig)
    assert counts[big["name"]] == 420 and len(counts) == 4


def test_truncated_when_quarantines_a_cut_order_until_the_spec_pages_it(flow_rigs):
    """Without the enrich step, an order whose lineItems say hasNextPage is quarantined with the
    reason (the others go on); with it restored, `retry` pages the rest and delivers it whole."""
    rig = flow_rigs("shopify", orders=2)
    [big] = rig.cart.app.add_orders(1, lines=130)
    saved: dict = {}

    def cut(spec: dict) -> None:              # the enrich step and its golden example taken out
        saved.update(step=spec["operations"]["list_orders"].pop("enrich"), example=spec["examples"].pop(1))

    rig.patch_connector("shopify", cut)
    assert rig.cli("run").code == 1
    assert big["name"] not in items_by_ref(rig) and len(items_by_ref(rig)) == 2
    entry = ledger_entry(rig, big["id"])
    assert entry.status == "quarantined"
    assert "truncated: 'lineItems.pageInfo.hasNextPage' holds" in entry.reason
    rig.patch_connector("shopify", lambda spec: (spec["operations"]["list_orders"].update(enrich=saved["step"]),
                                                 spec["examples"].insert(1, saved["example"])))
    result = rig.cli("retry")
    assert result.code == 0, result.text
    assert items_by_ref(rig)[big["name"]] == 130
