"""What the console shows, as plain dicts (the pages render them; the `.json` routes return them).

Everything is read through the `Ledger` interface: `counts()` and `latest()` are indexed, so a
page of one status costs the same at 100 orders as at 100,000; a search by key or order number
is one lookup (a delivered order's number is indexed); a search by SKU, reason or a number the
ledger does not index looks through the newest `SCAN_LIMIT` entries of the status (the page says so
when there are more).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine import control
from engine.errors import ExtractError
from engine.flows import protocol
from engine.ledger import STATUSES, Entry, Ledger

PER_PAGE = 50
SCAN_LIMIT = 5_000               # a search by SKU or reason looks at the newest this many of a status
ATTENTION = ("error", "held", "quarantined", "sending")
#: status -> the entry field that says why it is there
WHY = {"error": "last_error", "sending": "last_error", "held": "reason", "quarantined": "reason",
       "skipped": "reason", "cancel_too_late": "reason"}


@dataclass
class RunBook:
    """The runs this process made (the scheduler's and the console's), newest per flow, and when
    each scheduled flow runs next. Until the ledger keeps a run history, `last_runs` reads this."""

    runs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    periods: dict[tuple[str, str], float] = field(default_factory=dict)

    def record(self, outcome: Any, started: float | None = None) -> None:
        finished = time.time()
        ran = dict(outcome.counts) or {flow: None for name, flow in self.periods if name == outcome.integration}
        for flow, counts in ran.items():
            counted = as_dict(counts)
            if outcome.error:
                result = "failed"
            elif counted.get("failed") or counted.get("quarantined") or getattr(counts, "unresolved", 0):
                result = "partial"
            else:
                result = "ok"
            self.runs[(outcome.integration, flow)] = {
                "flow": flow, "finished": _iso(finished), "finished_epoch": finished,
                "duration": None if started is None else round(finished - started, 3),
                "outcome": result, "counts": counted, "error": outcome.error}

    def next_run(self, integration: str, flow: str) -> str | None:
        period = self.periods.get((integration, flow))
        last = self.runs.get((integration, flow))
        if period is None:
            return None
        if last is None:
            return "now"
        return _iso(last["finished_epoch"] + period)


def as_dict(counts: Any) -> dict[str, int]:
    """Any flow's counts (`Counts`, or a `Tally` dataclass of the other flows) as a dict."""
    if counts is None:
        return {}
    return {f.name: getattr(counts, f.name) for f in dataclasses.fields(counts)}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def last_runs(ledger: Ledger, book: RunBook) -> dict[str, dict[str, Any]]:
    """flow -> its last run (finished, duration, outcome, counts, error): the ledger's run history
    (`Ledger.last_runs`, every run of every process), else what this process saw (`RunBook`)."""
    history = getattr(ledger, "last_runs", None)
    found = dict(history()) if callable(history) else {}
    for (name, flow), run in book.runs.items():
        if name == ledger.integration and flow not in found:
            found[flow] = run
    return found


def health(counts: dict[str, int], runs: dict[str, dict[str, Any]], paused: bool, unresolved: int) -> str:
    """`bad` (a failed last run, orders in error, writes unresolved), `warn` (held, quarantined,
    paused), else `ok`."""
    if any(run.get("outcome") == "failed" for run in runs.values()) or counts.get("error") or unresolved:
        return "bad"
    if paused or counts.get("held") or counts.get("quarantined") or counts.get("sending"):
        return "warn"
    return "ok"


def overview(integrations: dict[str, Any], ledgers: Iterator[tuple[str, Ledger | None]],
             book: RunBook) -> list[dict[str, Any]]:
    """One row per integration: counts, health, paused, and each enabled flow's last and next run."""
    rows = []
    for name, ledger in ledgers:
        integration = integrations.get(name)
        flows = list(integration.flows) if integration is not None else []
        counts = ledger.counts() if ledger is not None else {}
        runs = last_runs(ledger, book) if ledger is not None else {}
        paused = control.paused(ledger) if ledger is not None else None
        unresolved = len(protocol.unresolved(ledger)) if ledger is not None else 0
        rows.append({
            "name": name, "counts": counts, "paused": paused, "unresolved": unresolved,
            "source": integration.source.connector if integration else None,
            "destination": integration.destination.connector if integration else None,
            "health": health(counts, runs, paused is not None, unresolved),
            "flows": [{"flow": flow, "last": runs.get(flow), "next": book.next_run(name, flow)}
                      for flow in sorted(set(flows) | set(runs))]})
    return rows


def default_status(counts: dict[str, int]) -> str:
    return next((status for status in ATTENTION if counts.get(status)), "delivered")


def summary(entry: Entry) -> dict[str, Any]:
    """An entry as a row of the order list."""
    why = getattr(entry, WHY.get(entry.status, "reason"), None) or entry.reason or entry.last_error
    return {"key": entry.key, "status": entry.status, "order_number": entry.data.get("order_number"),
            "attempts": entry.attempts, "destination_id": entry.destination_id, "why": why,
            "created": _iso(entry.created) if entry.created else None,
            "updated": _iso(entry.updated) if entry.updated else None}


