"""The ledger's vocabulary: statuses, the `Entry` record, the `Ledger` interface, and how an
entry's document is merged, encoded and decoded (compact JSON through orjson). The semantics
are in the package docstring (`engine/ledger/__init__.py`)."""

from __future__ import annotations

import contextlib
import json as jsonlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

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
FORMAT_VERSION = 3                # 3: an entry is a row of its own table; 2: ``o:``/``r:`` Cache rows
RUNS_KEPT = 50                    # flow runs kept per integration x flow (`record_run`)


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
    def release_unsent(self) -> int: ...
    def record_run(self, run: Mapping[str, Any]) -> None: ...
    def runs(self, flow: str | None = None, n: int = RUNS_KEPT) -> list[dict[str, Any]]: ...
    def last_runs(self) -> dict[str, dict[str, Any]]: ...
    def reopen(self) -> Ledger: ...
    def close(self) -> None: ...
    def __enter__(self) -> Ledger: ...
    def __exit__(self, *exc: object) -> None: ...


def _text(key: str) -> str:
    if type(key) is not str and not isinstance(key, str):
        raise LedgerError("order keys must be text", key=repr(key))
    return key


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


def _make(key: str, status: str, updated: float, doc_text: str, raw: Any) -> Entry:
    """The Entry of a stored document; unknown (newer) document fields are ignored."""
    doc = _loads(doc_text, key)
    try:
        return Entry(key, status, doc.get("destination_id"), doc.get("attempts", 0),
                     doc.get("last_error"), doc.get("reason"), raw,
                     doc.get("data", {}), doc["created"], updated)
    except (KeyError, TypeError, AttributeError) as exc:
        raise LedgerError(f"unreadable ledger entry: {exc!r}", key=key) from exc


_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _dumps(value: Any, key: str) -> str:
    """Compact JSON text; text, not orjson's bytes, so that diskcache stores readable TEXT.
    orjson writes at most 254 levels of nesting, while an answer may nest up to 1,024
    (`http.models.MAX_DEPTH`): a deeper record is written by std json (up to the interpreter's
    recursion limit, ~1,000 levels less the caller's frames)."""
    try:
        return orjson.dumps(value, option=_ORJSON).decode()
    except TypeError as exc:
        if "Recursion limit" not in str(exc):
            raise LedgerError(f"value is not JSON-serialisable: {exc}", key=key) from exc
        try:
            return jsonlib.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as again:
            raise LedgerError(f"value is not JSON-serialisable: {exc} ({again})", key=key) from again


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


def _clean(mask: Callable[[str], str] | None, text: str, value: Any, key: str) -> str:
    """`text` (the JSON of `value`; None: parse `text`), or when it holds a secret, the value
    re-dumped with every string in it masked (masking JSON text could break its syntax)."""
    if mask is None or mask(text) == text:
        return text
    value = _loads(text, key) if value is None else value
    return _dumps(_mask_strings(value, mask), key)


def _holds(mask: Callable[[str], str] | None) -> Callable[[str], bool]:
    """The test "would `mask` change this text": a redactor's own exact `holds` (a cheap scan
    for plain needles before its regex) when `mask` is a redactor or its bound `mask`, else
    masking and comparing (any other callable). None masks nothing."""
    if mask is None:
        return lambda text: False
    owner = getattr(mask, "__self__", mask)
    holds = getattr(owner, "holds", None)
    if holds is not None and (owner is mask or getattr(owner, "mask", None) == mask):
        return holds
    return lambda text: mask(text) != text


def _mask_strings(value: Any, mask: Callable[[str], str]) -> Any:
    """`value` with `mask` applied to every string in it (keys included)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {mask(str(k)): _mask_strings(v, mask) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_strings(v, mask) for v in value]
    return value


def _new_row(key: str, fields: Mapping[str, Any], now: float) -> tuple[str, str, float, str, str | None]:
    """The ``Entries`` row of a new claim: (key, status, updated, document, raw record).

    `_merge` into a fresh document, spelled out (a claim per order is a hot path): an order's
    usual fields (status, data) without a loop, any other in one."""
    status = fields.get("status", "pending")
    if status not in _STATUSES:
        _check_status(status)
    doc: dict[str, Any] = {"v": FORMAT_VERSION, "created": now}
    if status == "sending":
        doc["attempts"] = 1
    data = fields.get("data")
    if data:
        doc["data"] = data
    raw_text = None
    if not _USUAL.issuperset(fields):
        for name, value in fields.items():
            if name == "raw":
                if value is not None and status in KEEPS_RAW:
                    raw_text = _dumps(value, key)
            elif name in FIELDS:
                if value is not None and name != "data":
                    doc[name] = value
            elif name != "status":
                _merge(doc, status, {name: value}, key)     # raises: unknown field
    if type(key) is not str:
        _text(key)
    return key, status, now, _dumps(doc, key), raw_text


_STATUSES = frozenset(STATUSES)
_USUAL = frozenset({"status", "data"})       # a claim's fields that need no loop
