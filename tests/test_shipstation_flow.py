"""WooCommerce → ShipStation (API V1) end to end against the sample servers on 127.0.0.1: orders
in through createorder with an orderKey, tracking back from labels and from orders marked as
shipped (voided labels never), cancels both ways, under faults, paced under the rate limit."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sync_rig import Result, rig

from engine import cli
from engine.http import set_testing
from samples.servers.shipstation import PACIFIC

FLOWS = {name: {"enabled": True} for name in ("orders", "shipments", "cancellations", "wms_cancellations")}
CREATE = "/orders/createorder"
WOO_ORDERS = "/wp-json/wc/v3/orders/"


def ss_orders(r, number: str) -> list[dict]:
    """ShipStation's orders whose orderNumber is exactly `number`."""
    with r.wms.state.lock:
        return [o for o in r.wms.state.created if o["orderNumber"] == number]


def ss_id(r, number: str) -> int:
    found = ss_orders(r, number)
    assert len(found) == 1, f"ShipStation holds {len(found)} order(s) {number}"
    return found[0]["orderId"]


def labels(r, number: str) -> list[str]:
    return [s["trackingNumber"] for s in r.wms.state.shipments if s["orderNumber"] == number and not s["voided"]]


def cart_status(r, order_id: int) -> str:
    with r.cart.state.lock:
        return next(o["status"] for o in r.cart.state.orders if o["id"] == order_id)


def delivered(r, count: int) -> None:
    out = r.cli("run", "--flow", "orders")
    assert out.code == 0 and f"delivered {count}" in out.out, out


def test_orders_go_in_once_with_their_order_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cart order becomes one ShipStation order (orderKey = prefix + cart id, Pacific orderDate),
    and a rerun delivers none and creates none."""
    with rig(tmp_path, monkeypatch, wms="shipstation") as r:
        r.write(flows=FLOWS)
        dry = r.cli("run", "--flow", "orders", "--dry-run")
        assert dry.code == 0 and "/orders/createorder" in dry.out and r.wms.state.created == []
        delivered(r, 6)
        order = r.wms.state.by_number("1001")
        assert order["orderKey"] == "sync-1001" and order["advancedOptions"]["customField3"] == "1001"
        with r.cart.state.lock:                                  # the cart's UTC time as Pacific wall clock
            placed = next(o["date_created_gmt"] for o in r.cart.state.orders if o["id"] == 1001)
        pacific = datetime.fromisoformat(placed).replace(tzinfo=timezone.utc).astimezone(PACIFIC)
        assert order["orderStatus"] == "awaiting_shipment"
        assert order["orderDate"] == pacific.strftime("%Y-%m-%dT%H:%M:%S.0000000")
        delivered(r, 0)
        assert len(r.wms.state.created) == 6
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "delivered" and ledger.get("1001").destination_id == str(order["orderId"])


def test_tracking_back_from_labels_and_marked_as_shipped_never_a_voided_label(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A label goes to the cart; a voided label never does (its re-ship does); an order marked as
    shipped outside ShipStation (no shipment record) sends its fulfillment's number; a rerun sends nothing."""
    with rig(tmp_path, monkeypatch, wms="shipstation") as r:
        r.write(flows=FLOWS)
        delivered(r, 6)
        app = r.wms_app
        app.ship(ss_id(r, "1001"))
        voided = app.ship(ss_id(r, "1002"))[0]
        app.void(voided["shipmentId"])
        app.ship(ss_id(r, "1002"))                              # shipped again on a new label
        app.mark_shipped(ss_id(r, "1003"), "9400100000000000000031", "usps")
        app.void(app.ship(ss_id(r, "1004"))[0]["shipmentId"])   # voided, not shipped again
        out = r.cli("run", "--flow", "shipments")
        assert out.code == 0 and "sent 3" in out.out, out
        assert r.trackings() == {"1001": labels(r, "1001"), "1002": labels(r, "1002"),
                                 "1003": ["9400100000000000000031"]}
        assert voided["trackingNumber"] not in r.trackings()["1002"]
        again = r.cli("run", "--flow", "shipments")
        assert again.code == 0 and "sent 0" in again.out
        with r.ledger() as ledger:
            assert ledger.get("1004").status == "delivered"
            assert {ledger.get(k).status for k in ("1001", "1002", "1003")} == {"confirmed"}


