"""The wms_cancellations flow (WMS → cart) against the sample Shopify and BigCommerce carts and
the sample Extensiv WMS on 127.0.0.1: an order the warehouse cancels is canceled in the cart
once (Shopify `orderCancel`, BigCommerce `PUT /orders/{id}` with status 5), matched through the
cart order id the WMS keeps in `poNum` (a GID for Shopify), and a Shopify userError fails the
write so a later run asks again. The sample carts' cancel endpoints are checked first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sync_rig import rig

from samples.servers import start

FLOWS = {name: {"enabled": True} for name in ("orders", "cancellations", "wms_cancellations")}
GRAPHQL = "/admin/api/2026-10/graphql.json"
CANCEL = """mutation($id: ID!, $reason: OrderCancelReason!, $refund: Boolean!, $restock: Boolean!) {
  orderCancel(orderId: $id, reason: $reason, refund: $refund, restock: $restock) {
    job { id } orderCancelUserErrors { field message code } } }"""
PENDING_AUTH = {"data": {"orderCancel": {"job": None, "orderCancelUserErrors": [
    {"field": ["orderId"], "message": "Order has a pending payment authorization.", "code": "INVALID"}]}}}


@dataclass(frozen=True)
class Cart:
    """A sample cart and its second order: the number the WMS knows it by, the cart's order id."""

    kind: str
    ref: str
    order_id: str

    def canceled(self, r, order_id: str) -> bool:
        with r.cart.state.lock:
            order = next(o for o in r.cart.state.orders if str(o["id"]) == order_id)
            return order["cancelledAt"] is not None if self.kind == "shopify" else order["status_id"] == 5


CARTS = [Cart("shopify", "#1002", "gid://shopify/Order/6100001002"), Cart("bigcommerce", "101", "101")]
SHOPIFY = CARTS[0]


def wms_cancels(r) -> list[str]:
    """Paths of the cancels the WMS was sent."""
    return [p for m, p in r.wms_app.requests if m == "POST" and p.endswith("/canceler")]


def deliver_and_cancel_at_wms(r, ref: str) -> None:
    r.write(flows=FLOWS)
    r.cli("run", "--flow", "orders")
    r.wms_app.cancel(r.wms_id(ref), "Out of stock")


