"""Real-HTTP tests of the loopback servers the demo and the flow tests run against."""
from __future__ import annotations

import time

import httpx
import pytest

from samples.servers import start

WOO = "/wp-json/wc/v3/orders"
SHOPIFY = "/admin/api/2025-01/graphql.json"
ORDERS_QUERY = """query($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor } nodes { id name updatedAt } } }"""


def woo_client(srv, key="ck_test", secret="cs_test"):
    return httpx.Client(base_url=srv.url, auth=(key, secret))


def wms_token(client):
    answer = client.post("/AuthServer/api/Token", auth=("client-id", "client-secret"),
                         json={"grant_type": "client_credentials", "user_login_id": "42"})
    assert answer.status_code == 200
    return answer.json()["access_token"]


def wms_order(ref, sku="MUG-CERAMIC"):
    return {"customerIdentifier": {"id": 7}, "facilityIdentifier": {"id": 1}, "referenceNum": ref,
            "routingInfo": {"carrier": "UPS", "mode": "Ground"},
            "shipTo": {"name": "Zoë Müller", "address1": "1 Main St", "city": "Portland", "country": "US"},
            "orderItems": [{"itemIdentifier": {"sku": sku}, "qty": 2}]}


def test_same_seed_gives_the_same_orders():
    """Two servers started with the same seed serve identical orders."""
    with start("woocommerce", orders=3, seed=7) as a, start("woocommerce", orders=3, seed=7) as b:
        assert a.state.orders == b.state.orders
        assert a.state.orders[0]["shipping"]["first_name"]


def test_woocommerce_pages_by_total_pages_header_and_sees_orders_added_while_paging():
    """WooCommerce pages with X-WP-TotalPages, and an order created mid-run lands on a later page."""
    with start("woocommerce", orders=25, seed=1) as srv, woo_client(srv) as client:
        ids, page, pages = [], 1, None
        while pages is None or page <= pages:
            answer = client.get(WOO, params={"per_page": 10, "page": page, "orderby": "id", "order": "asc"})
            pages = int(answer.headers["X-WP-TotalPages"])
            ids += [o["id"] for o in answer.json()]
            if page == 1:
                srv.add_orders(6)
            page += 1
        assert ids == list(range(1001, 1032))
        assert client.get(WOO, params={"per_page": 10, "page": 9}).json() == []


def test_woocommerce_modified_after_filters_and_wrong_key_is_401():
    """modified_after admits only later orders, and a wrong consumer secret answers 401."""
    with start("woocommerce", orders=10, seed=1) as srv:
        cut = srv.state.orders[4]["date_modified_gmt"] + "Z"
        with woo_client(srv) as client:
            later = client.get(WOO, params={"modified_after": cut, "dates_are_gmt": "true"}).json()
        assert sorted(o["id"] for o in later) == list(range(1006, 1011))
        with woo_client(srv, secret="wrong") as client:
            denied = client.get(WOO)
        assert denied.status_code == 401
        assert denied.json()["code"] == "woocommerce_rest_cannot_view"


def test_faults_fire_in_order_then_the_server_recovers():
    """A planned 429 with Retry-After fires twice, a 503 once, an empty page once, then answers are normal."""
    with start("woocommerce", orders=5, seed=1) as srv, woo_client(srv) as client:
        srv.faults.add(path_prefix="/wp-json", status=429, times=2, retry_after=1)
        srv.faults.add(path_prefix="/wp-json", status=503)
        srv.faults.add(path_prefix="/wp-json", empty_page=True)
        srv.faults.add(path_prefix="/wp-json", malformed=True)
        first, second = client.get(WOO), client.get(WOO)
        assert (first.status_code, first.headers["Retry-After"]) == (429, "1")
        assert second.status_code == 429
        assert client.get(WOO).status_code == 503
        assert client.get(WOO).json() == []
        assert client.get(WOO).json()[0]["line_items"][0]["quantity"] == "two"
        assert len(client.get(WOO).json()) == 5


def test_a_delay_fault_slows_the_answer():
    """A delay fault holds the answer for the given seconds."""
    with start("bigcommerce", orders=1) as srv, httpx.Client(base_url=srv.url) as client:
        srv.faults.add(path_prefix="/stores", delay=0.3)
        began = time.monotonic()
        client.get("/stores/abc123/v2/orders", headers={"X-Auth-Token": "bc_test_token"})
        assert time.monotonic() - began >= 0.3


