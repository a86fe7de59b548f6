"""Canonical record validation: the compiled predicate agrees with jsonschema."""

from __future__ import annotations

import copy
import json

import pytest

from engine import ROOT, records

EXAMPLES = [("order", "woocommerce-orders"), ("order", "shopify-orders"), ("order", "bigcommerce-orders"),
            ("shipment", "extensiv-shipments")]
REPLACEMENTS = [None, "", "x", 0, -1, 1.5, 2.0, True, False, [], {}, [{}], ["x"], "2026-01-05T10:00:00Z",
                "2026-01-05 10:00"]


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _variants(record):
    """The record with each value replaced by each of REPLACEMENTS, each key removed, an extra key added."""
    for path in _paths(record):
        if not path:
            continue
        for replacement in REPLACEMENTS:
            changed = copy.deepcopy(record)
            parent = changed
            for part in path[:-1]:
                parent = parent[part]
            parent[path[-1]] = copy.deepcopy(replacement)
            yield changed
            if isinstance(parent, dict):
                del parent[path[-1]]
                yield changed
                parent[path[-1]], parent["unexpected"] = replacement, 1
                yield changed


@pytest.mark.parametrize(("record_type", "example"), EXAMPLES)
def test_fast_check_agrees_with_jsonschema(record_type, example):
    """On the golden records and thousands of broken variants, the predicate says what jsonschema says."""
    fast, check = records.fast_check(record_type), records.validator(record_type)
    assert fast is not None
    canonical = json.loads((ROOT / "connectors" / "examples" / f"{example}.canonical.json").read_text())
    for record in canonical:
        assert fast(record) and check.is_valid(record)
        for variant in _variants(record):
            assert fast(variant) == check.is_valid(variant), variant


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
