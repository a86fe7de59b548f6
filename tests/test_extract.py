"""JMESPath extraction and the mapping language."""

from __future__ import annotations

import pytest

from engine import extract
from engine.errors import ExtractError

RECORD = {
    "id": 42,
    "price": "19.90",
    "billing": {"email": "ana@example.com", "first": "Ana", "last": None},
    "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
    "tags": "gift, rush",
}

MAPPINGS = [
    ("plain path", {"email": "billing.email"}, {"email": "ana@example.com"}),
    ("function", {"id": "to_string(id)", "price": "to_number(price)"}, {"id": "42", "price": 19.9}),
    ("nested object", {"to": {"email": "billing.email"}}, {"to": {"email": "ana@example.com"}}),
    ("each", {"lines": {"each": "items", "map": {"sku": "sku", "quantity": "qty"}}},
     {"lines": [{"sku": "A-1", "quantity": 2}, {"sku": "B-2", "quantity": 1}]}),
    ("each over missing list", {"lines": {"each": "nothing", "map": {"sku": "sku"}}}, {"lines": []}),
    ("default used", {"note": {"value": "note", "default": "none"}}, {"note": "none"}),
    ("default unused", {"id": {"value": "id", "default": 0}}, {"id": 42}),
    ("const", {"currency": {"const": "USD"}}, {"currency": "USD"}),
    ("const with backtick", {"c": {"const": "a`b"}}, {"c": "a`b"}),
    ("missing field is null", {"phone": "billing.phone"}, {"phone": None}),
    ("join_nonempty", {"name": "join_nonempty(' ', [billing.first, billing.last])"}, {"name": "Ana"}),
    ("split", {"tags": "split(tags, ', ')"}, {"tags": ["gift", "rush"]}),
    ("to_int", {"n": "to_int(price)"}, {"n": 19}),
    ("upper/lower", {"u": "upper(billing.first)", "l": "lower(billing.first)"}, {"u": "ANA", "l": "ana"}),
]


@pytest.mark.parametrize(("name", "spec", "expected"), MAPPINGS, ids=[m[0] for m in MAPPINGS])
def test_mapping(name, spec, expected):
    """Each form of the mapping language produces the expected fields in one evaluation."""
    assert extract.compile_mapping(spec)(RECORD) == expected


def test_bad_leaf_reports_its_path():
    """A broken JMESPath leaf names the path of the field inside the map."""
    with pytest.raises(ExtractError) as info:
        extract.compile_mapping({"ship_to": {"city": "a..b"}})
    assert info.value.path == ["ship_to", "city"]
    assert "a..b" in info.value.message


def test_bad_expression_has_position():
    """A syntax error reports where in the expression it is."""
    with pytest.raises(ExtractError) as info:
        extract.compile_path("foo[")
    assert info.value.position == 4
    assert "column 4" in str(info.value)


def test_runtime_failure_is_extract_error():
    """A type error while evaluating becomes an ExtractError, not a jmespath exception."""
    with pytest.raises(ExtractError, match="failed"):
        extract.compile_path("join(', ', items)")(RECORD)


@pytest.mark.parametrize(("expr", "holds"), [("id == `42`", True), ("id == `1`", False), ("items", True),
                                             ("nothing", False), ("`[]`", False), ("`0`", True)])
def test_predicate_truthiness(expr, holds):
    """Predicates follow JMESPath truthiness: false, null, '', [] and {} are false; 0 is true."""
    assert extract.compile_predicate(expr)(RECORD) is holds
