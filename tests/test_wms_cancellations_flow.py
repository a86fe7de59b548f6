"""The wms_cancellations flow (WMS → cart) against the sample WooCommerce cart and Extensiv WMS
on 127.0.0.1: an order the warehouse cancels is canceled in the cart once, the two cancellation
directions never bounce an order back and forth, orders this integration did not deliver are
left alone, and a cart that refuses is asked again on the next run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sync_rig import rig

FLOWS = {name: {"enabled": True} for name in ("orders", "shipments", "inventory", "cancellations", "wms_cancellations")}
ORDERS_PATH = "/wp-json/wc/v3/orders/"


def cart_cancels(r) -> list[str]:
    """Order ids the cart was asked to change with PUT."""
    return [p.rsplit("/", 1)[1] for m, p in r.cart_app.requests if m == "PUT" and p.startswith(ORDERS_PATH)]


def cart_status(r, order_id: int) -> str:
    with r.cart.state.lock:
        return next(o["status"] for o in r.cart.state.orders if o["id"] == order_id)


def test_an_order_the_warehouse_cancels_is_canceled_in_the_cart_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of stock at the WMS: the cart gets `status: cancelled` for that order only, the ledger
    says `canceled`, and neither a rerun nor the cart → WMS flow sends anything more."""
    with rig(tmp_path, monkeypatch, orders=3) as r:
        r.write(flows=FLOWS)
        r.cli("run", "--flow", "orders")
        r.wms_app.cancel(r.wms_id("1002"), "Out of stock")
        out = r.cli("run", "--flow", "wms_cancellations").out
        assert "wms_cancellations: pulled 1, skipped 0, quarantined 0, canceled 0, sent 1, too_late 0, failed 0" in out
        assert cart_cancels(r) == ["1002"] and cart_status(r, 1002) == "cancelled"
        assert cart_status(r, 1001) == cart_status(r, 1003) == "processing"
        with r.ledger() as ledger:
            entry = ledger.get("1002")
            assert entry.status == "canceled" and entry.data["canceled_in_cart"]
            assert "Out of stock" in entry.data["cancel_reason"]
        assert "sent 0" in r.cli("run", "--flow", "wms_cancellations").out
        back = r.cli("run", "--flow", "cancellations").out          # the cart now lists it cancelled
        assert "pulled 1, skipped 1" in back and "sent 0" in back
        assert r.wms_order("1002")["readOnly"]["status"] == 2 and cart_cancels(r) == ["1002"]


def test_a_cart_cancel_sent_to_the_wms_does_not_come_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The shopper cancels, the cancellations flow cancels at the WMS; the WMS now lists the order
    as canceled, and wms_cancellations sees it is `canceled` already: no PUT to the cart."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(flows=FLOWS)
        r.cli("run", "--flow", "orders")
        r.cart_app.cancel(1001)
        assert "sent 1" in r.cli("run", "--flow", "cancellations").out
        out = r.cli("run", "--flow", "wms_cancellations").out
        assert "pulled 1, skipped 1, quarantined 0, canceled 0, sent 0" in out
        assert cart_cancels(r) == []


def test_orders_this_integration_did_not_deliver_are_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A canceled WMS order without a cart order id (entered at the warehouse), or with one this
    ledger never delivered, is not this integration's to cancel."""
    with rig(tmp_path, monkeypatch, orders=1) as r:
        r.write(flows=FLOWS)
        r.cli("run", "--flow", "orders")
        body = {"referenceNum": "PHONE-7", "orderItems": [{"itemIdentifier": {"sku": "MUG-CERAMIC"}, "qty": 1}]}
        by_phone = r.wms_app._new_order(body, 7)["readOnly"]["orderId"]
        other = r.wms_app._new_order({**body, "referenceNum": "OTHER-9", "poNum": "9999"}, 7)["readOnly"]["orderId"]
        r.wms_app.cancel(by_phone)
        r.wms_app.cancel(other)
        out = r.cli("run", "--flow", "wms_cancellations").out
        assert "pulled 2, skipped 2" in out and cart_cancels(r) == []


def test_a_refused_cart_cancel_is_asked_again_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cart refuses the PUT once: the run counts it failed, keeps the order `delivered` with the
    error, and the next run sends it from the parked list (the read's overlap brings the
    cancellation back too; it is not asked twice)."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(flows=FLOWS)
        r.cli("run", "--flow", "orders")
        r.wms_app.cancel(r.wms_id("1001"))
        r.cart.faults.add(path_prefix=ORDERS_PATH + "1001", method="PUT", status=400)
        first = r.cli("run", "--flow", "wms_cancellations")
        assert first.code == 1 and "sent 0, too_late 0, failed 1" in first.out
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "delivered" and "400" in ledger.get("1001").last_error
        assert "cart cancel parked" in r.cli("status").out
        second = r.cli("run", "--flow", "wms_cancellations")
        assert second.code == 0 and "sent 1" in second.out
        assert cart_status(r, 1001) == "cancelled" and cart_cancels(r) == ["1001", "1001"]


def test_a_dry_run_shows_the_cart_request_and_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--dry-run prints the PUT it would send and leaves the cart and the ledger as they were."""
    with rig(tmp_path, monkeypatch, orders=1) as r:
        r.write(flows=FLOWS)
        r.cli("run", "--flow", "orders")
        r.wms_app.cancel(r.wms_id("1001"))
        out = r.cli("run", "--flow", "wms_cancellations", "--dry-run").out
        assert "would PUT" in out and "/wc/v3/orders/1001" in out and "cancelled" in out
        assert cart_cancels(r) == [] and cart_status(r, 1001) == "processing"
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "delivered"


def test_a_cart_that_keeps_refusing_is_asked_once_a_run_until_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cart refuses every time: each run asks once (the read's overlap brings the
    cancellation back, but it is not asked twice, and its attempts add up), and at the cap the
    order is `canceled` anyway (the WMS will not ship it) with the cart's answer as its last error."""
    from engine.flows import cancellations

    monkeypatch.setattr(cancellations, "MAX_ATTEMPTS", 3)
    with rig(tmp_path, monkeypatch, orders=1) as r:
        r.write(flows=FLOWS)
        r.cli("run", "--flow", "orders")
        r.wms_app.cancel(r.wms_id("1001"))
        r.cart.faults.add(path_prefix=ORDERS_PATH + "1001", method="PUT", status=400, times=100)
        for run in range(1, 4):
            result = r.cli("run", "--flow", "wms_cancellations")
            assert result.code == 1 and "failed 1" in result.out and len(cart_cancels(r)) == run
        with r.ledger() as ledger:
            entry = ledger.get("1001")
            assert entry.status == "canceled" and entry.last_error.startswith("the cart never took the cancel")
            assert entry.data["canceled_in_cart"] is False
        assert "cart cancel parked" not in r.cli("status").out
        assert r.cli("run", "--flow", "wms_cancellations").code == 0 and len(cart_cancels(r)) == 3
        assert cart_status(r, 1001) == "processing"
