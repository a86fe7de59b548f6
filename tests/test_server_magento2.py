"""Real-HTTP tests of the Magento 2 sample server: each behaviour the sources document
(connectors/carts/magento2.md) and the connector relies on."""
from __future__ import annotations

import httpx
import pytest

from samples.servers import start

API = "/rest/default/V1"


def criteria(*filters: tuple[int, str, str, str], size: int | None = None, page: int | None = None,
             sort: str | None = None) -> dict[str, str]:
    """searchCriteria query parameters: (group, field, value, condition) per filter."""
    params: dict[str, str] = {}
    counts: dict[int, int] = {}
    for group, field, value, cond in filters:
        n = counts.get(group, 0)
        counts[group] = n + 1
        base = f"searchCriteria[filter_groups][{group}][filters][{n}]"
        params |= {f"{base}[field]": field, f"{base}[value]": value, f"{base}[condition_type]": cond}
    if size is not None:
        params["searchCriteria[pageSize]"] = str(size)
    if page is not None:
        params["searchCriteria[currentPage]"] = str(page)
    if sort:
        params |= {"searchCriteria[sortOrders][0][field]": sort, "searchCriteria[sortOrders][0][direction]": "DESC"}
    return params


@pytest.fixture
def mage():
    with start("magento2", orders=6, seed=3) as srv, \
            httpx.Client(base_url=srv.url, headers={"Authorization": "Bearer mage_test"}) as client:
        yield srv, client


def configurable(srv) -> tuple[dict, dict, dict]:
    order = next(o for o in srv.state.orders if any(i["product_type"] == "configurable" for i in o["items"]))
    parent = next(i for i in order["items"] if i["product_type"] == "configurable")
    child = next(i for i in order["items"] if i.get("parent_item_id") == parent["item_id"])
    return order, parent, child


