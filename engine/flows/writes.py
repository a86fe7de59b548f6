"""What the shipments, inventory and cancellations flows share: reading a stream of canonical
records since a watermark, and sending one write operation (precondition, request, verdict).

A write ends in one of three outcomes, the same three the orders flow uses:

- `ok`: the other side took it (a 2xx that `error_when` does not reject, or `already_exists`);
- `error`: it certainly did not (a template that cannot render, a 4xx, a precondition that
  failed, a 2xx body that says so): safe to send again;
- `unknown`: it may or may not have (a timeout, a 5xx after every retry): sending again may
  duplicate it. `unsent` marks one that certainly never reached the other side (every try
  failed to connect), which a flow may treat as not sent.

A request to a host that is down for this run (`http/breaker.py`) is not sent at all: its
HostDownError goes up to the flow, which stops writing to that host and leaves the rest for the
next run (for the journaled flows, exactly as if the run had stopped there).
"""

from __future__ import annotations

import contextlib

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

from engine import http, records
from engine.errors import ExtractError, HostDownError, HTTPError, StatusError, TemplateError, TransportError
from engine.flows.base import FlowContext
from engine.ledger import Entry
from engine.specs.enrich import Unenriched
from engine.specs.model import Operation, Step
from engine.specs.settings import iso, parse_time, time_before

DEFINITE_4XX_EXCEPT = (408, 425, 429)


class Tally:
    """Counts of one flow run (subclasses are dataclasses of int fields); `summary()` is its line."""

    failed: int
    quarantined: int

    def add(self, name: str, n: int = 1) -> None:
        setattr(self, name, getattr(self, name) + n)

    def summary(self) -> str:
        return ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one write ended: `ok`, `error` or `unknown`, the remote id, what went wrong."""

    status: str
    id: str | None = None
    error: str | None = None
    existed: bool = False        # the answer said "already there" (`already_exists`)
    captures: Mapping[str, Any] | None = None    # a step's `capture` of its answer
    unsent: bool = False         # `unknown`, but no try can have reached the other side

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Judged:
    """One raw record read: its key, and the canonical record or why there is none."""

    key: str
    record: dict | None = None
    skipped: str | None = None          # the spec filter rejected it
    problem: str | None = None          # mapping or validation failed (quarantine)
    raw: Any = None


@dataclass
class Reader:
    """Reads one `list_*` operation since its stream's watermark; moves the watermark after."""

    ctx: FlowContext
    side: str
    operation: Operation
    stream: str
    _mark: str | None = field(default=None, init=False)
    _hold: str | None = field(default=None, init=False)     # a record not enriched: resume there
    cut: bool = field(default=False, init=False)            # the run was stopped before the read ended

    def since(self) -> str:
        """The watermark minus the overlap, never before the integration's start_date."""
        start = self.ctx.integration.start_date
        mark = self.ctx.ledger.watermark(self.stream) if self.ctx.ledger else None
        if mark:
            start = max(start, parse_time(mark) - timedelta(seconds=self.ctx.integration.overlap))
        return iso(start)

    async def pages(self) -> AsyncIterator[list[Judged]]:
        """Every page of the read, each record keyed, filtered, mapped and validated."""
        op = self.operation
        client = self.ctx.source_client if self.side == "source" else self.ctx.destination_client
        request = op.request.render(self.ctx.context(self.side, since=self.since()))
        connector = self.ctx.source if self.side == "source" else self.ctx.destination
        self.ctx.meter.start("read")
        async with contextlib.aclosing(client.pages(request, op.paginator(), op.extract_records)) as pages:
            async for page in pages:
                if self.ctx.stopped():
                    self.cut = True
                    return
                self.ctx.meter.advance(len(page.records), page.expected)
                raws = await op.enricher.page(client, page.records, self.ctx.context(self.side), concurrency(connector))
                yield [self.judge(raw) for raw in raws]

    def judge(self, raw: Any) -> Judged:
        """Key, filter, map and validate one raw record (see `_unenriched` for one not enriched)."""
        op = self.operation
        if isinstance(raw, Unenriched) or (isinstance(raw, Mapping) and UNENRICHED in raw):
            return self._unenriched(raw)
        key = record_key(op, raw)
        self._track(raw)
        if op.filter is not None and not op.filter(raw):
            return Judged(key, skipped=f"spec filter '{op.filter_source}'")
        if cut := op.enricher.truncated(raw):
            return Judged(key, problem=cut, raw=raw)
        try:
            record = op.map(raw) if op.map else dict(raw)
        except ExtractError as exc:
            return Judged(key, problem=f"mapping failed: {exc.message}", raw=raw)
        record["key"] = key
        problems = records.validate(op.record_type, record) if op.record_type else []
        if problems:
            return Judged(key, problem=f"invalid {op.record_type}: " + "; ".join(problems[:5]), raw=raw)
        return Judged(key, record=record, raw=raw)

    def _unenriched(self, raw: Any) -> Judged:
        """A record whose `enrich` sub-request failed holds the watermark at itself, so the next
        run reads (and enriches) it again; it is parked as a marker that a later re-check of
        the parked records skips, since the read brings the record itself back."""
        if isinstance(raw, Unenriched):
            key = record_key(self.operation, raw.raw)
            self._track(raw.raw)
            self._hold_at(raw.raw)
            return Judged(key, problem=self.ctx.redact(raw.reason), raw={UNENRICHED: raw.raw})
        return Judged(record_key(self.operation, raw[UNENRICHED]),
                      skipped="its enrichment failed; the read brings it back to enrich it again")

    def _hold_at(self, raw: Any) -> None:
        try:
            mark = self.operation.watermark(raw) if self.operation.watermark is not None else None
        except ExtractError:
            mark = None
        if mark and (self._hold is None or later(self._hold, str(mark))):
            self._hold = str(mark)

    def commit(self) -> None:
        """Move the stream's watermark to the latest record read (never in a dry run), or no
        further than a record that could not be enriched."""
        if self.cut:
            return                     # the pages not read may hold records older than the last one read
        mark = self._mark
        if mark and self._hold and later(mark, self._hold):
            mark = self._hold
        if mark and self.ctx.ledger is not None and not self.ctx.dry_run:
            self.ctx.ledger.set_watermark(self.stream, mark)

    def _track(self, raw: Any) -> None:
        if self.operation.watermark is None:
            return
        try:
            mark = self.operation.watermark(raw)
        except ExtractError:
            return
        if mark and (self._mark is None or later(str(mark), self._mark)):
            self._mark = str(mark)


