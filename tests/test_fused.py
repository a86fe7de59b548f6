"""The generated per-record function (`engine.flows.fused`) decides every record exactly as the
step-by-step path does: same key, status, reason, ledger data and order, on tricky records
(nulls, missing keys, wrong types, filtered, invalid, before the start date), in UTC and in
another time zone; whatever it cannot decide goes the step-by-step way."""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from engine import ROOT, runner
from engine.flows import fused
from engine.flows.orders import OrdersFlow
from engine.specs.model import Operation

NOW = datetime(2026, 1, 6, 12, 0, tzinfo=timezone.utc)
GOOD = json.loads((ROOT / "connectors/examples/woocommerce-orders.json").read_text(encoding="utf-8"))[0]


def _with(**changes: Any) -> dict:
    """The example order with top-level `changes` (a value of ... removes the field)."""
    raw = copy.deepcopy(GOOD)
    for name, value in changes.items():
        if value is ...:
            raw.pop(name, None)
        else:
            raw[name] = value
    return raw


def _deep(path: str, value: Any) -> dict:
    raw = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return raw


RECORDS: dict[str, Any] = {
    "a good order": GOOD,
    "a numeric key of 0": _with(id=0),
    "a null key": _with(id=None),
    "no key at all": _with(id=...),
    "filtered out (on-hold)": _with(status="on-hold"),
    "no status": _with(status=...),
    "created before the start date": _with(date_created_gmt="2025-12-31T23:59:59"),
    "a created time that is not canonical": _with(date_created_gmt="2026-01-05 08:07:00"),
    "a null created time (join fails)": _with(date_created_gmt=None),
    "a null modified time (watermark and map fail)": _with(date_modified_gmt=None),
    "no billing": _with(billing=...),
    "billing is a string": _with(billing="none"),
    "no line items": _with(line_items=[]),
    "line items null": _with(line_items=None),
    "a price that is not a number": _deep("line_items.0.price", "twelve"),
    "a null quantity": _deep("line_items.0.quantity", None),
    "an unmapped ship method": _deep("shipping_lines.0.method_id", "carrier_pigeon"),
    "no shipping lines": _with(shipping_lines=[]),
    "a number that is a number": _with(number=1001),
    "a string as the record": "not an order",
    "a list as the record": [GOOD],
    "null as the record": None,
}


@pytest.fixture(scope="module")
def project() -> runner.Project:
    return runner.load_project([ROOT / "connectors", ROOT / "samples/integrations"])


def _flow(project: runner.Project, read: Operation, hold_minutes: int = 0) -> OrdersFlow:
    """An orders flow over a stand-in context: enough for `assess` (no ledger, no network)."""
    integration = dataclasses.replace(project.integrations["acme-woo-to-extensiv"], hold_minutes=hold_minutes)
    ctx = SimpleNamespace(source=SimpleNamespace(operations={"list_orders": read}),
                          destination=project.connectors["extensiv"], integration=integration,
                          now=lambda: NOW, redact=lambda text: text)
    return OrdersFlow(ctx)


def _both(flow: OrdersFlow, raw: Any, taken: list) -> tuple[Any, Any]:
    """(what the step-by-step path gives, what assess_page gives with the fast path on) for a
    page of one record; `taken` gets what the generated function answered each time it ran."""
    fast = flow.fast
    original: Callable = fast.function

    def function(record: Any) -> Any:
        try:
            result = original(record)
        except Exception as exc:                # noqa: BLE001 -- the fast path hands it on
            taken.append(exc)
            raise
        taken.append(result)
        return result

    fast.function = function
    flow.fast = SimpleNamespace(usable=False)
    slow = flow.assess_page([copy.deepcopy(raw)])
    slow_mark = flow._watermark
    flow.fast, flow._watermark = fast, None
    quick = flow.assess_page([copy.deepcopy(raw)])
    return (slow, slow_mark), (quick, flow._watermark)


def _fast_decides(flow: OrdersFlow, raw: Any) -> bool:
    """Whether the fast path decides `raw` itself (it hands the step-by-step path nothing)."""
    left: list = []
    flow.fast.page([copy.deepcopy(raw)], lambda record: left.append(record) or flow._kept(*flow._assess_slowly(record), record))
    return not left