def orders(ledger: Ledger, *, status: str, q: str = "", reason: str = "", page: int = 1,
           per_page: int | None = None) -> dict[str, Any]:
    """A page of one status, newest first; `q` finds a key, an order number or a SKU (in any
    status when it is a key or a number), `reason` keeps the entries whose reason contains it."""
    page, per_page = max(1, page), per_page or PER_PAGE
    q, reason = q.strip(), reason.strip()
    counts = ledger.counts()
    if q and (found := _exact(ledger, q)) is not None:
        rows, more = [summary(found)], False
    elif q or reason:
        matches = (entry for entry in _newest(ledger, status) if _matches(entry, q, reason.lower()))
        chosen = list(itertools.islice(matches, (page - 1) * per_page, page * per_page + 1))
        rows, more = [summary(entry) for entry in chosen[:per_page]], len(chosen) > per_page
    else:
        newest = ledger.latest(status, page * per_page + 1)
        chosen = newest[(page - 1) * per_page:]
        rows, more = [summary(entry) for entry in chosen[:per_page]], len(chosen) > per_page
    scanned = bool(q or reason) and counts.get(status, 0) > SCAN_LIMIT
    return {"integration": ledger.integration, "status": status, "q": q, "reason": reason, "page": page,
            "searched": SCAN_LIMIT if scanned else None,
            "more": more, "rows": rows, "counts": counts, "statuses": [s for s in STATUSES if counts.get(s)],
            "reasons": _reasons(ledger, status) if status in ("skipped", "held", "quarantined") else []}


def _newest(ledger: Ledger, status: str) -> Iterator[Entry]:
    """The newest SCAN_LIMIT entries of `status`, newest first, read in growing windows so that
    a search whose page fills among the newest orders reads no further."""
    seen = 0
    for size in (500, SCAN_LIMIT):
        window = ledger.latest(status, size)
        yield from window[seen:]
        if len(window) < size:
            return
        seen = len(window)


def _exact(ledger: Ledger, q: str) -> Entry | None:
    entry = ledger.get(q)
    if entry is not None:
        return entry
    key = ledger.kv_get("order_number", q)
    return ledger.get(key) if isinstance(key, str) else None


def _matches(entry: Entry, q: str, reason: str) -> bool:
    if reason and reason not in str(entry.reason or entry.last_error or "").lower():
        return False
    if not q:
        return True
    if q == str(entry.data.get("order_number")) or q == entry.key:
        return True
    skus = [line[0] for line in entry.data.get("lines") or () if isinstance(line, list) and line]
    if q in map(str, skus):
        return True
    return entry.raw is not None and f'"{q}"' in _text(entry.raw)


def _text(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=str).decode()


def _reasons(ledger: Ledger, status: str, n: int = 200) -> list[tuple[str, int]]:
    """The reasons of the latest `n` entries of `status`, most frequent first (the filter list)."""
    seen: dict[str, int] = {}
    for entry in ledger.latest(status, n):
        why = entry.reason or entry.last_error or "-"
        seen[why] = seen.get(why, 0) + 1
    return sorted(seen.items(), key=lambda item: -item[1])[:20]


def order(ledger: Ledger, key: str, mapper: Any = None) -> dict[str, Any] | None:
    """One order: its fields, timeline, writes, recorded actions, raw and canonical record."""
    entry = ledger.get(key)
    if entry is None:
        return None
    canonical, problem = None, None
    if entry.raw is not None and mapper is not None:
        try:
            canonical = mapper(entry.raw)
        except ExtractError as exc:
            problem = exc.message
    writes = [{"key": name, **state} for name, state in ledger.kv_items(protocol.WRITES)
              if name.endswith(f"|{key}") and isinstance(state, dict)]
    return {"integration": ledger.integration, **summary(entry), "reason": entry.reason,
            "last_error": entry.last_error, "data": dict(entry.data), "raw": entry.raw,
            "canonical": canonical, "canonical_problem": problem, "timeline": timeline(entry),
            "writes": writes, "actions": control.actions(ledger, 50, target=key)}


#: status -> the steps an order in it has gone through
STEPS = ("pulled", "claimed", "sent", "delivered", "shipped", "confirmed")
REACHED = {"pending": 2, "sending": 3, "delivered": 4, "shipped": 5, "confirmed": 6, "canceled": 4,
           "cancel_too_late": 5, "held": 2, "skipped": 2, "quarantined": 2, "error": 3}


def timeline(entry: Entry) -> list[dict[str, Any]]:
    """The steps the order went through, with the times the ledger knows, and where it is now."""
    reached = REACHED.get(entry.status, 2)
    created, updated = _iso(entry.created) if entry.created else None, _iso(entry.updated) if entry.updated else None
    steps = []
    for number, name in enumerate(STEPS, 1):
        if number > reached:
            break
        at = created if name in ("pulled", "claimed") else entry.data.get(f"{name}_at")
        detail = {"sent": f"{entry.attempts} attempt(s)" if entry.attempts else None,
                  "delivered": f"destination id {entry.destination_id}" if entry.destination_id else None}.get(name)
        steps.append({"step": name, "at": at, "detail": detail})
    for shipment_id, shipment in (entry.data.get("shipments") or {}).items():
        numbers = ", ".join(str(p.get("tracking_number")) for p in shipment.get("packages") or ())
        steps.append({"step": "shipment", "at": shipment.get("shipped_at"), "detail": f"{shipment_id}: {numbers}"})
    if entry.status in ("canceled", "cancel_too_late", "held", "skipped", "quarantined", "error", "sending"):
        steps.append({"step": entry.status, "at": updated, "detail": entry.reason or entry.last_error})
    else:
        steps[-1]["at"] = steps[-1]["at"] or updated
    return steps
