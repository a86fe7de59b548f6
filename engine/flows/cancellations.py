"""The cancellations flow: cart `list_cancellations` since the watermark -> canonical
cancellation -> the order's ledger entry decides what happens:

| the order is                          | then                                                    |
|---------------------------------------|---------------------------------------------------------|
| unknown (never pulled)                | claimed as `canceled`: the orders flow never sends it  |
| `pending`, `held`, `error`, `quarantined` | `canceled`: never sent                              |
| `sending` (outcome not known yet)     | parked; re-checked next run, after the orders flow reconciled it |
| `delivered`                           | the WMS's `cancel_order` (its precondition, e.g. an ETag read, first) -> `canceled` |
| `shipped`, `confirmed`                | `cancel_too_late`, with the reason shown in `syncengine status` |
| `skipped`, `canceled`, `cancel_too_late` | nothing (not ours, or done already)                  |

The order is found by the cancellation's key (the cart order key), then through the `order_id`
index the orders flow writes at delivery. A WMS cancel that fails (refused, or no answer) leaves
the order `delivered` with the error as its last error, and the cancellation is parked and tried
again by later runs, up to MAX_ATTEMPTS; a refusal with a precondition is retried once at once
with a fresh read (a stale ETag). Each cancel goes through the write protocol
(`flows/protocol.py`), journaled per order: one whose answer was lost (a 5xx, a timeout, a
crash) is resolved at once through what `cancel_order` declares (`skip_when` over a re-read of
the order, `verify`, or its idempotency) and resent only when certainly not done; while it
cannot be resolved it stays parked, counted `unresolved` (the run exits 1), never given up.

`WmsCancellationsFlow` is the other direction (flow `wms_cancellations`): orders the warehouse
canceled (out of stock, a call to the merchant) are canceled in the cart through its
`cancel_order`. The WMS's `list_cancellations` maps each to the cart's `order_id` (which the
orders flow indexed at delivery); only a `delivered` order is canceled in the cart, then
`canceled`. Anything else is left alone: an order the integration did not deliver is not its to
cancel, one still `sending` is parked until reconciled, and one already `canceled` (by the cart,
which is how the WMS came to cancel it) needs nothing, so the two directions never loop. A cart
that refuses is asked again by later runs (a refusal can pass); the order becomes `canceled`
anyway once the cart refused MAX_ATTEMPTS times, with its last answer as the last error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from engine.flows.base import FlowContext
from engine.flows import protocol
from engine.flows.writes import Judged, Outcome, Reader, Tally, order_context, show
from engine.ledger import Entry

log = logging.getLogger("syncengine.cancellations")
MAX_ATTEMPTS = 10
PARKED = "cancellations_parked"
NOT_SENT = ("pending", "held", "error", "quarantined")


@dataclass
class CancellationCounts(Tally):
    """pulled: cancellations read; canceled: orders stopped before the WMS got them; sent:
    canceled at the WMS; too_late: already shipped; skipped: not ours or done already;
    unresolved: cancels whose outcome is not known yet (resolved by a later run)."""

    pulled: int = 0
    skipped: int = 0
    quarantined: int = 0
    canceled: int = 0
    sent: int = 0
    too_late: int = 0
    failed: int = 0
    unresolved: int = 0


class CancellationsFlow:
    """One run of the cancellations flow for one integration: read on one side, cancel on the
    other (cart -> WMS here; `WmsCancellationsFlow` the other way)."""

    READS, CANCELS, STREAM, PARKED = "source", "destination", "cancellations", PARKED

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        reads = ctx.source if self.READS == "source" else ctx.destination
        cancels = ctx.destination if self.CANCELS == "destination" else ctx.source
        self.reader = Reader(ctx, self.READS, reads.operations["list_cancellations"], self.STREAM)
        self.cancel = cancels.operations["cancel_order"]
        self.counts = CancellationCounts()

    async def run(self) -> CancellationCounts:
        """Retry parked cancellations, then read and apply new ones. A parked one that the read
        (its overlap) brings back again is not tried twice in a run, and keeps its attempts."""
        retried: set[str] = set()
        if not self.ctx.dry_run:
            parked = list(self.ctx.ledger.kv_items(self.PARKED))
            self.ctx.meter.start("retry parked", len(parked))
            for key, item in parked:
                self.ctx.ledger.kv_delete(self.PARKED, key)
                retried.add(key)
                await self.take(self.reader.judge(item["raw"]), attempts=item.get("attempts", 0))
                self.ctx.meter.advance()
        async for page in self.reader.pages():
            for judged in page:
                self.counts.pulled += 1
                if self.ctx.stopped():
                    break
                if judged.key in retried:
                    self.counts.skipped += 1
                    continue
                await self.take(judged)
        self.reader.commit()
        return self.counts

    async def take(self, judged: Judged, *, attempts: int = 0) -> None:
        """Apply one cancellation to its order (a record that did not map is parked)."""
        if judged.skipped:
            self.counts.skipped += 1
            return
        if judged.problem:
            self.counts.quarantined += 1
            log.warning("%s: %s %s: %s", self.ctx.integration.name, self.STREAM, judged.key, judged.problem)
            return self._park(judged, judged.problem, attempts)
        await self.apply(judged, self.match(judged.record), attempts)

    async def apply(self, judged: Judged, entry: Entry | None, attempts: int) -> None:
        """What a cart cancellation does to its order (the table in the module docstring)."""
        cancellation = judged.record
        if self.ctx.dry_run:
            return self._dry(entry, cancellation)
        data = _data(cancellation)
        if entry is None:
            claimed = self.ctx.ledger.claim(cancellation["key"], status="canceled",
                                            data={**data, "order_id": cancellation["order_id"]})
            self.counts.add("canceled" if claimed else "skipped")
        elif entry.status in NOT_SENT:
            moved = self.ctx.ledger.transition(entry.key, NOT_SENT, "canceled", data=data)
            self.counts.add("canceled" if moved else "skipped")
        elif entry.status == "sending":
            self._park(judged, "its order is still being delivered", attempts)
        elif entry.status == "delivered":
            await self._cancel_there(entry, judged, {**data, "canceled_in_wms": True}, attempts)
        elif entry.status in ("shipped", "confirmed"):
            reason = f"canceled in the cart{_at(cancellation)} after the WMS shipped it"
            moved = self.ctx.ledger.transition(entry.key, ("shipped", "confirmed"), "cancel_too_late",
                                               reason=reason, data=data)
            self.counts.add("too_late" if moved else "skipped")
        else:
            self.counts.skipped += 1

    def match(self, cancellation: dict) -> Entry | None:
        """The order a cancellation is for: by its key, then by the cart's order id."""
        ledger = self.ctx.ledger
        if ledger is None:
            return None
        entry = ledger.get(cancellation["key"])
        if entry is None:
            key = ledger.kv_get("order_id", str(cancellation["order_id"]))
            entry = ledger.get(key) if key else ledger.get(str(cancellation["order_id"]))
        return entry

    async def _cancel_there(self, entry: Entry, judged: Judged, data: dict, attempts: int) -> None:
        """Send `cancel_order` to the other side; `delivered -> canceled` when it took it."""
        subject = {"order": order_context(entry), "cancellation": judged.record}
        journal = protocol.journal(self.ctx, self.cancel, f"{self.STREAM}|{entry.key}")
        outcome = await protocol.perform(self.ctx, self.CANCELS, self.cancel, subject, journal)
        if outcome.status == "error" and any(step.precondition for step in self.cancel.steps):
            outcome = await protocol.perform(self.ctx, self.CANCELS, self.cancel, subject, journal)  # a fresh read
        if outcome.status == "unknown":
            self.counts.unresolved += 1
            error = f"cancel_order outcome unknown, resolved before any resend: {outcome.error}"
            self.ctx.ledger.transition(entry.key, "delivered", "delivered", last_error=error)
            return self._park(judged, error, attempts)       # not an attempt: it may have been taken
        if outcome.ok:
            moved = self.ctx.ledger.transition(entry.key, "delivered", "canceled", last_error=None, data=data)
            self.counts.add("sent" if moved else "skipped")
            return
        self.counts.failed += 1
        error = f"cancel_order failed (attempt {attempts + 1}): {outcome.error}"
        self._failed(entry, judged, outcome, error, attempts)

    def _failed(self, entry: Entry, judged: Judged, outcome: Outcome, error: str, attempts: int) -> None:
        """The other side did not take the cancel: keep `delivered`, park it for the next runs."""
        self.ctx.ledger.transition(entry.key, "delivered", "delivered", last_error=error)
        self._park(judged, error, attempts + 1)

    def _context(self, entry: Entry, cancellation: dict) -> dict:
        return self.ctx.context(self.CANCELS, order=order_context(entry), cancellation=cancellation)

    def _park(self, judged: Judged, reason: str, attempts: int) -> None:
        if self.ctx.dry_run:
            return
        if attempts >= MAX_ATTEMPTS:
            log.warning("%s: gave up on cancellation %s: %s", self.ctx.integration.name, judged.key, reason)
            return
        self.ctx.ledger.kv_set(self.PARKED, judged.key, {"reason": reason, "raw": judged.raw, "attempts": attempts})

    def _dry(self, entry: Entry | None, cancellation: dict) -> None:
        status = entry.status if entry is not None else None
        if status == "delivered":
            self.counts.sent += 1
            show(self.ctx, self.cancel, self._context(entry, cancellation))
        elif status in ("shipped", "confirmed"):
            self.counts.too_late += 1
        elif status is None or status in NOT_SENT:
            self.counts.canceled += 1
        else:
            self.counts.skipped += 1


