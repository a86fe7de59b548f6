"""The command's log lines: dated (ISO-8601, UTC), as text or one JSON object per line, with the
integration and flow they concern, and every secret masked.

    2026-12-03T13:43:06.120Z WARNING syncengine.orders: sync-shop: cannot reconcile 1001 yet: ...
    {"time": "2026-12-03T13:43:06.120Z", "level": "WARNING", "logger": "syncengine.orders",
     "message": "sync-shop: cannot reconcile 1001 yet: ...", "integration": "sync-shop", "flow": "orders"}

The runner says which integration and flow a task works for (`working_on`); a context variable
carries it to every record logged in that task (the HTTP layer's included), so nothing that
logs needs to pass it along. `mask_record` masks each record's message before any handler
formats it, and the JSON formatter masks every value once more after: a secret in an
exception's text or a field is masked too, in every spelling (`engine.http.everywhere`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TextIO

from engine.http import everywhere

FORMATS = ("text", "json")
_where: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "syncengine_where", default=(None, None))


@contextlib.contextmanager
def working_on(integration: str, flow: str | None = None) -> Iterator[None]:
    """Records logged inside the block (in this task) name `integration` and `flow`."""
    token = _where.set((integration, flow))
    try:
        yield
    finally:
        _where.reset(token)


def mask_record(record: logging.LogRecord) -> bool:
    """A logging filter: the record's message with every remembered secret masked, and the
    integration and flow it concerns attached (`record.integration`, `record.flow`)."""
    record.msg, record.args = everywhere().mask(record.getMessage()), None
    if not hasattr(record, "integration"):
        record.integration, record.flow = _where.get()
    return True


def utc(record: logging.LogRecord) -> str:
    """`2026-12-03T13:43:06.120Z`: when the record was made, in UTC."""
    moment = datetime.fromtimestamp(record.created, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`<ISO-8601 UTC> LEVEL logger: message`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return utc(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, integration and flow when
    known, exception when there is one, counts for a run's summary; every value masked."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"time": utc(record), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        for name in ("integration", "flow"):
            if getattr(record, name, None):
                line[name] = getattr(record, name)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        mask = everywhere().mask
        line = {key: mask(str(value)) for key, value in line.items()}
        if isinstance(getattr(record, "counts", None), dict):        # a run's summary (`syncengine.run`)
            line["counts"] = {mask(str(key)): value for key, value in record.counts.items() if isinstance(value, int)}
        return json.dumps(line, ensure_ascii=False)


def configure(verbosity: int, stream: TextIO, form: str = "text") -> logging.Handler:
    """Log the engine's records to `stream`: warnings and errors, with -v (1) INFO too (why
    paging stopped, retries), with -vv DEBUG. Returns the handler (`unconfigure` removes it)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    handler.addFilter(mask_record)
    logger = logging.getLogger("syncengine")
    logger.handlers[:] = [handler]
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
    return handler


def unconfigure(handler: logging.Handler) -> None:
    """Remove `handler` (a command ended: its stream may be gone, as in tests)."""
    logger = logging.getLogger("syncengine")
    if handler in logger.handlers:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
