"""The fast path of assessing one raw order: key, watermark, filter and map as ONE generated
function (`extract.compile_record`), then the canonical-order predicate and the rules.

`OrdersFlow.assess` reads a record step by step: the key (`writes.record_key`), the watermark,
`judge` (filter, map, validate, rules), each through its own compiled expression and wrapper.
Per order of a `bench/server.py` page that glue cost ~6 µs of ~46. Here the expressions are one
function, whose fields are read once, and the common case — a record that has a key, passes the
filter, maps, and is a valid order — is decided in one go (the map only evaluated once the
filter admits the record). Anything else (no key, filtered out, a mapping error of any kind, an
invalid order) returns None, and the caller takes the step-by-step path, which gives exactly
today's key, status and reason: the fast path only ever decides what the step-by-step path
would decide the same way. It is not used for a read with `enrich` steps or `truncated_when`,
or without `map`. `tests/test_fused.py` holds both paths to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import extract, records, zones
from engine.flows import rules
from engine.specs.model import Operation

#: Fused functions by id of their operation, with the operation itself (ids are reused once an
#: object is gone: the entry is only taken when it names this very operation).
_FUSED: dict[int, tuple[Operation, Callable[[Any], list] | None]] = {}


def fused(op: Operation) -> Callable[[Any], list] | None:
    """The generated function of `op` (compiled on first use), or None when it has none."""
    entry = _FUSED.get(id(op))
    if entry is None or entry[0] is not op:
        entry = (op, _compile(op))
        _FUSED[id(op)] = entry
        while len(_FUSED) > 256:
            _FUSED.pop(next(iter(_FUSED)))
    return entry[1]


def _compile(op: Operation) -> Callable[[Any], list] | None:
    data = op.source
    if not data or not isinstance(data.get("map"), dict) or op.enricher.active or op.key is None:
        return None
    try:
        return extract.compile_record([data.get("key"), data.get("watermark"), data.get("filter")],
                                      data["map"], op.zone, guard=data.get("filter"))
    except Exception:                 # noqa: BLE001 -- no fast path; the step-by-step one reports
        return None


class FastAssess:
    """`assess(raw)` -> (key, watermark, ledger fields, order) for the common case, else None."""

    def __init__(self, op: Operation, judge_rules: Callable[[dict], Any]) -> None:
        self.function = fused(op)
        self.check = records.fast_check("order")
        self.zone = op.zone
        self.rules = judge_rules

    @property
    def usable(self) -> bool:
        return self.function is not None and self.check is not None

    def assess(self, raw: Any) -> tuple[str, str | None, dict, dict] | None:
        """(key, watermark, ledger fields, order), or None: take the step-by-step path."""
        try:
            key, mark, passes, order = self.function(raw)
        except Exception:             # noqa: BLE001 -- any failure: the step-by-step path decides
            return None
        if key is None or key == "" or not _holds(passes) or type(order) is not dict:
            return None
        key = key if type(key) is str else str(key)
        order["key"] = key
        if not self.check(order):
            return None
        if self.zone != zones.UTC:             # as `model._watermark` does
            mark = zones.normalise(mark, self.zone)
        verdict: rules.Verdict = self.rules(order)
        data = {"order_id": order["order_id"], "order_number": order["order_number"]}
        fields: dict[str, Any] = {"status": verdict.status, "data": data, "raw": raw}
        if verdict.reason:
            fields["reason"] = verdict.reason
        if verdict.hold_until:
            data["hold_until"] = verdict.hold_until
        return key, (str(mark) if mark else None), fields, verdict.order


def _holds(result: Any) -> bool:
    """JMESPath truth, as `extract.compile_predicate` decides it."""
    return result is not None and result is not False and result != "" and result != [] and result != {}

