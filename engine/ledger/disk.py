"""`DiskLedger`: the embedded ledger, one SQLite database per integration opened through
diskcache (see the class docstring for the layout and `engine/ledger/__init__.py` for the
semantics every ledger keeps)."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any

import diskcache

from engine.errors import LedgerError
from engine.ledger.base import (FORMAT_VERSION, KEEPS_RAW, RELEASABLE, RUNS_KEPT, Entry, _before, _check_status,
                                _clean, _dumps, _holds, _instant, _loads, _make, _merge, _new_row, _now, _text)

_PAGE = 1000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class DiskLedger:
    """The embedded ledger: one SQLite database per integration, opened through diskcache.

    diskcache owns the database: the connection per thread, WAL, the pragmas, ``transact()``
    and its ``Cache`` table, which holds the watermarks (key ``w:<stream>``) and the key/value
    area (key ``k:<namespace>\\0<key>``, tag ``kv:<namespace>`` so the tag index lists a
    namespace). Order entries, the bulk of the data, live in a table of their own in the same
    database, one row per key::

        Entries(rowid, key UNIQUE, status, updated, doc, raw)   index (status, updated)
        Runs(rowid, flow, doc)                                   index (flow, rowid)

    ``doc`` is the entry's small JSON document (created, attempts, destination id, errors,
    reason, data), ``raw`` the raw record's JSON while the status keeps it. A claim is one
    ``INSERT OR IGNORE`` row (a page of them is one statement), where diskcache's ``Cache.add``
    costs two rows per order with the raw record, three index updates and two trigger
    ``UPDATE``\\ s each: ~8 µs a claimed order instead of ~20 (``bench/orders.py``). Ledgers
    written by format 2 (entries as ``o:``/``r:`` rows of ``Cache``) are moved into ``Entries``
    in one transaction the first time they are opened. Eviction is off: the ledger never
    forgets on its own. ``fsync=True`` (default) makes every commit survive a power loss;
    ``False`` survives a killed process only, and is faster for one-by-one writes.

    ``mask`` (a run's redactor) is applied to everything written: a document, raw record or
    key/value whose JSON text holds a secret in any spelling is stored with every string in it
    masked, so neither the database nor what `status` prints from it ever holds a secret.
    """

    def __init__(self, directory: str | Path, integration: str, *, fsync: bool = True,
                 mask: Callable[[str], str] | None = None) -> None:
        if not _NAME.fullmatch(integration):
            raise LedgerError("integration name is not usable as a ledger name",
                              integration=integration)
        self.integration, self._fsync, self._mask = integration, fsync, mask
        self._holds = _holds(mask)
        self.path = Path(directory) / integration
        with self._guard("open"):
            self._cache = _open_cache(self.path, fsync)
            self._migrate()

    # -- entries ------------------------------------------------------------------------------

    def claim(self, key: str, *, status: str = "pending", **fields: Any) -> bool:
        """Create the entry only if the key is absent; True when this call claimed it."""
        return self.claim_many([(key, {**fields, "status": status})])[0]

    def claim_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[bool]:
        """Claim a page of keys in one transaction; one bool per item, in order.

        Each key is one atomic add-if-absent (``INSERT OR IGNORE``, decided by the UNIQUE key
        inside the transaction, so two processes never both win a key). A key repeated within
        the page is won by its first item.
        """
        now = _now()
        items = list(items)
        rows = [_new_row(key, fields, now) for key, fields in items]
        if self._mask is not None and self._holds_secret(rows):
            rows = [self._masked_row(row, fields) for row, (_, fields) in zip(rows, items)]
        with self.batch(), self._guard("claim"):
            won = self._insert(rows)
        if len(won) == len(rows):                  # every item won: so no key was repeated
            return [True] * len(rows)
        keys = [row[0] for row in rows]
        if len(set(keys)) == len(keys):
            return [key in won for key in keys]
        seen: set[str] = set()                     # a key repeated within the page
        claimed = []
        for key in keys:
            claimed.append(key in won and key not in seen)
            seen.add(key)
        return claimed

    def _holds_secret(self, rows: list[tuple[str, str, float, str, str | None]]) -> bool:
        """Whether any document or raw record of `rows` holds a secret: one scan of the page's
        text (joined by NUL, which no secret holds) instead of one per row."""
        text = "\0".join([row[3] for row in rows] + [row[4] for row in rows if row[4] is not None])
        return self._holds(text)

    def _masked_row(self, row: tuple[str, str, float, str, str | None],
                    fields: Mapping[str, Any]) -> tuple[str, str, float, str, str | None]:
        if self._mask is None:
            return row
        key, status, now, doc, raw = row
        raw = None if raw is None else self._clean(raw, fields.get("raw"), key)
        return key, status, now, self._clean(doc, None, key), raw

    def _clean(self, text: str, value: Any, key: str) -> str:
        return _clean(self._mask, text, value, key)

    def _insert(self, rows: list[tuple[str, str, float, str, str | None]]) -> set[str]:
        """Insert each row whose key is absent; the keys inserted (inside a transaction)."""
        if not _RETURNING:
            return {row[0] for row in rows if self._sql(_INSERT, row).rowcount == 1}
        won: set[str] = set()
        size = self._cache._con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_COLUMNS)
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            sql = _CLAIM + _CLAIM_ROW * (len(chunk) - 1) + " RETURNING key"
            args = list(chain.from_iterable(chunk))
            args[4::5] = [raw or "" for raw in args[4::5]]                # NULLIF: "" is no raw record
            won.update(key for key, in self._sql(sql, args))
        return won

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (raw record included), or None when the key was never claimed."""
        with self._guard("get", key):
            row = self._sql(f"SELECT {_ENTRY} FROM Entries WHERE key = ?", (_text(key),)).fetchone()
        return None if row is None else _entry(row)

    def set_status(self, key: str, status: str, **fields: Any) -> Entry:
        """Move ``key`` to ``status`` whatever its current status; returns the new entry."""
        _check_status(status)
        with self.batch():
            current = self._load(key)
            if current is None:
                raise LedgerError("no ledger entry for this key", integration=self.integration,
                                  key=key)
            updated, doc = self._write(key, current[1], status, fields)
            if "raw" in fields or status not in KEEPS_RAW:
                raw = fields.get("raw") if status in KEEPS_RAW else None
            else:
                raw = self._raw(key)
            return _make(key, status, updated, doc, raw)

    def transition(
        self, key: str, from_statuses: str | Iterable[str], to_status: str, **fields: Any
    ) -> bool:
        """Compare-and-set: move ``key`` to ``to_status`` only if it is in ``from_statuses``."""
        allowed = {from_statuses} if isinstance(from_statuses, str) else set(from_statuses)
        _check_status(to_status, *allowed)
        with self.batch():
            current = self._load(key)
            if current is None or current[0] not in allowed:
                return False
            self._write(key, current[1], to_status, fields)
            return True

    def _load(self, key: str) -> tuple[str, str] | None:
        """(status, document text) of ``key`` without its raw record."""
        with self._guard("get", key):
            return self._sql("SELECT status, doc FROM Entries WHERE key = ?", (_text(key),)).fetchone()

    def _raw(self, key: str) -> Any:
        with self._guard("get", key):
            text = self._sql("SELECT raw FROM Entries WHERE key = ?", (key,)).fetchone()[0]
        return None if text is None else _loads(text, key)

    def _write(self, key: str, doc_text: str, status: str,
               fields: Mapping[str, Any]) -> tuple[float, str]:
        """Store the updated entry (inside the caller's transaction); (updated, document text).
        The raw record is rewritten only when ``raw`` is given or the new status drops it."""
        updated = _now()
        doc = _loads(doc_text, key)
        if status == "sending":
            doc["attempts"] = doc.get("attempts", 0) + 1
        merged = _merge(doc, status, {k: v for k, v in fields.items() if k != "raw"}, key)
        doc_text = self._clean(_dumps(merged, key), merged, key)
        with self._guard("write", key):
            if status not in KEEPS_RAW or "raw" in fields:
                raw = fields.get("raw") if status in KEEPS_RAW else None
                self._sql("UPDATE Entries SET status = ?, updated = ?, doc = ?, raw = ? WHERE key = ?",
                          (status, updated, doc_text, None if raw is None else self._clean(_dumps(raw, key), raw, key), key))
            else:
                self._sql("UPDATE Entries SET status = ?, updated = ?, doc = ? WHERE key = ?",
                          (status, updated, doc_text, key))
        return updated, doc_text

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run the enclosed operations as one transaction (re-entrant; no I/O inside)."""
        with self._guard("transaction"), self._cache.transact():
            yield

    # -- queries ------------------------------------------------------------------------------

    def iter_status(self, *statuses: str) -> Iterator[Entry]:
        """Stream the entries currently in any of ``statuses``, least recently updated first
        per status, a page at a time through the (status, updated) index."""
        _check_status(*statuses)
        sql = (f"SELECT rowid, {_ENTRY} FROM Entries WHERE status = ? AND (updated, rowid) > (?, ?)"
               " ORDER BY updated, rowid LIMIT ?")
        for status in statuses:
            after: tuple[float, int] = (-1.0, 0)
            while True:
                with self._guard("scan"):
                    rows = self._sql(sql, (status, *after, _PAGE)).fetchall()
                yield from (_entry(row[1:]) for row in rows)
                if len(rows) < _PAGE:
                    break
                after = (rows[-1][3], rows[-1][0])

    def counts(self) -> dict[str, int]:
        """How many entries are in each status (statuses with none are left out)."""
        with self._guard("counts"):
            return dict(self._sql("SELECT status, COUNT(*) FROM Entries GROUP BY status", ()).fetchall())

    def latest(self, status: str, n: int = 10) -> list[Entry]:
        """The ``n`` entries in ``status`` updated most recently, newest first."""
        _check_status(status)
        sql = f"SELECT {_ENTRY} FROM Entries WHERE status = ? ORDER BY updated DESC, rowid DESC LIMIT ?"
        with self._guard("latest"):
            return [_entry(row) for row in self._sql(sql, (status, n)).fetchall()]

    def _sql(self, sql: str, args: Iterable[Any]) -> sqlite3.Cursor:
        # diskcache's connection for this thread, so that ``transact()`` covers these statements
        return self._cache._sql(sql, tuple(args))

    # -- watermarks and key/value -------------------------------------------------------------

    def watermark(self, stream: str) -> str | None:
        """The stream's watermark, or None before its first run."""
        with self._guard("watermark", stream):
            return self._cache.get("w:" + stream)

    def set_watermark(self, stream: str, value: str, *, force: bool = False) -> bool:
        """Store ``value`` unless it lies before the current one (or ``force``); True if stored."""
        with self.batch():
            current = self.watermark(stream)
            if not force and current is not None and _before(value, current):
                return False
            self._cache.set("w:" + stream, str(value))
            return True

    def kv_get(self, namespace: str, key: str, default: Any = None) -> Any:
        """The value stored under ``namespace``/``key``, or ``default``."""
        with self._guard("kv_get", key):
            value = self._cache.get(_kkey(namespace, key))
        return default if value is None else _loads(value, key)

    def kv_set(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``namespace``/``key``."""
        text = self._clean(_dumps(value, key), value, key)
        with self._guard("kv_set", key):
            self._cache.set(_kkey(namespace, key), text, tag="kv:" + namespace)

    def kv_add(self, namespace: str, key: str, value: Any) -> bool:
        """Store ``value`` only if ``namespace``/``key`` is absent (one atomic ``Cache.add``);
        True when this call stored it. The claim primitive for things that are not orders."""
        text = self._clean(_dumps(value, key), value, key)
        with self._guard("kv_add", key):
            return self._cache.add(_kkey(namespace, key), text, tag="kv:" + namespace)

    def kv_delete(self, namespace: str, key: str) -> bool:
        """Forget ``namespace``/``key`` (never touches entries); True if it existed."""
        with self._guard("kv_delete", key):
            return self._cache.delete(_kkey(namespace, key))

    def kv_items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        """Stream every (key, value) of ``namespace``, a page at a time through the tag index."""
        prefix = len(_kkey(namespace, ""))
        sql = "SELECT rowid, key FROM Cache WHERE tag = ? AND rowid > ? ORDER BY rowid LIMIT ?"
        last = 0
        while True:
            with self._guard("kv_items"):
                rows = self._sql(sql, ("kv:" + namespace, last, _PAGE)).fetchall()
            for _, kkey in rows:
                with self._guard("kv_items", kkey):
                    value = self._cache.get(kkey)
                if value is not None:
                    yield kkey[prefix:], _loads(value, kkey)
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    # -- re-pull ------------------------------------------------------------------------------

    def reset_since(
        self, since: str | datetime, *, stream: str = "orders",
        release: Iterable[str] = ("skipped",),
    ) -> int:
        """Move ``stream``'s watermark back to ``since`` and release entries created since then."""
        release = tuple(release)
        _check_status(*release)
        if not RELEASABLE.issuperset(release):
            raise LedgerError("only pending, skipped, quarantined, held and error entries can "
                              "be released", integration=self.integration, release=release)
        text, cutoff = _instant(since)
        with self.batch():
            self.set_watermark(stream, text, force=True)
            doomed = [entry.key for entry in self.iter_status(*release) if entry.created >= cutoff]
            with self._guard("reset"):
                for key in doomed:
                    self._sql("DELETE FROM Entries WHERE key = ?", (key,))
        return len(doomed)

    def release_unsent(self) -> int:
        """Delete the ``pending`` entries without a raw record; how many there were."""
        with self.batch(), self._guard("release"):
            return self._sql("DELETE FROM Entries WHERE status = 'pending' AND raw IS NULL", ()).rowcount

    # -- run history ----------------------------------------------------------------------------

    def record_run(self, run: Mapping[str, Any]) -> None:
        """Append one flow run (a JSON dict with ``flow``) and drop that flow's runs beyond the
        newest ``RUNS_KEPT``, in one transaction."""
        flow = _text(run.get("flow"))
        text = self._clean(_dumps(dict(run), flow), run, flow)
        with self.batch(), self._guard("record_run", flow):
            self._sql("INSERT INTO Runs(flow, doc) VALUES (?, ?)", (flow, text))
            self._sql("DELETE FROM Runs WHERE flow = ? AND rowid <= (SELECT rowid FROM Runs WHERE flow = ?"
                      " ORDER BY rowid DESC LIMIT 1 OFFSET ?)", (flow, flow, RUNS_KEPT))

    def runs(self, flow: str | None = None, n: int = RUNS_KEPT) -> list[dict[str, Any]]:
        """The newest ``n`` runs of ``flow`` (None: of every flow), newest first."""
        where, args = ("WHERE flow = ?", (flow, n)) if flow is not None else ("", (n,))
        with self._guard("runs"):
            rows = self._sql(f"SELECT flow, doc FROM Runs {where} ORDER BY rowid DESC LIMIT ?", args).fetchall()
        return [_loads(doc, name) for name, doc in rows]

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """Each flow that ever ran -> its newest run."""
        sql = "SELECT flow, doc FROM Runs WHERE rowid IN (SELECT MAX(rowid) FROM Runs GROUP BY flow) ORDER BY flow"
        with self._guard("runs"):
            return {name: _loads(doc, name) for name, doc in self._sql(sql, ()).fetchall()}

    # -- format 2 -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Move format-2 entries (``o:<key>`` rows of diskcache's table, the raw record in an
        ``r:<key>`` row or, format 1, inside the document) into ``Entries``, in claim order and
        in one transaction; a ledger with none is left as it is."""
        find = "SELECT key FROM Cache WHERE key >= 'o:' AND key < 'o;' ORDER BY rowid LIMIT ?"
        if not self._sql(find, (1,)).fetchall():
            return
        with self._cache.transact():
            while rows := self._sql(find, (_PAGE,)).fetchall():
                for (okey,) in rows:
                    self._move(okey[2:])

    def _move(self, key: str) -> None:
        doc = _loads(self._cache.get("o:" + key), key)
        raw = doc.pop("raw", None)
        if doc.pop("has_raw", False):
            raw_text = self._cache.get("r:" + key)
        else:
            raw_text = None if raw is None else _dumps(raw, key)
        status, updated = doc.pop("status"), doc.pop("updated", doc.get("created", 0.0))
        doc["v"] = FORMAT_VERSION
        self._sql("INSERT OR REPLACE INTO Entries(key, status, updated, doc, raw) VALUES (?, ?, ?, ?, ?)",
                  (key, status, updated, _dumps(doc, key), raw_text if status in KEEPS_RAW else None))
        self._cache.delete("o:" + key)
        self._cache.delete("r:" + key)

    # -- lifecycle ----------------------------------------------------------------------------

    def reopen(self) -> DiskLedger:
        """A new connection to this ledger, for a forked process (which must not use ours)."""
        return DiskLedger(self.path.parent, self.integration, fsync=self._fsync, mask=self._mask)

    def close(self) -> None:
        """Close this thread's connection to the ledger."""
        self._cache.close()

    def __enter__(self) -> DiskLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _guard(self, operation: str, key: str | None = None) -> Iterator[None]:
        """Turn storage failures into LedgerError with the integration and key attached."""
        try:
            yield
        except (diskcache.Timeout, sqlite3.Error, OSError) as exc:
            context = {"integration": self.integration, "operation": operation}
            if key is not None:
                context["key"] = key
            raise LedgerError(f"ledger {operation} failed: {exc}", **context) from exc


_COLUMNS = ("key", "status", "updated", "doc", "raw")
_ENTRY = "key, status, updated, doc, raw"
_INSERT = "INSERT OR IGNORE INTO Entries(key, status, updated, doc, raw) VALUES (?, ?, ?, ?, ?)"
#: A claim binds "" for a missing raw record (a raw record is JSON text, never ""): sqlite3
#: binds text at once but looks for adapters on None (~3 k instructions a row).
_CLAIM = _INSERT.replace("?)", "NULLIF(?, ''))")
_CLAIM_ROW = ", (?, ?, ?, ?, NULLIF(?, ''))"
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)     # INSERT ... RETURNING
_TABLES = (
    "CREATE TABLE IF NOT EXISTS Entries (rowid INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,"
    " status TEXT NOT NULL, updated REAL NOT NULL, doc TEXT NOT NULL, raw TEXT)",
    "CREATE INDEX IF NOT EXISTS Entries_status_updated ON Entries(status, updated)",
    "CREATE TABLE IF NOT EXISTS Runs (rowid INTEGER PRIMARY KEY, flow TEXT NOT NULL, doc TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS Runs_flow ON Runs(flow, rowid)",
)