def test_cancels_both_ways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shopper's cancel re-sends the whole order with orderStatus cancelled; an order canceled in
    ShipStation is canceled in the cart; neither bounces back; a shipped order is too late."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=4) as r:
        r.write(flows=FLOWS)
        delivered(r, 4)
        r.wms_app.ship(ss_id(r, "1001"))
        assert "sent 1" in r.cli("run", "--flow", "shipments").out
        r.cart_app.cancel(1001)                                  # shipped already
        r.cart_app.cancel(1002)
        out = r.cli("run", "--flow", "cancellations").out
        assert "sent 1" in out and "too_late 1" in out, out
        kept = r.wms.state.by_number("1002")
        assert kept["orderStatus"] == "cancelled" and kept["shipTo"]["street1"] and len(kept["items"]) >= 1
        assert r.wms.state.by_number("1001")["orderStatus"] == "shipped"
        r.wms_app.cancel(ss_id(r, "1003"))                       # the merchant cancels in ShipStation
        out = r.cli("run", "--flow", "wms_cancellations").out
        assert "sent 1" in out, out                              # 1003 only: 1002 was the cart's own
        assert cart_status(r, 1003) == "cancelled" and cart_status(r, 1004) == "processing"
        assert "sent 0" in r.cli("run", "--flow", "cancellations").out
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "cancel_too_late"
            assert ledger.get("1002").status == ledger.get("1003").status == "canceled"


def test_a_cancel_of_an_order_shipped_meanwhile_is_refused_not_reported_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ShipStation shipped it before the shipments flow ran: the update is refused (only open
    orders can be updated), the cancel is not counted as sent and the order stays shipped."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=2) as r:
        r.write(flows=FLOWS)
        delivered(r, 2)
        r.wms_app.ship(ss_id(r, "1001"))
        r.cart_app.cancel(1001)
        out = r.cli("run", "--flow", "cancellations")
        assert "sent 0" in out.out and "failed 1" in out.out, out
        assert r.wms.state.by_number("1001")["orderStatus"] == "shipped"
        assert "may not be updated" in r.status()