def test_bigcommerce_answers_204_when_no_more_orders():
    """BigCommerce pages with page/limit and answers 204 with no body past the last order."""
    with start("bigcommerce", orders=5, seed=1) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Auth-Token": "bc_test_token"}) as client:
        path = "/stores/abc123/v2/orders"
        pages = [client.get(path, params={"page": p, "limit": 2, "sort": "id:asc"}) for p in (1, 2, 3, 4)]
        assert [len(a.json()) for a in pages[:3]] == [2, 2, 1]
        assert (pages[3].status_code, pages[3].content) == (204, b"")
        assert "Content-Length" not in pages[3].headers or pages[3].headers["Content-Length"] == "0"
        later = client.get(path, params={"min_date_modified": "2030-01-01T00:00:00Z"})
        assert later.status_code == 204
        assert client.get(path, headers={"X-Auth-Token": "nope"}).status_code == 401


def test_shopify_cursor_paging_query_filter_and_throttle():
    """Shopify pages with real cursors, honours updated_at:>, and throttles with a 200 THROTTLED error."""
    with start("shopify", orders=12, seed=1) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Shopify-Access-Token": "shpat_test"}) as client:
        since = srv.state.orders[1]["updatedAt"]
        seen, after = [], None
        while True:
            variables = {"first": 4, "after": after, "query": f"status:open updated_at:>'{since}'"}
            page = client.post(SHOPIFY, json={"query": ORDERS_QUERY, "variables": variables}).json()
            seen += [n["name"] for n in page["data"]["orders"]["nodes"]]
            info = page["data"]["orders"]["pageInfo"]
            if not info["hasNextPage"]:
                break
            after = info["endCursor"]
        assert seen == [f"#{n}" for n in range(1003, 1013)]
        assert set(page["data"]["orders"]["nodes"][0]) == {"id", "name", "updatedAt"}
        srv.app.throttle()
        throttled = client.post(SHOPIFY, json={"query": ORDERS_QUERY, "variables": {"first": 1}})
        assert throttled.status_code == 200
        assert throttled.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
        unknown = client.post(SHOPIFY, json={"query": "{ orders(first: 1) { nodes { nope } } }"}).json()
        assert "doesn't exist" in unknown["errors"][0]["message"]
    with start("shopify", orders=1) as srv, httpx.Client(base_url=srv.url) as client:
        assert client.post(SHOPIFY, json={"query": ORDERS_QUERY}).status_code == 401


def test_shopify_fulfillment_and_inventory_mutations_answer_user_errors():
    """fulfillmentCreate closes an open fulfillment order once; a second try and a bad location are userErrors."""
    mutation = """mutation($f: FulfillmentInput!) { fulfillmentCreate(fulfillment: $f) {
        fulfillment { id status } userErrors { field message } } }"""
    with start("shopify", orders=2) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Shopify-Access-Token": "shpat_test"}) as client:
        fo = srv.state.orders[0]["fulfillmentOrders"]["nodes"][0]["id"]
        f = {"lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo}],
             "trackingInfo": {"company": "UPS", "numbers": ["1Z1", "1Z2"]}}
        done = client.post(SHOPIFY, json={"query": mutation, "variables": {"f": f}}).json()
        assert done["data"]["fulfillmentCreate"]["userErrors"] == []
        again = client.post(SHOPIFY, json={"query": mutation, "variables": {"f": f}}).json()
        assert again["data"]["fulfillmentCreate"]["userErrors"][0]["message"].startswith("Fulfillment order is not")
        stock = """mutation($i: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $i) {
            inventoryAdjustmentGroup { id } userErrors { field message } } }"""
        item = srv.state.variants["MUG-CERAMIC"]["inventoryItem"]["id"]
        bad = {"name": "available", "reason": "correction", "ignoreCompareQuantity": True,
               "quantities": [{"inventoryItemId": item, "locationId": "gid://shopify/Location/1", "quantity": 3}]}
        answer = client.post(SHOPIFY, json={"query": stock, "variables": {"i": bad}}).json()
        assert "location" in answer["data"]["inventorySetQuantities"]["userErrors"][0]["message"]


