"""The BigCommerce-like sample server behaves as connectors/carts/bigcommerce.md says BigCommerce
does: orders and their consignments, order shipments, inventory adjustments, rate limits."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from samples.servers import start

V2, V3 = "/stores/abc123/v2", "/stores/abc123/v3"


@pytest.fixture
def bc() -> Iterator[tuple]:
    with start("bigcommerce", orders=3, seed=1) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Auth-Token": "bc_test_token"}) as client:
        yield srv, client


def products_of(client: httpx.Client, oid: int) -> list[dict]:
    return client.get(f"{V2}/orders/{oid}/products").json()


def test_consignments_are_an_object_with_consignment_structure_object_else_the_legacy_array(bc) -> None:
    """include=consignments.line_items&consignment_structure=object embeds {pickups, shipping,
    downloads, email} with the order products; without consignment_structure the legacy array;
    include=consignments alone links the line items; no include, no consignments."""
    _, client = bc
    params = {"include": "consignments.line_items", "consignment_structure": "object"}
    order = client.get(f"{V2}/orders", params=params).json()[0]
    assert set(order["consignments"]) == {"pickups", "shipping", "downloads", "email"}
    line = order["consignments"]["shipping"][0]["line_items"][0]
    assert {"id", "sku", "quantity", "quantity_shipped", "order_address_id"} <= set(line)
    legacy = client.get(f"{V2}/orders", params={"include": "consignments.line_items"}).json()[0]
    assert isinstance(legacy["consignments"], list) and legacy["consignments"][0]["shipping"]
    linked = client.get(f"{V2}/orders", params={"include": "consignments", "consignment_structure": "object"}).json()[0]
    assert set(linked["consignments"]["shipping"][0]["line_items"][0]) == {"url", "resource"}
    assert "consignments" not in client.get(f"{V2}/orders").json()[0]


def test_orders_have_rfc2822_dates_and_min_date_modified_takes_either_format(bc) -> None:
    """Dates are RFC-2822; min_date_modified may be RFC-2822 or ISO-8601; limit above 250 is a
    400 in the v2 error shape; a wrong token is a 401 in it too."""
    _, client = bc
    orders = client.get(f"{V2}/orders").json()
    second = parsedate_to_datetime(orders[1]["date_modified"])
    assert orders[1]["date_modified"].endswith("+0000")
    for since in (orders[1]["date_modified"], second.isoformat()):
        assert [o["id"] for o in client.get(f"{V2}/orders", params={"min_date_modified": since}).json()] == \
            [o["id"] for o in orders[1:]]
    too_many = client.get(f"{V2}/orders", params={"limit": 251})
    assert too_many.status_code == 400 and too_many.json() == [{"status": 400, "message": "The field 'limit' is invalid."}]
    denied = client.get(f"{V3}/inventory/items", headers={"X-Auth-Token": "nope"})
    assert denied.status_code == 401 and denied.json()[0]["status"] == 401


def test_a_shipment_ships_items_and_moves_the_order_to_partially_shipped_then_shipped(bc) -> None:
    """POST shipments answers 201 with the shipment; quantity_shipped, items_shipped and the
    status (3 Partially Shipped, then 2 Shipped) follow; GET shipments is 204 before, a list after."""
    srv, client = bc
    oid = next(o["id"] for o in srv.state.orders if o["items_total"] > 1)
    assert client.get(f"{V2}/orders/{oid}/shipments").status_code == 204
    first = products_of(client, oid)[0]
    partial = {"order_address_id": first["order_address_id"], "tracking_number": "1Z1", "shipping_provider": "ups",
               "items": [{"order_product_id": first["id"], "quantity": 1}]}
    answer = client.post(f"{V2}/orders/{oid}/shipments", json=partial)
    assert answer.status_code == 201 and answer.json()["tracking_number"] == "1Z1"
    assert answer.json()["items"] == [{"order_product_id": first["id"], "product_id": first["product_id"], "quantity": 1}]
    assert products_of(client, oid)[0]["quantity_shipped"] == 1
    order = client.get(f"{V2}/orders", params={"min_id": oid, "max_id": oid}).json()[0]
    assert (order["status_id"], order["status"], order["items_shipped"]) == (3, "Partially Shipped", 1)
    left = [{"order_product_id": p["id"], "quantity": p["quantity"] - p["quantity_shipped"]}
            for p in products_of(client, oid) if p["quantity"] > p["quantity_shipped"]]
    assert client.post(f"{V2}/orders/{oid}/shipments", json={**partial, "tracking_number": "1Z2", "items": left}).status_code == 201
    order = client.get(f"{V2}/orders", params={"min_id": oid, "max_id": oid}).json()[0]
    assert (order["status_id"], order["status"], order["items_shipped"]) == (2, "Shipped", order["items_total"])
    assert [s["tracking_number"] for s in client.get(f"{V2}/orders/{oid}/shipments").json()] == ["1Z1", "1Z2"]


@pytest.mark.parametrize(("change", "message"), [
    ({"items": []}, "The required field 'items' was not supplied."),
    ({"order_address_id": None}, "The required field 'order_address_id' was not supplied."),
    ({"order_address_id": 1}, "The field 'order_address_id' is invalid."),
    ({"tracking_number": "9" * 51}, "The field 'tracking_number' is invalid."),
    ({"shipping_provider": "dhl"}, "The field 'shipping_provider' is invalid."),
    ({"items": [{"order_product_id": 1, "quantity": 1}]}, "The field 'items' is invalid."),
    ({"items": "more"}, "is greater than the quantity of the product that is available to ship"),
])
def test_a_shipment_bigcommerce_would_refuse_is_a_400_and_ships_nothing(bc, change: dict, message: str) -> None:
    """Missing order_address_id or items, an address or product not of the order, a tracking
    number over 50 characters, an unknown shipping_provider, or more than is left to ship: a 400
    in the v2 error shape, and nothing is shipped."""
    srv, client = bc
    oid = srv.state.orders[0]["id"]
    product = products_of(client, oid)[0]
    body = {"order_address_id": product["order_address_id"], "tracking_number": "1Z1", "shipping_provider": "ups",
            "items": [{"order_product_id": product["id"], "quantity": 1}]}
    body.update(change)
    if body["items"] == "more":
        body["items"] = [{"order_product_id": product["id"], "quantity": product["quantity"] + 1}]
    answer = client.post(f"{V2}/orders/{oid}/shipments", json=body)
    assert answer.status_code == 400 and answer.json()[0]["status"] == 400, answer.text
    assert message in answer.json()[0]["message"]
    assert client.get(f"{V2}/orders/{oid}/shipments").status_code == 204
    assert client.post(f"{V2}/orders/9999/shipments", json=body).status_code == 404


def test_absolute_adjustments_set_stock_by_sku_all_or_nothing(bc) -> None:
    """PUT /v3/inventory/adjustments/absolute sets the level at the location (200 with a
    transaction_id; sending it again changes nothing); an unknown SKU or location, a negative
    quantity or more than 2000 items is a 422 in the v3 problem shape and changes nothing."""
    srv, client = bc
    path = f"{V3}/inventory/adjustments/absolute"
    ok = client.put(path, json={"reason": "r", "items": [{"location_id": 1, "sku": "MUG-CERAMIC", "quantity": 7}]})
    assert ok.status_code == 200 and ok.json()["transaction_id"]
    assert client.put(path, json={"items": [{"location_id": 1, "sku": "MUG-CERAMIC", "quantity": 7}]}).status_code == 200
    assert srv.app.stock("MUG-CERAMIC") == 7
    for items in ([{"location_id": 1, "sku": "CAP-NAVY", "quantity": 3}, {"location_id": 1, "sku": "NOPE", "quantity": 1}],
                  [{"location_id": 2, "sku": "CAP-NAVY", "quantity": 3}],
                  [{"location_id": 1, "sku": "CAP-NAVY", "quantity": -1}],
                  [{"location_id": 1, "sku": "CAP-NAVY", "quantity": 1}] * 2001):
        refused = client.put(path, json={"items": items})
        assert refused.status_code == 422 and refused.json()["status"] == 422 and refused.json()["title"]
        assert refused.headers["content-type"].startswith("application/problem+json")
    assert srv.app.stock("CAP-NAVY") == 100


def test_inventory_items_are_found_by_sku(bc) -> None:
    """GET /v3/inventory/items?sku:in= answers {data, meta} with each item's identity and its
    locations; an unknown SKU gives empty data."""
    _, client = bc
    found = client.get(f"{V3}/inventory/items", params={"sku:in": "POSTER-A2", "location_id:in": "1"}).json()
    [item] = found["data"]
    assert item["identity"]["sku"] == "POSTER-A2" and item["locations"][0]["location_id"] == 1
    assert found["meta"]["pagination"]["total"] == 1
    assert client.get(f"{V3}/inventory/items", params={"sku:in": "NOPE"}).json()["data"] == []


def test_every_answer_carries_the_rate_limit_headers_and_past_the_quota_is_a_429() -> None:
    """Each answer says X-Rate-Limit-Requests-Quota/-Left/-Time-Reset-Ms/-Time-Window-Ms; past
    the quota a 429 with them and X-Retry-After, no Retry-After."""
    with start("bigcommerce", orders=1, quota=2, window=30) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Auth-Token": "bc_test_token"}) as client:
        first = client.get(f"{V2}/orders")
        assert first.headers["X-Rate-Limit-Requests-Quota"] == "2" and first.headers["X-Rate-Limit-Requests-Left"] == "1"
        assert 0 < int(first.headers["X-Rate-Limit-Time-Reset-Ms"]) <= 30000
        assert first.headers["X-Rate-Limit-Time-Window-Ms"] == "30000"
        client.get(f"{V2}/orders")
        refused = client.get(f"{V2}/orders")
        assert refused.status_code == 429 and refused.headers["X-Rate-Limit-Requests-Left"] == "0"
        assert int(refused.headers["X-Retry-After"]) >= 1 and "Retry-After" not in refused.headers
