"""The sample ShipStation server behaves as ShipStation API V1 is documented
(connectors/wms/shipstation.md): Basic auth, the 40-a-minute window and its headers, createorder
upserting by orderKey, open orders only, starts-with orderNumber, Pacific times, shipments,
voided labels and fulfillments."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from samples.servers import start
from samples.servers.shipstation import PACIFIC

AUTH = ("api-key", "api-secret")


def order(number: str, key: str | None = None, **extra) -> dict:
    body = {"orderNumber": number, "orderDate": "2026-01-05 00:00:00", "orderStatus": "awaiting_shipment",
            "billTo": {"name": "Zoë"}, "shipTo": {"name": "Zoë", "street1": "1 Main St", "city": "Portland",
                                                  "country": "US"},
            "items": [{"sku": "MUG-CERAMIC", "name": "Mug", "quantity": 2, "unitPrice": 12.0}], **extra}
    if key is not None:
        body["orderKey"] = key
    return body


@pytest.fixture
def ss():
    with start("shipstation") as srv, httpx.Client(base_url=srv.url, auth=AUTH) as client:
        yield srv, client


def test_basic_auth_with_the_api_key_and_secret(ss) -> None:
    """Without the key and secret as Basic credentials every call answers 401."""
    srv, client = ss
    assert httpx.get(srv.url + "/orders").status_code == 401
    assert httpx.get(srv.url + "/orders", auth=("api-key", "wrong")).status_code == 401
    assert client.get("/orders").status_code == 200


def test_every_answer_carries_the_rate_limit_headers_and_the_41st_request_is_429() -> None:
    """40 requests a window per key; the headers count down; over the limit: 429 "Too Many Requests";
    the next window admits again."""
    with start("shipstation", window=1.0) as srv, httpx.Client(base_url=srv.url, auth=AUTH) as client:
        first = client.get("/orders")
        assert first.headers["X-Rate-Limit-Limit"] == "40" and first.headers["X-Rate-Limit-Remaining"] == "39"
        assert first.headers["X-Rate-Limit-Reset"] in ("0", "1")
        answers = [client.get("/orders") for _ in range(40)]
        assert [a.status_code for a in answers].count(429) == 1 and answers[-1].status_code == 429
        assert answers[-1].json() == {"message": "Too Many Requests"}
        assert answers[-1].headers["X-Rate-Limit-Remaining"] == "0"
        time.sleep(1.05)
        assert client.get("/orders").status_code == 200 and srv.app.throttled == 1


def test_createorder_requires_the_documented_fields(ss) -> None:
    """orderNumber (at most 50 characters), orderDate, orderStatus (a known one), billTo and shipTo."""
    _, client = ss
    for body in ({**order("1"), "orderDate": None}, {k: v for k, v in order("1").items() if k != "shipTo"},
                 order("x" * 51), {**order("1"), "orderStatus": "done"}):
        answer = client.post("/orders/createorder", json=body)
        assert answer.status_code == 400 and "invalid" in answer.json()["Message"]
    assert client.post("/orders/createorder", json={**order("1"), "orderDate": "yesterday"}).status_code == 400
    made = client.post("/orders/createorder", json=order("1"))
    assert made.status_code == 200 and made.json()["orderDate"] == "2026-01-05T00:00:00.0000000"


def test_the_same_order_key_updates_instead_of_duplicating(ss) -> None:
    """An existing orderKey updates that order (same orderId, whole resource replaced); without an
    orderKey every call makes a new order with a generated key."""
    srv, client = ss
    first = client.post("/orders/createorder", json=order("1001", "acme-1001")).json()
    again = client.post("/orders/createorder", json=order("1001", "acme-1001", customerNotes="again")).json()
    assert again["orderId"] == first["orderId"] and again["customerNotes"] == "again"
    assert again["createDate"] == first["createDate"] and again["modifyDate"] > first["modifyDate"]
    a = client.post("/orders/createorder", json=order("1002")).json()
    b = client.post("/orders/createorder", json=order("1002")).json()
    assert a["orderId"] != b["orderId"] and a["orderKey"] != b["orderKey"]
    assert len(srv.state.created) == 3


@pytest.mark.parametrize("closed", ["shipped", "cancelled"])
def test_only_open_orders_may_be_updated(ss, closed: str) -> None:
    """A shipped or cancelled order is not updated through createorder (400), an open one can be
    cancelled by sending it with orderStatus cancelled."""
    srv, client = ss
    oid = client.post("/orders/createorder", json=order("1001", "k1")).json()["orderId"]
    if closed == "shipped":
        srv.app.ship(oid)
    else:
        assert client.post("/orders/createorder", json=order("1001", "k1", orderStatus="cancelled")).json()["orderStatus"] == "cancelled"
    refused = client.post("/orders/createorder", json=order("1001", "k1", orderStatus="cancelled"))
    assert refused.status_code == 400 and "may not be updated" in refused.json()["Message"]
    assert srv.state.orders[oid]["orderStatus"] == closed


def test_order_number_is_a_starts_with_search(ss) -> None:
    """GET /orders?orderNumber=100 also finds 1001 and 10011; the rest of the filters and paging."""
    _, client = ss
    for number in ("100", "1001", "10011", "2001"):
        client.post("/orders/createorder", json=order(number, f"k{number}"))
    found = client.get("/orders", params={"orderNumber": "100"}).json()
    assert [o["orderNumber"] for o in found["orders"]] == ["100", "1001", "10011"]
    assert (found["total"], found["page"], found["pages"]) == (3, 1, 1)
    paged = client.get("/orders", params={"pageSize": 3, "page": 2}).json()
    assert [o["orderNumber"] for o in paged["orders"]] == ["2001"] and paged["pages"] == 2
    assert client.get("/orders", params={"pageSize": 501}).status_code == 400
    assert client.get("/orders/999").status_code == 404


def test_times_are_pacific_wall_clock_and_filters_read_pacific(ss) -> None:
    """Answers carry zone-less Pacific times with seven decimals; modifyDateStart
    (yyyy-mm-dd hh:mm:ss) is read as Pacific time, inclusive."""
    srv, client = ss
    made = client.post("/orders/createorder", json=order("1001", "k1")).json()
    stamp = made["modifyDate"]
    assert len(stamp.split(".")[1]) == 7 and stamp[-1] == "0" and "Z" not in stamp and "+" not in stamp
    assert datetime.fromisoformat(stamp).replace(tzinfo=PACIFIC) == srv.state.clock
    at = stamp[:19].replace("T", " ")
    assert client.get("/orders", params={"modifyDateStart": at}).json()["total"] == 1
    later = srv.state.clock.astimezone(PACIFIC).replace(tzinfo=None, microsecond=0).isoformat(" ")
    assert later == at                                         # the same instant, written as the docs ask
    utc_wall = srv.state.clock.replace(tzinfo=None, microsecond=0).isoformat(" ")   # UTC read as Pacific: later
    assert client.get("/orders", params={"modifyDateStart": utc_wall}).json()["total"] == 0


def test_shipments_list_labels_only_items_on_request_voided_ones_flagged(ss) -> None:
    """GET /shipments: labels made in ShipStation, shipmentItems only with includeShipmentItems=true,
    a voided label kept with voided/voidDate (its order awaits shipment again); an order marked as
    shipped has no shipment record, only a fulfillment with its tracking number."""
    srv, client = ss
    a = client.post("/orders/createorder", json=order("1001", "k1")).json()["orderId"]
    b = client.post("/orders/createorder", json=order("1002", "k2")).json()["orderId"]
    label = srv.app.ship(a)[0]
    plain = client.get("/shipments").json()
    assert plain["shipments"][0]["shipmentItems"] is None and plain["total"] == 1
    full = client.get("/shipments", params={"includeShipmentItems": "true", "orderId": a}).json()
    assert full["shipments"][0]["shipmentItems"][0]["sku"] == "MUG-CERAMIC"
    assert client.post("/shipments/voidlabel", json={"shipmentId": label["shipmentId"]}).json()["approved"] is True
    voided = client.get("/shipments", params={"orderId": a}).json()["shipments"][0]
    assert voided["voided"] is True and voided["voidDate"]
    assert srv.state.orders[a]["orderStatus"] == "awaiting_shipment"
    assert client.post("/orders/markasshipped", json={"orderId": b}).status_code == 400   # carrierCode required
    marked = client.post("/orders/markasshipped", json={"orderId": b, "carrierCode": "usps",
                                                        "trackingNumber": "9400100000000000000031"})
    assert marked.json() == {"orderId": b, "orderNumber": "1002"}
    assert client.get("/shipments", params={"orderId": b}).json()["shipments"] == []
    fulfillment = client.get("/fulfillments", params={"orderId": b}).json()["fulfillments"][0]
    assert fulfillment["trackingNumber"] == "9400100000000000000031" and fulfillment["voided"] is False
    assert client.get("/orders", params={"orderStatus": "shipped"}).json()["orders"][0]["orderId"] == b
