"""The orders flow: cart `list_orders` -> filter -> key -> dedupe -> map -> validate -> rules
-> WMS `create_order` -> ledger. Each order key is delivered exactly once, ever.

The protocol that makes a crash at any instant lose nothing and duplicate nothing:

1. A page's keys are claimed in one transaction (`claim_many`): new orders become `pending`,
   rejected ones `skipped`/`quarantined`/`held` with the reason and their raw record.
2. Before a send, `pending -> sending` with the raw record (compare-and-set, durable); then the
   request goes out. A `pending` entry therefore has no raw record only between its claim and
   its send, in the run that claimed it; if that run stops there, the watermark has not moved
   and the next run releases such entries (`release_unsent`) and claims them again as it re-reads.
3. The answer moves it to `delivered` (+ destination id), or `error` when the WMS certainly did
   not take it (a 4xx, a body that says so). An ambiguous outcome (timeout, 5xx after retries)
   stays `sending`.
4. Every run starts by reconciling `sending` keys through `find_order` (found -> delivered,
   absent -> pending), RECONCILE_BATCH at a time, concurrently within the destination's
   `http.concurrency` and rate limit, and then delivering every `pending` key that has its raw
   record (one a hold window or `retry` released), so nothing claimed is forgotten.
5. A `create_order` with an `idempotency_key` renders it the first time the order is sent and
   keeps it in the ledger (`order_idempotency`); every resend carries that very key.
6. A destination that is down (`http.down_after` failed requests in a row open the client's
   breaker) gets nothing more in this run: orders not yet sent stay `pending` with their raw
   record (an order whose every try failed to connect goes back to `pending` too: it never
   arrived), `sending` keys stay to be reconciled, and the summary says why and how many wait.
The watermark moves only after a read completed; the overlap re-read is absorbed by the claim.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from typing import Any

from engine import records
from engine.errors import ExtractError, HostDownError, HTTPError, SyncEngineError, TemplateError
from engine.flows import fused, rules, workers, writes
from engine.flows.base import Counts, FlowContext
from engine.http import Page, Request
from engine.ledger import Entry
from engine.specs.enrich import Unenriched
from engine.specs.settings import canonical_time, iso, parse_time

log = logging.getLogger("syncengine.orders")
MAX_ATTEMPTS = 10
RECONCILE_BATCH = 200           # `sending` keys looked up at a time (the client bounds what is in flight)
AGAIN = {"enrich": "again"}     # entry data of an order to enrich again before it is re-assessed
IDEMPOTENCY = "order_idempotency"   # ledger namespace: order key -> the idempotency key create_order sent


class OrdersFlow:
    """One run of the orders flow for one integration."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.read = ctx.source.operations["list_orders"]
        self.create = ctx.destination.operations["create_order"]
        self.find = ctx.destination.operations.get("find_order")
        self.counts = Counts()
        self.rules = rules.Rules(ctx.integration)
        self.fast = fused.FastAssess(self.read, self.rules, ctx.now)
        self._watermark: str | None = None
        self._cut = False               # stopped before the read ended: the watermark stays

    async def run(self) -> Counts:
        """Recover what a previous run left, then pull, dedupe and deliver new orders."""
        try:
            return await self._run()
        finally:
            if self._down() and not self.counts.down:
                self.counts.down = f"destination down: {self.ctx.destination_client.breaker.reason}"

    async def _run(self) -> Counts:
        if not self.ctx.dry_run:
            await self.recover()
        if self.ctx.stopped():
            return self.counts
        request = self.read.request.render(self.ctx.context("source", since=self.since()))
        team = None
        if self.ctx.workers > 1 and not self.ctx.dry_run:
            team = (self.ctx.team or workers.Team)(self.ctx.workers, self._share, self._share_limits)
        pages = self.ctx.source_client.pages(request, self.read.paginator(), self.read.extract_records,
                                             split=team.split if team else None)
        self.ctx.meter.start("read")
        try:
            await self._pipeline(pages)
        except Exception:
            for report in await team.join(strict=False) if team else ():
                self.counts.merge(report["counts"])     # this run failed: count what moved
            raise
        for report in await team.join() if team else ():
            self.counts.merge(report["counts"])
            self.counts.waiting += report.get("waiting", 0)
            self.counts.down = self.counts.down or report.get("down")
            self._later(report["watermark"])
        if self._watermark and not self.ctx.dry_run and not self._cut:
            self.ctx.ledger.set_watermark("orders", self._watermark)
        return self.counts

    def since(self) -> str:
        """Where this read starts: the watermark minus the overlap, never before start_date."""
        start = self.ctx.integration.start_date
        mark = self.ctx.ledger.watermark("orders") if self.ctx.ledger else None
        if mark:
            start = max(start, parse_time(mark) - timedelta(seconds=self.ctx.integration.overlap))
        return iso(start)

    async def _pipeline(self, pages: AsyncIterator[Page]) -> None:
        """Pages are fetched ahead (up to two waiting) while the previous ones are delivered.

        A read that fails stops reading, but the pages already fetched are still claimed and
        delivered before the failure is raised: cancelling sends in flight would leave their
        orders `sending`, to be reconciled by the next run, for no reason.
        """
        queue: asyncio.Queue = asyncio.Queue(maxsize=2)
        failed: list[Exception] = []
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._fetch(pages, queue, failed))
                tasks.create_task(self._consume(queue))
        except ExceptionGroup as group:
            raise group.exceptions[0] from None
        if failed:
            raise failed[0]

    async def _fetch(self, pages: AsyncIterator[Page], queue: asyncio.Queue, failed: list[Exception]) -> None:
        """Read pages into `queue`, then None. Cancelled, it puts nothing: the consumer is
        cancelled with it, and a put into a full queue nobody reads would never return."""
        try:
            async with contextlib.aclosing(pages):
                async for page in pages:
                    if self.ctx.stopped():
                        self._cut = True
                        break
                    if self.read.error_when is not None and self.read.error_when(page.answer.body):
                        raise HTTPError(f"list_orders answer says it failed: {self.ctx.redact.excerpt(page.answer.text, 300)}")
                    self.ctx.meter.advance(len(page.records), page.expected)
                    await queue.put(await self.enriched(page.records))
        except Exception as exc:                   # raised by _pipeline once the consumer is done
            failed.append(exc)
        await queue.put(None)

    async def enriched(self, raws: list) -> list:
        """A page's records with their `enrich` sub-requests merged, concurrently within the
        source's `http.concurrency`; a record the ledger already knows is not enriched again
        (its claim will find it taken). One whose sub-request failed comes back `Unenriched`."""
        enricher, ledger = self.read.enricher, self.ctx.ledger
        if not enricher.steps:
            return raws
        known = None if ledger is None else (lambda raw: ledger.get(writes.record_key(self.read, raw)) is not None)
        return await enricher.page(self.ctx.source_client, raws, self.ctx.context("source"),
                                   writes.concurrency(self.ctx.source), skip=known)

    async def _consume(self, queue: asyncio.Queue) -> None:
        while (page := await queue.get()) is not None:
            if self.ctx.stopped():         # a page fetched but not claimed: the next run reads it again
                self._cut = True
                continue
            await self.deliver(self.intake(page))
            await asyncio.sleep(0)   # let the fetcher send the next requests before the next page
                                     # (with nothing to deliver, nothing above gives the loop a turn)

    async def _share(self, requests: list[Request], window: int, fraction: float) -> dict[str, Any]:
        """A forked worker's part of a split read (`workers.Team`): the same pipeline over its
        pages, on its own connections; its counts and watermark go back to the parent."""
        async with self.ctx.reopened(fraction) as ctx:
            return await type(self)(ctx).read_share(requests, window)

    async def read_share(self, requests: list[Request], window: int) -> dict[str, Any]:
        """This flow's pipeline over pages planned by another run (a share of a split read, here
        or on another machine's worker); the report that run merges."""
        try:
            await self._pipeline(self.ctx.source_client.planned_pages(requests, self.read.extract_records, window))
        finally:
            down = self.ctx.destination_client.breaker.reason
        return {"counts": self.counts.as_dict(), "watermark": self._watermark, "waiting": self.counts.waiting,
                "down": f"destination down: {down}" if down else None}

    def _share_limits(self, fraction: float) -> None:
        self.ctx.source_client.share_limits(fraction)
        self.ctx.destination_client.share_limits(fraction)

    # -- intake: from raw records to ledger claims ------------------------------------------

    def intake(self, raws: list) -> list[tuple[str, dict, Any]]:
        """Assess a page of raw records, claim their keys, return the new deliverable orders
        (key, order, raw record)."""
        assessed = self.assess_page(raws)
        self.counts.pulled += len(assessed)
        if self.ctx.dry_run:
            return self._dry_intake(assessed)
        claimed = self.ctx.ledger.claim_many([(key, fields) for key, fields, _, _ in assessed])
        ready = []
        for (key, fields, order, raw), new in zip(assessed, claimed):
            if not new:
                continue
            self.counts.new += 1
            if fields["status"] == "pending":
                ready.append((key, order, raw))
            else:
                self.counts.add(fields["status"])
        return ready

    def _dry_intake(self, assessed: list) -> list[tuple[str, dict, Any]]:
        ledger = self.ctx.ledger
        fresh = [item for item in assessed if ledger is None or ledger.get(item[0]) is None]
        self.counts.new += len(fresh)
        for _, fields, _, _ in fresh:
            if fields["status"] != "pending":
                self.counts.add(fields["status"])
        return [(key, order, None) for key, fields, order, _ in fresh if fields["status"] == "pending"]

    def assess_page(self, raws: list) -> list[tuple[str, dict, dict | None, Any]]:
        """Each record of a page assessed: (key, ledger fields, order or None, raw record kept until
        the send). A pending order's raw record is not in its fields: the claim does not store
        it (the send does, with pending -> sending)."""
        if not self.fast.usable:
            return [self._kept(*self._assess_slowly(raw), raw) for raw in raws]
        assessed, marks = self.fast.page(raws, lambda raw: self._kept(*self._assess_slowly(raw), raw))
        if marks:
            self._later(_latest(marks))
        return assessed

    @staticmethod
    def _kept(key: str, fields: dict, order: dict | None, raw: Any) -> tuple[str, dict, dict | None, Any]:
        if fields["status"] != "pending":
            return key, fields, order, None
        fields.pop("raw", None)
        return key, fields, order, raw

    def _assess_slowly(self, raw: Any) -> tuple[str, dict, dict | None]:
        """(key, ledger fields, order or None) of one raw record, step by step: the key, the
        watermark, then `judge` (what the fast path leaves, or every record without one)."""
        unenriched = raw if isinstance(raw, Unenriched) else None
        if unenriched is not None:
            raw = unenriched.raw
        key = writes.record_key(self.read, raw)
        mark = self._track_watermark(raw)
        if unenriched is not None:          # kept as read: `retry` enriches it again
            fields, order = _fields("quarantined", self.ctx.redact(unenriched.reason), raw=raw, data=dict(AGAIN)), None
        else:
            fields, order = self.judge(key, raw)
        if mark:
            fields["data"]["updated"] = mark
        return key, fields, order

    def judge(self, key: str, raw: Any, *, released: bool = False) -> tuple[dict, dict | None]:
        """Filter, map, validate and apply the integration's rules to one raw record
        (`released`: an operator released it from its hold, `syncengine release`)."""
        if self.read.filter is not None and not self.read.filter(raw):
            return _fields("skipped", f"spec filter '{self.read.filter_source}'"), None
        cut = self.read.enricher.truncated(raw)
        if cut:
            return _fields("quarantined", cut, raw=raw, data=dict(AGAIN)), None
        try:
            order = self.read.map(raw) if self.read.map else dict(raw)
        except ExtractError as exc:
            return _fields("quarantined", f"mapping failed: {exc.message}", raw=raw), None
        order["key"] = key
        problems = records.validate("order", order)
        if problems:
            return _fields("quarantined", "invalid order: " + "; ".join(problems[:5]), raw=raw), None
        verdict = self.rules(order, self.ctx.now, released=released, owned=True)
        fields = _fields(verdict.status, verdict.reason, raw=raw,
                         data={"order_id": order["order_id"], "order_number": order["order_number"]})
        if verdict.hold_until:
            fields["data"]["hold_until"] = verdict.hold_until
        return fields, verdict.order

    def _track_watermark(self, raw: Any) -> str | None:
        if self.read.watermark is None:
            return None
        try:
            mark = self.read.watermark(raw)
        except ExtractError:
            return None
        if mark:
            self._later(str(mark))
        return str(mark) if mark else None

    def _later(self, mark: str | None) -> None:
        if mark and (self._watermark is None or writes.later(mark, self._watermark)):
            self._watermark = mark

    # -- delivery -------------------------------------------------------------------------

    async def deliver(self, ready: list[tuple[str, dict, Any]]) -> None:
        """Send a batch of pending orders (key, order, raw record or None when the ledger has it)
        concurrently; record each outcome."""
        if not ready:
            return
        if self.ctx.dry_run:
            for _, order, _ in ready:
                self._show(order)
            return
        ledger = self.ctx.ledger
        if self._down():
            return self._leave(ready)
        with ledger.batch():
            mine = [(key, order) for key, order, raw in ready
                    if ledger.transition(key, "pending", "sending", **({} if raw is None else {"raw": raw}))]
        outcomes = await asyncio.gather(*(self.send(order, key) for key, order in mine))
        with ledger.batch():
            for (key, order), (status, fields) in zip(mine, outcomes):
                if status == "delivered":
                    fields = self._index(key, order, fields)
                if status == "pending":                # never reached the WMS: sent by a later run
                    ledger.transition(key, "sending", "pending", **fields)
                    self.counts.waiting += 1
                    continue
                if status != "sending":
                    ledger.set_status(key, status, **fields)
                self.counts.add({"delivered": "delivered", "error": "failed", "sending": "failed"}[status])

    def _leave(self, ready: list[tuple[str, dict, Any]]) -> None:
        """The destination is down: keep these orders `pending`, with their raw record (the
        next run sends them from the ledger: the watermark moves past them)."""
        with self.ctx.ledger.batch():
            for key, _, raw in ready:
                if raw is not None:
                    self.ctx.ledger.transition(key, "pending", "pending", raw=raw)
        self.counts.waiting += len(ready)

    def _down(self) -> bool:
        """Is the destination down for the rest of this run (its client's breaker open)?"""
        return self.ctx.destination_client.breaker.open

    def _index(self, key: str, order: dict, fields: dict) -> dict:
        """Index a delivered order by number and id, and keep what the later flows need of it.

        Shipments match by `order_number` or create_order's `reference` (or key), cancellations by `order_id` (or key); the
        lines as the WMS got them (SKU map and kits applied) let shipments tell a partial shipment
        from a complete one without asking the cart again.
        """
        self.ctx.ledger.kv_set("order_number", str(order["order_number"]), key)
        if self.create.reference is not None:       # the reference the destination keeps it under
            reference = self.create.reference.render(self.ctx.context("destination", order=order))
            self.ctx.ledger.kv_set("order_number", str(reference), key)
        self.ctx.ledger.kv_set("order_id", str(order["order_id"]), key)
        kept = {"order_id": order["order_id"], "order_number": order["order_number"],
                "lines": [[line["sku"], line["quantity"]] for line in order["lines"]],
                "delivered_at": iso(self.ctx.now())}          # the console's timeline
        if any(line.get("line_id") for line in order["lines"]):    # writes back may name the cart's line
            kept["line_ids"] = [line.get("line_id") for line in order["lines"]]
        return {**fields, "data": {**(fields.get("data") or {}), **kept}}

    def _show(self, order: dict) -> None:
        try:
            context = {**self.ctx.context("destination", order=order), "idempotency_key": "<idempotency_key>"}
            self.ctx.show(self.create, self.create.request.render(context))
        except TemplateError as exc:
            self.ctx.emit(self.ctx.redact(f"[dry-run] {self.ctx.integration.name}: cannot render create_order: {exc}"))

    async def send(self, order: dict, key: str | None = None) -> tuple[str, dict]:
        """Send one order; ('delivered'|'error'|'sending'|'pending', fields). Never raises for
        one order. 'pending': it certainly never reached the WMS (refused connections, or the
        WMS is down for this run), so it is sent again as a new order.

        A duplicate refusal (`already_exists`) counts as delivered only when `find_order` finds
        a record its `match` says is this very order: the same reference from another cart, or
        an older order, is an error with the reason, never silently "delivered"."""
        context = self.ctx.context("destination", order=order)
        try:
            context = self._idempotency(context, key)
        except TemplateError as exc:
            return "error", {"last_error": self.ctx.redact(f"create_order idempotency_key: {exc.message}")}
        try:
            outcome = await writes.send(self.ctx, "destination", self.create, context)
        except HostDownError as exc:
            return "pending", {"last_error": self.ctx.redact(str(exc))}
        if outcome.status == "unknown" and outcome.unsent:
            return "pending", {"last_error": outcome.error}
        if not outcome.ok:
            return ("error" if outcome.status == "error" else "sending"), {"last_error": outcome.error}
        if not outcome.existed:
            return "delivered", {"destination_id": outcome.id}
        try:
            found = await self.lookup(order)
        except SyncEngineError as exc:
            return "sending", {"last_error": self.ctx.redact(f"the WMS says it already holds this order; "
                                                             f"checking that failed: {exc}")}
        if found is None:
            return "error", {"last_error": "the WMS refused it as a duplicate, but find_order finds no record that "
                                           "matches this order (another order, maybe another cart's, holds its "
                                           f"reference {order.get('order_number')!r})"}
        return "delivered", {"destination_id": found, "data": {"already_existed": True}}

    def _idempotency(self, context: dict, key: str | None) -> dict:
        """`create_order`'s `idempotency_key`, rendered the first time the order is sent and kept
        in the ledger (add-if-absent), so every resend carries the very same key."""
        template = self.create.steps[0].idempotency_key
        if template is None or key is None:
            return context
        self.ctx.ledger.kv_add(IDEMPOTENCY, key, template.render(context))
        return {**context, "idempotency_key": self.ctx.ledger.kv_get(IDEMPOTENCY, key)}

    # -- recovery -------------------------------------------------------------------------

    async def lookup(self, order: dict) -> str | None:
        """The destination id of this order at the WMS, or None when no record `find_order`
        returns is this order (its `match` sees {record, order, config})."""
        if self.find is None:
            raise HTTPError("the destination has no find_order operation to reconcile with")
        context = self.ctx.context("destination", order=order)
        answer = await self.ctx.destination_client.send(self.find.request.render(context), accept=(404,))
        found = self.find.extract_records(answer.body) if answer.status != 404 else []
        match = self.find.match
        mine = next((record for record in found if match is None or match({**context, "record": record})), None)
        if mine is None:
            return None
        return writes.text(self.find.id(mine) if self.find.id else mine) or "unknown"

    async def recover(self) -> None:
        """Release what a stopped run claimed but never sent, reconcile `sending` keys, release
        passed hold windows, deliver leftover `pending` keys."""
        ledger = self.ctx.ledger
        unsent = ledger.release_unsent()
        if unsent:
            log.info("%s: %d order(s) claimed by a run that stopped before sending them are "
                     "claimed again as this run re-reads them", self.ctx.integration.name, unsent)
        meter = self.ctx.meter
        meter.start("reconcile", ledger.counts().get("sending", 0))
        for batch in _chunks(ledger.iter_status("sending"), RECONCILE_BATCH):
            if self.ctx.stopped() or self._down():
                break                  # what is left stays `sending`, reconciled by a later run
            await asyncio.gather(*(self._reconcile(entry) for entry in batch))
            meter.advance(len(batch))
        if self.ctx.stopped():
            return
        self.release(ledger.iter_status("held"), only_hold_window=True)
        meter.start("send pending", ledger.counts().get("pending", 0))
        for batch in _chunks(ledger.iter_status("pending"), 200):
            if self.ctx.stopped():
                return
            if self._down():                       # not even re-assessed: a later run does that
                self.counts.waiting += len(batch)
                continue
            await self.deliver(self._remap(batch))
            meter.advance(len(batch))

    async def _reconcile(self, entry: Entry) -> None:
        """Settle one `sending` key: found at the WMS -> delivered, certainly not -> pending
        (given up after MAX_ATTEMPTS sends); a failed lookup leaves it for a later run."""
        order = self._order_of(entry)
        try:
            found = await self.lookup(order) if order else None
        except (SyncEngineError, KeyError) as exc:
            if not isinstance(exc, HostDownError):
                log.warning("%s: cannot reconcile %s yet: %s", self.ctx.integration.name, entry.key,
                            self.ctx.redact(str(exc)))
            return
        if found:
            moved = self.ctx.ledger.transition(entry.key, "sending", "delivered",
                                               **self._index(entry.key, order, {"destination_id": found}))
        elif entry.attempts >= MAX_ATTEMPTS:
            moved = self.ctx.ledger.transition(entry.key, "sending", "error",
                                               last_error=f"gave up after {entry.attempts} attempts")
        else:
            moved = self.ctx.ledger.transition(entry.key, "sending", "pending")
        self.counts.reconciled += moved

    async def reenrich(self, entries: Iterable[Entry]) -> list[Entry]:
        """The entries, those quarantined before their enrichment was complete enriched again
        first (`retry`); one that still fails keeps its quarantine with the new reason."""
        entries = list(entries)
        again = [entry for entry in entries if entry.data.get("enrich") and entry.raw is not None]
        done = await self.read.enricher.page(self.ctx.source_client, [entry.raw for entry in again],
                                             self.ctx.context("source"), writes.concurrency(self.ctx.source))
        redone = {}
        for entry, raw in zip(again, done):
            if isinstance(raw, Unenriched):
                self.ctx.ledger.transition(entry.key, entry.status, entry.status, reason=self.ctx.redact(raw.reason))
                continue
            self.ctx.ledger.transition(entry.key, entry.status, entry.status, raw=raw, data={"enrich": None})
            redone[entry.key] = dataclasses.replace(entry, raw=raw, data={**entry.data, "enrich": None})
        return [redone.get(entry.key, entry) for entry in entries
                if entry.key in redone or not (entry.data.get("enrich") and entry.raw is not None)]

    def release(self, entries: Iterable[Entry], *, only_hold_window: bool = False) -> int:
        """Re-assess held/errored/quarantined entries from their raw record; pending when they pass."""
        now = iso(self.ctx.now())
        released = 0
        for entry in list(entries):
            until = entry.data.get("hold_until")
            if only_hold_window and (not until or until > now):
                continue
            fields, order = (self.judge(entry.key, entry.raw, released=_released(entry))
                             if entry.raw is not None else (None, None))
            if fields is None:
                continue
            status = fields.pop("status")
            if self.ctx.ledger.transition(entry.key, entry.status, status, **fields):
                released += status == "pending"
        return released

    def _remap(self, entries: list[Entry]) -> list[tuple[str, dict, None]]:
        ready = []
        for entry in entries:
            if entry.raw is None:
                continue
            fields, order = self.judge(entry.key, entry.raw, released=_released(entry))
            status = fields.pop("status")
            if status == "pending":
                ready.append((entry.key, order, None))
            else:
                self.ctx.ledger.transition(entry.key, "pending", status, **fields)
        return ready

    def _order_of(self, entry: Entry) -> dict | None:
        """The order as it was sent, re-mapped from the raw record (None when it no longer maps)."""
        if entry.raw is None:
            return None
        return self.judge(entry.key, entry.raw, released=_released(entry))[1]


def _released(entry: Entry) -> bool:
    """An operator released this order from its hold (`engine.control.mark_released`)."""
    return bool(entry.data.get("released"))


def _latest(marks: list[str]) -> str:
    """The latest of a page's watermarks: by their text when each is a canonical timestamp
    (those order as text), else by `writes.later`, one after the other."""
    if all(map(canonical_time, marks)):
        return max(marks)
    best = marks[0]
    for mark in marks[1:]:
        if writes.later(mark, best):
            best = mark
    return best


def _fields(status: str, reason: str | None = None, *, raw: Any = None, data: dict | None = None) -> dict:
    fields: dict[str, Any] = {"status": status, "data": data or {}}
    if reason:
        fields["reason"] = reason
    if raw is not None:
        fields["raw"] = raw
    return fields


def _chunks(items: Iterable, size: int) -> Iterable[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
