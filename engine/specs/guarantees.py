"""What each write of a connector guarantees when an answer is lost, and the lint rule that
every write can be resolved.

A send whose answer is lost (a timeout, a 5xx, a dropped connection, a crash) may or may not
have taken effect. Before anything is sent again the engine resolves it (`flows/protocol.py`,
`flows/orders.py`) by what the write declares:

| declared                      | how a lost answer is resolved                                  |
|-------------------------------|----------------------------------------------------------------|
| `idempotent` (or PUT/DELETE)  | sent again as it is (with the same `idempotency_key`, if any)   |
| `verify` (a read + `match`)   | the read finds the write's effect: done; else sent again        |
| `skip_when` + `precondition`  | sent again; the precondition re-read says it is done: skipped   |
| `create_order`: `find_order`  | `find_order` + its `match` finds the order: delivered; else sent |

A write that declares none could only be sent at most once, which lint refuses.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.specs.findings import Problem

WRITES = ("create_order", "create_shipment", "update_inventory", "cancel_order")
FLOWS = {"create_order": "orders", "create_shipment": "shipments", "update_inventory": "inventory"}
RESOLVE = ("declare how a lost answer is resolved: `idempotent: true` (optionally with an "
           "`idempotency_key`) when sending it again is harmless, `verify` (a read whose `match` "
           "finds its effect), or `skip_when` over a `precondition` that re-reads it")


def write_problems(data: Any) -> Iterator[Problem]:
    """Every write (and each step of one) can be resolved after a lost answer."""
    operations = data.get("operations") if isinstance(data, Mapping) else None
    if not isinstance(operations, Mapping):
        return
    for name in WRITES:
        operation = operations.get(name)
        if not isinstance(operation, Mapping):
            continue
        if name == "create_order":
            yield from _order_problems(operation, operations)
            continue
        steps = operation.get("steps")
        if isinstance(steps, list) and "request" in operation:
            yield Problem(("operations", name, "request"), f"{name} has both `request` and `steps`",
                          "either one `request`, or the requests in order under `steps`")
        if isinstance(steps, list):
            yield from _names(steps, name)
            for index, step in enumerate(steps):
                if isinstance(step, Mapping):
                    yield from _step_problems(step, name, ("operations", name, "steps", index))
        else:
            yield from _step_problems(operation, name, ("operations", name))


def _step_problems(step: Mapping[str, Any], name: str, path: tuple) -> Iterator[Problem]:
    if "skip_when" in step and "precondition" not in step:
        yield Problem(path + ("skip_when",), "skip_when needs a precondition: it is evaluated over its captures",
                      "a `precondition` with `capture`s")
    if resolution(step) is None:
        method = _method(step)
        yield Problem(path, f"{name} sends {method}, which may not be repeated, and declares no way to tell "
                      "whether a send whose answer was lost took effect", RESOLVE)


def _order_problems(operation: Mapping[str, Any], operations: Mapping[str, Any]) -> Iterator[Problem]:
    path = ("operations", "create_order")
    if "find_order" in operations:
        return
    if "already_exists" in operation:
        yield Problem(path + ("already_exists",), "a duplicate refusal counts as delivered only once "
                      "find_order confirms the existing record is this order, and this connector has no find_order",
                      "a `find_order` operation with a `match`")
    elif not _safe(operation):
        yield Problem(path, f"create_order sends {_method(operation)}, which may not be repeated, and the "
                      "connector has no find_order to reconcile a lost answer with",
                      "a `find_order` operation with a `match`, or `idempotent: true` with an `idempotency_key`")


def _names(steps: list, name: str) -> Iterator[Problem]:
    seen: set[str] = set()
    for index, step in enumerate(steps):
        step_name = step.get("name") if isinstance(step, Mapping) else None
        if isinstance(step_name, str) and step_name in seen:
            yield Problem(("operations", name, "steps", index, "name"), f"step name '{step_name}' is used twice",
                          "a name unique among the steps of this write")
        seen.add(step_name)


def resolution(step: Mapping[str, Any]) -> str | None:
    """`verify`, `skip_when`, `idempotent` or None: how a lost answer of this step is resolved."""
    if "verify" in step:
        return "verify"
    if "skip_when" in step and "precondition" in step:
        return "skip_when"
    return "idempotent" if _safe(step) else None


def _safe(step: Mapping[str, Any]) -> bool:
    if "idempotent" in step:
        return bool(step["idempotent"])
    return bool(step.get("idempotency_key")) or _method(step) not in ("POST", "PATCH")


def _method(step: Mapping[str, Any]) -> str:
    request = step.get("request") if isinstance(step.get("request"), Mapping) else {}
    return str(request.get("method", "POST" if request.get("graphql") else "GET")).upper()


def guarantees(data: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(operation, flow, guarantee) for every write of a connector spec that lints clean."""
    operations = data.get("operations") or {}
    rows = []
    for name in WRITES:
        operation = operations.get(name)
        if not isinstance(operation, Mapping):
            continue
        flow = FLOWS.get(name) or ("cancellations" if data.get("kind") == "wms" else "wms_cancellations")
        rows.append((name, flow, _describe(name, operation, operations)))
    return rows


def _describe(name: str, operation: Mapping[str, Any], operations: Mapping[str, Any]) -> str:
    if name == "create_order":
        how = "find_order + match" if "find_order" in operations else _how(operation)
        if "find_order" in operations and operation.get("idempotency_key"):
            how = "idempotency key; find_order + match"    # resent with the key, reconciled after a crash
        return f"effectively once ({how})"
    steps = operation.get("steps") if isinstance(operation.get("steps"), list) else [operation]
    hows = [_how(step) for step in steps]
    if any(how is None for how in hows):
        return "at most once (a lost answer cannot be resolved)"
    named = [f"{step.get('name')}: {how}" for step, how in zip(steps, hows)] if len(steps) > 1 else hows
    return f"effectively once ({'; '.join(named)})"


def _how(step: Mapping[str, Any]) -> str | None:
    how = resolution(step)
    if how == "idempotent" and step.get("idempotency_key"):
        return "idempotency key"
    return {"verify": "verify + match", "skip_when": "skip_when over the precondition"}.get(how, how)