def test_shopify_order_cancel_answers_job_or_user_errors() -> None:
    """orderCancel cancels a known order once (a job); a second try and an unknown order are
    orderCancelUserErrors in a 200, and a bad reason is a top-level error."""
    with start("shopify", orders=1) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Shopify-Access-Token": "shpat_test"}) as client:
        gid = srv.state.orders[0]["id"]
        args = {"id": gid, "reason": "OTHER", "refund": False, "restock": True}
        done = client.post(GRAPHQL, json={"query": CANCEL, "variables": args}).json()["data"]["orderCancel"]
        assert done["job"]["id"].startswith("gid://shopify/Job/") and done["orderCancelUserErrors"] == []
        order = srv.state.orders[0]
        assert (order["cancelReason"], order["displayFinancialStatus"]) == ("OTHER", "PAID") and order["cancelledAt"]
        again = client.post(GRAPHQL, json={"query": CANCEL, "variables": args}).json()["data"]["orderCancel"]
        unknown = client.post(GRAPHQL, json={"query": CANCEL, "variables": {**args, "id": "gid://shopify/Order/1"}})
        assert again["job"] is None and again["orderCancelUserErrors"][0]["code"] == "INVALID"
        assert unknown.json()["data"]["orderCancel"]["orderCancelUserErrors"][0]["code"] == "NOT_FOUND"
        bad = client.post(GRAPHQL, json={"query": CANCEL, "variables": {**args, "reason": "WAREHOUSE"}}).json()
        assert bad["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE" and len(srv.state.cancellations) == 1


def test_bigcommerce_put_order_sets_status_id() -> None:
    """PUT /orders/{id} with status_id 5 cancels (status follows), an unknown status_id is a 400
    and an unknown order a 404."""
    with start("bigcommerce", orders=1) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Auth-Token": "bc_test_token"}) as client:
        oid = srv.state.orders[0]["id"]
        before = srv.state.orders[0]["date_modified"]
        answer = client.put(f"/stores/abc123/v2/orders/{oid}", json={"status_id": 5})
        assert answer.status_code == 200 and (answer.json()["status_id"], answer.json()["status"]) == (5, "Cancelled")
        assert "consignments" not in answer.json() and srv.state.orders[0]["date_modified"] != before
        assert client.put(f"/stores/abc123/v2/orders/{oid}", json={"status_id": 99}).status_code == 400
        missing = client.put("/stores/abc123/v2/orders/9999", json={"status_id": 5})
        assert missing.status_code == 404 and missing.json()[0]["status"] == 404


@pytest.mark.parametrize("cart", CARTS, ids=[c.kind for c in CARTS])
def test_an_order_the_warehouse_cancels_is_canceled_in_the_cart_once(
        cart: Cart, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Out of stock at the WMS: the cart cancels that order only, the ledger says `canceled`, a
    rerun asks the cart nothing, and the cart → WMS flow, which now reads the order as cancelled
    in the cart, sends nothing to the WMS."""
    with rig(tmp_path, monkeypatch, kind=cart.kind, orders=3) as r:
        deliver_and_cancel_at_wms(r, cart.ref)
        out = r.cli("run", "--flow", "wms_cancellations").out
        assert "wms_cancellations: pulled 1, skipped 0, quarantined 0, canceled 0, sent 1, too_late 0, failed 0" in out
        with r.cart.state.lock:
            others = [str(o["id"]) for o in r.cart.state.orders if str(o["id"]) != cart.order_id]
        assert cart.canceled(r, cart.order_id) and not any(cart.canceled(r, oid) for oid in others)
        with r.ledger() as ledger:
            entry = ledger.get(ledger.kv_get("order_id", cart.order_id))
            assert entry.status == "canceled" and entry.data["canceled_in_cart"]
            assert "Out of stock" in entry.data["cancel_reason"]
        asked = len(r.cart_app.requests)
        assert "sent 0" in r.cli("run", "--flow", "wms_cancellations").out and len(r.cart_app.requests) == asked
        back = r.cli("run", "--flow", "cancellations").out
        assert "cancellations: pulled 1, skipped 1, quarantined 0, canceled 0, sent 0" in back
        assert wms_cancels(r) == [] and r.wms_order(cart.ref)["readOnly"]["status"] == 2


def test_shopify_gets_order_cancel_without_refund_or_email_even_when_throttled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The orderCancel Shopify gets: reason OTHER, no refund, restock, no email to the shopper,
    and the warehouse's reason as the staff note; the order stays paid. A THROTTLED answer
    first is retried (a repeated orderCancel cannot cancel twice, so the spec says idempotent)."""
    with rig(tmp_path, monkeypatch, kind="shopify", orders=2) as r:
        deliver_and_cancel_at_wms(r, SHOPIFY.ref)
        r.cart_app.throttle()
        assert "sent 1" in r.cli("run", "--flow", "wms_cancellations").out and r.cart.faults.fired
        [sent] = r.cart.state.cancellations
        assert {k: v for k, v in sent.items() if k != "staffNote"} == {
            "orderId": SHOPIFY.order_id, "reason": "OTHER", "refund": False,
            "refundMethod": {"originalPaymentMethodsRefund": False}, "restock": True, "notifyCustomer": False}
        assert sent["staffNote"].startswith("From the warehouse: ") and "Out of stock" in sent["staffNote"]
        order = next(o for o in r.cart.state.orders if o["id"] == SHOPIFY.order_id)
        assert order["displayFinancialStatus"] == "PAID"


def test_a_shopify_user_error_fails_the_cancel_and_the_next_run_asks_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 200 whose orderCancelUserErrors is not empty is a failed write: the run counts it failed
    and exits 1, the order stays `delivered` with Shopify's message, and the next run sends it
    again from the parked list (its read then finds the order `canceled`)."""
    with rig(tmp_path, monkeypatch, kind="shopify", orders=2) as r:
        deliver_and_cancel_at_wms(r, SHOPIFY.ref)
        r.cart.faults.add(path_prefix=GRAPHQL, method="POST", status=200, body=PENDING_AUTH)
        first = r.cli("run", "--flow", "wms_cancellations")
        assert first.code == 1 and "sent 0, too_late 0, failed 1" in first.out
        with r.ledger() as ledger:
            entry = ledger.get(SHOPIFY.order_id)
            assert entry.status == "delivered" and "pending payment authorization" in entry.last_error
        assert not SHOPIFY.canceled(r, SHOPIFY.order_id) and "cart cancel parked" in r.status()
        second = r.cli("run", "--flow", "wms_cancellations")
        assert second.code == 0 and "sent 1" in second.out and "failed 0" in second.out
        assert SHOPIFY.canceled(r, SHOPIFY.order_id) and len(r.cart.state.cancellations) == 1
        with r.ledger() as ledger:
            assert ledger.get(SHOPIFY.order_id).status == "canceled"


def test_an_order_already_cancelled_in_shopify_is_refused_and_left_as_the_merchant_set_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The merchant cancelled the order in Shopify before the warehouse did: Shopify's own
    userError fails the write (failed 1, exit 1), the merchant's cancel reason stays, and the
    next run asks Shopify again rather than marking the order canceled on its own."""
    with rig(tmp_path, monkeypatch, kind="shopify", orders=2) as r:
        deliver_and_cancel_at_wms(r, SHOPIFY.ref)
        r.cart_app.cancel(SHOPIFY.order_id)
        first = r.cli("run", "--flow", "wms_cancellations")
        assert first.code == 1 and "failed 1" in first.out
        with r.ledger() as ledger:
            entry = ledger.get(SHOPIFY.order_id)
            assert entry.status == "delivered" and "already been cancelled" in entry.last_error
        order = next(o for o in r.cart.state.orders if o["id"] == SHOPIFY.order_id)
        assert order["cancelReason"] == "CUSTOMER" and r.cart.state.cancellations == []
        asked = len(r.cart_app.requests)
        again = r.cli("run", "--flow", "wms_cancellations")
        assert again.code == 1 and "sent 0" in again.out and len(r.cart_app.requests) > asked
        with r.ledger() as ledger:
            assert ledger.get(SHOPIFY.order_id).status == "delivered"
