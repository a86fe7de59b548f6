"""`PostgresLedger`: the shared ledger, for workers on several machines (psycopg 3).

Every integration's ledger lives in the same few tables of one PostgreSQL database, in the
connection's current schema (choose one with ``?options=-csearch_path%3Dsyncengine`` in the URL);
`engine/ledger/__init__.py` has the semantics every ledger keeps, and they are kept the same way
as on disk, with the database deciding every race:

- a claim is ``INSERT … ON CONFLICT DO NOTHING RETURNING key`` (a page of them is one statement,
  its keys inserted in key order so that two claimers of overlapping pages cannot deadlock);
- a transition reads the row ``FOR UPDATE`` and writes it in the same transaction, so two
  workers never both move ``pending`` to ``sending``;
- a watermark is inserted if absent, else locked, compared and moved forward;
- ``kv_add`` (the claim of things that are not orders) is ``INSERT … ON CONFLICT DO NOTHING``.

Documents, raw records and key/value values are the disk ledger's compact JSON text (TEXT
columns: exactly what the disk ledger stores, NUL escapes included, which ``jsonb`` refuses),
masked the same way before they are written. The schema is versioned (`MIGRATIONS`): each
process applies the missing steps once, under a transaction-scoped advisory lock, and refuses a
database written by a newer syncengine.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ConfigError, LedgerError
from engine.ledger.base import (KEEPS_RAW, RELEASABLE, RUNS_KEPT, Entry, _before, _check_status, _clean, _dumps,
                                _instant, _loads, _make, _merge, _new_row, _now, _text)

try:
    import psycopg
except ImportError:               # an optional extra: `pip install 'syncengine[postgres]'`
    psycopg = None

_PAGE = 1000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_RETRIES = 5                       # a deadlock or serialization failure outside a caller's batch

#: (version, what it does, statements); append only: a released step is never edited
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "entries, watermarks, key/value area, integrations", (
        "CREATE TABLE syncengine_integrations (name text PRIMARY KEY, created double precision NOT NULL)",
        "CREATE TABLE syncengine_entries (integration text NOT NULL, key text NOT NULL, status text NOT NULL,"
        " created double precision NOT NULL, updated double precision NOT NULL,"
        " seq bigint GENERATED ALWAYS AS IDENTITY, doc text NOT NULL, raw text,"
        " PRIMARY KEY (integration, key))",
        "CREATE INDEX syncengine_entries_status ON syncengine_entries (integration, status, updated, seq)",
        "CREATE TABLE syncengine_watermarks (integration text NOT NULL, stream text NOT NULL,"
        " value text NOT NULL, PRIMARY KEY (integration, stream))",
        "CREATE TABLE syncengine_kv (integration text NOT NULL, namespace text NOT NULL, key text NOT NULL,"
        " value text NOT NULL, seq bigint GENERATED ALWAYS AS IDENTITY,"
        " PRIMARY KEY (integration, namespace, key))",
        "CREATE INDEX syncengine_kv_seq ON syncengine_kv (integration, namespace, seq)",
    )),
    (2, "run history", (
        "CREATE TABLE syncengine_runs (integration text NOT NULL, flow text NOT NULL,"
        " seq bigint GENERATED ALWAYS AS IDENTITY, doc text NOT NULL, PRIMARY KEY (integration, flow, seq))",
    )),
)
_migrated: set[tuple[str, str]] = set()        # (url, schema) this process brought up to date


def connect(url: str) -> Any:
    """An autocommit connection to the ledger database, named for ``pg_stat_activity``;
    LedgerError (password masked) when it cannot be opened."""
    if psycopg is None:
        raise ConfigError("a postgresql:// state needs psycopg: pip install 'syncengine[postgres]'")
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10,
                               application_name=f"syncengine {socket.gethostname()} pid {os.getpid()}"[:63])
    except psycopg.Error as exc:
        raise LedgerError(f"cannot open the PostgreSQL ledger {safe_url(url)}: "
                          f"{mask_url_password(str(exc).strip(), url)}") from None


def safe_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    return mask_url_password(url, url)


def mask_url_password(text: str, url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return text
    return text.replace(password, "***") if password else text


def migrate(conn: Any, url: str) -> None:
    """Bring the ledger tables of the connection's current schema up to `MIGRATIONS`' last
    version, once per process; refuse a schema a newer syncengine has written."""
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    if schema is None:
        raise LedgerError(f"no schema to keep the ledger in at {safe_url(url)}: the search_path names "
                          "none that exists (CREATE SCHEMA it first)")
    if (url, schema) in _migrated:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncengine migrations'))")
        conn.execute("CREATE TABLE IF NOT EXISTS syncengine_migrations (version integer PRIMARY KEY,"
                     " description text NOT NULL, applied timestamptz NOT NULL DEFAULT now())")
        current = conn.execute("SELECT coalesce(max(version), 0) FROM syncengine_migrations").fetchone()[0]
        if current > MIGRATIONS[-1][0]:
            raise LedgerError(f"the ledger at {safe_url(url)} has schema version {current}, newer than this "
                              f"syncengine knows ({MIGRATIONS[-1][0]}): upgrade syncengine")
        for version, description, statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO syncengine_migrations (version, description) VALUES (%s, %s)",
                         (version, description))
    _migrated.add((url, schema))


def schema_version(conn: Any) -> int:
    """The schema version the connection's current schema holds (0: no ledger there yet)."""
    found = conn.execute("SELECT to_regclass('syncengine_migrations')").fetchone()[0]
    if found is None:
        return 0
    return conn.execute("SELECT coalesce(max(version), 0) FROM syncengine_migrations").fetchone()[0]


