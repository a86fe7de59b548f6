"""The fast path of assessing one raw order: key, watermark, filter and map as ONE generated
function (`extract.compile_record`), then the canonical-order predicate and the rules.

`OrdersFlow._assess_slowly` reads a record step by step: the key (`writes.record_key`), the watermark,
`judge` (filter, map, validate, rules), each through its own compiled expression and wrapper.
Per order of a `bench/server.py` page that glue cost ~6 µs of ~46. Here the expressions are one
function, whose fields are read once, and the common case — a record that has a key, passes the
filter, maps, and is a valid order — is decided in one go (the map only evaluated once the
filter admits the record). Anything else (no key, filtered out, a mapping error of any kind, an
invalid order) goes to the step-by-step path, which gives exactly
today's key, status and reason: the fast path only ever decides what the step-by-step path
would decide the same way. It is not used for a read with `enrich` steps or `truncated_when`,
or without `map`. `tests/test_fused.py` holds both paths to the same answers.

Where it can, the generated function checks the canonical order itself, as it builds it
(`records.FusedCheck`: no value read back; `records.Invalid` sends the record down the
step-by-step path), and only the key, set after, is checked here (`records.property_check`).
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
        check = records.FusedCheck("order", frozenset({"key"})) if records.fast_check("order") else None
        return extract.compile_record([data.get("key"), data.get("watermark"), data.get("filter")],
                                      data["map"], op.zone, guard=data.get("filter"), check=check)
    except Exception:                 # noqa: BLE001 -- no fast path; the step-by-step one reports
        return None


class FastAssess:
    """`page(raws, slowly)`: a page's records assessed in one loop, the common case here, any
    other by `slowly` (the step-by-step path)."""

    def __init__(self, op: Operation, judge: rules.Rules, now: Callable[[], Any]) -> None:
        self.function = fused(op)
        self.whole = getattr(self.function, "checked", None) != "order"  # else the function checks the order itself
        self.check = records.fast_check("order") if self.whole else records.property_check("order", "key")
        self.zone = op.zone
        self.judge, self.now = judge, now

    @property
    def usable(self) -> bool:
        return self.function is not None and self.check is not None

    def page(self, raws: list, slowly: Callable[[Any], tuple]) -> tuple[list[tuple], list[str]]:
        """Each record of a page assessed in one loop (no call per record but the generated
        function, the check and the rules): [(key, ledger fields, order, raw record to keep
        until the send)], with the watermarks of the records decided here, in order. `slowly`
        (the step-by-step path) decides every other record, and follows their watermarks itself.
        A pending order's fields hold no raw record (the claim does not store it: the send does)."""
        function, check, judge, now, utc = self.function, self.check, self.judge, self.now, self.zone == zones.UTC
        whole = self.whole
        assessed: list[tuple] = []
        marks: list[str] = []
        add, mark_ = assessed.append, marks.append
        for raw in raws:
            try:
                key, mark, passes, order = function(raw)
            except Exception:         # noqa: BLE001 -- any failure: the step-by-step path decides
                add(slowly(raw))
                continue
            if key is None or key == "" or not (passes is True or _holds(passes)) or type(order) is not dict:
                add(slowly(raw))
                continue
            if type(key) is not str:
                key = str(key)
            order["key"] = key
            if not (check(order) if whole else check(key)):
                add(slowly(raw))
                continue
            verdict = judge(order, now, owned=True)
            data = {"order_id": order["order_id"], "order_number": order["order_number"]}
            if verdict.hold_until:
                data["hold_until"] = verdict.hold_until
            if mark:
                if not utc:
                    mark = zones.normalise(mark, self.zone)
                if mark:
                    mark = data["updated"] = mark if type(mark) is str else str(mark)
                    mark_(mark)
            if verdict.status == "pending" and verdict.reason is None:
                add((key, {"status": "pending", "data": data}, verdict.order, raw))
                continue
            fields: dict[str, Any] = {"status": verdict.status, "data": data}
            if verdict.status != "pending":
                fields["raw"] = raw
            if verdict.reason:
                fields["reason"] = verdict.reason
            add((key, fields, verdict.order, raw if verdict.status == "pending" else None))
        return assessed, marks


def _holds(result: Any) -> bool:
    """JMESPath truth, as `extract.compile_predicate` decides it."""
    return result is not None and result is not False and result != "" and result != [] and result != {}

