"""The cancellations flow against the sample WooCommerce cart and Extensiv WMS on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from sync_rig import rig

CANCELER = "/canceler"


def wms_cancels(r) -> list[tuple[str, str]]:
    return [(m, p) for m, p in r.wms_app.requests if p.endswith(CANCELER)]


def test_cancel_before_delivery_marks_the_order_canceled_and_it_is_never_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An order held by the hold window and canceled in the cart becomes `canceled` and never reaches the WMS."""
    with rig(tmp_path, monkeypatch, orders=3) as r:
        r.write(hold_minutes=10**8)
        assert "held 3" in r.cli("run", "--flow", "orders").out
        r.cart_app.cancel(1002)
        out = r.cli("run", "--flow", "cancellations").out
        assert "pulled 1, skipped 0, quarantined 0, canceled 1, sent 0" in out
        r.write(hold_minutes=0)
        assert "released 2" in r.cli("retry").out
        assert sorted(r.wms_app.state.orders[i]["referenceNum"] for i in r.wms_app.state.orders) == ["1001", "1003"]
        with r.ledger() as ledger:
            assert ledger.get("1002").status == "canceled" and not wms_cancels(r)


def test_cancel_of_an_order_never_pulled_blocks_it_for_good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancellation read before its order was pulled claims the key as canceled, so the orders flow skips it."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write()
        r.cart_app.cancel(1001)
        assert "canceled 1" in r.cli("run", "--flow", "cancellations").out
        r.cart.state.orders[0]["status"] = "processing"            # a stale listing still shows it open
        r.cli("run", "--flow", "orders")
        assert [o["referenceNum"] for o in r.wms_app.state.created] == ["1002"]


def test_cancel_after_delivery_cancels_in_the_wms_with_its_etag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivered, unshipped order canceled in the cart is canceled at the WMS (If-Match from a read first)."""
    with rig(tmp_path, monkeypatch, orders=3) as r:
        r.write()
        r.cli("run", "--flow", "orders")
        r.cart_app.cancel(1002)
        out = r.cli("run", "--flow", "cancellations").out
        assert "canceled 0, sent 1, too_late 0, failed 0" in out
        order = r.wms_order("1002")
        assert order["readOnly"]["status"] == 2 and "Canceled" in order["notes"]
        assert ("GET", f"/orders/{order['readOnly']['orderId']}") in r.wms_app.requests
        with r.ledger() as ledger:
            assert ledger.get("1002").status == "canceled" and ledger.get("1002").data["canceled_in_wms"]
        assert "skipped 1" in r.cli("run", "--flow", "cancellations").out and len(wms_cancels(r)) == 1


def test_cancel_after_shipment_is_too_late_and_shown_in_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancel for an order the WMS already shipped is `cancel_too_late`, never sent, and status says why."""
    with rig(tmp_path, monkeypatch, orders=3) as r:
        r.write()
        r.cli("run", "--flow", "orders")
        r.wms_app.ship(r.wms_id("1003"))
        r.cli("run", "--flow", "shipments")
        r.cart_app.cancel(1003)
        out = r.cli("run", "--flow", "cancellations").out
        assert "sent 0, too_late 1" in out and not wms_cancels(r)
        status = r.status()
        assert "cancel_too_late" in status and "after the WMS shipped it" in status


def test_a_refused_wms_cancel_is_retried_by_the_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WMS that refuses a cancel leaves the order delivered with the error; a later run cancels it."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write()
        r.cli("run", "--flow", "orders")
        r.wms.faults.add(path_prefix="/orders/", method="POST", status=409, times=2)
        r.cart_app.cancel(1001)
        first = r.cli("run", "--flow", "cancellations")
        assert first.code == 1 and "failed 1" in first.out and "cancel parked" in r.status()
        second = r.cli("run", "--flow", "cancellations")
        assert "sent 1" in second.out and r.wms_order("1001")["readOnly"]["status"] == 2
