"""Compiled specs: request blocks render to http.Request, operations know if a resend is safe."""

from __future__ import annotations

import pytest

from engine import http
from engine.specs.model import Connector, RequestTemplate

CONTEXT = {"config": {"shop": "acme", "page_size": 50}, "since": "2026-01-01T00:00:00Z",
           "order": {"number": "1001", "lines": [{"sku": "A", "quantity": 2}], "note": None}}


def test_query_headers_and_structural_json():
    """Params and headers render per leaf; a JSON body keeps numbers as numbers; null params are dropped."""
    request = RequestTemplate.from_data({
        "method": "post", "path": "/shops/{{ config.shop }}/orders",
        "params": {"since": "{{ since }}", "limit": "{{ config.page_size }}", "note": "{{ order.note }}"},
        "headers": {"X-Ref": "{{ order.number }}"},
        "json": {"ref": "{{ order.number }}", "items": {"for_each": "{{ order.lines }}", "as": "line",
                                                         "item": {"sku": "{{ line.sku }}", "qty": "{{ line.quantity }}"}}},
    }).render(CONTEXT)
    assert request == http.Request("POST", "/shops/acme/orders",
                                   params={"since": "2026-01-01T00:00:00Z", "limit": 50},
                                   headers={"X-Ref": "1001"},
                                   json={"ref": "1001", "items": [{"sku": "A", "qty": 2}]})


def test_form_body():
    """A form body renders its fields and sends no JSON."""
    request = RequestTemplate.from_data({"method": "POST", "path": "/token", "form": {"shop": "{{ config.shop }}"}})
    assert request.render(CONTEXT).form == {"shop": "acme"} and request.render(CONTEXT).json is http.NOTHING


def test_graphql_is_a_post_of_query_and_variables():
    """A graphql block becomes POST {query, variables}, variables rendered structurally."""
    request = RequestTemplate.from_data({"path": "/graphql.json", "graphql": {
        "query": "query($first: Int, $q: String) { orders(first: $first, query: $q) { nodes { id } } }",
        "variables": {"first": "{{ config.page_size }}", "q": "updated_at:>{{ since }}"}}}).render(CONTEXT)
    assert request.method == "POST"
    assert request.json["variables"] == {"first": 50, "q": "updated_at:>2026-01-01T00:00:00Z"}
    assert request.json["query"].startswith("query(")


@pytest.mark.parametrize(("name", "operation", "safe"), [
    ("create_order", {"request": {"method": "POST"}}, False),
    ("create_order", {"request": {"method": "POST"}, "idempotency_key": "{{ order.key }}"}, True),
    ("cancel_order", {"request": {"method": "POST"}, "idempotency_key": "k", "idempotent": False}, False),
    ("create_shipment", {"request": {"graphql": {"query": "mutation"}}}, False),
    ("update_inventory", {"request": {"method": "PUT"}}, True),
    ("create_order", {"request": {"method": "POST"}, "idempotent": True}, True),
])
def test_replay_safety(name, operation, safe):
    """PUT/DELETE writes may be resent blindly; POST/PATCH only when declared idempotent or keyed."""
    connector = Connector.from_data({"name": "x", "kind": "wms", "operations": {name: {"records": "@", **operation}}})
    assert connector.operations[name].steps[0].replay_safe is safe


def test_config_defaults_fill_in():
    """Config properties with a default are filled in when the integration leaves them out."""
    connector = Connector.from_data({"name": "x", "kind": "cart", "operations": {}, "config": {"properties": {
        "api_url": {"type": "string", "default": "https://api.example"}, "token": {"type": "string", "secret": True}}}})
    assert connector.with_defaults({"token": "t"}) == {"api_url": "https://api.example", "token": "t"}
    assert connector.secret_fields() == {"token"}
