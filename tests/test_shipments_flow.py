"""The shipments flow against the sample WooCommerce/Shopify carts and Extensiv WMS on 127.0.0.1."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sync_rig import NAME, integration, rig

from samples.servers.extensiv import order_items

from engine.flows.shipments import PACKAGES


def split_candidate(r) -> tuple[str, dict[str, int]]:
    """An order of several units, and a first part of it: one unit of its first line."""
    for ref in ("1001", "1002", "1003", "1004", "1005", "1006"):
        items = order_items(r.wms_order(ref))
        if sum(item["qty"] for item in items) > 1:
            return ref, {items[0]["itemIdentifier"]["sku"]: 1}
    raise AssertionError("no order of several units")


def tracking(r, ref: str, n: int = 1) -> str:
    """The tracking number the sample WMS gives package `n` of order `ref` (from its WMS id)."""
    return f"1Z999AA1{r.wms_id(ref):06d}{n:04d}"


def delivered(r, **settings) -> None:
    r.write(**settings)
    assert r.cli("run", "--flow", "orders").code == 0


def test_two_packages_reach_the_cart_once_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An order shipped in two packages gets two tracking numbers in the cart, and a rerun adds none."""
    with rig(tmp_path, monkeypatch) as r:
        delivered(r)
        r.wms_order("1002")["routingInfo"]["carrier"] = "FDX"
        r.wms_app.ship(r.wms_id("1002"), packages=2)
        first = r.cli("run", "--flow", "shipments")
        assert first.code == 0 and "sent 2, confirmed 1" in first.out
        again = r.cli("run", "--flow", "shipments")
        assert "pulled 1" in again.out and "sent 0" in again.out
        assert r.trackings() == {"1002": [tracking(r, "1002", 1), tracking(r, "1002", 2)]}
        assert r.carriers(1002) == {"FedEx"} and r.completed() == {"1002"}   # carrier_map; core status
        with r.ledger() as ledger:
            assert ledger.get("1002").status == "confirmed" and ledger.get("1001").status == "delivered"
            assert ledger.kv_get(PACKAGES, f"1002|{tracking(r, '1002')}")["state"] == "confirmed"


