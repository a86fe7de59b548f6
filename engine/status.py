"""What `syncengine status` reports, as data: `status_document(state_dir)` reads the state
directory (the ledgers, their run history, the run locks) and returns one plain dict, the
document `status --format json` prints, the text `status` shows, and the console reads.
`runs(...)` gives a flow's run history. Nothing here resolves a secret or writes anything.

The document (format 1; docs/operations.md, "status --format json", describes every key):

    {"format": 1, "generated": "<UTC ISO 8601>", "state_dir": "state", "runs_kept": 50,
     "alerts": ["held", ...], "exit_code": 4,
     "integrations": {"<name>": {
         "alerts": [...], "orders": {"<ledger status>": n, ...}, "watermarks": {"<flow>": "..." | null},
         "flows": {"<flow>": {"running": false, "last_run": {...} | null,
                              "problems": {"<kind>": {"count": n, "items": [{"key", "reason", ...}]}}}}}}}

Alerts and their exit-code bits (`ALERTS`): `held` 4 (orders held for a fix; not those waiting
out the hold window), `quarantined` 8, `unresolved` 16 (writes whose outcome is not known, in
flows not running right now), `failed` 32 (orders the WMS refused, a flow whose last run failed
or could not write some records: a refused tracking number, stock level or cancel). The exit code is their sum: 0 all clear.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import history, runlock
from engine.errors import ConfigError
from engine.ledger import RUNS_KEPT, STATUSES, DiskLedger, Entry

FORMAT = 1
ALERTS = {"held": 4, "quarantined": 8, "unresolved": 16, "failed": 32}
FLOWS = ("orders", "shipments", "inventory", "cancellations", "wms_cancellations")
#: flow -> problem kind -> where it is kept: ("status", ledger status) or ("kv", namespace)
PROBLEMS: dict[str, dict[str, tuple[str, str]]] = {
    "orders": {"failed": ("status", "error"), "quarantined": ("status", "quarantined"),
               "held": ("status", "held"), "skipped": ("status", "skipped"), "unresolved": ("status", "sending")},
    "shipments": {"errors": ("shipped", "shipped"), "parked": ("kv", "shipments_parked"),
                  "unresolved": ("writes", "")},
    "inventory": {"errors": ("kv", "inventory_errors"), "skipped": ("kv", "inventory_skipped"),
                  "unresolved": ("writes", "")},
    "cancellations": {"too_late": ("status", "cancel_too_late"), "parked": ("kv", "cancellations_parked"),
                      "unresolved": ("writes", "")},
    "wms_cancellations": {"parked": ("kv", "wms_cancellations_parked"), "unresolved": ("writes", "")},
}


def status_document(state_dir: str | Path, integration: str | None = None, *, limit: int = 10) -> dict[str, Any]:
    """The status of every integration with a ledger under `state_dir` (or of `integration`),
    listing at most `limit` items per problem kind (the counts are whole)."""
    state_dir = Path(state_dir)
    integrations = {name: integration_status(state_dir, name, limit) for name in ledger_names(state_dir, integration)}
    alerts = [name for name in ALERTS if any(name in i["alerts"] for i in integrations.values())]
    return {"format": FORMAT, "generated": history.iso(time.time()), "state_dir": str(state_dir),
            "runs_kept": RUNS_KEPT, "alerts": alerts, "exit_code": exit_code(alerts), "integrations": integrations}


def exit_code(alerts: Iterable[str]) -> int:
    """The sum of the alerts' bits (`ALERTS`): 0 when all is clear."""
    return sum(ALERTS[name] for name in set(alerts))


def integration_status(state_dir: Path, name: str, limit: int) -> dict[str, Any]:
    """One integration's part of the document."""
    with DiskLedger(state_dir, name) as ledger:
        counts = ledger.counts()
        last = ledger.last_runs()
        writes: dict[str, list[dict[str, str]]] = {}
        for item in history.unresolved_writes(ledger):
            writes.setdefault(item["flow"], []).append(item)
        flows = {flow: {"running": runlock.busy(state_dir, name, flow), "last_run": last.get(flow),
                        "problems": {kind: _problem(ledger, counts, where, writes.get(flow, []), limit)
                                     for kind, where in PROBLEMS[flow].items()}}
                 for flow in FLOWS}
        flows["orders"]["problems"]["held"]["waiting"] = _waiting(ledger.iter_status("held"))
        _add(flows["orders"]["problems"]["unresolved"], writes.get("orders", []), limit)
        watermarks = {flow: ledger.watermark(flow) for flow in FLOWS}
    return {"alerts": _alerts(flows), "orders": {status: counts.get(status, 0) for status in STATUSES},
            "watermarks": watermarks, "flows": flows}


