"""Lint checks what a run would fail on against the canonical record schemas: `map` keys (unknown,
required and missing, nested, in `{each, map}` lists and JMESPath multiselect hashes), the
fields templates read of the records in their context (`order.<field>`), and those `match` and
`skip_when` predicates read."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from engine.cli import run
from engine.flows.writes import order_context
from engine.ledger.base import Entry
from engine.specs.canonical import DELIVERED_ORDER
from tests.lint_cases import SpecCase, cart, wms


def lint_json(*paths: str) -> tuple[int, list[dict], str]:
    """`syncengine lint --format json PATHS`: exit code, findings, all output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(["lint", "--format", "json", *paths], stdout, stderr)
    output = stdout.getvalue() + stderr.getvalue()
    assert "Traceback" not in output
    return code, json.loads(stdout.getvalue() or "[]"), output


SHIP_TO = "ship_to: {name: to.name, address1: to.street, city: to.city, country: to.country}"
LINES = "lines: {each: items, map: {sku: sku, quantity: qty}}"
CREATE = 'json: {ref: "{{ order.key }}"}'

#: (id, fragment of message/expected/hint, line, spec path, spec): one problem per spec, but a
#: renamed key (`RENAMED`) is two: the unknown key, and the required one now missing.
CANONICAL_CASES = [
    SpecCase("map-unknown-top-key", "did you mean 'order_number'?", 28, "operations.list_orders.map.order_numbr",
             cart("order_number: to_string(number)", "order_numbr: to_string(number)")),
    SpecCase("map-unknown-key-says-the-fields", "unknown key 'shipping_method': not a field of the canonical order",
             28, "operations.list_orders.map.shipping_method",
             cart("order_id: to_string(id)", "order_id: to_string(id)\n      shipping_method: ship.method")),
    SpecCase("map-missing-required-key", "missing required key 'created_at' of the canonical order", 26,
             "operations.list_orders.map", cart("      created_at: created\n", "")),
    SpecCase("map-nested-unknown-key", "did you mean 'address1'?", 30, "operations.list_orders.map.ship_to.adress1",
             cart(SHIP_TO, "ship_to: {name: to.name, address1: to.street, city: to.city, country: to.country, "
                           "adress1: to.street2}")),
    SpecCase("map-nested-missing-required-key", "missing required key 'city' of ship_to of the canonical order",
             30, "operations.list_orders.map.ship_to",
             cart(SHIP_TO, "ship_to: {name: to.name, address1: to.street, country: to.country}")),
    SpecCase("map-each-unknown-key", "unknown key 'price': not a field of lines[] of the canonical order", 31,
             "operations.list_orders.map.lines.map.price",
             cart(LINES, "lines: {each: items, map: {sku: sku, quantity: qty, price: price}}")),
    SpecCase("map-each-missing-required-key", "missing required key 'quantity' of lines[]", 31,
             "operations.list_orders.map.lines.map", cart(LINES, "lines: {each: items, map: {sku: sku}}")),
    SpecCase("map-hash-unknown-key", "the JMESPath multiselect hash writes key 'qty'", 31,
             "operations.list_orders.map.lines",
             cart(LINES, 'lines: "items[*].{sku: sku, quantity: qty, qty: qty}"')),
    SpecCase("map-hash-missing-required-key", "the JMESPath multiselect hash lacks 'quantity'", 31,
             "operations.list_orders.map.lines", cart(LINES, 'lines: "items[*].{sku: sku}"')),
    SpecCase("map-hash-nested-did-you-mean", "did you mean 'country'?", 30, "operations.list_orders.map.ship_to",
             cart(SHIP_TO, 'ship_to: "to.{name: name, address1: street, city: city, county: country}"')),
    SpecCase("map-list-where-a-string-goes", "{each, map} makes a list, but order_number of the canonical order is a string",
             28, "operations.list_orders.map.order_number",
             cart("order_number: to_string(number)", "order_number: {each: numbers, map: {n: n}}")),
    SpecCase("template-unknown-order-field", "'order.ordr_id' is not a field: the order as delivered has no 'ordr_id'",
             35, "operations.create_shipment.request.path",
             cart('"/orders/{{ order.order_id }}/shipments"', '"/orders/{{ order.ordr_id }}/shipments"')),
    SpecCase("template-delivered-order-has-no-address", "the order as delivered has no 'ship_to'", 35,
             "operations.create_shipment.request.path",
             cart('"/orders/{{ order.order_id }}/shipments"', '"/orders/{{ order.ship_to.city }}/shipments"')),
    SpecCase("template-package-field", "did you mean 'tracking_number'?", 36,
             "operations.create_shipment.request.json.tracking",
             cart('"{{ package.tracking_number }}", count', '"{{ package.tracking_numbr }}", count')),
    SpecCase("template-verify-request-field", "the canonical shipment has no 'shipment'", 37,
             "operations.create_shipment.verify.request.params.order",
             cart('params: {order: "{{ order.key }}"}', 'params: {order: "{{ shipment.shipment }}"}')),
    SpecCase("template-canonical-order-nested", "did you mean 'city'?", 15, "operations.create_order.request.json.city",
             wms(CREATE, 'json: {ref: "{{ order.key }}", city: "{{ order.ship_to.cty }}"}')),
    SpecCase("template-for-each-item", "lines[] of the canonical order has no 'skuu'", 15,
             "operations.create_order.request.json.items.item.s",
             wms(CREATE, 'json: {ref: "{{ order.key }}", items: {for_each: "{{ order.lines }}", as: line, '
                         'item: {s: "{{ line.skuu }}"}}}')),
    SpecCase("template-jinja-loop", "lines[] of the canonical order has no 'qty'", 15,
             "operations.create_order.request.json.note",
             wms(CREATE, 'json: {ref: "{{ order.key }}", note: "{% for l in order.lines %}{{ l.qty }}{% endfor %}"}')),
    SpecCase("template-find-order-field", "did you mean 'order_number'?", 18, "operations.find_order.request.params.ref",
             wms('params: {ref: "{{ order.key }}"}', 'params: {ref: "{{ order.order_nummer }}"}')),
    SpecCase("find-order-match-field", "did you mean 'key'?", 20, "operations.find_order.match",
             wms('match: "record.ref == order.key"', 'match: "record.ref == order.kee"')),
    SpecCase("verify-match-field", "a package of the canonical shipment has no 'tracking'", 37,
             "operations.create_shipment.verify.match",
             cart("match: \"record.tracking == package.tracking_number\"", "match: \"record.tracking == package.tracking\"")),
]


