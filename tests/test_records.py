"""Canonical record validation: the compiled predicate agrees with jsonschema."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from engine import ROOT, records


class _Str(str):
    """A str subclass (a StrEnum member is one): jsonschema's type checker calls it a string."""


class _Dict(dict):
    """A dict subclass: an object to jsonschema."""


class _List(list):
    """A list subclass: an array to jsonschema."""


EXAMPLES = [("order", "woocommerce-orders"), ("order", "shopify-orders"), ("order", "bigcommerce-orders"),
            ("shipment", "extensiv-shipments")]
_SHIP_TO = {"name": "Ada Lovelace", "address1": "12 Main St", "city": "Springfield", "country": "US"}
#: Valid records beside the golden files, for every record type: the fewest keys, and nulls wherever allowed.
RECORDS = {
    "order": [
        {"key": "1", "order_id": "1", "order_number": "#1", "created_at": "2026-01-05T10:00:00Z",
         "ship_to": _SHIP_TO, "lines": [{"sku": "A", "quantity": 1}]},
        {"key": "2", "order_id": "2", "order_number": "2", "created_at": "2026-01-05T10:00:00.25+01:00",
         "updated_at": None, "status": None, "email": None,
         "ship_to": {**_SHIP_TO, "company": None, "address2": None, "region": None, "postal_code": None,
                     "phone": None, "email": None},
         "bill_to": None, "lines": [{"sku": "A", "quantity": 2, "unit_price": 0, "name": None, "line_id": None},
                                    {"sku": "B", "quantity": 1, "unit_price": None}],
         "ship_method": None, "notes": None, "totals": None, "tags": ["wholesale", ""]},
        {"key": "3", "order_id": "3", "order_number": "3", "created_at": "2026-01-05T10:00:00-05:00",
         "ship_to": _SHIP_TO, "bill_to": {"country": None}, "lines": [{"sku": "A", "quantity": 3, "unit_price": 2}],
         "totals": {"subtotal": 6, "shipping": None, "currency": "EUR"}, "tags": None},
    ],
    "shipment": [
        {"key": "S1", "shipment_id": "S1", "order_ref": "#1", "packages": [{"tracking_number": "1Z"}]},
        {"key": "S2", "shipment_id": "S2", "order_ref": "2", "carrier": None, "service": None, "shipped_at": None,
         "packages": [{"tracking_number": "1Z1", "carrier": "UPS", "lines": [{"sku": "A", "quantity": 1}]},
                      {"tracking_number": "1Z2", "carrier": None, "lines": None}],
         "lines": None},
        {"key": "S3", "shipment_id": "S3", "order_ref": "3", "shipped_at": "2026-01-06T15:00:00Z",
         "packages": [{"tracking_number": "1Z3", "lines": []}], "lines": [{"sku": "A", "quantity": 2}]},
    ],
    "inventory_level": [
        {"key": "A@1", "sku": "A", "warehouse": "1", "available": -3, "updated_at": "2026-01-06T15:00:00Z"},
        {"key": "B@1", "sku": "B", "warehouse": "1", "available": 0, "updated_at": None},
        {"key": "C@2", "sku": "C", "warehouse": "2", "available": 12},
    ],
    "cancellation": [
        {"key": "1", "order_id": "1", "reason": "customer request", "canceled_at": "2026-01-05T11:00:00Z"},
        {"key": "2", "order_id": "2", "reason": None, "canceled_at": None},
        {"key": "3", "order_id": "3"},
    ],
}
#: Each value is replaced by each of these: wrong types (bool for int, integral floats, subclasses,
#: a tuple, a Decimal), empty strings, None, and near misses of the date, country and currency patterns.
REPLACEMENTS = [None, "", "x", _Str(""), _Str("x"), 0, 1, -1, 1.5, 2.0, -0.0, 10**20, float("nan"), Decimal("2"),
                True, False, [], {}, [{}], ["x"], [_Str("x")], ("x",), _Dict(), _List(["x"]), b"x",
                "2026-01-05T10:00:00Z", _Str("2026-01-05T10:00:00Z"), "2026-01-05 10:00", "2026-01-05T10:00:00",
                "2026-01-05T10:00:00+0100", "2026-01-05T10:00:00Z\n", "x2026-01-05T10:00:00Z",
                "US", _Str("US"), "us", "USA", "U", "USD", "usd", "US\n"]


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _changed(record, path, change):
    """A copy of `record` with `change(parent, last)` applied where `path` leads."""
    copied = copy.deepcopy(record)
    parent = copied
    for part in path[:-1]:
        parent = parent[part]
    change(parent, path[-1])
    return copied


def _retyped(value):
    """The value with every dict, list and str in it made a subclass of its type."""
    if isinstance(value, dict):
        return _Dict({key: _retyped(item) for key, item in value.items()})
    if isinstance(value, list):
        return _List(_retyped(item) for item in value)
    return _Str(value) if isinstance(value, str) else value


