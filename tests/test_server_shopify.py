"""The Shopify sample server behaves as Shopify documents (sources: connectors/carts/shopify.md):
requested query cost and the 1,000-point single-query limit, the leaky cost bucket, version
fall-forward, 2026-04's idempotency and changeFromQuantity, the client-credentials grant; and
every query of the connector fits the limit."""

from __future__ import annotations

import time

import httpx
import pytest
import yaml

from engine import ROOT
from samples.servers import gql, start
from samples.servers.shopify import release_candidate, supported_versions

SPEC = ROOT / "connectors" / "carts" / "shopify.yaml"
TOKEN = {"X-Shopify-Access-Token": "shpat_test"}
ORDERS = """query($first: Int!) { orders(first: $first) { pageInfo { hasNextPage endCursor }
  nodes { id shippingAddress { city } lineItems(first: 100) { nodes { id originalUnitPriceSet { shopMoney { amount } } } } } } }"""
STOCK = """mutation($i: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $i)%s {
  inventoryAdjustmentGroup { id } userErrors { field message code } } }"""


def graphql(client: httpx.Client, query: str, variables: dict | None = None, version: str = "2026-10") -> httpx.Response:
    return client.post(f"/admin/api/{version}/graphql.json", json={"query": query, "variables": variables or {}})