def runs(state_dir: str | Path, integration: str, flow: str | None = None, n: int = RUNS_KEPT) -> list[dict[str, Any]]:
    """The newest `n` run records of `integration` (of one `flow`, or of all), newest first."""
    [name] = ledger_names(Path(state_dir), integration)
    with DiskLedger(state_dir, name) as ledger:
        return ledger.runs(flow, n)


def ledger_names(state_dir: Path, only: str | None) -> list[str]:
    """The integrations that have a ledger under `state_dir`."""
    if not state_dir.is_dir():
        raise ConfigError(f"no state directory {state_dir}: nothing has run yet")
    names = sorted(path.name for path in state_dir.iterdir() if (path / "cache.db").exists())
    if only is not None:
        if only not in names:
            raise ConfigError(f"no ledger for integration {only!r} in {state_dir}")
        return [only]
    return names


def _problem(ledger: DiskLedger, counts: dict[str, int], where: tuple[str, str],
             writes: list[dict[str, str]], limit: int) -> dict[str, Any]:
    source, name = where
    if source == "status":
        return {"count": counts.get(name, 0), "items": [_entry(e) for e in ledger.latest(name, limit)]}
    if source == "shipped":          # tracking writes that did not go through, among the latest shipped orders
        items = [_entry(e) for e in ledger.latest(name, limit) if e.last_error]
        return {"count": len(items), "items": items}
    if source == "writes":
        return {"count": len(writes), "items": [{k: item[k] for k in ("key", "reason", "step")} for item in writes[:limit]]}
    return _first(limit, ({"key": key, "reason": str(value.get("reason") if isinstance(value, dict) else value)}
                          for key, value in ledger.kv_items(name)))


def _add(problem: dict[str, Any], writes: list[dict[str, str]], limit: int) -> None:
    """Journals of writes no flow above claims (an operation `history.write_flow` does not
    know) are still unresolved: they join the orders' list rather than go unseen."""
    problem["count"] += len(writes)
    room = max(0, limit - len(problem["items"]))
    problem["items"] += [{k: item[k] for k in ("key", "reason", "step")} for item in writes[:room]]


def _first(limit: int, items: Iterator[dict[str, Any]]) -> dict[str, Any]:
    kept, count = [], 0
    for item in items:
        count += 1
        if len(kept) < limit:
            kept.append(item)
    return {"count": count, "items": kept}


def _entry(entry: Entry) -> dict[str, Any]:
    reason = entry.last_error if entry.status in ("error", "sending", "shipped") else entry.reason
    return {"key": entry.key, "reason": reason, "attempts": entry.attempts, "updated": history.iso(entry.updated)}


def _waiting(held: Iterable[Entry]) -> int:
    """Held orders waiting out the hold window (a later run releases them on its own)."""
    now = datetime.now(timezone.utc)
    waiting = 0
    for entry in held:
        try:
            until = datetime.fromisoformat(str(entry.data.get("hold_until")))
        except ValueError:
            continue
        waiting += (until if until.tzinfo else until.replace(tzinfo=timezone.utc)) > now
    return waiting


def _alerts(flows: dict[str, dict[str, Any]]) -> list[str]:
    """The alerts one integration raises (`ALERTS`), in their order."""
    orders = flows["orders"]["problems"]
    found = set()
    if orders["held"]["count"] > orders["held"]["waiting"]:
        found.add("held")
    if orders["quarantined"]["count"]:
        found.add("quarantined")
    if orders["failed"]["count"]:
        found.add("failed")
    for name, flow in flows.items():
        if flow["problems"]["unresolved"]["count"] and not flow["running"]:
            found.add("unresolved")
        run = flow["last_run"] or {}
        counted = run.get("counts") or {}
        if name != "orders" and counted.get("quarantined"):     # orders: their ledger status says it
            found.add("quarantined")
        if run.get("outcome") == "failed" or (name != "orders" and counted.get("failed")):
            found.add("failed")
    return [name for name in ALERTS if name in found]