def _variants(record):
    """The record with each value replaced by each of REPLACEMENTS or made a subclass, each key removed
    (alone, or for an extra key, so the key count stays), an extra key added, each list grown."""
    yield from REPLACEMENTS
    yield _retyped(record)
    for path in list(_paths(record))[1:]:
        for replacement in REPLACEMENTS:
            yield _changed(record, path, lambda parent, last: parent.__setitem__(last, copy.deepcopy(replacement)))
        yield _changed(record, path, lambda parent, last: parent.__setitem__(last, _retyped(parent[last])))
        if isinstance(path[-1], str):
            yield _changed(record, path, lambda parent, last: parent.pop(last))
            yield _changed(record, path, lambda parent, last: parent.update({"unexpected": parent.pop(last)}))
            yield _changed(record, path, lambda parent, last: parent.update({last + " ": parent.pop(last)}))
            yield _changed(record, path, lambda parent, last: parent.update({"unexpected": 1}))
            yield _changed(record, path, lambda parent, last: parent.update({1: 1}))
        else:
            yield _changed(record, path, lambda parent, last: parent.append(copy.deepcopy(parent[last])))
            yield _changed(record, path, lambda parent, last: parent.append(None))
            yield _changed(record, path, lambda parent, last: parent.__delitem__(last))


def _records(record_type):
    examples = [json.loads((ROOT / "connectors" / "examples" / f"{example}.canonical.json").read_text())
                for kind, example in EXAMPLES if kind == record_type]
    return RECORDS[record_type] + [record for records_ in examples for record in records_]


@pytest.mark.parametrize("record_type", sorted(RECORDS))
def test_fast_check_agrees_with_jsonschema(record_type):
    """On valid records and thousands of broken or retyped variants, the predicate says what jsonschema says."""
    fast, check = records.fast_check(record_type), records.validator(record_type)
    assert fast is not None
    for record in _records(record_type):
        assert fast(record) and check.is_valid(record), record
        for variant in _variants(record):
            assert bool(fast(variant)) == check.is_valid(variant), variant


#: Schemas using what the canonical ones do not (false, integer within number, no `type`, an
#: `additionalProperties` schema, allOf and $ref on one value), each tried on every one of INSTANCES.
SCHEMAS = [
    True, False, {},
    {"type": ["integer", "string"], "minimum": 2, "minLength": 2},
    {"allOf": [{"type": ["number", "null"]}, {"type": ["integer", "string"], "minimum": 0}]},
    {"properties": {"a": False, "b": {"type": "integer"}}, "required": ["c"]},
    {"type": "object", "properties": {"n": {}}, "additionalProperties": {"type": "string", "minLength": 1}},
    {"type": "object", "properties": {"a": {"minLength": 2}, "c": {}}, "additionalProperties": False},
    {"type": "object", "properties": {"r": {"type": ["string", "null"]}, "o": {"type": "string"}}, "required": ["r"]},
    {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": ["boolean", "null"]}}},
    {"allOf": [{"$ref": "#/$defs/p"}, {"type": "object", "properties": {"x": {"type": "number"}},
                                       "required": ["y"], "additionalProperties": False}],
     "$defs": {"p": {"type": ["object", "null"], "properties": {"x": {"type": ["integer", "null"], "minimum": 1},
                                                                "y": True, "z": {}},
                     "required": ["x"], "additionalProperties": False}}},
]
INSTANCES = [None, True, False, 0, 1, 2, 2.0, 2.5, -1, 10**20, Decimal("3"), "", "a", "ab", _Str("a"), _Str("ab"),
             [], [[]], [[True, None]], [[1]], [_List([None])], _List([[False]]), ("a",),
             {}, {"x": 1}, {"x": 2.0}, {"x": 0}, {"x": None}, {"x": 1, "y": 2}, {"x": 1, "y": None, "z": 0},
             {"y": 1}, {"x": 1, "z": ""}, {"x": True, "y": 1}, _Dict({"x": 1, "y": 1}),
             {"a": "a"}, {"a": "abc"}, {"a": 1}, {"a": _Str("a")}, {"c": 1}, {"b": 1, "c": 0}, {"b": True, "c": 0},
             {"a": None, "c": 1}, {"n": 5, "m": "s"}, {"m": ""}, {"m": _Str("")}, {"x": 1, "q": 1},
             {"r": None}, {"r": "r", "o": None}, {"o": "o"}]


@pytest.mark.parametrize("schema", SCHEMAS, ids=str)
def test_generated_predicate_agrees_on_other_keywords(schema):
    """For schemas beyond the canonical ones, the generated predicate decides each instance as jsonschema does."""
    validator = Draft202012Validator(schema)
    fast = records._Predicates(validator).compile()
    for instance in INSTANCES:
        assert bool(fast(instance)) == validator.is_valid(instance), instance


def test_pattern_memo_stays_bounded():
    """The strings a pattern remembers as matching stay few, however many distinct ones it sees."""
    fast = records.fast_check("cancellation")
    for second in range(3 * records._MEMO_SIZE):
        stamp = f"2026-01-05T{second // 3600:02}:{second // 60 % 60:02}:{second % 60:02}Z"
        assert fast({"key": "1", "order_id": "1", "canceled_at": stamp})
    assert not fast({"key": "1", "order_id": "1", "canceled_at": "2026-01-05"})
    memos = [value for name, value in fast.__globals__.items() if name.startswith("seen")]
    assert memos and all(len(memo) <= records._MEMO_SIZE for memo in memos)


def test_invalid_record_still_reports_messages():
    """A record the predicate rejects gets jsonschema's messages, each with its path."""
    canonical = json.loads((ROOT / "connectors" / "examples" / "woocommerce-orders.canonical.json").read_text())
    broken = {**canonical[0], "ship_to": {**canonical[0]["ship_to"], "city": ""}}
    problems = records.validate("order", broken)
    assert problems and problems[0].startswith("ship_to.city:")


@pytest.mark.parametrize("record_type", sorted(set(records.RECORD_TYPES.values())))
def test_every_record_type_compiles(record_type):
    """Every canonical schema uses only keywords the predicate compiler knows."""
    assert records.fast_check(record_type) is not None