class WmsCancellationsFlow(CancellationsFlow):
    """One run of the `wms_cancellations` flow: orders canceled at the WMS are canceled in the cart."""

    READS, CANCELS, STREAM, PARKED = "destination", "source", "wms_cancellations", "wms_cancellations_parked"

    async def apply(self, judged: Judged, entry: Entry | None, attempts: int) -> None:
        """What a WMS cancellation does to its order (see the module docstring)."""
        status = entry.status if entry is not None else None
        if status == "delivered":
            if self.ctx.dry_run:
                self.counts.sent += 1
                return show(self.ctx, self.cancel, self._context(entry, judged.record))
            await self._cancel_there(entry, judged, {**_data(judged.record), "canceled_in_cart": True}, attempts)
        elif status == "sending" and not self.ctx.dry_run:
            self._park(judged, "its order is still being delivered", attempts)
        else:
            self.counts.skipped += 1

    def _failed(self, entry: Entry, judged: Judged, outcome: Outcome, error: str, attempts: int) -> None:
        """Parked and asked again by the next runs (a refusal can pass: a cart may refuse while a
        payment authorization is pending); after MAX_ATTEMPTS the order is `canceled` all the
        same, since the WMS will not ship it, with the cart's last answer as its last error."""
        if attempts + 1 < MAX_ATTEMPTS:
            return super()._failed(entry, judged, outcome, error, attempts)
        log.warning("%s: gave up asking the cart to cancel %s: %s", self.ctx.integration.name, entry.key, error)
        self.ctx.ledger.transition(entry.key, "delivered", "canceled", last_error=f"the cart never took the cancel: {error}",
                                   data={**_data(judged.record), "canceled_in_cart": False})

    def match(self, cancellation: dict) -> Entry | None:
        """The order by the cart's order id (the WMS's own keys mean nothing in this ledger)."""
        ledger = self.ctx.ledger
        if ledger is None:
            return None
        key = ledger.kv_get("order_id", str(cancellation["order_id"]))
        return ledger.get(key) if key else ledger.get(str(cancellation["order_id"]))


def _data(cancellation: dict) -> dict:
    """What an entry keeps of the cancellation that canceled it."""
    return {"canceled_at": cancellation.get("canceled_at"), "cancel_reason": cancellation.get("reason")}


def _at(cancellation: dict) -> str:
    return f" at {cancellation['canceled_at']}" if cancellation.get("canceled_at") else ""