_OPEN_PATIENCE = 10.0             # seconds to keep retrying a locked first-time open


def _open_cache(path: Path, fsync: bool) -> diskcache.Cache:
    """Open (creating if need be) the diskcache directory, retrying a locked first open.

    diskcache runs its table and index creation with a zero busy timeout and retries only
    some statements (``create_tag_index`` is not one), so threads or processes opening a new
    directory at once can get "database is locked". Every step of ``Cache.__init__`` is
    idempotent (``IF NOT EXISTS``, ``INSERT OR IGNORE``), so the open is simply retried with
    short sleeps for up to ``_OPEN_PATIENCE`` seconds; any other error is raised at once.
    """
    deadline, pause = time.monotonic() + _OPEN_PATIENCE, 0.002
    while True:
        try:
            cache = diskcache.Cache(
                str(path), eviction_policy="none", cull_limit=0, tag_index=True,
                statistics=False, sqlite_synchronous=2 if fsync else 1,
                # bounded memory however large the ledger grows: diskcache's defaults (a 32 MB
                # page cache and 64 MB of memory-mapped file) show up as RSS that grows with it
                sqlite_cache_size=2**11, sqlite_mmap_size=0,
            )
            for statement in _TABLES:
                cache._sql(statement)
            return cache
        except sqlite3.OperationalError as exc:
            if str(exc) != "database is locked" or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _kkey(namespace: str, key: str) -> str:
    return f"k:{namespace}\x00{key}"


def _entry(row: tuple[str, str, float, str, str | None]) -> Entry:
    """The Entry of an ``Entries`` row."""
    key, status, updated, doc_text, raw_text = row
    return _make(key, status, updated, doc_text, None if raw_text is None else _loads(raw_text, key))


