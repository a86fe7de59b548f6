"""The ledger: durable per-integration state, behind a small interface.

One ledger namespace per integration holds three things:

- **entries**, one per order key: status, destination id, attempts, last error, reason, the raw
  source record while it may still be needed, free-form ``data``, created/updated timestamps;
- a **watermark** per stream name ("orders", "shipments", ...), which only moves forward;
- a small **key/value area** per namespace for flows (last pushed inventory, cached lookup ids);
  ``kv_add`` is its atomic add-if-absent, the claim for things that are not orders (a package).

``Ledger`` is the interface (a Protocol, so a Redis or PostgreSQL store can replace the embedded
one); ``DiskLedger`` is the embedded default on diskcache (SQLite, process-safe). Semantics:

- ``claim(key, **fields) -> bool`` is THE dedupe primitive: one atomic add-if-absent that creates
  the entry (``pending`` unless ``status=`` says otherwise) only if the key is absent. Never
  check-then-set. ``claim_many([(key, fields), ...])`` does a page of claims in one transaction.
- ``set_status(key, status, **fields) -> Entry`` updates unconditionally; ``transition(key,
  from_statuses, to_status, **fields) -> bool`` is a compare-and-set in one transaction (two
  workers never both move ``pending`` to ``sending``). Moving to ``sending`` bumps ``attempts``.
  Fields: ``destination_id``, ``last_error``, ``reason``, ``raw`` replace; ``data`` merges
  shallowly. ``reason`` is dropped on entering a status that takes none; ``raw`` is dropped on
  entering a status that no longer needs it (anything but pending/sending/held/quarantined/error).
- ``batch()`` groups any operations into one transaction (never hold it across network I/O).
- ``iter_status(*statuses)`` streams entries page by page, least recently updated first
  (memory-flat, indexed); it is a live view: entries changing while it runs may be missed or
  seen twice.
  ``counts()`` and ``latest(status, n)`` are indexed queries, not scans of every entry.
- ``set_watermark(stream, value, force=False)`` refuses to move backwards (numbers compare as
  numbers, ISO 8601 as instants, anything else as text) and returns whether it stored the value.
- ``release_unsent()`` deletes the ``pending`` entries that hold no raw record: keys a run
  claimed and then stopped before sending (the orders flow stores the raw record on
  ``pending -> sending``). That run never moved its watermark, so the next read claims them
  again; the orders flow calls it first thing, under its run lock.
- ``reset_since(since)`` is the other way entries leave the ledger, and it is bounded: it
  moves the stream's watermark back to ``since`` and releases (deletes) only entries in the
  ``release`` statuses (default: ``skipped``) created at or after ``since``, so the re-pull
  re-evaluates them. Delivered-or-later and in-flight keys can never be released, so they keep
  blocking duplicates. It returns the number of entries released.

- ``record_run(run)`` appends one flow run to the **run history** (``run`` is a JSON dict with
  at least ``flow``; `engine.history` writes it: start, duration, outcome, counts, error,
  unresolved items) and keeps only the newest ``RUNS_KEPT`` (50) runs of that flow, in the same
  transaction. ``runs(flow=None, n)`` returns the newest ``n`` runs (of one flow or of all),
  newest first; ``last_runs()`` maps each flow that ever ran to its newest run. A run is stored
  masked like everything else, and a ledger never reads its own runs to decide anything: the
  history is for operators (`status`, the console).

Values are stored as compact JSON text (a versioned plain dict), never pickled classes, so they
stay readable across code versions and by other tools. They are written with orjson: a NaN or
infinite float is stored as null, an integer beyond 64 bits is refused. An entry's raw record is
kept in its own column next to the small status document (written with the claim, cleared on
entering a status that drops it), so a status change never reads or re-serialises it. An ``error`` status must mean the destination did not take the
order; an ambiguous outcome stays ``sending`` for reconciliation.
"""

from __future__ import annotations

from engine.ledger.base import (FIELDS, FORMAT_VERSION, KEEPS_RAW, RELEASABLE, RUNS_KEPT, STATUSES,
                                TAKES_REASON, Entry, Ledger)
from engine.ledger.disk import DiskLedger

__all__ = ["FIELDS", "FORMAT_VERSION", "KEEPS_RAW", "RELEASABLE", "RUNS_KEPT", "STATUSES", "TAKES_REASON",
           "DiskLedger", "Entry", "Ledger"]
