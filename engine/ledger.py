"""The ledger: durable per-integration state, behind a small interface.

One ledger namespace per integration holds three things:

- **entries**, one per order key: status, destination id, attempts, last error, reason, the raw
  source record while it may still be needed, free-form ``data``, created/updated timestamps;
- a **watermark** per stream name ("orders", "shipments", ...), which only moves forward;
- a small **key/value area** per namespace for flows (last pushed inventory, cached lookup ids);
  ``kv_add`` is its atomic add-if-absent, the claim for things that are not orders (a package).

``Ledger`` is the interface (a Protocol, so a Redis or PostgreSQL store can replace the embedded
one); ``DiskLedger`` is the embedded default on diskcache (SQLite, process-safe). Semantics:

- ``claim(key, **fields) -> bool`` is THE dedupe primitive: one atomic ``Cache.add`` that creates
  the entry (``pending`` unless ``status=`` says otherwise) only if the key is absent. Never
  check-then-set. ``claim_many([(key, fields), ...])`` does a page of claims in one transaction.
- ``set_status(key, status, **fields) -> Entry`` updates unconditionally; ``transition(key,
  from_statuses, to_status, **fields) -> bool`` is a compare-and-set in one transaction (two
  workers never both move ``pending`` to ``sending``). Moving to ``sending`` bumps ``attempts``.
  Fields: ``destination_id``, ``last_error``, ``reason``, ``raw`` replace; ``data`` merges
  shallowly. ``reason`` is dropped on entering a status that takes none; ``raw`` is dropped on
  entering a status that no longer needs it (anything but pending/sending/held/quarantined/error).
- ``batch()`` groups any operations into one transaction (never hold it across network I/O).
- ``iter_status(*statuses)`` streams entries page by page (memory-flat, indexed); it is a live
  view: entries changing status while it runs may be missed or seen twice.
  ``counts()`` and ``latest(status, n)`` are indexed queries, not scans of every entry.
- ``set_watermark(stream, value, force=False)`` refuses to move backwards (numbers compare as
  numbers, ISO 8601 as instants, anything else as text) and returns whether it stored the value.
- ``reset_since(since)`` is the only way entries ever leave the ledger, and it is bounded: it
  moves the stream's watermark back to ``since`` and releases (deletes) only entries in the
  ``release`` statuses (default: ``skipped``) created at or after ``since``, so the re-pull
  re-evaluates them. Delivered-or-later and in-flight keys can never be released, so they keep
  blocking duplicates. It returns the number of entries released.

Values are stored as compact JSON text (a versioned plain dict), never pickled classes, so they
stay readable across code versions and by other tools. They are written with orjson: a NaN or
infinite float is stored as null, an integer beyond 64 bits is refused. An entry's raw record is kept as its own value next to the small status document
(written once with the claim, deleted on entering a status that drops it), so a status change
never reads or rewrites it. An ``error`` status must mean the destination did not take the
order; an ambiguous outcome stays ``sending`` for reconciliation.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import diskcache
import orjson

from engine.errors import LedgerError

STATUSES = (
    "pending", "sending", "delivered", "skipped", "quarantined", "held", "error",
    "shipped", "confirmed", "canceled", "cancel_too_late",
)
KEEPS_RAW = frozenset({"pending", "sending", "quarantined", "held", "error"})
TAKES_REASON = frozenset({"skipped", "quarantined", "held", "error", "cancel_too_late"})
RELEASABLE = frozenset({"pending", "skipped", "quarantined", "held", "error"})
FIELDS = frozenset({"destination_id", "last_error", "reason", "raw", "data"})
FORMAT_VERSION = 2                # 2: the raw record is its own value (``r:<key>``)
_PAGE = 1000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True)
class Entry:
    """What the ledger knows about one order key."""

    key: str
    status: str
    destination_id: str | None = None
    attempts: int = 0
    last_error: str | None = None
    reason: str | None = None
    raw: Any = None
    data: Mapping[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0


class Ledger(Protocol):
    """The durable state of one integration; see the module docstring for the semantics."""

    integration: str

    def claim(self, key: str, *, status: str = "pending", **fields: Any) -> bool: ...
    def claim_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[bool]: ...
    def get(self, key: str) -> Entry | None: ...
    def set_status(self, key: str, status: str, **fields: Any) -> Entry: ...
    def transition(
        self, key: str, from_statuses: str | Iterable[str], to_status: str, **fields: Any
    ) -> bool: ...
    def batch(self) -> contextlib.AbstractContextManager[None]: ...
    def iter_status(self, *statuses: str) -> Iterator[Entry]: ...
    def counts(self) -> dict[str, int]: ...
    def latest(self, status: str, n: int = 10) -> list[Entry]: ...
    def watermark(self, stream: str) -> str | None: ...
    def set_watermark(self, stream: str, value: str, *, force: bool = False) -> bool: ...
    def kv_get(self, namespace: str, key: str, default: Any = None) -> Any: ...
    def kv_set(self, namespace: str, key: str, value: Any) -> None: ...
    def kv_add(self, namespace: str, key: str, value: Any) -> bool: ...
    def kv_delete(self, namespace: str, key: str) -> bool: ...
    def kv_items(self, namespace: str) -> Iterator[tuple[str, Any]]: ...
    def reset_since(
        self, since: str | datetime, *, stream: str = "orders", release: Iterable[str] = ...
    ) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Ledger: ...
    def __exit__(self, *exc: object) -> None: ...


class DiskLedger:
    """The embedded ledger: one diskcache (SQLite, WAL) directory per integration.

    Keys are text with a kind prefix (``o:`` entries, ``r:`` their raw records, ``w:``
    watermarks, ``k:`` key/value); an entry's diskcache tag is its status and a key/value item's
    tag is ``kv:<namespace>``, so the tag index answers "all entries in status X" without
    reading the others. An entry document with ``"has_raw": true`` has an ``r:`` value (a
    version 1 document kept its raw record inline, and is still read). Eviction is off: the
    ledger never forgets on its own. ``fsync=True`` (default) makes every commit survive a power
    loss; ``False`` survives a killed process only, and is faster for one-by-one writes.
    """

    def __init__(self, directory: str | Path, integration: str, *, fsync: bool = True) -> None:
        if not _NAME.fullmatch(integration):
            raise LedgerError("integration name is not usable as a ledger name",
                              integration=integration)
        self.integration = integration
        self.path = Path(directory) / integration
        with self._guard("open"):
            self._cache = _open_cache(self.path, fsync)
            self._bulk = _bulk_insert_fits(self._cache)

    # -- entries ------------------------------------------------------------------------------

    def claim(self, key: str, *, status: str = "pending", **fields: Any) -> bool:
        """Create the entry only if the key is absent; True when this call claimed it."""
        with self._guard("claim", key), self._cache.transact():
            return self._claim(key, status, fields, _now())

    def claim_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[bool]:
        """Claim a page of keys in one transaction; one bool per item, in order.

        Each key is still one atomic add-if-absent, decided inside the one transaction: a
        multi-row ``INSERT OR IGNORE`` into diskcache's table (``_insert_absent``) when its
        schema is the expected one, else ``Cache.add`` per key. A key repeated within the page
        is won by its first item.
        """
        now = _now()
        rows = [self._document(key, fields.get("status", "pending"), fields, now)
                for key, fields in items]
        with self.batch():
            if not self._bulk:
                return [self._add(*row) for row in rows]
            won = self._insert_absent([(_okey(key), doc, status) for key, doc, status, _ in rows])
            raws = [(_rkey(key), raw, None) for key, _, _, raw in rows
                    if raw is not None and _okey(key) in won]
            taken = self._insert_absent(raws)
            for rkey, raw, _ in raws:               # a leftover raw value: replace it, as set()
                if rkey not in taken:
                    self._cache.set(rkey, raw)
        seen: set[str] = set()
        claimed = []
        for key, *_ in rows:
            claimed.append(_okey(key) in won and key not in seen)
            seen.add(key)
        return claimed

    def _claim(self, key: str, status: str, fields: Mapping[str, Any], now: float) -> bool:
        return self._add(*self._document(key, status, fields, now))

    def _document(self, key: str, status: str, fields: Mapping[str, Any],
                  now: float) -> tuple[str, str, str, str | None]:
        """(key, entry document text, status, raw record text or None) of a new claim."""
        _check_status(status)
        doc = {"v": FORMAT_VERSION, "status": status, "created": now, "updated": now}
        if status == "sending":
            doc["attempts"] = 1
        raw = fields.get("raw") if status in KEEPS_RAW else None
        fields = {name: value for name, value in fields.items() if name != "status" and name != "raw"}
        doc = _merge(doc, status, fields, key)
        raw_text = None
        if raw is not None:
            doc["has_raw"], raw_text = True, _dumps(raw, key)
        return key, _dumps(doc, key), status, raw_text

    def _add(self, key: str, doc: str, status: str, raw: str | None) -> bool:
        """One claim through ``Cache.add`` (inside the caller's transaction)."""
        if not self._cache.add(_okey(key), doc, tag=status):
            return False
        if raw is not None:
            self._cache.set(_rkey(key), raw)
        return True

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (raw record included), or None when the key was never claimed."""
        doc = self._load(key)
        return None if doc is None else _entry(key, doc, self._raw(key, doc))

    def _load(self, key: str) -> dict[str, Any] | None:
        with self._guard("get", key):
            text = self._cache.get(_okey(key))
        return None if text is None else _loads(text, key)

    def _raw(self, key: str, doc: Mapping[str, Any]) -> Any:
        """The entry's raw record: its own value, or inline in a version 1 document."""
        if not doc.get("has_raw"):
            return doc.get("raw")
        with self._guard("get", key):
            text = self._cache.get(_rkey(key))
        return None if text is None else _loads(text, key)

    def set_status(self, key: str, status: str, **fields: Any) -> Entry:
        """Move ``key`` to ``status`` whatever its current status; returns the new entry."""
        _check_status(status)
        with self.batch():
            current = self._load(key)
            if current is None:
                raise LedgerError("no ledger entry for this key", integration=self.integration,
                                  key=key)
            doc = self._write(key, current, status, fields)
            raw = fields["raw"] if "raw" in fields and doc.get("has_raw") else self._raw(key, doc)
            return _entry(key, doc, raw)

    def transition(
        self, key: str, from_statuses: str | Iterable[str], to_status: str, **fields: Any
    ) -> bool:
        """Compare-and-set: move ``key`` to ``to_status`` only if it is in ``from_statuses``."""
        allowed = {from_statuses} if isinstance(from_statuses, str) else set(from_statuses)
        _check_status(to_status, *allowed)
        with self.batch():
            current = self._load(key)
            if current is None or current["status"] not in allowed:
                return False
            self._write(key, current, to_status, fields)
            return True

    def _write(self, key: str, doc: dict[str, Any], status: str,
               fields: Mapping[str, Any]) -> dict[str, Any]:
        """Store the updated document (inside the caller's transaction); the raw record's own
        value is touched only when ``raw`` is given or the new status drops it."""
        doc["updated"] = _now()
        if status == "sending":
            doc["attempts"] = doc.get("attempts", 0) + 1
        inline = doc.pop("raw", None)                          # a version 1 document's
        raw = fields["raw"] if "raw" in fields else inline
        rewrite = "raw" in fields or inline is not None
        doc = _merge(doc, status, {name: fields[name] for name in fields if name != "raw"}, key)
        doc["v"] = FORMAT_VERSION
        with self._guard("write", key):
            if status not in KEEPS_RAW or (rewrite and raw is None):
                if doc.pop("has_raw", False):
                    self._cache.delete(_rkey(key))
            elif rewrite:
                self._cache.set(_rkey(key), _dumps(raw, key))
                doc["has_raw"] = True
            self._cache.set(_okey(key), _dumps(doc, key), tag=status)
        return doc

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run the enclosed operations as one transaction (re-entrant; no I/O inside)."""
        with self._guard("transaction"), self._cache.transact():
            yield

    # -- queries ------------------------------------------------------------------------------

    def iter_status(self, *statuses: str) -> Iterator[Entry]:
        """Stream the entries currently in any of ``statuses``, oldest claim first per status."""
        _check_status(*statuses)
        for status in statuses:
            for okey in self._keys_by_tag(status):
                entry = self.get(okey[2:])
                if entry is not None and entry.status == status:
                    yield entry

    def counts(self) -> dict[str, int]:
        """How many entries are in each status (statuses with none are left out)."""
        marks = ",".join("?" * len(STATUSES))
        sql = f"SELECT tag, COUNT(*) FROM Cache WHERE tag IN ({marks}) GROUP BY tag"
        with self._guard("counts"):
            return dict(self._sql(sql, STATUSES).fetchall())

    def latest(self, status: str, n: int = 10) -> list[Entry]:
        """The ``n`` entries in ``status`` updated most recently, newest first."""
        _check_status(status)
        sql = "SELECT key FROM Cache WHERE tag = ? ORDER BY store_time DESC LIMIT ?"
        with self._guard("latest"):
            okeys = [row[0] for row in self._sql(sql, (status, n)).fetchall()]
        entries = (self.get(okey[2:]) for okey in okeys)
        return [entry for entry in entries if entry is not None]

    def _keys_by_tag(self, tag: str) -> Iterator[str]:
        """Stored keys with ``tag``, a page at a time through the (tag, rowid) index."""
        sql = "SELECT rowid, key FROM Cache WHERE tag = ? AND rowid > ? ORDER BY rowid LIMIT ?"
        last = 0
        while True:
            with self._guard("scan"):
                rows = self._sql(sql, (tag, last, _PAGE)).fetchall()
            yield from (key for _, key in rows)
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def _sql(self, sql: str, args: Iterable[Any]) -> sqlite3.Cursor:
        # diskcache has no public query by tag; its table `Cache(key, raw, tag, store_time, ...)`
        # and the (tag, rowid) index from tag_index=True are its stable on-disk format.
        return self._cache._sql(sql, tuple(args))

    def _insert_absent(self, rows: list[tuple[str, str, str | None]]) -> set[str]:
        """Add each (key, text value, tag) whose key is absent, exactly as ``Cache.add`` would
        store it; the keys added. Call inside a transaction, only when ``self._bulk``.

        The one place the ledger writes diskcache's table itself (``Cache.add`` costs four
        statements a key). The row is the one ``Cache.add`` writes for a text key and a short
        text value (``Disk.put``/``Disk.store``, ``Cache._row_insert``): raw=1, store_time =
        access_time = now, expire_time NULL, access_count 0, the tag, size 0, mode MODE_RAW,
        no filename. The UNIQUE (key, raw) index makes ``INSERT OR IGNORE`` the same
        add-if-absent (ledger rows never expire, so an existing row always wins); diskcache's
        triggers keep its count. A value diskcache would put in a file goes through
        ``Cache.add``, in order, so rowids still follow the input.
        """
        added: set[str] = set()
        limit = self._cache._con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 5
        chunk: list[Any] = []
        now = time.time()
        for key, value, tag in rows:
            if len(value) < self._cache.disk.min_file_size:
                chunk.append((key, now, now, tag, value))
                if len(chunk) < limit:
                    continue
            added.update(self._insert_rows(chunk))
            chunk = []
            if len(value) >= self._cache.disk.min_file_size and self._cache.add(key, value, tag=tag):
                added.add(key)
        added.update(self._insert_rows(chunk))
        return added

    def _insert_rows(self, chunk: list[tuple[str, float, float, str | None, str]]) -> list[str]:
        if not chunk:
            return []
        values = ",".join([f"(?, 1, ?, NULL, ?, 0, ?, 0, {diskcache.core.MODE_RAW}, NULL, ?)"]
                          * len(chunk))
        sql = ("INSERT OR IGNORE INTO Cache(key, raw, store_time, expire_time, access_time,"
               " access_count, tag, size, mode, filename, value) VALUES " + values
               + " RETURNING key")
        return [row[0] for row in self._sql(sql, [arg for row in chunk for arg in row])]

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
        text = _dumps(value, key)
        with self._guard("kv_set", key):
            self._cache.set(_kkey(namespace, key), text, tag="kv:" + namespace)

    def kv_add(self, namespace: str, key: str, value: Any) -> bool:
        """Store ``value`` only if ``namespace``/``key`` is absent (one atomic ``Cache.add``);
        True when this call stored it. The claim primitive for things that are not orders."""
        text = _dumps(value, key)
        with self._guard("kv_add", key):
            return self._cache.add(_kkey(namespace, key), text, tag="kv:" + namespace)

    def kv_delete(self, namespace: str, key: str) -> bool:
        """Forget ``namespace``/``key`` (never touches entries); True if it existed."""
        with self._guard("kv_delete", key):
            return self._cache.delete(_kkey(namespace, key))

    def kv_items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        """Stream every (key, value) of ``namespace``."""
        prefix = len(_kkey(namespace, ""))
        for kkey in self._keys_by_tag("kv:" + namespace):
            with self._guard("kv_items", kkey):
                value = self._cache.get(kkey)
            if value is not None:
                yield kkey[prefix:], _loads(value, kkey)

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
        released = 0
        with self.batch():
            self.set_watermark(stream, text, force=True)
            for entry in self.iter_status(*release):
                if entry.created >= cutoff:
                    self._cache.delete(_okey(entry.key))
                    self._cache.delete(_rkey(entry.key))
                    released += 1
        return released

    # -- lifecycle ----------------------------------------------------------------------------

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
            return diskcache.Cache(
                str(path), eviction_policy="none", cull_limit=0, tag_index=True,
                statistics=False, sqlite_synchronous=2 if fsync else 1,
                # bounded memory however large the ledger grows: diskcache's defaults (a 32 MB
                # page cache and 64 MB of memory-mapped file) show up as RSS that grows with it
                sqlite_cache_size=2**11, sqlite_mmap_size=0,
            )
        except sqlite3.OperationalError as exc:
            if str(exc) != "database is locked" or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


_CACHE_COLUMNS = ("rowid", "key", "raw", "store_time", "expire_time", "access_time",
                  "access_count", "tag", "size", "mode", "filename", "value")


def _bulk_insert_fits(cache: diskcache.Cache) -> bool:
    """Whether ``DiskLedger._insert_absent`` may write ``cache``'s table: the columns, the
    UNIQUE (key, raw) index, the plain ``Disk`` and no eviction are the ones it was written
    for (diskcache 5.x). Otherwise claims take the per-key ``Cache.add`` path."""
    sql = cache._sql
    columns = tuple(row[1] for row in sql("PRAGMA table_info(Cache)").fetchall())
    unique = [row[1] for row in sql("PRAGMA index_list(Cache)").fetchall() if row[2]]
    keyed = any([col[2] for col in sql(f"PRAGMA index_info({name})").fetchall()] == ["key", "raw"]
                for name in unique)
    return (columns == _CACHE_COLUMNS and keyed and type(cache.disk) is diskcache.Disk
            and cache.eviction_policy == "none" and sqlite3.sqlite_version_info >= (3, 35))


def _okey(key: str) -> str:
    if not isinstance(key, str):
        raise LedgerError("order keys must be text", key=repr(key))
    return "o:" + key


def _rkey(key: str) -> str:
    return "r:" + key


def _kkey(namespace: str, key: str) -> str:
    return f"k:{namespace}\x00{key}"


def _now() -> float:
    return round(time.time(), 3)


def _check_status(*statuses: str) -> None:
    unknown = [status for status in statuses if status not in STATUSES]
    if unknown:
        raise LedgerError(f"unknown status {unknown[0]!r}; expected one of {', '.join(STATUSES)}")


def _merge(doc: dict[str, Any], status: str, fields: Mapping[str, Any],
           key: str) -> dict[str, Any]:
    """Merge caller fields into a stored entry (in place) and drop what ``status`` no longer keeps.

    ``data`` merges shallowly, other fields replace (None removes); ``reason`` goes on entering
    a status outside TAKES_REASON unless given. ``raw`` is stored apart (``DiskLedger._write``).
    """
    if not FIELDS.issuperset(fields):
        unknown = sorted(set(fields) - FIELDS)[0]
        raise LedgerError(f"unknown entry field {unknown!r}; expected one of "
                          f"{', '.join(sorted(FIELDS))}", key=key)
    doc["status"] = status
    for name, value in fields.items():
        if name == "data":
            if value:
                doc["data"] = {**doc.get("data", {}), **value}
        elif value is None:
            doc.pop(name, None)
        else:
            doc[name] = value
    if status not in TAKES_REASON and "reason" not in fields:
        doc.pop("reason", None)
    return doc


def _entry(key: str, doc: Mapping[str, Any], raw: Any = None) -> Entry:
    """The Entry for a stored document and raw record; unknown (newer) document fields are ignored."""
    try:
        return Entry(key, doc["status"], doc.get("destination_id"), doc.get("attempts", 0),
                     doc.get("last_error"), doc.get("reason"), raw,
                     doc.get("data", {}), doc["created"], doc["updated"])
    except (KeyError, TypeError) as exc:
        raise LedgerError(f"unreadable ledger entry: {exc!r}", key=key) from exc


_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _dumps(value: Any, key: str) -> str:
    """Compact JSON text; text, not orjson's bytes, so that diskcache stores readable TEXT."""
    try:
        return orjson.dumps(value, option=_ORJSON).decode()
    except TypeError as exc:
        raise LedgerError(f"value is not JSON-serialisable: {exc}", key=key) from exc


def _loads(text: str, key: str) -> Any:
    try:
        return orjson.loads(text)
    except ValueError as exc:
        raise LedgerError(f"unreadable ledger entry: {exc}", key=key) from exc


def _instant(since: str | datetime) -> tuple[str, float]:
    """``since`` as stored text and as epoch seconds (naive times are UTC)."""
    try:
        moment = since if isinstance(since, datetime) else datetime.fromisoformat(since)
    except (TypeError, ValueError) as exc:
        raise LedgerError(f"reset needs an ISO 8601 date or time, got {since!r}") from exc
    text = since if isinstance(since, str) else since.isoformat()
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return text, moment.timestamp()


def _before(new: str, old: str) -> bool:
    """Whether watermark ``new`` lies before ``old``: as numbers, as instants, else as text."""
    for parse in (float, lambda text: _instant(text)[1]):
        try:
            return parse(new) < parse(old)
        except (ValueError, TypeError, LedgerError):
            continue
    return str(new) < str(old)
