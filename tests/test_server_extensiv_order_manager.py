"""Real-HTTP tests of the sample Extensiv Order Manager (Skubana) server: each behaviour the
sources file (connectors/carts/extensiv-order-manager.md) names, as the server enforces it."""
from __future__ import annotations

import httpx
import pytest

from samples.servers import start

TOKEN = "om-test-token"


@pytest.fixture
def om():
    with start("extensiv-order-manager", orders=5, seed=3) as srv, httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield srv, client


def first_id(srv) -> int:
    return srv.state.orders[0]["orderId"]


def test_every_call_needs_the_bearer_token() -> None:
    """No token or another token is a 401; the install's token is let through."""
    with start("extensiv-order-manager", orders=1) as srv:
        assert httpx.get(srv.url + "/v1.1/orders").status_code == 401
        assert httpx.get(srv.url + "/v1.1/orders", headers={"Authorization": "Bearer other"}).status_code == 401
        assert httpx.get(srv.url + "/v1.1/orders", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_orders_page_by_page_and_limit_as_a_bare_list_sorted_by_order_id(om) -> None:
    """page is 1-based, limit caps a page, past the last page the list is empty; orderId order."""
    srv, client = om
    pages = [client.get("/v1.1/orders", params={"page": n, "limit": 2}).json() for n in (1, 2, 3, 4)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    ids = [o["orderId"] for p in pages for o in p]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert all(o["orderNumber"] != str(o["orderId"]) for o in pages[0])   # two different ids


def test_orders_refuse_a_limit_over_500_and_a_time_not_in_the_documented_format(om) -> None:
    """limit 501 and a modifiedDateFrom with an offset or fractions are 400s."""
    _, client = om
    assert client.get("/v1.1/orders", params={"limit": 501}).status_code == 400
    for bad in ("2026-01-05T08:00:00+00:00", "2026-01-05T08:00:00.000Z", "2026-01-05"):
        assert client.get("/v1.1/orders", params={"modifiedDateFrom": bad}).status_code == 400, bad
    assert client.get("/v1.1/orders", params={"modifiedDateFrom": "2026-01-05T08:00:00Z"}).status_code == 200


def test_orders_filter_by_status_warehouse_and_modified_date(om) -> None:
    """status, warehouseId and modifiedDateFrom narrow the list; an unknown status is a 400."""
    srv, client = om
    srv.app.cancel(first_id(srv))
    cancelled = client.get("/v1.1/orders", params={"status": "CANCELLED"}).json()
    assert [o["orderId"] for o in cancelled] == [first_id(srv)]
    assert len(client.get("/v1.1/orders", params={"status": "AWAITING_3PL_EXPORT", "warehouseId": 5}).json()) == 4
    assert client.get("/v1.1/orders", params={"warehouseId": 6}).json() == []
    since = cancelled[0]["modifiedDate"]
    assert [o["orderId"] for o in client.get("/v1.1/orders", params={"modifiedDateFrom": since}).json()] == [first_id(srv)]
    assert client.get("/v1.1/orders", params={"status": "OPEN"}).status_code == 400


def test_one_order_by_id_or_404(om) -> None:
    srv, client = om
    assert client.get(f"/v1.1/orders/{first_id(srv)}").json()["salesChannel"]["salesChannelId"] == 3
    assert client.get("/v1.1/orders/1").status_code == 404


def test_cancel_needs_a_documented_reason_type_and_the_orders_sales_channel(om) -> None:
    """cancelReasonType from the enum and the order's salesChannelId; the order becomes
    CANCELLED once, a second cancel is refused."""
    srv, client = om
    oid = first_id(srv)
    base = {"orderId": oid, "salesChannelId": 3, "cancelReasonType": "NO_INVENTORY", "updateSalesChannels": "true"}
    assert client.post("/v1/orders/cancel", params={**base, "cancelReasonType": "WAREHOUSE"}).status_code == 400
    assert client.post("/v1/orders/cancel", params={**base, "salesChannelId": 4}).status_code == 404
    assert client.post("/v1/orders/cancel", params={k: v for k, v in base.items() if k != "updateSalesChannels"}).status_code == 400
    done = client.post("/v1/orders/cancel", params={**base, "cancelReason": "Out of stock"})
    assert done.status_code == 200 and done.json()["orderStatus"] == "CANCELLED"
    assert srv.state.orders[0]["cancelReason"] == "Out of stock"
    assert client.post("/v1/orders/cancel", params=base).status_code == 400


def test_external_shipment_needs_tracking_and_carrier_and_marks_the_order_shipped(om) -> None:
    """Each shipment is a result in a 200 (SUCCESS, or FAILED for a cancelled order); it is
    listed by order id and tracking number; a shipped order can no longer be cancelled."""
    srv, client = om
    oid, other = first_id(srv), srv.state.orders[1]["orderId"]
    assert client.put("/v1.1/shipment/external", json={"shipments": [{"orderId": oid, "trackingNumber": "1Z1"}]}).status_code == 400
    assert client.put("/v1.1/shipment/external", json={"shipments": []}).status_code == 400
    srv.app.cancel(other)
    answer = client.put("/v1.1/shipment/external", json={"notifyCustomer": False, "updateChannel": False, "shipments": [
        {"orderId": oid, "trackingNumber": "1Z1", "shipMethod": {"shippingCarrier": "UPS"}},
        {"orderId": other, "trackingNumber": "1Z2", "shipMethod": {"shippingCarrier": "UPS"}}]})
    results = answer.json()
    assert answer.status_code == 200 and [r["status"] for r in results] == ["SUCCESS", "FAILED"]
    assert srv.state.orders[0]["orderStatus"] == "SHIPPED"
    listed = client.get("/v1/shipments", params={"orderId[]": oid, "trackingNumber": "1Z1"}).json()
    assert [s["shipmentId"] for s in listed] == [results[0]["shipment"]["shipmentId"]]
    assert client.get("/v1/shipments", params={"orderId[]": other}).json() == []
    cancel = {"orderId": oid, "salesChannelId": 3, "cancelReasonType": "OTHER", "updateSalesChannels": "false"}
    assert client.post("/v1/orders/cancel", params=cancel).status_code == 400


def test_inventory_adjust_sets_on_hand_and_reports_per_item_errors_in_a_200(om) -> None:
    """A known SKU in the warehouse's GLOBAL location is set; an unknown product is ERR053 and a
    location without stock ERR097, each with its 1-based index."""
    srv, client = om
    answer = client.post("/v1.1/inventory/adjust", json=[
        {"masterSku": "MUG-CERAMIC", "onHandQuantity": 47, "warehouseId": 5, "stockLocationName": "GLOBAL"},
        {"masterSku": "NOPE", "onHandQuantity": 1, "warehouseId": 5, "stockLocationName": "GLOBAL"},
        {"masterSku": "CAP-NAVY", "onHandQuantity": 1, "warehouseId": 5, "stockLocationName": "A-01"}])
    body = answer.json()
    assert answer.status_code == 200 and [r["masterSku"] for r in body["results"]] == ["MUG-CERAMIC"]
    assert [(e["errorCode"], e["index"]) for e in body["errors"]] == [("ERR053", 2), ("ERR097", 3)]
    assert srv.state.stock[("MUG-CERAMIC", 5, "GLOBAL")] == 47 and srv.state.stock[("CAP-NAVY", 5, "GLOBAL")] == 0


def test_a_spent_quota_is_a_429_with_the_wait_in_milliseconds() -> None:
    """Over quota_per_second in one second: 429 with x-skubana-quota-retryAfter (ms)."""
    with start("extensiv-order-manager", orders=1, quota_per_second=2) as srv, httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        codes = [client.get("/v1.1/orders") for _ in range(3)]
        assert [c.status_code for c in codes] == [200, 200, 429]
        assert 0 < int(codes[2].headers["x-skubana-quota-retryAfter"]) <= 1000