def test_extensiv_token_requires_client_credentials_and_user_login_id():
    """The token endpoint wants basic client credentials and user_login_id; other calls want the bearer."""
    with start("extensiv") as srv, httpx.Client(base_url=srv.url) as client:
        wrong = client.post("/AuthServer/api/Token", auth=("client-id", "nope"),
                            data={"grant_type": "client_credentials", "user_login_id": "42"})
        assert wrong.status_code == 401
        no_user = client.post("/AuthServer/api/Token", auth=("client-id", "client-secret"),
                              data={"grant_type": "client_credentials"})
        assert no_user.status_code == 401
        assert client.get("/orders").status_code == 401
        token = wms_token(client)
        answer = client.get("/orders", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        assert answer.headers["Content-Type"].startswith("application/hal+json")


def test_extensiv_detects_duplicate_reference_and_finds_by_rql():
    """A second order with the same referenceNum is a 400 duplicate, and RQL finds the first one."""
    with start("extensiv") as srv, httpx.Client(base_url=srv.url) as client:
        client.headers["Authorization"] = f"Bearer {wms_token(client)}"
        created = client.post("/orders", json=wms_order("#1001"))
        assert created.status_code == 201
        duplicate = client.post("/orders", json=wms_order("#1001"))
        assert duplicate.status_code == 400
        assert "duplicate" in duplicate.text.lower()
        found = client.get("/orders", params={"rql": "referenceNum==#1001;readOnly.customerIdentifier.id==7"}).json()
        assert found["totalResults"] == 1
        embedded = found["_embedded"]["http://api.3plCentral.com/rels/orders/order"]
        assert embedded[0]["readOnly"]["orderId"] == created.json()["readOnly"]["orderId"]
        assert len(srv.state.created) == 1


def test_extensiv_cancel_needs_a_fresh_etag():
    """Cancel without If-Match is 428, with a stale ETag 412, with the current ETag 204 without a
    body (as the vendor answers); the order then reads canceled."""
    with start("extensiv") as srv, httpx.Client(base_url=srv.url) as client:
        client.headers["Authorization"] = f"Bearer {wms_token(client)}"
        oid = client.post("/orders", json=wms_order("#2001")).json()["readOnly"]["orderId"]
        etag = client.get(f"/orders/{oid}").headers["ETag"]
        assert client.post(f"/orders/{oid}/canceler", json={"reason": "x"}).status_code == 428
        stale = client.post(f"/orders/{oid}/canceler", json={}, headers={"If-Match": 'W/"0-0"'})
        assert stale.status_code == 412
        done = client.post(f"/orders/{oid}/canceler", json={"reason": "x"}, headers={"If-Match": etag})
        assert (done.status_code, done.content) == (204, b"")
        assert client.get(f"/orders/{oid}").json()["readOnly"]["status"] == 2
        assert client.post("/orders", json=wms_order("#2001")).status_code == 201


@pytest.mark.parametrize("page_size", [1, 2])
def test_extensiv_shipments_and_inventory_page_with_total_results(page_size):
    """Shipped orders come back by RQL on processDate with pgsiz/pgnum paging and totalResults."""
    with start("extensiv") as srv, httpx.Client(base_url=srv.url) as client:
        client.headers["Authorization"] = f"Bearer {wms_token(client)}"
        for ref in ("#1", "#2", "#3"):
            client.post("/orders", json=wms_order(ref))
        srv.app.ship_open(limit=2, packages=2)
        rql = "readOnly.isClosed==true;readOnly.status==1;readOnly.processDate=ge=2026-01-01T00:00:00Z"
        rel = "http://api.3plCentral.com/rels/orders/order"
        first = client.get("/orders", params={"rql": rql, "pgsiz": page_size, "pgnum": 1, "detail": "All"}).json()
        assert first["totalResults"] == 2
        assert len(first["_embedded"][rel]) == page_size
        assert len(first["_embedded"][rel][0]["readOnly"]["packages"]) == 2
        summaries = client.get("/inventory/stocksummaries", params={"pgsiz": 100, "rql": "customerIdentifier.id==7"}).json()
        assert summaries["totalResults"] == len(summaries["summaries"]) == 8
        assert "POSTER-A2-TUBE" in {s["itemIdentifier"]["sku"] for s in summaries["summaries"]}


@pytest.mark.parametrize("detail, items, packages", [
    ("", False, False), ("OrderItems", True, False), ("Packages", False, True),
    ("OrderItems,Packages", True, True), ("All", True, True)])
def test_extensiv_answers_items_and_packages_only_for_their_detail(detail, items, packages):
    """An order's items are the HAL relation _embedded[.../rels/orders/item] and its packages
    readOnly.packages, each only when `detail` asks for it (OrderItems, Packages or All)."""
    item_rel = "http://api.3plCentral.com/rels/orders/item"
    with start("extensiv") as srv, httpx.Client(base_url=srv.url) as client:
        client.headers["Authorization"] = f"Bearer {wms_token(client)}"
        oid = client.post("/orders", json=wms_order("#1")).json()["readOnly"]["orderId"]
        srv.app.ship(oid, packages=2)
        listed = client.get("/orders", params={"detail": detail}).json()
        single = client.get(f"/orders/{oid}", params={"detail": detail}).json()
        for order in (listed["_embedded"]["http://api.3plCentral.com/rels/orders/order"][0], single):
            assert "orderItems" not in order and "packages" not in order
            assert (item_rel in order.get("_embedded", {})) is items
            assert ("packages" in order["readOnly"]) is packages


def test_extensiv_stock_summaries_hold_every_customer_and_filter_by_rql():
    """Stock summaries answer every customer's stock unless rql names one (customerIdentifier.id,
    facilityId); the rows themselves carry no customer."""
    with start("extensiv") as srv, httpx.Client(base_url=srv.url) as client:
        client.headers["Authorization"] = f"Bearer {wms_token(client)}"
        def skus(rql: str) -> list[str]:
            rows = client.get("/inventory/stocksummaries", params={"pgsiz": 500, "rql": rql}).json()["summaries"]
            assert all("customerIdentifier" not in row for row in rows)
            return [row["itemIdentifier"]["sku"] for row in rows]
        assert "TENANT8-LAMP" in skus("") and skus("").count("MUG-CERAMIC") == 3
        assert skus("customerIdentifier.id==8") == ["MUG-CERAMIC", "TENANT8-LAMP"]
        mine = skus("customerIdentifier.id==7;facilityId==1")
        assert len(mine) == 8 and "TENANT8-LAMP" not in mine
        assert skus("customerIdentifier.id==7;facilityId==2") == []


def test_bigcommerce_serves_an_orders_products_and_shipping_addresses():
    """The products/shipping_addresses links of a v2 order answer its lines and ship-to, page by
    page (204 past the end), and 404 for an unknown order."""
    with start("bigcommerce", orders=2, seed=1) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Auth-Token": "bc_test_token"}) as client:
        order = client.get("/stores/abc123/v2/orders", params={"include": "consignments.line_items"}).json()[0]
        shipping = order["consignments"][0]["shipping"][0]
        products = client.get(f"/stores/abc123/v2{order['products']['resource']}").json()
        assert [p["sku"] for p in products] == [line["sku"] for line in shipping["line_items"]]
        assert {p["order_address_id"] for p in products} == {shipping["id"]}
        [address] = client.get(f"/stores/abc123/v2/orders/{order['id']}/shipping_addresses").json()
        assert (address["id"], address["city"], address["order_id"]) == (shipping["id"], shipping["city"], order["id"])
        assert client.get(f"/stores/abc123/v2/orders/{order['id']}/products", params={"page": 9}).status_code == 204
        assert client.get("/stores/abc123/v2/orders/999/products").status_code == 404


def test_shopify_pages_an_orders_line_items_connection():
    """Order.lineItems(first, after) answers at most `first` lines with pageInfo and an opaque
    cursor that continues where the page ended."""
    with start("shopify", orders=0) as srv, httpx.Client(
            base_url=srv.url, headers={"X-Shopify-Access-Token": "shpat_test"}) as client:
        [order] = srv.app.add_orders(1, lines=5)
        query = ("query($id: ID!, $after: String) { order(id: $id) { lineItems(first: 3, after: $after) "
                 "{ pageInfo { hasNextPage endCursor } nodes { sku } } } }")
        path, seen, after = "/admin/api/2025-01/graphql.json", [], None
        for more in (True, False):
            body = client.post(path, json={"query": query, "variables": {"id": order["id"], "after": after}}).json()
            items = body["data"]["order"]["lineItems"]
            seen += [node["sku"] for node in items["nodes"]]
            assert items["pageInfo"]["hasNextPage"] is more
            after = items["pageInfo"]["endCursor"]
        assert seen == [f"BULK-{i:04d}" for i in range(5)]


@pytest.mark.parametrize(("fault", "acted", "status"), [
    ({"drop": "before"}, 0, None), ({"drop": "after"}, 1, None),
    ({"acted_status": 502}, 1, 502), ({"status": 500}, 0, 500)])
def test_write_faults_lose_the_answer_before_or_after_the_server_acts(fault, acted, status):
    """A drop closes the connection without an answer, before or after the note is stored; a
    502 after acting stores it and answers 502; a plain status fault answers without acting."""
    with start("woocommerce", orders=1, seed=1) as srv, woo_client(srv) as client:
        srv.faults.add(path_prefix=WOO + "/1001/notes", method="POST", **fault)
        try:
            answer = client.post(WOO + "/1001/notes", json={"note": "Shipped", "customer_note": True})
        except httpx.RemoteProtocolError:
            answer = None
        assert (answer.status_code if answer is not None else None) == status
        assert len(client.get(WOO + "/1001/notes").json()) == acted


def test_a_fault_can_let_earlier_requests_through():
    """`after: 1` lets the first matching request pass and fires on the second."""
    with start("woocommerce", orders=1, seed=1) as srv, woo_client(srv) as client:
        srv.faults.add(path_prefix=WOO, method="GET", status=503, after=1)
        assert client.get(WOO).status_code == 200 and client.get(WOO).status_code == 503


def test_woocommerce_order_notes_are_listed_and_a_core_store_has_no_shipment_tracking_routes():
    """Order notes (note required, customer_note kept) read back; without the extension its routes answer rest_no_route 404."""
    with start("woocommerce", orders=1, seed=1) as srv, woo_client(srv) as client:
        assert client.post(WOO + "/1001/notes", json={"customer_note": True}).status_code == 400
        note = client.post(WOO + "/1001/notes", json={"note": "Tracking 1Z9", "customer_note": True})
        assert note.status_code == 201 and note.json()["customer_note"] is True
        assert [n["note"] for n in client.get(WOO + "/1001/notes").json()] == ["Tracking 1Z9"]
        assert client.get(WOO + "/4242/notes").status_code == 404
        tracking = "/wp-json/wc-shipment-tracking/v3/orders/1001/shipment-trackings"
        refused = client.post(tracking, json={"tracking_number": "1Z9", "custom_tracking_provider": "UPS"})
        assert refused.status_code == 404 and refused.json()["code"] == "rest_no_route"


def test_woocommerce_with_the_shipment_tracking_extension_lists_tracking_items():
    """With shipment_tracking=True, a posted tracking item is listed back on its order."""
    with start("woocommerce", orders=1, seed=1, shipment_tracking=True) as srv, woo_client(srv) as client:
        tracking = "/wp-json/wc-shipment-tracking/v3/orders/1001/shipment-trackings"
        added = client.post(tracking, json={"tracking_number": "1Z9", "custom_tracking_provider": "UPS"})
        assert added.status_code == 201
        assert [t["tracking_number"] for t in client.get(tracking).json()] == ["1Z9"]


def test_woocommerce_variation_stock_is_set_only_under_its_parent():
    """PUT /products/{parent}/variations/{id} updates a variation of that parent, 404 for any other pair."""
    with start("woocommerce", orders=1, seed=1) as srv, woo_client(srv) as client:
        srv.state.products[501].update(type="variation", parent_id=731)
        products = "/wp-json/wc/v3/products"
        assert client.put(products + "/731/variations/501", json={"stock_quantity": 4}).status_code == 200
        assert srv.state.products[501]["stock_quantity"] == 4
        assert client.put(products + "/731/variations/502", json={"stock_quantity": 4}).status_code == 404
        assert client.put(products + "/null/variations/501", json={"stock_quantity": 4}).status_code == 404
