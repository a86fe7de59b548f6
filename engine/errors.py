"""The exception tree, and the context manager that attaches context at a boundary.

    SyncEngineError
    ├── SpecError            a spec, integration or config does not lint clean
    ├── ConfigError          a bad command line, a missing ${env:..}/${file:..}, a bad state dir
    ├── TemplateError        a Jinja template failed to render (undefined variable, sandbox)
    ├── ExtractError         a JMESPath expression failed on a record
    ├── HTTPError            anything on the wire
    │   ├── TransportError   connect errors, timeouts, resets (after retries)
    │   │   └── HostDownError  not sent: the host failed too often in a row this run
    │   ├── StatusError      a non-success answer (after retries); carries status and body excerpt
    │   ├── PagingError      a cursor or page repeated, a paging link to a foreign host
    │   └── ForeignHostError a request or redirect off the spec's origin
    └── LedgerError          the ledger could not be read or written

Every error has `context`: a dict such as {"connector": "shop", "operation": "list_orders"}
added by `context()` at the boundary where it is known, and shown in `str(error)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class SyncEngineError(Exception):
    """Base of every error syncengine raises on purpose."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context: dict[str, Any] = dict(context)

    def __str__(self) -> str:
        if not self.context:
            return self.message
        where = ", ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} [{where}]"


class SpecError(SyncEngineError):
    """A spec or integration does not lint clean; `findings` holds the lint findings."""

    def __init__(self, message: str, findings: list | None = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.findings = findings or []


class ConfigError(SyncEngineError):
    """Bad command-line arguments, an unresolvable secret reference, an unusable state dir."""


class TemplateError(SyncEngineError):
    """A Jinja template failed to render."""


class ExtractError(SyncEngineError):
    """A JMESPath expression failed on a record."""


class HTTPError(SyncEngineError):
    """Something went wrong on the wire."""


class TransportError(HTTPError):
    """Connect error, timeout or reset, after the retries ran out. `unsent`: no attempt can
    have reached the server (every one failed to connect or to write the request)."""

    def __init__(self, message: str, unsent: bool = False, **context: Any) -> None:
        super().__init__(message, **context)
        self.unsent = unsent


class HostDownError(TransportError):
    """A request not sent at all: its host's breaker opened in this run (`http/breaker.py`)."""

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message, unsent=True, **context)


class StatusError(HTTPError):
    """A non-success answer after the retries ran out."""

    def __init__(self, message: str, status: int = 0, body: str = "", **context: Any) -> None:
        super().__init__(message, **context)
        self.status = status
        self.body = body


class PagingError(HTTPError):
    """Paging cannot go on safely: a cursor or page repeated, or a bad next link."""


class ForeignHostError(HTTPError):
    """A request, paging link or redirect left the spec's origin (scheme, host, port)."""


class LedgerError(SyncEngineError):
    """The ledger could not be read or written."""


class RunBusyError(LedgerError):
    """Another run of the same (integration, flow) holds its run lock (on this machine's state
    directory, or anywhere in the cluster for a PostgreSQL ledger)."""


class WorkerError(SyncEngineError):
    """A worker process of a split read failed or died."""


@contextlib.contextmanager
def context(**items: Any) -> Iterator[None]:
    """Attach context to any SyncEngineError raised inside; inner context wins on clashes."""
    try:
        yield
    except SyncEngineError as exc:
        for key, value in items.items():
            exc.context.setdefault(key, value)
        raise
