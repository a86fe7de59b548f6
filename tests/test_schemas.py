"""The JSON Schemas in schemas/: well-formed, documented, closed, and precise in their errors.

An invalid document must yield ONE error that names the offending node (the path inside the
document) and the bad key or value, never a dump of every branch of a polymorphic node.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from engine import SCHEMAS

SCHEMA_NAMES = ["connector", "integration", "order", "shipment", "inventory_level", "cancellation"]
DOCUMENTED = ["connector", "integration"]
DELETE = object()


def load(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


VALIDATORS = {name: Draft202012Validator(load(name)) for name in SCHEMA_NAMES}


def changed(doc: dict, path: str, value: Any) -> dict:
    """A deep copy of doc with the node at dotted path set to value (or removed with DELETE)."""
    result = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = result
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return result


# --- schema walking --------------------------------------------------------------------------

SCHEMA_MAPS = ("properties", "$defs", "patternProperties", "dependentSchemas")
SCHEMA_ONE = ("items", "additionalProperties", "propertyNames", "then", "else", "contains")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
PREDICATES = ("if", "not")  # conditions, not documentation: never walked


def subschemas(schema: Any, where: str = "#") -> Iterator[tuple[str, dict]]:
    """Every (location, schema) reachable from schema, skipping the predicate keywords."""
    if not isinstance(schema, dict):
        return
    yield where, schema
    for keyword in SCHEMA_MAPS:
        for name, sub in schema.get(keyword, {}).items():
            yield from subschemas(sub, f"{where}/{keyword}/{name}")
    for keyword in SCHEMA_ONE:
        if keyword in schema:
            yield from subschemas(schema[keyword], f"{where}/{keyword}")
    for keyword in SCHEMA_LISTS:
        for index, sub in enumerate(schema.get(keyword, [])):
            yield from subschemas(sub, f"{where}/{keyword}/{index}")


def undocumented(schema: dict) -> list[str]:
    """Locations of properties that have no description."""
    return [
        f"{where}/properties/{name}"
        for where, node in subschemas(schema)
        for name, sub in node.get("properties", {}).items()
        if not (isinstance(sub, dict) and sub.get("description"))
    ]


#: Objects closed from elsewhere: the connector's root allOf restricts operation names per kind.
CLOSED_ELSEWHERE = {"#/$defs/operations"}


def open_objects(schema: dict) -> list[str]:
    """Locations of object schemas listing properties that neither close nor delegate to variants."""
    return [
        where
        for where, node in subschemas(schema)
        if "object" in _types(node) and "properties" in node and where not in CLOSED_ELSEWHERE
        and "additionalProperties" not in node and "allOf" not in node
    ]


def _types(node: dict) -> list:
    kind = node.get("type", [])
    return kind if isinstance(kind, list) else [kind]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_passes_its_metaschema(name):
    """Every schema is a valid draft 2020-12 schema with an $id, title and description."""
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://syncengine.dev/schemas/{name}.schema.json"
    assert schema["title"] and schema["description"]


@pytest.mark.parametrize("name", DOCUMENTED)
def test_every_property_has_a_description(name):
    """Every property of the connector and integration schemas has a description for editors."""
    assert undocumented(load(name)) == []


def test_description_walker_finds_a_missing_description():
    """The walker reports undocumented properties wherever they hide, but not inside conditions."""
    bad = {
        "type": "object",
        "properties": {"a": {"type": "string", "description": "fine"}, "b": {"type": "string"}},
        "$defs": {"d": {"type": "object", "properties": {"properties": {"type": "object"}}}},
        "allOf": [{"if": {"properties": {"c": {"const": 1}}}, "then": {"properties": {"e": {}}}}],
    }
    assert undocumented(bad) == [
        "#/properties/b",
        "#/$defs/d/properties/properties",
        "#/allOf/0/then/properties/e",
    ]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_object_is_closed(name):
    """Every object schema that lists properties is closed, directly or through its type variants."""
    assert open_objects(load(name)) == []


def test_closure_walker_finds_an_open_object():
    """The closure walker reports an object with properties and no additionalProperties."""
    bad = {"type": "object", "additionalProperties": False,
           "properties": {"x": {"type": "object", "properties": {"y": {}}}}}
    assert open_objects(bad) == ["#/properties/x"]


# --- documents -------------------------------------------------------------------------------

CART = {
    "name": "woocommerce",
    "kind": "cart",
    "spec_version": 1,
    "description": "WooCommerce REST API v3",
    "config": {
        "required": ["site_url", "consumer_key", "consumer_secret"],
        "properties": {
            "site_url": {"type": "string", "format": "uri", "description": "Shop root URL"},
            "consumer_key": {"type": "string", "secret": True},
            "consumer_secret": {"type": "string", "secret": True},
            "statuses": {"type": "array", "items": {"type": "string"}, "default": ["processing"]},
        },
    },
    "http": {
        "base_url": "{{ config.site_url }}/wp-json/wc/v3",
        "headers": {"User-Agent": "syncengine"},
        "timeout": 30,
        "auth": {"type": "basic", "username": "{{ config.consumer_key }}", "password": "{{ config.consumer_secret }}"},
        "rate_limit": {"per_second": 5, "burst": 10},
        "concurrency": 4,
        "retry": {"attempts": 6, "on_status": [429, 500, 502, 503, 504], "on_transport_error": True,
                  "when": "errors[?extensions.code=='THROTTLED'] | length(@) > `0`",
                  "backoff": {"initial": 0.5, "max": 30, "factor": 2, "jitter": 0.5}},
    },
    "operations": {
        "list_orders": {
            "request": {"path": "/orders", "params": {"status": "processing", "per_page": 100, "modified_after": "{{ since }}"}},
            "paginate": {"type": "page_number", "param": "page", "size_param": "per_page", "size": 100,
                         "stop": [{"type": "total_pages", "header": "X-WP-TotalPages"}, {"type": "empty_page"}]},
            "records": "@",
            "key": "to_string(id)",
            "watermark": "date_modified_gmt",
            "filter": "status == 'processing'",
            "map": {
                "order_id": "to_string(id)",
                "order_number": "number",
                "created_at": "date_created_gmt",
                "ship_to": {"name": "join(' ', [shipping.first_name, shipping.last_name])",
                            "company": {"value": "shipping.company", "default": ""}, "country": "shipping.country"},
                "lines": {"each": "line_items", "map": {"sku": "sku", "quantity": "quantity"}},
                "totals": {"currency": {"const": "USD"}},
            },
        },
        "list_cancellations": {
            "request": {"path": "/orders", "params": {"status": "cancelled"}},
            "paginate": {"type": "link_header"},
            "records": "@",
            "key": "to_string(id)",
            "map": {"order_id": "to_string(id)"},
        },
        "lookup_item": {"request": {"path": "/products", "params": {"sku": "{{ inventory.sku }}"}},
                        "records": "@", "map": {"id": "to_string(id)"}},
        "update_inventory": {
            "precondition": {"request": {"path": "/products/{{ item.id }}"}, "capture": {"etag": {"header": "ETag"}}},
            "request": {"method": "PUT", "path": "/products/{{ item.id }}", "headers": {"If-Match": "{{ pre.etag }}"},
                        "json": {"stock_quantity": "{{ inventory.available }}"}},
        },
        "create_shipment": {
            "request": {"method": "POST", "path": "/orders/{{ order.order_id }}/notes",
                        "json": {"note": "Shipped {{ package.tracking_number }}", "customer_note": True}},
            "id": "to_string(id)",
        },
    },
    "examples": [
        {"name": "two processing orders", "operation": "list_orders",
         "response": {"file": "examples/woocommerce-orders.json", "headers": {"X-WP-TotalPages": "1"}},
         "expect": {"file": "examples/woocommerce-orders.canonical.json"}},
        {"operation": "update_inventory", "input": {"inventory": {"sku": "A", "available": 3}, "item": {"id": "7"}},
         "expect": {"request": {"method": "PUT", "path": "/products/7", "json": {"stock_quantity": 3}}}},
    ],
}

WMS = {
    "name": "extensiv",
    "kind": "wms",
    "spec_version": 1,
    "http": {
        "base_url": "https://secure-wms.com",
        "auth": {"type": "oauth2_client_credentials", "token_url": "https://secure-wms.com/AuthServer/api/Token",
                 "client_id": "{{ config.client_id }}", "client_secret": "{{ config.client_secret }}",
                 "extra_fields": {"user_login_id": "{{ config.user_login_id }}"}, "client_auth": "basic"},
    },
    "operations": {
        "create_order": {
            "request": {"method": "POST", "path": "/orders", "json": {"referenceNum": "{{ order.order_number }}"}},
            "id": "ReadOnly.orderId",
            "already_exists": {"status": [409], "when": "contains(to_string(@), 'duplicate')", "id": "existingId"},
        },
        "find_order": {"request": {"path": "/orders", "params": {"rql": "referenceNum=={{ order.order_number }}"}},
                       "records": "ResourceList", "id": "ReadOnly.orderId",
                       "match": "record.ReferenceNum == order.order_number"},
        "list_shipments": {
            "request": {"path": "/orders", "params": {"rql": "readonly.processDate=gt={{ since }}"}},
            "paginate": {"type": "offset", "limit": 100, "stop": [{"type": "total_records", "path": "TotalResults"}]},
            "records": "ResourceList", "key": "to_string(ReadOnly.orderId)",
            "map": {"shipment_id": "to_string(ReadOnly.orderId)", "order_ref": "ReferenceNum",
                    "packages": {"each": "Packages", "map": {"tracking_number": "TrackingNumber"}}},
        },
        "list_inventory": {
            "request": {"path": "/inventory/stocksummaries"},
            "paginate": {"type": "cursor", "param": "cursor", "source": "header", "header": "X-Next",
                         "stop": [{"type": "no_content"}, {"type": "max_pages", "pages": 500}]},
            "records": "Summaries", "key": "join(':', [ItemIdentifier.Sku, to_string(FacilityId)])",
            "map": {"sku": "ItemIdentifier.Sku", "warehouse": "to_string(FacilityId)", "available": "Available"},
        },
        "cancel_order": {
            "precondition": {"request": {"path": "/orders/{{ order.destination_id }}"},
                             "capture": {"etag": {"header": "ETag"}, "version": {"path": "version"}}},
            "request": {"method": "POST", "path": "/orders/{{ order.destination_id }}/canceler",
                        "headers": {"If-Match": "{{ pre.etag }}"}, "json": {"reason": "{{ cancellation.reason }}"}},
        },
    },
}

GRAPHQL_CART = {
    "name": "shopify",
    "kind": "cart",
    "spec_version": 1,
    "http": {
        "base_url": "https://{{ config.shop }}.myshopify.com/admin/api/2025-01",
        "auth": {"type": "api_key", "in": "header", "name": "X-Shopify-Access-Token", "value": "{{ config.token }}"},
        "retry": {"attempts": 5, "when": "errors[?extensions.code=='THROTTLED'] | length(@) > `0`"},
    },
    "operations": {
        "list_orders": {
            "request": {"method": "POST", "path": "/graphql.json",
                        "graphql": {"query": "query($after: String) { orders(first: 50, after: $after) { nodes { id } } }",
                                    "variables": {"first": 50}}},
            "paginate": {"type": "graphql_cursor", "variable": "after", "cursor": "data.orders.pageInfo.endCursor",
                         "has_next": "data.orders.pageInfo.hasNextPage",
                         "stop": [{"type": "has_more", "path": "data.orders.pageInfo.hasNextPage"}]},
            "records": "data.orders.nodes",
            "key": "id",
            "error_when": "length(errors || `[]`) > `0`",
            "map": {"order_id": "id", "order_number": "name", "created_at": "createdAt",
                    "ship_to": "shippingAddress", "lines": {"each": "lineItems.nodes", "map": {"sku": "sku", "quantity": "quantity"}}},
        },
    },
}

INTEGRATION = {
    "name": "acme-woo-to-3pl",
    "spec_version": 1,
    "source": {"connector": "woocommerce", "config": {"site_url": "http://shop.test", "consumer_key": "${env:ACME_WOO_KEY}",
                                                      "consumer_secret": "${file:secrets/acme.txt}"}},
    "destination": {"connector": "extensiv", "config": {"client_id": "${env:X_ID}", "customer_id": 12}},
    "start_date": "2026-01-01T00:00:00Z",
    "overlap": "10m",
    "flows": {"orders": {"enabled": True, "every": "5m"}, "shipments": {"enabled": True, "every": "15m"},
              "inventory": {"enabled": False, "every": "1h"}, "cancellations": {"enabled": True, "every": "5m"}},
    "order_filters": [{"name": "not-test-orders", "when": "!contains(tags, 'test')"}],
    "hold_minutes": 0,
    "sku_map": {"WOO-1": "WMS-1"},
    "kits": {"BUNDLE-1": [{"sku": "WMS-1", "quantity": 2}, {"sku": "WMS-2", "quantity": 1}]},
    "item_filters": {"mode": "deny", "skus": ["GIFTCARD"], "action": "drop_line"},
    "ship_method_map": {"map": {"flat_rate": "UPS Ground"}, "on_unmapped": "hold", "default": None},
    "carrier_map": {"FDX": "FedEx"},
    "split_shipments": "immediate",
    "inventory": {"warehouses": [1], "minimum": 0, "buffer": 0},
}

ORDER = {
    "key": "1042",
    "order_id": "1042",
    "order_number": "#1042",
    "created_at": "2026-01-05T10:00:00Z",
    "updated_at": None,
    "email": None,
    "ship_to": {"name": "Ada Lovelace", "address1": "12 Main St", "address2": None, "city": "Springfield",
                "region": "IL", "postal_code": "62701", "country": "US", "company": None},
    "bill_to": None,
    "lines": [{"sku": "WOO-1", "quantity": 2, "unit_price": 9.99, "name": "Mug", "line_id": "311"}],
    "ship_method": None,
    "notes": None,
    "totals": {"subtotal": 19.98, "shipping": 5, "tax": None, "discount": 0, "total": 24.98, "currency": "USD"},
    "tags": ["wholesale"],
}

SHIPMENT = {
    "key": "S-77",
    "shipment_id": "S-77",
    "order_ref": "#1042",
    "carrier": "FDX",
    "service": None,
    "shipped_at": "2026-01-06T15:00:00.250+01:00",
    "packages": [{"tracking_number": "1Z999", "carrier": None, "lines": [{"sku": "WMS-1", "quantity": 1}]}],
    "lines": None,
}

INVENTORY_LEVEL = {"key": "WMS-1:1", "sku": "WMS-1", "warehouse": "1", "available": -2, "updated_at": None}
CANCELLATION = {"key": "1042", "order_id": "1042", "reason": None, "canceled_at": "2026-01-05T11:00:00Z"}


@dataclass(frozen=True)
class Case:
    """One invalid document: which schema, the document, and the one error it must produce."""

    id: str
    schema: str
    doc: dict
    path: str  # dotted path inside the document of the error's node
    message: str  # a fragment the error message must contain


VALID = [
    ("connector", "cart", CART),
    ("connector", "wms", WMS),
    ("connector", "graphql-cart", GRAPHQL_CART),
    ("connector", "no-config-no-examples", changed(changed(CART, "config", DELETE), "examples", DELETE)),
    ("connector", "offset", changed(CART, "operations.list_orders.paginate", {"type": "offset", "offset_param": "skip", "limit_param": "take", "limit": 50, "start": 0})),
    ("connector", "cursor-body", changed(CART, "operations.list_orders.paginate", {"type": "cursor", "param": "after", "path": "meta.next"})),
    ("connector", "next-url", changed(CART, "operations.list_orders.paginate", {"type": "next_url", "path": "next", "stop": [{"type": "short_page"}]})),
    ("connector", "no-paging", changed(CART, "operations.list_orders.paginate", {"type": "none"})),
    ("connector", "has-more-negated", changed(CART, "operations.list_orders.paginate.stop", [{"type": "has_more", "path": "last", "negate": True}])),
    ("connector", "bearer", changed(CART, "http.auth", {"type": "bearer", "token": "{{ config.token }}"})),
    ("connector", "no-auth", changed(CART, "http.auth", {"type": "none"})),
    ("connector", "refresh-token", changed(CART, "http.auth", {"type": "oauth2_refresh_token", "token_url": "https://a.test/token", "client_id": "a",
                                                                 "client_secret": "b", "refresh_token": "{{ config.refresh }}", "client_auth": "body",
                                                                 "scopes": ["orders"], "token_path": "data.token"})),
    ("connector", "form-body", changed(CART, "operations.update_inventory.request", {"method": "POST", "path": "/stock", "form": {"qty": "{{ inventory.available }}"}})),
    ("connector", "repeated-param", changed(CART, "operations.list_orders.request.params", {"status": ["processing", "on-hold"]})),
    ("connector", "response-204", changed(CART, "examples.0.response", {"status": 204})),
    ("integration", "full", INTEGRATION),
    ("integration", "minimal", {k: INTEGRATION[k] for k in ("name", "spec_version", "source", "destination", "start_date", "flows")}),
    ("integration", "sku-map-file", changed(INTEGRATION, "sku_map", {"file": "skus.csv"})),
    ("integration", "ship-method-default", changed(INTEGRATION, "ship_method_map", {"map": {}, "on_unmapped": "default", "default": "Ground"})),
    ("order", "order", ORDER),
    ("order", "order-minimal", {k: ORDER[k] for k in ("key", "order_id", "order_number", "created_at", "lines")}
                               | {"ship_to": {"name": "A", "address1": "B", "city": "C", "country": "HK"}}),
    ("order", "order-with-bill-to", changed(ORDER, "bill_to", {"name": None, "country": None, "email": "a@b.test"})),
    ("shipment", "shipment", SHIPMENT),
    ("inventory_level", "inventory-level", INVENTORY_LEVEL),
    ("cancellation", "cancellation", CANCELLATION),
]

LIST_ORDERS = "operations.list_orders"
PAGINATE = f"{LIST_ORDERS}.paginate"

INVALID = [
    # connector: paginators, stop conditions, auth: one branch, one error
    Case("paginator-misspelt-key", "connector", changed(CART, PAGINATE, {"type": "page_number", "parm": "page"}), PAGINATE, "'parm' was unexpected"),
    Case("paginator-misspelt-type", "connector", changed(CART, f"{PAGINATE}.type", "page_numbr"), f"{PAGINATE}.type", "'page_numbr' is not one of"),
    Case("paginator-without-type", "connector", changed(CART, PAGINATE, {"param": "page"}), PAGINATE, "'type' is a required property"),
    Case("paginator-key-of-another-type", "connector", changed(CART, PAGINATE, {"type": "link_header", "param": "page"}), PAGINATE, "'param' was unexpected"),
    Case("cursor-without-path", "connector", changed(CART, PAGINATE, {"type": "cursor", "param": "c"}), PAGINATE, "'path' is a required property"),
    Case("header-cursor-without-header", "connector", changed(CART, PAGINATE, {"type": "cursor", "param": "c", "source": "header"}), PAGINATE, "'header' is a required property"),
    Case("graphql-cursor-incomplete", "connector", changed(CART, PAGINATE, {"type": "graphql_cursor", "variable": "after", "cursor": "x"}), PAGINATE, "'has_next' is a required property"),
    Case("page-size-zero", "connector", changed(CART, f"{PAGINATE}.size", 0), f"{PAGINATE}.size", "less than the minimum of 1"),
    Case("stop-misspelt-type", "connector", changed(CART, f"{PAGINATE}.stop.1.type", "empty"), f"{PAGINATE}.stop.1.type", "'empty' is not one of"),
    Case("stop-total-without-source", "connector", changed(CART, f"{PAGINATE}.stop.0", {"type": "total_pages"}), f"{PAGINATE}.stop.0", "'header' is a required property"),
    Case("stop-total-both-sources", "connector", changed(CART, f"{PAGINATE}.stop.0", {"type": "total_pages", "header": "X", "path": "y"}), f"{PAGINATE}.stop.0", "should not be valid under {'required': ['header', 'path']}"),
    Case("stop-max-pages-without-pages", "connector", changed(CART, f"{PAGINATE}.stop.0", {"type": "max_pages"}), f"{PAGINATE}.stop.0", "'pages' is a required property"),
    Case("stop-not-a-list", "connector", changed(CART, f"{PAGINATE}.stop", {"type": "empty_page"}), f"{PAGINATE}.stop", "is not of type 'array'"),
    Case("auth-misspelt-type", "connector", changed(CART, "http.auth.type", "basik"), "http.auth.type", "'basik' is not one of"),
    Case("auth-bad-enum", "connector", changed(CART, "http.auth", {"type": "api_key", "in": "head", "name": "x", "value": "y"}), "http.auth.in", "'head' is not one of ['header', 'query']"),
    Case("auth-missing-key", "connector", changed(CART, "http.auth", {"type": "bearer"}), "http.auth", "'token' is a required property"),
    Case("auth-misspelt-key", "connector", changed(WMS, "http.auth.scope", ["x"]), "http.auth", "'scope' was unexpected"),
    # connector: top level, http, operations
    Case("spec-version-2", "connector", changed(CART, "spec_version", 2), "spec_version", "1 was expected"),
    Case("spec-version-missing", "connector", changed(CART, "spec_version", DELETE), "", "'spec_version' is a required property"),
    Case("kind-unknown", "connector", changed(CART, "kind", "shop"), "kind", "'shop' is not one of ['cart', 'wms']"),
    Case("top-level-typo", "connector", changed(CART, "operation", {}), "", "'operation' was unexpected"),
    Case("base-url-missing", "connector", changed(CART, "http.base_url", DELETE), "http", "'base_url' is a required property"),
    Case("retry-attempts-zero", "connector", changed(CART, "http.retry.attempts", 0), "http.retry.attempts", "less than the minimum of 1"),
    Case("rate-limit-typo", "connector", changed(CART, "http.rate_limit", {"per_sec": 5}), "http.rate_limit", "'per_second' is a required property"),
    Case("operation-name-typo", "connector", changed(CART, "operations.list_order", {}), "operations", "'list_order' is not one of"),
    Case("wms-operation-in-cart", "connector", changed(CART, "operations.create_order", WMS["operations"]["create_order"]), "operations", "'create_order' is not one of"),
    Case("cart-operation-in-wms", "connector", changed(WMS, "operations.list_orders", CART["operations"]["list_orders"]), "operations", "'list_orders' is not one of"),
    Case("operation-key-typo", "connector", changed(CART, f"{LIST_ORDERS}.record", "@"), LIST_ORDERS, "'record' was unexpected"),
    Case("list-without-key", "connector", changed(CART, f"{LIST_ORDERS}.key", DELETE), LIST_ORDERS, "'key' is a required property"),
    Case("find-order-without-id", "connector", changed(WMS, "operations.find_order.id", DELETE), "operations.find_order", "'id' is a required property"),
    Case("write-without-request", "connector", changed(WMS, "operations.create_order.request", DELETE), "operations.create_order", "'request' is a required property"),
    Case("already-exists-empty", "connector", changed(WMS, "operations.create_order.already_exists", {"id": "x"}), "operations.create_order.already_exists", "'status' is a required property"),
    Case("capture-both", "connector", changed(WMS, "operations.cancel_order.precondition.capture.etag", {"header": "ETag", "path": "x"}), "operations.cancel_order.precondition.capture.etag", "has too many properties"),
    # connector: requests
    Case("request-method-lowercase", "connector", changed(CART, f"{LIST_ORDERS}.request.method", "get"), f"{LIST_ORDERS}.request.method", "'get' is not one of"),
    Case("request-key-typo", "connector", changed(CART, f"{LIST_ORDERS}.request.param", {}), f"{LIST_ORDERS}.request", "'param' was unexpected"),
    Case("request-two-bodies", "connector", changed(CART, "operations.update_inventory.request.form", {"a": "b"}),
         "operations.update_inventory.request", "should not be valid under {'required': ['json', 'form']}"),
    Case("graphql-without-query", "connector", changed(GRAPHQL_CART, f"{LIST_ORDERS}.request.graphql", {"variables": {}}), f"{LIST_ORDERS}.request.graphql", "'query' is a required property"),
    Case("param-object", "connector", changed(CART, f"{LIST_ORDERS}.request.params.status", {"a": 1}), f"{LIST_ORDERS}.request.params.status", "is not valid under any of the given schemas"),
    # connector: mappings
    Case("map-each-without-map", "connector", changed(CART, f"{LIST_ORDERS}.map.lines", {"each": "line_items"}), f"{LIST_ORDERS}.map.lines", "'map' is a required property"),
    Case("map-each-typo", "connector", changed(CART, f"{LIST_ORDERS}.map.lines.mapp", {}), f"{LIST_ORDERS}.map.lines", "'mapp' was unexpected"),
    Case("map-default-without-value", "connector", changed(CART, f"{LIST_ORDERS}.map.ship_to.company", {"default": ""}), f"{LIST_ORDERS}.map.ship_to.company", "'value' is a required property"),
    Case("map-const-with-extra", "connector", changed(CART, f"{LIST_ORDERS}.map.totals.currency.value", "x"), f"{LIST_ORDERS}.map.totals.currency", "'value' was unexpected"),
    Case("map-number-leaf", "connector", changed(CART, f"{LIST_ORDERS}.map.order_number", 5), f"{LIST_ORDERS}.map.order_number", "is not of type 'string', 'object'"),
    Case("map-empty-leaf", "connector", changed(CART, f"{LIST_ORDERS}.map.order_number", ""), f"{LIST_ORDERS}.map.order_number", "should be non-empty"),
    Case("map-nested-reserved", "connector", changed(CART, f"{LIST_ORDERS}.map.each", "x"), f"{LIST_ORDERS}.map", "'each' should not be valid"),
    # connector: config and examples
    Case("config-secret-typo", "connector", changed(CART, "config.properties.consumer_key.secrt", True), "config.properties.consumer_key", "'secrt' was unexpected"),
    Case("config-bad-type", "connector", changed(CART, "config.properties.site_url.type", "url"), "config.properties.site_url.type", "'url' is not one of"),
    Case("config-bad-name", "connector", changed(CART, "config.properties.site-url", {"type": "string"}), "config.properties", "'site-url' does not match"),
    Case("example-expect-empty", "connector", changed(CART, "examples.0.expect", {}), "examples.0.expect", "should be non-empty"),
    Case("example-expect-two", "connector", changed(CART, "examples.0.expect.records", []), "examples.0.expect", "has too many properties"),
    Case("example-read-without-response", "connector", changed(CART, "examples.0.response", DELETE), "examples.0", "'response' is a required property"),
    Case("example-write-without-input", "connector", changed(CART, "examples.1.input", DELETE), "examples.1", "'input' is a required property"),
    Case("example-file-and-body", "connector", changed(CART, "examples.0.response.body", []), "examples.0.response", "should not be valid under {'required': ['file', 'body']}"),
    # integration
    Case("integration-spec-version", "integration", changed(INTEGRATION, "spec_version", "1"), "spec_version", "1 was expected"),
    Case("integration-typo", "integration", changed(INTEGRATION, "flow", {}), "", "'flow' was unexpected"),
    Case("integration-no-start-date", "integration", changed(INTEGRATION, "start_date", DELETE), "", "'start_date' is a required property"),
    Case("integration-bad-start-date", "integration", changed(INTEGRATION, "start_date", "2026-01-01"), "start_date", "does not match"),
    Case("integration-bad-overlap", "integration", changed(INTEGRATION, "overlap", "10 minutes"), "overlap", "does not match"),
    Case("integration-zero-every", "integration", changed(INTEGRATION, "flows.orders.every", "0m"), "flows.orders.every", "does not match"),
    Case("integration-unknown-flow", "integration", changed(INTEGRATION, "flows.returns", {"enabled": True}), "flows", "'returns' was unexpected"),
    Case("integration-flow-without-enabled", "integration", changed(INTEGRATION, "flows.orders", {"every": "5m"}), "flows.orders", "'enabled' is a required property"),
    Case("integration-source-typo", "integration", changed(INTEGRATION, "source.conector", "x"), "source", "'conector' was unexpected"),
    Case("integration-filter-without-when", "integration", changed(INTEGRATION, "order_filters.0", {"name": "x"}), "order_filters.0", "'when' is a required property"),
    Case("integration-sku-map-number", "integration", changed(INTEGRATION, "sku_map.WOO-1", 100), "sku_map.WOO-1", "is not of type 'string'"),
    Case("integration-sku-map-file-extra", "integration", changed(INTEGRATION, "sku_map", {"file": "a.csv", "A": "B"}), "sku_map", "'A' was unexpected"),
    Case("integration-kit-zero", "integration", changed(INTEGRATION, "kits.BUNDLE-1.0.quantity", 0), "kits.BUNDLE-1.0.quantity", "less than the minimum of 1"),
    Case("integration-item-filter-mode", "integration", changed(INTEGRATION, "item_filters.mode", "block"), "item_filters.mode", "'block' is not one of"),
    Case("integration-unmapped-default-missing", "integration", changed(INTEGRATION, "ship_method_map", {"map": {}, "on_unmapped": "default"}), "ship_method_map", "'default' is a required property"),
    Case("integration-split", "integration", changed(INTEGRATION, "split_shipments", "later"), "split_shipments", "'later' is not one of"),
    Case("integration-buffer-negative", "integration", changed(INTEGRATION, "inventory.buffer", -1), "inventory.buffer", "less than the minimum of 0"),
    # canonical records
    Case("order-missing-lines", "order", changed(ORDER, "lines", DELETE), "", "'lines' is a required property"),
    Case("order-empty-lines", "order", changed(ORDER, "lines", []), "lines", "should be non-empty"),
    Case("order-quantity-zero", "order", changed(ORDER, "lines.0.quantity", 0), "lines.0.quantity", "less than the minimum of 1"),
    Case("order-quantity-float", "order", changed(ORDER, "lines.0.quantity", 1.5), "lines.0.quantity", "is not of type 'integer'"),
    Case("order-quantity-string", "order", changed(ORDER, "lines.0.quantity", "2"), "lines.0.quantity", "is not of type 'integer'"),
    Case("order-price-string", "order", changed(ORDER, "lines.0.unit_price", "9.99"), "lines.0.unit_price", "is not of type 'number', 'null'"),
    Case("order-id-number", "order", changed(ORDER, "order_id", 1042), "order_id", "is not of type 'string'"),
    Case("order-created-not-rfc3339", "order", changed(ORDER, "created_at", "2026-01-05 10:00:00"), "created_at", "does not match"),
    Case("order-created-null", "order", changed(ORDER, "created_at", None), "created_at", "is not of type 'string'"),
    Case("order-ship-to-null-city", "order", changed(ORDER, "ship_to.city", None), "ship_to.city", "is not of type 'string'"),
    Case("order-ship-to-missing-country", "order", changed(ORDER, "ship_to.country", DELETE), "ship_to", "'country' is a required property"),
    Case("order-country-name", "order", changed(ORDER, "ship_to.country", "USA"), "ship_to.country", "does not match"),
    Case("order-ship-to-typo", "order", changed(ORDER, "ship_to.zip", "1"), "ship_to", "'zip' was unexpected"),
    Case("order-bill-to-country", "order", changed(ORDER, "bill_to", {"country": "us"}), "bill_to.country", "does not match"),
    Case("order-unknown-field", "order", changed(ORDER, "customer", "x"), "", "'customer' was unexpected"),
    Case("order-currency", "order", changed(ORDER, "totals.currency", "usd"), "totals.currency", "does not match"),
    Case("shipment-no-packages", "shipment", changed(SHIPMENT, "packages", []), "packages", "should be non-empty"),
    Case("shipment-no-tracking", "shipment", changed(SHIPMENT, "packages.0.tracking_number", DELETE), "packages.0", "'tracking_number' is a required property"),
    Case("shipment-line-quantity", "shipment", changed(SHIPMENT, "packages.0.lines.0.quantity", 0), "packages.0.lines.0.quantity", "less than the minimum of 1"),
    Case("shipment-no-order-ref", "shipment", changed(SHIPMENT, "order_ref", DELETE), "", "'order_ref' is a required property"),
    Case("inventory-available-float", "inventory_level", changed(INVENTORY_LEVEL, "available", 2.5), "available", "is not of type 'integer'"),
    Case("inventory-warehouse-number", "inventory_level", changed(INVENTORY_LEVEL, "warehouse", 1), "warehouse", "is not of type 'string'"),
    Case("cancellation-no-order-id", "cancellation", changed(CANCELLATION, "order_id", DELETE), "", "'order_id' is a required property"),
    Case("cancellation-typo", "cancellation", changed(CANCELLATION, "cancelled_at", None), "", "'cancelled_at' was unexpected"),
]


@pytest.mark.parametrize(("schema", "doc"), [(s, d) for s, _, d in VALID], ids=[i for _, i, _ in VALID])
def test_valid_document_passes(schema, doc):
    """A well-formed document produces no error."""
    assert [e.message for e in VALIDATORS[schema].iter_errors(doc)] == []


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_document_yields_one_precise_error(case):
    """An invalid document's best error is at the node it is about and names the problem; no branch dump."""
    errors = list(VALIDATORS[case.schema].iter_errors(case.doc))
    error = best_match(errors)
    assert error is not None
    assert dotted(error) == case.path
    assert case.message in error.message
    assert {dotted(e) for e in errors} == {case.path}, [e.message for e in errors]
    assert len(errors) <= 2, [e.message for e in errors]


def dotted(error: Any) -> str:
    return ".".join(str(part) for part in error.absolute_path)


@pytest.mark.parametrize("kind", [DELETE, "shop"])
def test_operation_names_are_checked_without_a_valid_kind(kind):
    """Without a valid kind, an operation name that no kind knows is still an error."""
    doc = changed(changed(CART, "kind", kind), "operations.list_order", {})
    messages = {dotted(e): e.message for e in VALIDATORS["connector"].iter_errors(doc)}
    assert messages["operations"].startswith("'list_order' is not one of ['list_orders'")
    assert "create_order" in messages["operations"]


def test_address_definition_lives_in_the_order_schema():
    """The address is one $defs entry of order.schema.json, used by ship_to and bill_to."""
    order = load("order")
    assert "address" in order["$defs"]
    assert order["properties"]["bill_to"]["$ref"] == "#/$defs/address"
    assert order["properties"]["ship_to"]["allOf"] == [{"$ref": "#/$defs/address"}]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_is_self_contained(name):
    """No schema refers to another file: every $ref is local to its own document."""
    refs = re.findall(r'"\$ref": "([^"]*)"', (SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))
    assert refs == [ref for ref in refs if ref.startswith("#/$defs/")]