class PostgresLedger:
    """One integration's ledger in a shared PostgreSQL database; one connection per ledger
    object (a forked worker `reopen`\\ s its own). ``mask`` is applied to everything written,
    as in `DiskLedger`."""

    def __init__(self, url: str, integration: str, *, mask: Callable[[str], str] | None = None) -> None:
        if not _NAME.fullmatch(integration):
            raise LedgerError("integration name is not usable as a ledger name", integration=integration)
        self.integration, self.url, self._mask = integration, url, mask
        self._depth = 0
        self._conn = connect(url)
        try:
            with self._guard("open"):
                migrate(self._conn, url)
                self._conn.execute("INSERT INTO syncengine_integrations (name, created) VALUES (%s, %s)"
                                   " ON CONFLICT DO NOTHING", (integration, _now()))
        except BaseException:
            self._conn.close()
            raise

    # -- entries ------------------------------------------------------------------------------

    def claim(self, key: str, *, status: str = "pending", **fields: Any) -> bool:
        """Create the entry only if the key is absent; True when this call claimed it."""
        return self.claim_many([(key, {**fields, "status": status})])[0]

    def claim_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> list[bool]:
        """Claim a page of keys in one statement; one bool per item, in order (a key repeated
        within the page is won by its first item)."""
        now = _now()
        rows = [self._masked_row(_new_row(key, fields, now), fields) for key, fields in items]
        first: dict[str, tuple] = {}
        for row in rows:
            first.setdefault(row[0], row)
        ordered = sorted(first.values())
        columns = list(zip(*ordered)) if ordered else [[]] * 5
        sql = ("INSERT INTO syncengine_entries (integration, key, status, created, updated, doc, raw)"
               " SELECT %s, k, s, u, u, d, r FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[],"
               " %s::text[]) WITH ORDINALITY AS t(k, s, u, d, r, n) ORDER BY n"
               " ON CONFLICT DO NOTHING RETURNING key")
        won: set[str] = set()
        if ordered:
            args = (self.integration, *map(list, columns))
            won = {key for (key,) in self._retrying("claim", lambda: self._conn.execute(sql, args).fetchall())}
        claimed, seen = [], set()
        for key, *_ in rows:
            claimed.append(key in won and key not in seen)
            seen.add(key)
        return claimed

    def _masked_row(self, row: tuple, fields: Mapping[str, Any]) -> tuple:
        if self._mask is None:
            return row
        key, status, now, doc, raw = row
        raw = None if raw is None else _clean(self._mask, raw, fields.get("raw"), key)
        return key, status, now, _clean(self._mask, doc, None, key), raw

    def get(self, key: str) -> Entry | None:
        """The entry for ``key`` (raw record included), or None when the key was never claimed."""
        with self._guard("get", key):
            row = self._one(f"SELECT {_ENTRY} FROM syncengine_entries WHERE integration = %s AND key = %s",
                            (self.integration, _text(key)))
        return None if row is None else _entry(row)

    def set_status(self, key: str, status: str, **fields: Any) -> Entry:
        """Move ``key`` to ``status`` whatever its current status; returns the new entry."""
        _check_status(status)
        with self.batch():
            current = self._lock(key, raw=True)
            if current is None:
                raise LedgerError("no ledger entry for this key", integration=self.integration, key=key)
            updated, doc = self._write(key, current[1], status, fields)
            if "raw" in fields or status not in KEEPS_RAW:
                raw = fields.get("raw") if status in KEEPS_RAW else None
            else:
                raw = None if current[2] is None else _loads(current[2], key)
            return _make(key, status, updated, doc, raw)

    def transition(self, key: str, from_statuses: str | Iterable[str], to_status: str, **fields: Any) -> bool:
        """Compare-and-set: move ``key`` to ``to_status`` only if it is in ``from_statuses``."""
        allowed = {from_statuses} if isinstance(from_statuses, str) else set(from_statuses)
        _check_status(to_status, *allowed)
        with self.batch():
            current = self._lock(key)
            if current is None or current[0] not in allowed:
                return False
            self._write(key, current[1], to_status, fields)
            return True

    def _lock(self, key: str, raw: bool = False) -> tuple | None:
        """(status, document text[, raw text]) of ``key``, its row locked until the transaction ends."""
        columns = "status, doc, raw" if raw else "status, doc"
        with self._guard("get", key):
            return self._one(f"SELECT {columns} FROM syncengine_entries WHERE integration = %s AND key = %s"
                             " FOR UPDATE", (self.integration, _text(key)))

    def _write(self, key: str, doc_text: str, status: str, fields: Mapping[str, Any]) -> tuple[float, str]:
        """Store the updated entry (inside the caller's transaction); (updated, document text)."""
        updated = _now()
        doc = _loads(doc_text, key)
        if status == "sending":
            doc["attempts"] = doc.get("attempts", 0) + 1
        merged = _merge(doc, status, {k: v for k, v in fields.items() if k != "raw"}, key)
        doc_text = _clean(self._mask, _dumps(merged, key), merged, key)
        where = " WHERE integration = %s AND key = %s"
        with self._guard("write", key):
            if status not in KEEPS_RAW or "raw" in fields:
                raw = fields.get("raw") if status in KEEPS_RAW else None
                raw_text = None if raw is None else _clean(self._mask, _dumps(raw, key), raw, key)
                self._conn.execute("UPDATE syncengine_entries SET status = %s, updated = %s, doc = %s, raw = %s"
                                   + where, (status, updated, doc_text, raw_text, self.integration, key))
            else:
                self._conn.execute("UPDATE syncengine_entries SET status = %s, updated = %s, doc = %s" + where,
                                   (status, updated, doc_text, self.integration, key))
        return updated, doc_text

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Run the enclosed operations as one transaction (re-entrant; no I/O inside)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._guard("transaction"), self._conn.transaction():
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0

    def _retrying(self, operation: str, run: Callable[[], Any]) -> Any:
        """``run()`` (one statement); outside a caller's batch, a deadlock or serialization
        failure (another claimer) is retried, since the statement was the whole transaction."""
        for attempt in range(_RETRIES):
            try:
                with self._guard(operation):
                    return run()
            except LedgerError as exc:
                retry = isinstance(exc.__cause__, (psycopg.errors.DeadlockDetected,
                                                   psycopg.errors.SerializationFailure))
                if self._depth or not retry or attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    # -- queries ------------------------------------------------------------------------------

    def iter_status(self, *statuses: str) -> Iterator[Entry]:
        """Stream the entries currently in any of ``statuses``, least recently updated first
        per status, a page at a time through the (integration, status, updated) index."""
        _check_status(*statuses)
        sql = (f"SELECT seq, {_ENTRY} FROM syncengine_entries WHERE integration = %s AND status = %s"
               " AND (updated, seq) > (%s, %s) ORDER BY updated, seq LIMIT %s")
        for status in statuses:
            after: tuple[float, int] = (-1.0, 0)
            while True:
                with self._guard("scan"):
                    rows = self._conn.execute(sql, (self.integration, status, *after, _PAGE)).fetchall()
                yield from (_entry(row[1:]) for row in rows)
                if len(rows) < _PAGE:
                    break
                after = (rows[-1][3], rows[-1][0])

    def counts(self) -> dict[str, int]:
        """How many entries are in each status (statuses with none are left out)."""
        with self._guard("counts"):
            return dict(self._conn.execute("SELECT status, count(*) FROM syncengine_entries WHERE integration = %s"
                                           " GROUP BY status", (self.integration,)).fetchall())

    def latest(self, status: str, n: int = 10) -> list[Entry]:
        """The ``n`` entries in ``status`` updated most recently, newest first."""
        _check_status(status)
        sql = (f"SELECT {_ENTRY} FROM syncengine_entries WHERE integration = %s AND status = %s"
               " ORDER BY updated DESC, seq DESC LIMIT %s")
        with self._guard("latest"):
            return [_entry(row) for row in self._conn.execute(sql, (self.integration, status, n)).fetchall()]

    def _one(self, sql: str, args: tuple) -> tuple | None:
        return self._conn.execute(sql, args).fetchone()

    # -- watermarks and key/value -------------------------------------------------------------

    def watermark(self, stream: str) -> str | None:
        """The stream's watermark, or None before its first run."""
        with self._guard("watermark", stream):
            row = self._one("SELECT value FROM syncengine_watermarks WHERE integration = %s AND stream = %s",
                            (self.integration, stream))
        return None if row is None else row[0]

    def set_watermark(self, stream: str, value: str, *, force: bool = False) -> bool:
        """Store ``value`` unless it lies before the current one (or ``force``); True if stored."""
        value = str(value)
        with self.batch(), self._guard("watermark", stream):
            if self._one("INSERT INTO syncengine_watermarks (integration, stream, value) VALUES (%s, %s, %s)"
                         " ON CONFLICT DO NOTHING RETURNING 1", (self.integration, stream, value)):
                return True
            current = self._one("SELECT value FROM syncengine_watermarks WHERE integration = %s AND stream = %s"
                                " FOR UPDATE", (self.integration, stream))[0]
            if not force and _before(value, current):
                return False
            self._conn.execute("UPDATE syncengine_watermarks SET value = %s WHERE integration = %s AND stream = %s",
                               (value, self.integration, stream))
            return True

    def kv_get(self, namespace: str, key: str, default: Any = None) -> Any:
        """The value stored under ``namespace``/``key``, or ``default``."""
        with self._guard("kv_get", key):
            row = self._one("SELECT value FROM syncengine_kv WHERE integration = %s AND namespace = %s AND key = %s",
                            (self.integration, namespace, key))
        return default if row is None else _loads(row[0], key)

    def kv_set(self, namespace: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``namespace``/``key``."""
        text = _clean(self._mask, _dumps(value, key), value, key)
        with self._guard("kv_set", key):
            self._conn.execute("INSERT INTO syncengine_kv (integration, namespace, key, value) VALUES (%s, %s, %s, %s)"
                               " ON CONFLICT (integration, namespace, key) DO UPDATE SET value = excluded.value",
                               (self.integration, namespace, key, text))

    def kv_add(self, namespace: str, key: str, value: Any) -> bool:
        """Store ``value`` only if ``namespace``/``key`` is absent (``ON CONFLICT DO NOTHING``);
        True when this call stored it."""
        text = _clean(self._mask, _dumps(value, key), value, key)
        with self._guard("kv_add", key):
            return self._one("INSERT INTO syncengine_kv (integration, namespace, key, value) VALUES (%s, %s, %s, %s)"
                             " ON CONFLICT DO NOTHING RETURNING 1", (self.integration, namespace, key, text)) is not None

    def kv_delete(self, namespace: str, key: str) -> bool:
        """Forget ``namespace``/``key`` (never touches entries); True if it existed."""
        with self._guard("kv_delete", key):
            return self._conn.execute("DELETE FROM syncengine_kv WHERE integration = %s AND namespace = %s AND key = %s",
                                      (self.integration, namespace, key)).rowcount == 1

    def kv_items(self, namespace: str) -> Iterator[tuple[str, Any]]:
        """Stream every (key, value) of ``namespace`` in insertion order, a page at a time."""
        sql = ("SELECT seq, key, value FROM syncengine_kv WHERE integration = %s AND namespace = %s AND seq > %s"
               " ORDER BY seq LIMIT %s")
        last = 0
        while True:
            with self._guard("kv_items"):
                rows = self._conn.execute(sql, (self.integration, namespace, last, _PAGE)).fetchall()
            yield from ((key, _loads(value, key)) for _, key, value in rows)
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    # -- re-pull ------------------------------------------------------------------------------

    def reset_since(self, since: str | datetime, *, stream: str = "orders",
                    release: Iterable[str] = ("skipped",)) -> int:
        """Move ``stream``'s watermark back to ``since`` and release entries created since then."""
        release = tuple(release)
        _check_status(*release)
        if not RELEASABLE.issuperset(release):
            raise LedgerError("only pending, skipped, quarantined, held and error entries can "
                              "be released", integration=self.integration, release=release)
        text, cutoff = _instant(since)
        with self.batch():
            self.set_watermark(stream, text, force=True)
            with self._guard("reset"):
                return self._conn.execute("DELETE FROM syncengine_entries WHERE integration = %s AND status = ANY(%s)"
                                          " AND created >= %s", (self.integration, list(release), cutoff)).rowcount

    def release_unsent(self) -> int:
        """Delete the ``pending`` entries without a raw record; how many there were."""
        with self._guard("release"):
            return self._conn.execute("DELETE FROM syncengine_entries WHERE integration = %s AND status = 'pending'"
                                      " AND raw IS NULL", (self.integration,)).rowcount

    # -- run history ----------------------------------------------------------------------------

    def record_run(self, run: Mapping[str, Any]) -> None:
        """Append one flow run (a JSON dict with ``flow``) and drop that flow's runs beyond the
        newest ``RUNS_KEPT``, in one transaction."""
        flow = _text(run.get("flow"))
        text = _clean(self._mask, _dumps(dict(run), flow), run, flow)
        with self.batch(), self._guard("record_run", flow):
            self._conn.execute("INSERT INTO syncengine_runs (integration, flow, doc) VALUES (%s, %s, %s)",
                               (self.integration, flow, text))
            self._conn.execute("DELETE FROM syncengine_runs WHERE integration = %s AND flow = %s AND seq <= ("
                               "SELECT seq FROM syncengine_runs WHERE integration = %s AND flow = %s"
                               " ORDER BY seq DESC LIMIT 1 OFFSET %s)",
                               (self.integration, flow, self.integration, flow, RUNS_KEPT))

    def runs(self, flow: str | None = None, n: int = RUNS_KEPT) -> list[dict[str, Any]]:
        """The newest ``n`` runs of ``flow`` (None: of every flow), newest first."""
        where, args = (" AND flow = %s", (self.integration, flow, n)) if flow is not None else ("", (self.integration, n))
        with self._guard("runs"):
            rows = self._conn.execute(f"SELECT flow, doc FROM syncengine_runs WHERE integration = %s{where}"
                                      " ORDER BY seq DESC LIMIT %s", args).fetchall()
        return [_loads(doc, name) for name, doc in rows]

    def last_runs(self) -> dict[str, dict[str, Any]]:
        """Each flow that ever ran -> its newest run."""
        sql = ("SELECT DISTINCT ON (flow) flow, doc FROM syncengine_runs WHERE integration = %s"
               " ORDER BY flow, seq DESC")
        with self._guard("runs"):
            return {name: _loads(doc, name) for name, doc in self._conn.execute(sql, (self.integration,)).fetchall()}

    # -- lifecycle ----------------------------------------------------------------------------

    def reopen(self) -> PostgresLedger:
        """A new connection to this ledger, for a forked process (which must not use ours)."""
        return PostgresLedger(self.url, self.integration, mask=self._mask)

    def close(self) -> None:
        """Close this ledger's connection."""
        self._conn.close()

    def __enter__(self) -> PostgresLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _guard(self, operation: str, key: str | None = None) -> Iterator[None]:
        """Turn database failures into LedgerError with the integration and key attached."""
        try:
            yield
        except psycopg.Error as exc:
            context = {"integration": self.integration, "operation": operation}
            if key is not None:
                context["key"] = key
            text = mask_url_password(str(exc).strip(), self.url)
            raise LedgerError(f"ledger {operation} failed: {text}", **context) from exc


_ENTRY = "key, status, updated, doc, raw"


def _entry(row: tuple[str, str, float, str, str | None]) -> Entry:
    """The Entry of a ``syncengine_entries`` row."""
    key, status, updated, doc_text, raw_text = row
    return _make(key, status, updated, doc_text, None if raw_text is None else _loads(raw_text, key))