def client_of(ctx: FlowContext, side: str) -> http.HttpClient:
    return ctx.source_client if side == "source" else ctx.destination_client


async def send(ctx: FlowContext, side: str, operation: Operation, context: Mapping[str, Any]) -> Outcome:
    """Send a one-step write without a journal (the orders flow keeps its own). Never raises."""
    return await send_step(ctx, side, operation.name, operation.steps[0], context)


async def send_step(ctx: FlowContext, side: str, operation: str, step: Step,
                    context: Mapping[str, Any]) -> Outcome:
    """Send one step (its precondition first; `skip_when` may say it is done already)."""
    client = client_of(ctx, side)
    try:
        pre = await precondition(ctx, client, operation, step, context)
        if step.skip_when is not None and step.skip_when({**context, "pre": pre}):
            return Outcome("ok", existed=True)
        request = step.request.render({**context, "pre": pre})
        statuses = step.already_exists.statuses if step.already_exists else ()
        answer = await client.send(request, accept=statuses, replay_safe=step.resolution == "idempotent")
    except TemplateError as exc:
        return Outcome("error", error=f"{operation} request: {exc.message}")
    except StatusError as exc:
        definite = 400 <= exc.status < 500 and exc.status not in DEFINITE_4XX_EXCEPT
        return Outcome("error" if definite else "unknown", error=ctx.redact(str(exc)))
    except PreconditionFailed as exc:
        return Outcome("error", error=ctx.redact(str(exc)))
    except HostDownError:
        raise
    except HTTPError as exc:
        unsent = isinstance(exc, TransportError) and exc.unsent
        return Outcome("unknown", error=ctx.redact(str(exc)), unsent=unsent)
    return verdict(ctx, operation, step, answer)


