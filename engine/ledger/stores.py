"""Where the ledgers live: a state directory (the embedded default) or a PostgreSQL URL.

`open_store(location)` reads what `--state` was given: a ``postgresql://`` (or ``postgres://``)
URL is the shared `PostgresLedger` every worker on every machine can use; anything else is a
directory of `DiskLedger`\\ s. A store opens one integration's ledger, lists the integrations it
has ledgers for, and holds the run lock of an (integration, flow) pair: the OS file lock of
`engine.runlock` on disk, a PostgreSQL session advisory lock for the shared store, which the
server releases when the holder's connection ends however it ends (SIGKILL included).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from engine import runlock
from engine.errors import ConfigError, LedgerError, RunBusyError
from engine.ledger.base import Ledger
from engine.ledger.disk import DiskLedger

SCHEMES = ("postgresql://", "postgres://")
LOCK_PATIENCE = 2.0               # seconds a PostgreSQL run lock is waited for before giving up


class Store(Protocol):
    """A place for ledgers; `location` is printable (any password masked)."""

    location: str

    def open(self, integration: str, *, mask: Callable[[str], str] | None = None) -> Ledger: ...
    def exists(self, integration: str) -> bool: ...
    def names(self) -> list[str]: ...
    def lock(self, integration: str, flow: str) -> contextlib.AbstractContextManager[None]: ...
    def busy(self, integration: str, flow: str) -> bool: ...


def is_url(location: str | Path) -> bool:
    return str(location).startswith(SCHEMES)


def open_store(location: str | Path) -> Store:
    """The store `location` names: a PostgreSQL URL or a state directory."""
    text = str(location)
    if is_url(text):
        return PostgresStore(text)
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise ConfigError(f"unsupported state URL scheme {scheme!r}: give a directory or a postgresql:// URL")
    return DiskStore(Path(text))


class DiskStore:
    """A state directory: one `DiskLedger` (a diskcache directory) per integration."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = str(directory)

    def open(self, integration: str, *, mask: Callable[[str], str] | None = None) -> DiskLedger:
        return DiskLedger(self.directory, integration, mask=mask)

    def exists(self, integration: str) -> bool:
        return (self.directory / integration).exists()

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            raise ConfigError(f"no state directory {self.directory}: nothing has run yet")
        return sorted(path.name for path in self.directory.iterdir() if (path / "cache.db").exists())

    def lock(self, integration: str, flow: str) -> contextlib.AbstractContextManager[None]:
        return runlock.hold(self.directory, integration, flow)

    def busy(self, integration: str, flow: str) -> bool:
        return runlock.busy(self.directory, integration, flow)


class PostgresStore:
    """Ledgers in one PostgreSQL database (the connection's current schema)."""

    def __init__(self, url: str) -> None:
        from engine.ledger import postgres

        self._pg = postgres
        self.url = url
        self.location = postgres.safe_url(url)

    def open(self, integration: str, *, mask: Callable[[str], str] | None = None) -> Ledger:
        return self._pg.PostgresLedger(self.url, integration, mask=mask)

    def exists(self, integration: str) -> bool:
        return integration in (self._names() or [])

    def names(self) -> list[str]:
        names = self._names()
        if names is None:
            raise ConfigError(f"no ledger in {self.location}: nothing has run yet")
        return names

    def _names(self) -> list[str] | None:
        """The integrations with a ledger here; None when no ledger schema exists yet."""
        with contextlib.closing(self._pg.connect(self.url)) as conn, self._guard("list"):
            if self._pg.schema_version(conn) == 0:
                return None
            return [name for (name,) in conn.execute("SELECT name FROM syncengine_integrations ORDER BY name")]

    @contextlib.contextmanager
    def lock(self, integration: str, flow: str) -> Iterator[None]:
        """Hold the cluster-wide run lock of (integration, flow) for this block, or raise
        LedgerError naming the holder: a session advisory lock on a connection of its own."""
        with contextlib.closing(self._pg.connect(self.url)) as conn:
            with self._guard("lock"):
                scope, key = self._lock_key(conn, integration, flow)
                taken = self._take(conn, scope, key)
                holder = None if taken else self._holder(conn, scope, key)
            if not taken:
                raise RunBusyError(f"another {flow} run for {integration} is in progress ({holder or 'unknown'}); "
                                  f"it holds the run lock in {self.location}")
            yield                   # closing the connection releases the lock

    def busy(self, integration: str, flow: str) -> bool:
        """Whether a run of (integration, flow) holds its lock right now, on any machine."""
        with contextlib.closing(self._pg.connect(self.url)) as conn, self._guard("lock"):
            return self._holder(conn, *self._lock_key(conn, integration, flow)) is not None

    @staticmethod
    def _lock_key(conn, integration: str, flow: str) -> tuple[int, int]:
        """The advisory lock's two keys: this database and schema, this (integration, flow)."""
        return conn.execute("SELECT hashtext(current_database() || '/' || coalesce(current_schema(), '')),"
                            " hashtext(%s)", (f"syncengine run {integration} {flow}",)).fetchone()

    def _take(self, conn, scope: int, key: int) -> bool:
        """Take the lock, waiting up to `LOCK_PATIENCE`: the server needs a moment to notice that
        a killed holder's connection is gone (no longer than that, so a second run stops soon)."""
        conn.execute(f"SET lock_timeout = '{int(LOCK_PATIENCE * 1000)}ms'")
        try:
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (scope, key))
        except self._pg.psycopg.errors.LockNotAvailable:
            return False
        conn.execute("SET lock_timeout = 0")
        return True

    def _holder(self, conn, scope: int, key: int) -> str | None:
        row = conn.execute("SELECT coalesce(a.application_name, '') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                           " WHERE l.locktype = 'advisory' AND l.classid::int = %s AND l.objid::int = %s"
                           " AND l.granted LIMIT 1", (scope, key)).fetchone()
        return row[0] if row else None

    @contextlib.contextmanager
    def _guard(self, operation: str) -> Iterator[None]:
        try:
            yield
        except self._pg.psycopg.Error as exc:
            text = self._pg.mask_url_password(str(exc).strip(), self.url)
            raise LedgerError(f"ledger {operation} failed at {self.location}: {text}") from exc