def test_a_lost_create_is_resolved_by_the_exact_order_not_a_starts_with_match(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """createorder never answers (the order stays `sending`) while another store's 10011 is in
    ShipStation: orderNumber=1001 finds 10011 (starts with), which the match refuses; the order is
    sent again and exists once, the other one untouched."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=1) as r:
        r.write(flows=FLOWS)
        with r.wms.state.lock:
            foreign = r.wms_app._store({"orderNumber": "10011", "orderKey": "other-10011", "orderDate": "2026-01-02",
                                        "orderStatus": "awaiting_shipment", "billTo": {"name": "X"},
                                        "shipTo": {"name": "X"}, "items": []}, None)
        r.wms.faults.add(path_prefix=CREATE, method="POST", drop="before", times=6)
        first = r.cli("run", "--flow", "orders")
        assert first.code == 1
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "sending"
        second = r.cli("run", "--flow", "orders")
        assert second.code == 0, second
        assert len(ss_orders(r, "1001")) == 1 and r.wms.state.orders[foreign["orderId"]]["orderKey"] == "other-10011"
        with r.ledger() as ledger:
            assert ledger.get("1001").destination_id == str(ss_id(r, "1001"))


CREATE_FAULTS = {
    "500 before acting": {"status": 500},
    "429 with Retry-After": {"status": 429, "retry_after": 0.01},
    "dropped before acting": {"drop": "before"},
    "dropped after acting": {"drop": "after"},
    "acted, then 502": {"acted_status": 502},
}


@pytest.mark.parametrize("fault", list(CREATE_FAULTS), ids=list(CREATE_FAULTS))
def test_create_order_faults_lose_and_duplicate_nothing(
        fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault on createorder (twice) is retried with the same orderKey: every order once in
    ShipStation, all delivered, a rerun changes nothing."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=4) as r:
        r.write(flows=FLOWS)
        r.wms.faults.add(path_prefix=CREATE, method="POST", times=2, after=1, **CREATE_FAULTS[fault])
        out = r.cli("run", "--flow", "orders")
        if out.code != 0:                                       # resolved by the next run at the latest
            out = r.cli("run", "--flow", "orders")
        assert out.code == 0, out
        assert sorted(o["orderNumber"] for o in r.wms.state.created) == ["1001", "1002", "1003", "1004"]
        with r.ledger() as ledger:
            assert {ledger.get(k).status for k in ("1001", "1002", "1003", "1004")} == {"delivered"}
        assert "delivered 0" in r.cli("run", "--flow", "orders").out and len(r.wms.state.created) == 4


@pytest.mark.parametrize("fault", [{"status": 500}, {"drop": "after"}, {"status": 429, "retry_after": 0.01}],
                         ids=["500", "dropped after acting", "429"])
def test_cart_tracking_write_faults_lose_and_duplicate_nothing(
        fault: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault on the cart's tracking note: each tracking number reaches the cart exactly once."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=3) as r:
        r.write(flows=FLOWS)
        delivered(r, 3)
        for number in ("1001", "1002", "1003"):
            r.wms_app.ship(ss_id(r, number))
        r.cart.faults.add(path_prefix=WOO_ORDERS, method="POST", times=2, **fault)
        out = r.cli("run", "--flow", "shipments")
        if out.code != 0:
            out = r.cli("run", "--flow", "shipments")
        assert out.code == 0, out
        assert r.trackings() == {n: labels(r, n) for n in ("1001", "1002", "1003")}
        assert "sent 0" in r.cli("run", "--flow", "shipments").out


def test_pacing_keeps_under_the_rate_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """5 requests a second per key: orders and tracking move without a single 429, paced by the
    X-Rate-Limit-* headers."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=8, limit=5, window=1.0) as r:
        r.write(flows=FLOWS)
        set_testing(False)                                       # real waits: the server's window is real time
        delivered(r, 8)
        for number in ("1001", "1002", "1003", "1004"):
            r.wms_app.ship(ss_id(r, number))
        out = r.cli("run", "--flow", "shipments")
        assert out.code == 0 and "sent 4" in out.out, out
        assert r.wms_app.throttled == 0 and len(r.wms.state.created) == 8


def test_inventory_with_shipstation_is_a_clear_lint_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ShipStation has no inventory API: enabling the inventory flow is refused by lint and run with
    a message naming the missing operation, never a traceback."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=1) as r:
        r.write(flows={**FLOWS, "inventory": {"enabled": True}})
        out, err = io.StringIO(), io.StringIO()
        lint = Result(cli.run(["lint", str(r.connectors), str(r.root / "integrations")], out, err), out.getvalue(), err.getvalue())
        assert "Traceback" not in lint.out + lint.err
        run = r.cli("run", "--flow", "inventory")
        for result in (lint, run):
            assert result.code != 0
            assert "list_inventory" in result.out + result.err and "shipstation" in result.out + result.err
        assert r.wms_app.requests == []


def test_the_order_key_is_rendered_once_and_reused_on_resend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """create_order's idempotency_key is kept in the ledger at the first send: a resend after a
    lost answer carries that very orderKey even if the config changed in between."""
    with rig(tmp_path, monkeypatch, wms="shipstation", orders=1) as r:
        r.write(flows=FLOWS)
        r.wms.faults.add(path_prefix=CREATE, method="POST", drop="before", times=6)
        assert r.cli("run", "--flow", "orders").code == 1
        data = r.write(flows=FLOWS)
        data.write_text(data.read_text(encoding="utf-8").replace("order_key_prefix: sync-", "order_key_prefix: other-"),
                        encoding="utf-8")
        assert r.cli("run", "--flow", "orders").code == 0
        assert [o["orderKey"] for o in r.wms.state.created] == ["sync-1001"]
