"""The run history: what each run of a flow did, one record per integration x flow run, kept in
the ledger (`Ledger.record_run`: the newest `RUNS_KEPT`, 50, per flow) for `status` and the
console. A record is a plain, versioned JSON dict (docs/operations.md, "Run history"):

    {"v": 1, "flow": "orders", "command": "run",
     "started": "2026-12-03T13:41:38.120Z", "finished": "2026-12-03T13:41:39.354Z", "duration": 1.234,
     "outcome": "unresolved", "counts": {"pulled": 6, "new": 6, "delivered": 5, ...},
     "error": null, "unresolved": {"count": 1, "items": [{"key": "1003", "reason": "..."}]}}

`outcome`, first that applies: `failed` (the flow stopped on an error; `error` says why),
`stopped` (SIGINT/SIGTERM stopped it, or cut it off), `unresolved` (a write's outcome is not known
yet), `partial` (it ran to the end, but some records failed or were quarantined), `ok`
(everything went through, or was skipped or held by a rule). It is what the run's exit code says
for that flow: `ok` is the only outcome that leaves it 0. The record is written through the
run's ledger, which masks every secret in it; at most `ITEMS_KEPT` unresolved items are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from engine.errors import LedgerError, SyncEngineError
from engine.flows.protocol import unresolved
from engine.ledger import Ledger

log = logging.getLogger("syncengine.history")

VERSION = 1
OUTCOMES = ("ok", "partial", "unresolved", "failed", "stopped")
ITEMS_KEPT = 100          # unresolved items kept in one run record (the count is always whole)
#: a write's journal key (`<operation>|<subject key>`, `engine.flows.protocol`) -> its flow
WRITE_FLOWS = {"create_shipment": "shipments", "update_inventory": "inventory"}


def iso(epoch: float) -> str:
    """UTC ISO 8601 with milliseconds and a `Z`: 2026-12-03T13:41:38.120Z."""
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextlib.contextmanager
def recorded(ledger: Ledger | None, flow: str, counts: Any, *, stopped: Callable[[], bool],
             command: str = "run") -> Iterator[None]:
    """Record the run of `flow` that the block performs (`counts` fills as it runs); whatever
    ends the block, the record is written and the exception goes on. No ledger: no record."""
    started, clock = time.time(), time.monotonic()
    error: str | None = None
    cut = False
    try:
        yield
    except (asyncio.CancelledError, KeyboardInterrupt):
        cut = True
        raise
    except SyncEngineError as exc:
        error = str(exc)
        raise
    except Exception as exc:
        error = f"internal error: {type(exc).__name__}: {exc}"[:500]
        raise
    finally:
        if ledger is not None:
            elapsed = time.monotonic() - clock
            _write(ledger, flow, lambda: run_record(ledger, flow, counts, started=started, duration=elapsed,
                                                    error=error, stopped=cut or stopped(), command=command))


def run_record(ledger: Ledger, flow: str, counts: Any, *, started: float, duration: float, error: str | None,
               stopped: bool, command: str = "run") -> dict[str, Any]:
    """The history record of one run of `flow` that ended now."""
    counted = _counts(counts)
    pending = unresolved_items(ledger, flow, counted)
    if error is not None:
        outcome = "failed"
    elif stopped:
        outcome = "stopped"
    elif pending["count"] or counted.get("unresolved"):
        outcome = "unresolved"
    elif counted.get("failed") or counted.get("quarantined"):
        outcome = "partial"
    else:
        outcome = "ok"
    return {"v": VERSION, "flow": flow, "command": command, "started": iso(started),
            "finished": iso(started + duration), "duration": round(duration, 3), "outcome": outcome,
            "counts": counted, "error": error, "unresolved": pending}


def unresolved_items(ledger: Ledger, flow: str, counts: dict[str, int] | None = None,
                     limit: int = ITEMS_KEPT) -> dict[str, Any]:
    """`{"count": n, "items": [{"key", "reason"}, ...]}`: the writes of `flow` whose outcome is not
    known (orders: entries left `sending`; the other flows: journals with a step in flight).
    Given a run's `counts` without any unresolved, the journals are not scanned."""
    if flow == "orders":
        found = ({"key": entry.key, "reason": entry.last_error or "sent, outcome not known yet"}
                 for entry in ledger.iter_status("sending"))
    elif counts is not None and not counts.get("unresolved"):
        return {"count": 0, "items": []}
    else:
        found = (item for item in unresolved_writes(ledger) if item["flow"] == flow)
    items, count = [], 0
    for item in found:
        count += 1
        if len(items) < limit:
            items.append({"key": item["key"], "reason": item["reason"]})
    return {"count": count, "items": items}


def unresolved_writes(ledger: Ledger) -> Iterator[dict[str, str]]:
    """Every write journal with a step in flight: {"flow", "key" (the journal key), "step", "reason"}."""
    for key, state in unresolved(ledger):
        yield {"flow": write_flow(key), "key": key, "step": str(state["inflight"]),
               "reason": f"step {state['inflight']}: {state.get('error') or 'in flight'}"}


def write_flow(journal_key: str) -> str:
    """The flow a write journal belongs to: `cancel_order|<stream>|<key>` names its stream."""
    operation, _, rest = journal_key.partition("|")
    if operation == "cancel_order":
        return rest.partition("|")[0] or "cancellations"
    return WRITE_FLOWS.get(operation, "orders")


def _counts(counts: Any) -> dict[str, int]:
    if counts is None:
        return {}
    return {field.name: int(getattr(counts, field.name)) for field in dataclasses.fields(counts)}


def _write(ledger: Ledger, flow: str, record: Callable[[], dict[str, Any]]) -> None:
    """Store the record `record()` builds; a ledger that cannot take it is logged, never allowed
    to hide the run's own outcome (its summary and exit code still say what happened)."""
    try:
        ledger.record_run(record())
    except LedgerError as exc:
        log.warning("%s: %s run not recorded in the history: %s", ledger.integration, flow, exc)