def verdict(ctx: FlowContext, operation: str, step: Step, answer: http.Answer) -> Outcome:
    """What a step's answer means: ok (with the remote id and captures) or a definite error."""
    exists = step.already_exists
    if exists is not None and exists.matches(answer.status, answer.body):
        return Outcome("ok", id=text(_safe(exists.id, answer.body)), existed=True)
    if step.error_when is not None and step.error_when(answer.body):
        return Outcome("error", error=f"{operation} answer says it failed: {ctx.redact.excerpt(answer.text, 300)}")
    if not answer.ok:
        return Outcome("error", error=f"{operation} answered {answer.status}: {ctx.redact.excerpt(answer.text, 300)}")
    captures = {name: _safe_take(capture, answer) for name, capture in step.answer_captures.items()}
    return Outcome("ok", id=text(_safe(step.id, answer.body)), captures=captures)


class PreconditionFailed(HTTPError):
    """The read before a write failed: the write was never sent."""


async def precondition(ctx: FlowContext, client: http.HttpClient, operation: str, step: Step,
                       context: Mapping[str, Any]) -> dict[str, Any]:
    """Send the step's precondition read and return its captures (`pre`)."""
    if step.precondition is None:
        return {}
    request = step.precondition.render(context)
    try:
        answer = await client.send(request)
    except StatusError as exc:
        if 400 <= exc.status < 500 and exc.status not in DEFINITE_4XX_EXCEPT:
            raise PreconditionFailed(f"{operation} precondition: {exc}") from None
        raise
    try:
        return {name: capture.take(answer) for name, capture in step.captures.items()}
    except ExtractError as exc:
        raise PreconditionFailed(f"{operation} precondition capture: {exc.message}") from None


def show(ctx: FlowContext, operation: Operation, context: Mapping[str, Any]) -> None:
    """Print, redacted, the writes a dry run would send (captures shown as placeholders)."""
    steps = {step.name: {"id": f"<steps.{step.name}.id>", **{name: f"<steps.{step.name}.{name}>"
                                                               for name in step.answer_captures}}
             for step in operation.steps}
    context = {**context, "steps": steps, "idempotency_key": "<idempotency_key>"}
    try:
        for step in operation.steps:
            pre = {name: f"<pre.{name}>" for name in step.captures}
            if step.precondition is not None:
                ctx.show(operation, step.precondition.render(context))
            ctx.show(operation, step.request.render({**context, "pre": pre}))
    except TemplateError as exc:
        ctx.emit(ctx.redact(f"[dry-run] {ctx.integration.name}: cannot render {operation.name}: {exc}"))


def order_context(entry: Entry) -> dict[str, Any]:
    """The order as delivered, for templates: key, ids, number, lines (WMS SKUs, and each line's
    cart `line_id` when the cart's mapping gave one, else null)."""
    data = entry.data
    lines, ids = data.get("lines") or (), data.get("line_ids") or ()
    return {"key": entry.key, "order_id": data.get("order_id", entry.key), "order_number": data.get("order_number"),
            "destination_id": entry.destination_id,
            "lines": [{"sku": sku, "quantity": qty, "line_id": ids[i] if i < len(ids) else None}
                      for i, (sku, qty) in enumerate(lines)]}


UNENRICHED = "$unenriched"          # a parked record kept as read, its enrichment failed


def concurrency(connector: Any) -> int:
    """The connector's `http.concurrency` (records enriched at once stay within it)."""
    return int((connector.data.get("http") or {}).get("concurrency", 4))


def record_key(op: Operation, raw: Any) -> str:
    """The ledger key of a raw record; a record with no key gets one from a hash of its content."""
    try:
        key = op.key(raw) if op.key else None
    except ExtractError:
        key = None
    if key is None or key == "":
        digest = hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()[:16]
        return f"unkeyed:{digest}"
    return str(key)


def _safe_take(capture: Any, answer: http.Answer) -> Any:
    try:
        return capture.take(answer)
    except ExtractError:
        return None


def _safe(path: Any, body: Any) -> Any:
    try:
        return path(body) if path is not None else None
    except ExtractError:
        return None


def later(a: str, b: str) -> bool:
    """Is timestamp `a` after `b`? (Text comparison for values that are not timestamps.)"""
    try:
        return time_before(b, a)
    except ValueError:
        return a > b


def text(value: Any) -> str | None:
    return None if value is None else str(value)