def test_partial_shipment_immediate_sends_each_part_as_it_ships(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """split_shipments: immediate sends the first part's tracking at once and confirms the order after the rest."""
    with rig(tmp_path, monkeypatch) as r:
        delivered(r, split_shipments="immediate")
        ref, part = split_candidate(r)
        backorder = r.ship_part(ref, part)
        out = r.cli("run", "--flow", "shipments").out
        assert "sent 1, confirmed 0" in out and len(r.trackings()[ref]) == 1
        with r.ledger() as ledger:
            assert ledger.get(ref).status == "shipped"
            assert "waiting for the rest" in ledger.get(ref).last_error
        r.wms_app.ship(backorder)
        out = r.cli("run", "--flow", "shipments").out
        assert "sent 1, confirmed 1" in out and len(r.trackings()[ref]) == 2
        with r.ledger() as ledger:
            assert ledger.get(ref).status == "confirmed"


def test_partial_shipment_wait_for_all_sends_nothing_until_complete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """split_shipments: wait_for_all holds a partial shipment back, then sends every package once the order is complete."""
    with rig(tmp_path, monkeypatch) as r:
        delivered(r, split_shipments="wait_for_all")
        ref, part = split_candidate(r)
        backorder = r.ship_part(ref, part)
        out = r.cli("run", "--flow", "shipments").out
        assert "waiting 1, sent 0" in out and ref not in r.trackings()
        assert "wait_for_all" in r.status()
        r.wms_app.ship(backorder, packages=2)
        out = r.cli("run", "--flow", "shipments").out
        assert "sent 3, confirmed 1" in out and len(r.trackings()[ref]) == 3


def test_shipment_of_an_order_this_integration_did_not_deliver_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WMS shipment for an order from another channel is skipped, never sent to the cart."""
    with rig(tmp_path, monkeypatch) as r:
        delivered(r)
        body = {**r.wms_order("1001"), "referenceNum": "PHONE-77", "orderItems": order_items(r.wms_order("1001"))}
        with r.wms.state.lock:
            other = r.wms_app._new_order(body, 7)
        r.wms_app.ship(other["readOnly"]["orderId"])
        out = r.cli("run", "--flow", "shipments").out
        assert "pulled 1, skipped 1" in out and r.trackings() == {}


def test_failed_package_is_sent_again_and_an_interrupted_one_is_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package the cart refused is retried next run; one claimed by a run that stopped before
    its send (no journal entry in flight) is sent; one whose send's answer was lost is found by
    `verify` in the cart and never sent again."""
    with rig(tmp_path, monkeypatch) as r:
        delivered(r)
        for ref in ("1001", "1002", "1003"):
            r.wms_app.ship(r.wms_id(ref))
        with r.ledger() as ledger:          # a crash between claiming 1002's package and its send
            ledger.kv_add(PACKAGES, f"1002|{tracking(r, '1002')}",
                          {"state": "sending", "shipment": "1002", "attempts": 1, "at": "2026-01-01T00:00:00Z"})
        r.cart.faults.add(path_prefix="/wp-json/wc/v3/orders/", method="POST", status=400, times=1)
        r.cart.faults.add(path_prefix="/wp-json/wc/v3/orders/", method="POST", drop="after", times=1)
        first = r.cli("run", "--flow", "shipments")
        assert first.code == 1 and "sent 2" in first.out and "failed 1" in first.out, first.out
        assert "failed 1x" in r.status()
        second = r.cli("run", "--flow", "shipments")
        assert second.code == 0 and "sent 1, confirmed 1" in second.out, second.out
        assert sorted(n for numbers in r.trackings().values() for n in numbers) == sorted(
            tracking(r, ref) for ref in ("1001", "1002", "1003"))
        with r.ledger() as ledger:
            assert {ledger.get(ref).status for ref in ("1001", "1002", "1003")} == {"confirmed"}


def test_shopify_gets_one_fulfillment_per_shipment_with_every_tracking_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """per: shipment sends one fulfillmentCreate holding both packages, after the precondition read its fulfillment order."""
    with rig(tmp_path, monkeypatch, kind="shopify") as r:
        delivered(r)
        r.wms_app.ship(r.wms_id("#1001"), packages=2)
        out = r.cli("run", "--flow", "shipments").out
        assert "sent 2, confirmed 1" in out
        [fulfillment] = r.cart.state.fulfillments
        assert [t["number"] for t in fulfillment["trackingInfo"]] == [tracking(r, "#1001", 1), tracking(r, "#1001", 2)]
        assert fulfillment["orders"] == [r.cart.state.orders[0]["id"]]


def test_dry_run_prints_the_tracking_it_would_send_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--dry-run shows the create_shipment request per package and leaves the ledger and the cart untouched."""
    with rig(tmp_path, monkeypatch) as r:
        delivered(r)
        r.wms_app.ship(r.wms_id("1001"), packages=2)
        out = r.cli("run", "--flow", "shipments", "--dry-run").out
        assert out.count("[dry-run] sync-shop create_shipment: would POST") == 2
        assert r.trackings() == {}
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "delivered" and ledger.watermark("shipments") is None
            assert Counter(k for k, _ in ledger.kv_items(PACKAGES)) == Counter()
        assert NAME in r.status()


def test_a_shipment_whose_enrichment_fails_is_read_again_and_sent_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`enrich` on list_shipments: a sub-request failing after its retries parks that shipment
    and holds the watermark at it; the next run reads it again, enriches it and sends its
    tracking once, while the other order's tracking went out in the first run."""
    def enriched(spec: dict) -> None:
        spec["operations"]["list_shipments"]["enrich"] = [
            {"request": {"path": "/orders/{{ record.readOnly.orderId }}"}, "into": "detail"}]
        spec["examples"] = [case for case in spec["examples"] if case["operation"] != "list_shipments"]

    with rig(tmp_path, monkeypatch) as r:
        r.patch("extensiv", enriched)
        delivered(r, overlap="0s")           # only the held watermark brings 1002 back
        for ref in ("1002", "1001"):         # 1002 shipped first: the later 1001 sets the mark
            r.wms_app.ship(r.wms_id(ref))
        r.wms.faults.add(path_prefix=f"/orders/{r.wms_id('1002')}", method="GET", status=500, times=20)
        first = r.cli("run", "--flow", "shipments")
        assert first.code == 1 and "sent 1" in first.out and "quarantined 1" in first.out, first.out
        assert r.trackings() == {"1001": [tracking(r, "1001")]}
        r.wms.faults.clear()
        second = r.cli("run", "--flow", "shipments")
        assert second.code == 0 and "sent 1, confirmed 1" in second.out, second.out
        # the WMS numbers orders as they arrive, and concurrent creates may arrive in any order
        assert sorted(n for numbers in r.trackings().values() for n in numbers) == sorted([tracking(r, "1001"),
                                                                                          tracking(r, "1002")])


def test_a_core_store_gets_a_customer_note_per_package_and_the_order_completed(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the Shipment Tracking extension (its routes answer 404), tracking is customer notes and status completed."""
    with rig(tmp_path, monkeypatch) as r:
        delivered(r)
        r.wms_app.ship(r.wms_id("1001"), packages=2)
        result = r.cli("run", "--flow", "shipments")
        assert result.code == 0 and "sent 2, confirmed 1" in result.out, result.out
        with r.cart.state.lock:
            notes = [(n["note"], n["customer_note"]) for n in r.cart.state.notes[1001]]
            assert r.cart.state.trackings == {}
        assert notes == [(f"UPS tracking {tracking(r, '1001', n)}", True) for n in (1, 2)]
        assert r.completed() == {"1001"}


def test_the_extension_connector_writes_tracking_items_to_a_store_with_the_extension(tmp_path: Path,
                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """woocommerce-shipment-tracking posts one extension tracking item per package, and no note."""
    with rig(tmp_path, monkeypatch, cart_options={"shipment_tracking": True}) as r:
        source = integration("woocommerce", r.cart.url, r.wms.url)["source"]
        delivered(r, source={**source, "connector": "woocommerce-shipment-tracking"})
        r.wms_app.ship(r.wms_id("1001"), packages=2)
        assert r.cli("run", "--flow", "shipments").code == 0
        again = r.cli("run", "--flow", "shipments")
        assert again.code == 0 and "sent 0" in again.out
        with r.cart.state.lock:
            assert [t["tracking_number"] for t in r.cart.state.trackings[1001]] == [tracking(r, "1001", n) for n in (1, 2)]
            assert r.cart.state.notes == {}


def other_carts_order(r, ref: str, po_num: str) -> int:
    """An order another cart of the same 3PL customer made in the WMS; its id."""
    body = {"referenceNum": ref, "poNum": po_num, "facilityIdentifier": {"id": 1},
            "orderItems": [{"itemIdentifier": {"sku": "MUG-CERAMIC"}, "qty": 1}]}
    with r.wms.state.lock:
        return r.wms_app._new_order(body, 7)["readOnly"]["orderId"]


def test_a_reference_prefix_keeps_two_carts_of_one_customer_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With reference_prefix, orders go in as <prefix><number> beside another cart's same numbers, and
    a shipped order of that other cart (same number, same poNum) never reaches this cart."""
    with rig(tmp_path, monkeypatch) as r:
        theirs = [other_carts_order(r, f"B-{n}", str(n)) for n in range(1001, 1007)]
        data = r.write()
        text = data.read_text(encoding="utf-8").replace("customer_id: 7", "customer_id: 7\n    reference_prefix: A-")
        data.write_text(text, encoding="utf-8")
        assert "delivered 6" in r.cli("run", "--flow", "orders").out
        assert r.wms_id("A-1001") not in theirs
        for oid in theirs:
            r.wms_app.ship(oid)
        r.wms_app.ship(r.wms_id("A-1002"))
        out = r.cli("run", "--flow", "shipments").out
        assert "pulled 1" in out and "sent 1, confirmed 1" in out
        assert r.trackings() == {"1002": [f"1Z999AA1{r.wms_id('A-1002'):06d}0001"]}