RENAMED = {"map-unknown-top-key", "map-hash-nested-did-you-mean"}


@pytest.mark.parametrize("case", CANONICAL_CASES, ids=[case.id for case in CANONICAL_CASES])
def test_canonical_mistake_is_a_lint_error(case: SpecCase, tmp_path: Path) -> None:
    """Each mistake against a canonical schema is one error, at its line and spec path, saying
    what was expected."""
    target = tmp_path / "case.yaml"
    target.write_text(case.yaml_text)
    code, findings, output = lint_json(str(target))
    assert code == 1, output
    assert len(findings) == (2 if case.id in RENAMED else 1), output
    found = [f for f in findings if case.message in " ".join(str(f[k]) for k in ("message", "expected", "hint"))]
    assert found, output
    assert (found[0]["line"], found[0]["path"], found[0]["severity"]) == (case.line, case.path, "error"), output
    assert found[0]["column"] >= 1 and found[0]["expected"], output


CLEAN = [
    ("hash-with-canonical-keys", cart(LINES, 'lines: "items[*].{sku: sku, quantity: qty}"')),
    ("hash-under-a-pipe", cart(SHIP_TO, 'ship_to: "to | {name: name, address1: street, city: city, country: country}"')),
    ("default-guards-a-field", cart('"/orders/{{ order.order_id }}/shipments"',
                                    '"/orders/{{ order.order_id }}/{{ order.whatever | default(\'x\') }}"')),
    ("defined-test-guards-a-field", cart('"/orders/{{ order.order_id }}/shipments"',
                                         '"/orders/{% if order.extra is defined %}x{% endif %}{{ order.order_id }}"')),
    ("dict-method", wms(CREATE, 'json: {ref: "{{ order.key }}", n: "{{ order.get(\'notes\') }}", k: "{{ order.keys() | list }}"}')),
    ("kit-sku-of-a-line", wms(CREATE, 'json: {ref: "{{ order.key }}", items: {for_each: "{{ order.lines }}", as: line, '
                                      'item: {kit: "{{ line.kit_sku }}", sku: "{{ line.sku }}"}}}')),
    ("match-names-inside-a-filter-are-the-items", wms('match: "record.ref == order.key"',
                                                       'match: "record.ref == order.key && length(record.lines[?skuu == \'x\']) > `0`"')),
    ("loop-over-a-filtered-list", wms(CREATE, 'json: {ref: "{{ order.key }}", items: {for_each: "{{ order.lines | map(attribute=\'sku\') | list }}", '
                                              'as: line, item: {s: "{{ line.anything }}"}}}')),
]