def queries(spec: dict) -> list[tuple[str, str, dict]]:
    """Every GraphQL request of the connector: (where, query, variables)."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get("graphql"), dict):
                found.append((where, node["graphql"]["query"], node["graphql"].get("variables") or {}))
            for key, value in node.items():
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
    walk(spec["operations"], "operations")
    return found


def test_every_connector_query_fits_the_single_query_limit():
    """Defect: the first orders query asked for 15,802 points (limit 1,000): MAX_COST_EXCEEDED."""
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    found = queries(spec)
    assert len(found) >= 8
    for where, query, variables in found:
        kind, fields = gql.parse(query, {k: v for k, v in variables.items() if isinstance(v, int)})
        assert gql.cost(kind, fields) <= 1000, where


def test_requested_cost_multiplies_nested_connections_and_refuses_above_1000():
    with start("shopify", orders=3) as srv, httpx.Client(base_url=srv.url, headers=TOKEN) as client:
        kind, fields = gql.parse(ORDERS, {"first": 5})
        # orders: 2 + 5 x (1 + address 1 + lineItems (2 + 100 x (1 + 2)))
        assert gql.cost(kind, fields) == 2 + 5 * (1 + 1 + 302)
        small = graphql(client, ORDERS, {"first": 3}).json()
        cost = small["extensions"]["cost"]
        assert cost["requestedQueryCost"] == 2 + 3 * 304
        assert cost["actualQueryCost"] < cost["requestedQueryCost"]     # few lines returned: refunded
        assert set(cost["throttleStatus"]) == {"maximumAvailable", "currentlyAvailable", "restoreRate"}
        big = graphql(client, ORDERS, {"first": 50}).json()
        assert "data" not in big
        error = big["errors"][0]
        assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
        assert error["extensions"]["cost"] == 2 + 50 * 304 and error["extensions"]["maxCost"] == 1000
        assert error["message"].startswith(f"Query cost is {2 + 50 * 304}, which exceeds the single query max cost limit (1000).")
        mutation = "mutation { orderCancel(orderId: \"x\", reason: OTHER, restock: true) { job { id } } }"
        assert gql.cost(*gql.parse(mutation)) == 10


def test_leaky_bucket_throttles_with_throttle_status_and_restores():
    with start("shopify", orders=3, bucket_size=1000, restore_rate=1000) as srv, \
            httpx.Client(base_url=srv.url, headers=TOKEN) as client:
        query = "query($first: Int!) { orders(first: $first) { nodes { id lineItems(first: 250) { nodes { id } } } } }"
        srv.app.bucket.available = 100                  # nearly empty bucket
        throttled = graphql(client, query, {"first": 3}).json()
        assert throttled["errors"][0]["extensions"]["code"] == "THROTTLED" and "data" not in throttled
        status = throttled["extensions"]["cost"]
        assert status["requestedQueryCost"] == 2 + 3 * 253 and status["actualQueryCost"] is None
        assert status["throttleStatus"]["restoreRate"] == 1000
        time.sleep(1.0)                                  # 1,000 points a second come back
        assert "data" in graphql(client, query, {"first": 3}).json()


def test_an_unsupported_version_falls_forward_and_an_unreleased_one_is_404():
    """Defect: 2025-01 left Shopify's support window; the connector's default must be supported."""
    today = "2026-12-03"
    assert supported_versions(today) == ["2026-01", "2026-04", "2026-07", "2026-10"]
    assert release_candidate(today) == "2027-01"
    default = yaml.safe_load(SPEC.read_text(encoding="utf-8"))["config"]["properties"]["api_version"]["default"]
    assert default in supported_versions(today)
    with start("shopify", orders=1, today=today) as srv, httpx.Client(base_url=srv.url, headers=TOKEN) as client:
        old = graphql(client, ORDERS, {"first": 1}, version="2025-01")
        assert old.status_code == 200 and old.headers["X-Shopify-API-Version"] == "2026-01"
        assert graphql(client, ORDERS, {"first": 1}).headers["X-Shopify-API-Version"] == "2026-10"
        assert graphql(client, ORDERS, {"first": 1}, version="2027-04").status_code == 404
        assert srv.app.served[0] == ("2025-01", "2026-01")


def test_inventory_set_quantities_from_2026_04_needs_idempotency_and_change_from_quantity():
    """Defect: from 2026-04 Shopify refuses inventorySetQuantities without @idempotent(key:) and
    without changeFromQuantity; compareQuantity/ignoreCompareQuantity are removed."""
    with start("shopify", orders=0) as srv, httpx.Client(base_url=srv.url, headers=TOKEN) as client:
        item = srv.state.variants["MUG-CERAMIC"]["inventoryItem"]["id"]
        where = {"inventoryItemId": item, "locationId": "gid://shopify/Location/76543210"}

        def spec(**quantity):
            return {"i": {"name": "available", "reason": "correction", "quantities": [{**where, **quantity}]}}

        keyless = graphql(client, STOCK % "", spec(quantity=5, changeFromQuantity=None)).json()
        assert "data" not in keyless and keyless["errors"][0]["message"].startswith("The @idempotent directive is required")
        old_form = graphql(client, STOCK % ' @idempotent(key: "a")',
                           {"i": {**spec(quantity=5)["i"], "ignoreCompareQuantity": True}}).json()
        assert old_form["errors"][0]["extensions"]["code"] == "INVALID_VARIABLE"
        missing = graphql(client, STOCK % ' @idempotent(key: "b")', spec(quantity=5)).json()
        assert missing["data"]["inventorySetQuantities"]["userErrors"][0]["field"][-1] == "changeFromQuantity"
        stale = graphql(client, STOCK % ' @idempotent(key: "c")', spec(quantity=5, changeFromQuantity=7)).json()
        assert stale["data"]["inventorySetQuantities"]["userErrors"][0]["code"] == "CHANGE_FROM_QUANTITY_STALE"
        assert srv.state.levels[item] == 100
        cas = graphql(client, STOCK % ' @idempotent(key: "d")', spec(quantity=5, changeFromQuantity=100)).json()
        assert cas["data"]["inventorySetQuantities"]["userErrors"] == [] and srv.state.levels[item] == 5
        first = graphql(client, STOCK % ' @idempotent(key: "e")', spec(quantity=9, changeFromQuantity=None)).json()
        srv.state.levels[item] = 4                      # a sale in between
        again = graphql(client, STOCK % ' @idempotent(key: "e")', spec(quantity=9, changeFromQuantity=None)).json()
        assert again["data"] == first["data"] and srv.state.levels[item] == 4          # the first answer, nothing applied
        other = graphql(client, STOCK % ' @idempotent(key: "e")', spec(quantity=8, changeFromQuantity=None)).json()
        assert other["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_PARAMETER_MISMATCH"
        # 2026-01 still takes the old compare syntax without a key
        before = graphql(client, STOCK % "", {"i": {**spec(quantity=6)["i"], "ignoreCompareQuantity": True}},
                         version="2026-01").json()
        assert before["data"]["inventorySetQuantities"]["userErrors"] == [] and srv.state.levels[item] == 6


def test_client_credentials_grant_issues_expiring_tokens():
    with start("shopify", orders=1, client_id="cid", client_secret="csecret", token_lifetime=1) as srv, \
            httpx.Client(base_url=srv.url) as client:
        url = "/admin/oauth/access_token"
        bad = client.post(url, data={"grant_type": "client_credentials", "client_id": "cid", "client_secret": "no"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
        assert client.post(url, data={"grant_type": "password"}).status_code == 400
        answer = client.post(url, data={"grant_type": "client_credentials", "client_id": "cid",
                                        "client_secret": "csecret"}).json()
        assert answer["access_token"].startswith("shpat_") and answer["expires_in"] == 1
        headers = {"X-Shopify-Access-Token": answer["access_token"]}
        assert client.post("/admin/api/2026-10/graphql.json", headers=headers,
                           json={"query": ORDERS, "variables": {"first": 1}}).status_code == 200
        time.sleep(1.1)
        assert client.post("/admin/api/2026-10/graphql.json", headers=headers,
                           json={"query": ORDERS, "variables": {"first": 1}}).status_code == 401


@pytest.mark.parametrize("version", ["2026-10"])
def test_order_cancel_takes_refund_method(version):
    with start("shopify", orders=1) as srv, httpx.Client(base_url=srv.url, headers=TOKEN) as client:
        order = srv.state.orders[0]["id"]
        query = """mutation($id: ID!, $m: OrderCancelRefundMethodInput) { orderCancel(orderId: $id, reason: OTHER,
          refundMethod: $m, restock: true) { job { id } orderCancelUserErrors { code } } }"""
        done = graphql(client, query, {"id": order, "m": {"originalPaymentMethodsRefund": False}}, version).json()
        assert done["data"]["orderCancel"]["orderCancelUserErrors"] == []
        assert srv.state.cancellations[0]["refund"] is False