def test_a_missing_or_wrong_bearer_token_is_a_401_in_magentos_error_shape(mage):
    """Without the integration token: 401 {message, parameters}."""
    srv, _ = mage
    answer = httpx.get(srv.url + API + "/orders", params=criteria(), headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401
    assert answer.json() == {"message": "The consumer isn't authorized to access %resources.",
                             "parameters": {"resources": "Magento_Sales::actions_view"}}


def test_search_criteria_is_required(mage):
    """GET /V1/orders without searchCriteria is a 400 naming the field."""
    _, client = mage
    answer = client.get(API + "/orders")
    assert answer.status_code == 400 and answer.json()["parameters"] == {"fieldName": "searchCriteria"}


def test_a_page_past_the_end_repeats_the_last_page(mage):
    """Pages of 4 over 6 orders: page 2 holds two, and page 3 (past the end) holds those two again."""
    _, client = mage
    pages = [client.get(API + "/orders", params=criteria(size=4, page=n)).json() for n in (1, 2, 3)]
    assert [p["total_count"] for p in pages] == [6, 6, 6]
    ids = [[o["entity_id"] for o in p["items"]] for p in pages]
    assert ids[0] == [1001, 1002, 1003, 1004] and ids[1] == ids[2] == [1005, 1006]


def test_a_page_size_above_the_limit_is_refused(mage):
    """pageSize above 300 is a 400 (Web API input limits)."""
    _, client = mage
    assert client.get(API + "/orders", params=criteria(size=301)).status_code == 400


def test_filters_in_a_group_or_groups_and_and_dates_compare_as_magento_writes_them(mage):
    """Filters within a group OR, groups AND; updated_at compares as a date (Magento's own
    'YYYY-MM-DD HH:MM:SS' UTC, or an ISO-8601 instant); sortOrders DESC reverses."""
    srv, client = mage
    first, second = srv.state.orders[0], srv.state.orders[1]
    either = criteria((0, "entity_id", "1001", "eq"), (0, "entity_id", "1003", "eq"), (1, "status", "processing", "eq"))
    assert [o["entity_id"] for o in client.get(API + "/orders", params=either).json()["items"]] == [1001, 1003]
    since = second["updated_at"]
    newer = client.get(API + "/orders", params=criteria((0, "updated_at", since, "gteq"))).json()
    assert newer["total_count"] == 5 and first["entity_id"] not in [o["entity_id"] for o in newer["items"]]
    iso = since.replace(" ", "T") + "+01:00"              # an hour earlier in UTC: every order
    assert client.get(API + "/orders", params=criteria((0, "updated_at", iso, "gteq"))).json()["total_count"] == 6
    desc = client.get(API + "/orders", params=criteria(sort="entity_id")).json()["items"]
    assert [o["entity_id"] for o in desc] == [1006, 1005, 1004, 1003, 1002, 1001]


def test_a_configurable_is_a_priced_parent_and_a_zero_priced_child(mage):
    """The parent carries the price and the child's SKU; the child has parent_item_id and parent_item."""
    srv, _ = mage
    _, parent, child = configurable(srv)
    assert parent["sku"] == child["sku"] and parent["price"] > 0 and child["price"] == 0
    assert child["product_type"] == "simple" and child["parent_item"]["item_id"] == parent["item_id"]


def test_shipping_a_configurable_takes_the_parent_item_id_not_the_child(mage):
    """The child's id alone ships nothing (a 400); the parent's id ships parent and child; more
    than is left is cut to what is left; once nothing is left, shipping again is a 400."""
    srv, client = mage
    order, parent, child = configurable(srv)
    ship = f"{API}/order/{order['entity_id']}/ship"
    tracks = [{"track_number": "1Z1", "title": "UPS", "carrier_code": "ups"}]
    refused = client.post(ship, json={"items": [{"order_item_id": child["item_id"], "qty": 1}], "tracks": tracks})
    assert refused.status_code == 400
    assert refused.json() == {"message": "Shipment Document Validation Error(s):\nYou can't create a shipment without products."}
    taken = client.post(ship, json={"items": [{"order_item_id": parent["item_id"], "qty": 99}], "tracks": tracks})
    assert taken.status_code == 200 and isinstance(taken.json(), int)
    assert parent["qty_shipped"] == child["qty_shipped"] == parent["qty_ordered"]
    again = client.post(ship, json={"items": [{"order_item_id": parent["item_id"], "qty": 1}], "tracks": tracks})
    assert again.status_code == 400 and "without products" in again.json()["message"]


def test_a_whole_shipment_completes_the_order_and_shipments_list_their_tracks(mage):
    """No items: everything left ships; the order is complete; GET /V1/shipments by order_id
    lists the shipment with its tracks; a complete or canceled order cannot ship (CanShip)."""
    srv, client = mage
    order = srv.state.orders[0]
    ship = f"{API}/order/{order['entity_id']}/ship"
    tracks = [{"track_number": "1Z9", "title": "UPS", "carrier_code": "ups"}]
    assert client.post(ship, json={"items": [], "notify": True, "tracks": tracks}).status_code == 200
    assert order["state"] == "complete"
    found = client.get(API + "/shipments", params=criteria((0, "order_id", str(order["entity_id"]), "eq"))).json()
    assert found["total_count"] == 1 and found["items"][0]["tracks"][0]["track_number"] == "1Z9"
    again = client.post(ship, json={"items": [], "tracks": tracks})
    assert again.status_code == 400 and again.json()["message"] == (
        "Shipment Document Validation Error(s):\nThe order does not allow a shipment to be created.\n"
        "You can't create a shipment without products.")
    client.post(API + "/orders/1002/cancel")
    canceled = client.post(f"{API}/order/1002/ship", json={"items": [], "tracks": tracks}).json()["message"]
    assert "A shipment cannot be created when an order has a status of canceled" in canceled


def test_a_track_without_a_number_is_refused(mage):
    """A track without track_number: 400 'Please enter a tracking number.'"""
    srv, client = mage
    answer = client.post(f"{API}/order/1001/ship", json={"tracks": [{"title": "UPS", "carrier_code": "ups"}]})
    assert answer.status_code == 400 and "Please enter a tracking number." in answer.json()["message"]


def test_cancel_answers_true_then_false_and_false_for_complete_or_invoiced(mage):
    """Cancel: true the first time, false once canceled, false for a complete order; an unknown order is a 404."""
    srv, client = mage
    assert client.post(API + "/orders/1002/cancel").json() is True
    assert srv.state.orders[1]["state"] == "canceled"
    assert client.post(API + "/orders/1002/cancel").json() is False
    client.post(f"{API}/order/1003/ship", json={})
    assert client.post(API + "/orders/1003/cancel").json() is False
    assert client.post(API + "/orders/9999/cancel").status_code == 404
    with start("magento2", orders=1, invoiced=True) as paid:
        answer = httpx.post(paid.url + API + "/orders/1001/cancel", headers={"Authorization": "Bearer mage_test"})
        assert answer.json() is False


def test_source_items_are_set_absolutely_and_validated(mage):
    """MSI source items: set (twice: the same value), an unknown source or a missing field is a 400 Validation Failed."""
    srv, client = mage
    body = {"sourceItems": [{"sku": "MUG-CERAMIC", "source_code": "default", "quantity": 7, "status": 1}]}
    for _ in range(2):
        answer = client.post(API + "/inventory/source-items", json=body)
        assert answer.status_code == 200 and answer.json() == []
    assert srv.state.source_items[("MUG-CERAMIC", "default")]["quantity"] == 7
    unknown = client.post(API + "/inventory/source-items",
                          json={"sourceItems": [{"sku": "MUG-CERAMIC", "source_code": "eu-1", "quantity": 1, "status": 1}]})
    assert unknown.status_code == 400 and unknown.json()["message"] == "Validation Failed"
    missing = client.post(API + "/inventory/source-items", json={"sourceItems": [{"quantity": 1}]})
    assert {e["parameters"]["field"] for e in missing.json()["errors"]} == {"sku", "source_code"}