@pytest.mark.parametrize("spec", [spec for _, spec in CLEAN], ids=[name for name, _ in CLEAN])
def test_what_may_work_is_not_reported(spec: str, tmp_path: Path) -> None:
    """Canonical keys, guarded reads, dict methods and loops of unknown items lint clean."""
    (tmp_path / "spec.yaml").write_text(spec)
    code, findings, output = lint_json(str(tmp_path / "spec.yaml"))
    assert (code, findings) == (0, []), output


def test_delivered_order_schema_is_what_writes_see() -> None:
    """The shape lint checks `order` against in create_shipment and cancel_order is exactly the
    order as delivered that the flows build."""
    entry = Entry("1042", "delivered", destination_id="D-9",
                  data={"order_id": "1042", "order_number": "#1042", "lines": [["W-1", 2]], "line_ids": ["311"]})
    built = order_context(entry)
    assert Draft202012Validator(DELIVERED_ORDER).is_valid(built)
    assert set(built) == set(DELIVERED_ORDER["properties"])
    assert set(built["lines"][0]) == set(DELIVERED_ORDER["properties"]["lines"]["items"]["properties"])


def test_editors_complete_canonical_keys_from_the_connector_schema() -> None:
    """`syncengine schema` describes each read operation's `map` with the canonical fields (nested
    ones and list items included), generated from schemas/<record>.schema.json and in step with it."""
    from engine.specs.canonical import map_definitions

    out = io.StringIO()
    assert run(["schema", "connector"], out, io.StringIO()) == 0
    schema = json.loads(out.getvalue())
    definitions = schema["$defs"]
    assert {name: definitions.get(name) for name in map_definitions()} == map_definitions(), \
        "regenerate: python -c 'from engine.specs.canonical import write_map_definitions as w; w()'"
    orders = definitions["op_list_orders"]["properties"]["map"]
    assert orders["$ref"] == "#/$defs/map_order"
    fields = definitions["map_order"]["properties"]
    assert {"order_id", "order_number", "created_at", "ship_to", "lines", "totals"} <= set(fields)
    assert fields["order_id"]["description"].startswith("Required. ")
    assert "address1" in fields["ship_to"]["properties"]
    assert {"sku", "quantity"} <= set(fields["lines"]["properties"]["map"]["properties"])
    tracking = definitions["map_shipment"]["properties"]["packages"]["properties"]["map"]["properties"]
    assert "tracking_number" in tracking
    assert definitions["op_list_inventory"]["properties"]["map"]["$ref"] == "#/$defs/map_inventory_level"