#: (time zone, changes to the woocommerce list_orders spec, hold window in minutes)
VARIANTS = {
    "as shipped": ("UTC", {}, 0),
    "in New York": ("America/New_York", {}, 0),
    "zone-less watermark in New York, numeric key": ("America/New_York",
                                                     {"watermark": "date_modified_gmt", "key": "id"}, 0),
    "zone-less watermark in UTC": ("UTC", {"watermark": "date_modified_gmt"}, 0),
    "a hold window": ("UTC", {}, 2000),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("name", list(RECORDS))
def test_the_fast_path_decides_as_the_step_by_step_path(project: runner.Project, name: str, variant: str) -> None:
    """Key, ledger fields (status, reason, data, raw), order and watermark are the same."""
    zone, changes, hold = VARIANTS[variant]
    data = {**project.connectors["woocommerce"].data["operations"]["list_orders"], **changes}
    flow = _flow(project, Operation.from_data("list_orders", data, zone), hold)
    assert flow.fast.usable
    taken: list = []
    slow, quick = _both(flow, RECORDS[name], taken)
    assert quick == slow
    assert len(taken) == 1


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_page_is_decided_as_each_record_alone(project: runner.Project, variant: str) -> None:
    """`assess_page` (one loop over the page) gives what the step-by-step path gives record by
    record: key, fields (a pending order's raw record kept aside, not in its fields), order,
    raw record, and the watermark; records it leaves go to the step-by-step path."""
    zone, changes, hold = VARIANTS[variant]
    data = {**project.connectors["woocommerce"].data["operations"]["list_orders"], **changes}
    flow = _flow(project, Operation.from_data("list_orders", data, zone), hold)
    page = [copy.deepcopy(raw) for raw in RECORDS.values()]
    page.append(_with(id=999, date_modified_gmt="2026-03-01T00:00:00"))     # the latest mark, mid-page
    page.append(_with(id=1000, date_modified_gmt="2026-02-01T00:00:00"))
    quick = flow.assess_page(copy.deepcopy(page))
    quick_mark = flow._watermark
    flow.fast, flow._watermark = SimpleNamespace(usable=False), None
    slow = flow.assess_page(copy.deepcopy(page))
    assert quick == slow
    assert quick_mark == flow._watermark and quick_mark.startswith("2026-03-01")
    pending = [item for item in quick if item[1]["status"] == "pending"]
    assert bool(pending) == (hold == 0)
    assert all("raw" not in fields and raw is not None for _, fields, _, raw in pending)
    assert all(raw is None and "raw" in fields for _, fields, _, raw in quick if fields["status"] not in ("pending", "skipped"))


def test_the_common_records_take_the_fast_path(project: runner.Project) -> None:
    """A good order (and one held for its ship method) is decided by the generated function;
    a filtered, unkeyed, invalid or unmappable one is left to the step-by-step path."""
    flow = _flow(project, project.connectors["woocommerce"].operations["list_orders"])
    decided = {name: _fast_decides(flow, raw) for name, raw in RECORDS.items()}
    assert decided["a good order"] and decided["an unmapped ship method"] and decided["a numeric key of 0"]
    assert not any(decided[name] for name in ("filtered out (on-hold)", "no billing",
                                              "a null created time (join fails)", "no line items",
                                              "a string as the record"))
    numeric = {**project.connectors["woocommerce"].data["operations"]["list_orders"], "key": "id"}
    flow = _flow(project, Operation.from_data("list_orders", numeric))
    assert _fast_decides(flow, GOOD)
    assert flow.assess_page([copy.deepcopy(GOOD)])[0][0] == "1001"      # a number key is its text


def test_an_invalid_order_is_quarantined_with_the_reason_of_today(project: runner.Project) -> None:
    """The reason names each invalid field, as `records.validate` words it."""
    flow = _flow(project, project.connectors["woocommerce"].operations["list_orders"])
    (_, fields, order, _), = flow.assess_page([_deep("line_items.0.quantity", None)])
    assert order is None and fields["status"] == "quarantined"
    assert fields["reason"] == "invalid order: lines.0.quantity: None is not of type 'integer'"
    assert fields["raw"]["line_items"][0]["quantity"] is None


def test_no_fast_path_for_a_read_that_enriches(project: runner.Project) -> None:
    """`enrich` steps or `truncated_when` need the step-by-step path (sub-requests, a cut list)."""
    data = dict(project.connectors["woocommerce"].data["operations"]["list_orders"])
    data["truncated_when"] = "length(line_items) > `100`"
    read = Operation.from_data("list_orders", data)
    assert fused.fused(read) is None
    assert not _flow(project, read).fast.usable


def test_a_record_the_filter_rejects_is_not_mapped(project: runner.Project) -> None:
    """The generated function maps only what the filter admits (a cart answering many orders
    the filter rejects pays for the filter, not for a map it throws away)."""
    function = fused.fused(project.connectors["woocommerce"].operations["list_orders"])
    key, mark, passes, mapped = function(_with(status="on-hold"))
    assert (key, passes, mapped) == ("1001", False, False)
    assert isinstance(function(GOOD)[3], dict)
