"""The canonical-order schema checked inside the generated map function (`records.FusedCheck`):
whatever a record holds, the function either raises or returns an order jsonschema accepts (with
its key), and a good order passes without raising.

The records are the sample carts' own orders with one leaf changed at a time to each of a few
hostile values (null, "", a lowercase country, a negative number, a list, ...), so that every
field the map reads is tried; `test_the_mutations_reach_the_check` shows they do get refused.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from engine import ROOT, extract, records, runner
from engine.flows import fused
from samples.servers import bigcommerce, woocommerce
from samples.servers.data import OrderFactory

HOSTILE: tuple[Any, ...] = (None, "", "us", "x", 0, -1, 1.5, True, [], {}, [None], {"a": 1}, "2026-13-45")


@pytest.fixture(scope="module")
def project() -> runner.Project:
    return runner.load_project([ROOT / "connectors"])


def _orders(cart: str) -> list[dict]:
    render = {"woocommerce": woocommerce.render_order, "bigcommerce": bigcommerce.render_order}[cart]
    return [render(order) for order in OrderFactory(3).make(4)]


def _leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value[:2]):
            yield from _leaves(item, path + (index,))
    yield path


def _replaced(record: dict, path: tuple, value: Any) -> dict:
    changed = copy.deepcopy(record)
    if not path:
        return value
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def _outcomes(function: Any, raws: list) -> tuple[int, int]:
    """(refused, accepted); every accepted order is valid by jsonschema itself."""
    valid = records.validator("order").is_valid
    refused = accepted = 0
    for raw in raws:
        try:
            key, _, passes, order = function(raw)
        except Exception:           # noqa: BLE001 -- Invalid, or a mapping error: the slow path decides
            refused += 1
            continue
        if type(order) is not dict or key in (None, ""):
            continue
        order["key"] = key if type(key) is str else str(key)
        assert valid(order), (raw, order)
        accepted += 1
    return refused, accepted


@pytest.mark.parametrize("cart", ["woocommerce", "bigcommerce"])    # shopify's read enriches: no generated function
def test_an_order_the_generated_function_accepts_is_valid(project, cart) -> None:
    read = project.connectors[cart].operations["list_orders"]
    function = fused.fused(read)
    assert getattr(function, "checked", None) == "order"
    good = _orders(cart)
    if cart == "woocommerce":
        for raw in good:
            raw["status"] = "processing"
    assert _outcomes(function, good) == (0, len(good))       # good orders pass, unrefused
    mutated = [_replaced(raw, path, value) for raw in good[:2] for path in _leaves(raw) for value in HOSTILE]
    refused, accepted = _outcomes(function, mutated)
    assert refused > 0 and accepted > 0


def test_the_mutations_reach_the_check(project) -> None:
    """Each field the schema constrains is refused by the check itself when it is wrong: a
    lowercase country, an empty SKU, a quantity of 0, a created date that is not one."""
    read = project.connectors["woocommerce"].operations["list_orders"]
    function = fused.fused(read)
    raw = _orders("woocommerce")[0]
    raw["status"] = "processing"
    for path, value in [(("shipping", "country"), "us"), (("line_items", 0, "sku"), ""),
                        (("line_items", 0, "quantity"), 0), (("date_created_gmt",), "soon"),
                        (("billing", "country"), "usa"), (("currency",), "dollars")]:
        with pytest.raises(records.Invalid):
            function(_replaced(raw, path, value))



@pytest.mark.parametrize("given, fused_", [
    (frozenset({"key"}), True),              # the canonical order: key comes after the map
    (frozenset(), False),                    # key is required and the map lacks it: not fused
])
def test_a_map_the_schema_cannot_accept_is_not_fused(given, fused_) -> None:
    check = records.FusedCheck("order", given)
    spec = {name: "x" for name in ("order_id", "order_number", "created_at", "ship_to", "lines")}
    function = extract.compile_record(["id"], spec, check=check)
    assert (getattr(function, "checked", None) == "order") is fused_
    extra = extract.compile_record(["id"], {**spec, "colour": "x"}, check=records.FusedCheck("order", frozenset({"key"})))
    assert getattr(extra, "checked", None) is None           # additionalProperties: false refuses it
