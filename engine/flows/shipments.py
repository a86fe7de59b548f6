"""The shipments flow: WMS `list_shipments` since the watermark -> canonical shipment -> only for
orders this integration delivered -> carrier map -> the cart's `create_shipment`.

Every tracking number reaches the cart once per (order, package), whatever happens:

1. A shipment read is matched to its order (`order_ref` is the order's number, through the
   `order_number` index the orders flow writes at delivery, or its ledger key) and stored in
   the order's entry (`data.shipments`); the order moves `delivered -> shipped`. Only then does
   the watermark move, so a shipment once read is never lost.
2. Each run works through every `shipped` order. A package is claimed with one atomic
   `kv_add("packages", "<order key>|<tracking number>")` (state `sending`) *before* the cart
   call, and marked `confirmed` (or `failed`) after its answer. The call itself goes through the
   write protocol (`flows/protocol.py`): journaled before it goes out, each step of a
   multi-step `create_shipment` done once.
3. A failed package (the cart certainly refused it) is claimed again by a later run, up to
   MAX_ATTEMPTS. A package whose outcome is unknown (a timeout, a 5xx after the retries, a
   crash between claim and answer) is `unknown`: it is resolved at once, and by every later run
   until it is, through what `create_shipment` declares (`verify`: the cart already shows this
   tracking number; `skip_when`; or its idempotency) before anything is resent; until then the
   run counts it `unresolved` and exits 1, and `syncengine status` shows it.
4. `split_shipments: wait_for_all` sends nothing until the shipped quantities cover the order's
   lines; `immediate` sends each package as soon as it is read. An order whose every package is
   confirmed and whose lines are all shipped moves `shipped -> confirmed`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from engine.flows import protocol
from engine.flows.base import FlowContext
from engine.flows.writes import Judged, Reader, Tally, order_context, show
from engine.ledger import Entry
from engine.specs.settings import iso

log = logging.getLogger("syncengine.shipments")
MAX_ATTEMPTS = 10
SHIPPABLE = ("delivered", "shipped", "confirmed")
PACKAGES, PARKED = "packages", "shipments_parked"


@dataclass
class ShipmentCounts(Tally):
    """pulled: shipments read; skipped: not for an order this integration delivered; waiting:
    orders held back by wait_for_all; sent: packages the cart took; confirmed: orders complete;
    unresolved: packages whose send's outcome is not known yet (resolved by a later run)."""

    pulled: int = 0
    skipped: int = 0
    quarantined: int = 0
    waiting: int = 0
    sent: int = 0
    confirmed: int = 0
    failed: int = 0
    unresolved: int = 0


class ShipmentsFlow:
    """One run of the shipments flow for one integration."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.reader = Reader(ctx, "destination", ctx.destination.operations["list_shipments"], "shipments")
        self.create = ctx.source.operations["create_shipment"]
        spec = (ctx.source.data.get("operations") or {}).get("create_shipment") or {}
        self.per = spec.get("per", "shipment")
        self.counts = ShipmentCounts()

    async def run(self) -> ShipmentCounts:
        """Re-check parked shipments, read new ones, then send what every shipped order owes."""
        if not self.ctx.dry_run:
            self._unpark()
        async for page in self.reader.pages():
            for judged in page:
                self.counts.pulled += 1
                self.take(judged)
        self.reader.commit()
        if not self.ctx.dry_run:
            shipped = list(self.ctx.ledger.iter_status("shipped"))
            self.ctx.meter.start("send", len(shipped))
            for entry in shipped:
                if self.ctx.stopped():
                    break
                await self.ship(entry)
                self.ctx.meter.advance()
        return self.counts

    # -- intake -----------------------------------------------------------------------------

    def take(self, judged: Judged, *, parked: bool = False) -> None:
        """Store one read shipment in its order's entry (or park, skip, show it)."""
        if judged.skipped:
            self.counts.skipped += not parked
            return
        if judged.problem:
            self._park(judged, judged.problem, count=not parked)
            return
        shipment = self._carriers(judged.record)
        entry = self.match(shipment["order_ref"])
        if entry is None or entry.status not in SHIPPABLE:
            if entry is not None and entry.status == "sending" and not self.ctx.dry_run:
                self._park(judged, "its order is still being delivered", count=False)
            else:
                self.counts.skipped += not parked
            return
        if self.ctx.dry_run:
            self._show(entry, shipment)
            return
        self._store(entry, shipment)

    def match(self, ref: str) -> Entry | None:
        """The order a shipment belongs to: by its number first, then by its ledger key."""
        ledger = self.ctx.ledger
        if ledger is None:
            return None
        key = ledger.kv_get("order_number", str(ref))
        entry = ledger.get(key) if key else None
        return entry if entry is not None else ledger.get(str(ref))

    def _carriers(self, shipment: dict) -> dict:
        table = self.ctx.integration.carrier_map
        mapped = {**shipment, "carrier": table.get(shipment.get("carrier"), shipment.get("carrier"))}
        mapped["packages"] = [{**p, "carrier": table.get(p.get("carrier"), p.get("carrier"))}
                              for p in shipment["packages"]]
        return mapped

    def _store(self, entry: Entry, shipment: dict) -> None:
        ledger = self.ctx.ledger
        known = dict(entry.data.get("shipments") or {})
        if known.get(shipment["shipment_id"]) == shipment:
            return                                         # the overlap re-read it
        known[shipment["shipment_id"]] = shipment
        ledger.transition(entry.key, SHIPPABLE, "shipped", data={"shipments": known})

    def _park(self, judged: Judged, reason: str, *, count: bool) -> None:
        """Keep a shipment that cannot go on yet; each run re-checks it (`_unpark`)."""
        if count:
            self.counts.quarantined += 1
            log.warning("%s: shipment %s held back: %s", self.ctx.integration.name, judged.key, reason)
        if not self.ctx.dry_run:
            self.ctx.ledger.kv_set(PARKED, judged.key, {"reason": reason, "raw": judged.raw})

    def _unpark(self) -> None:
        ledger = self.ctx.ledger
        for key, item in list(ledger.kv_items(PARKED)):
            with ledger.batch():                   # taken, or parked again: never lost between
                ledger.kv_delete(PARKED, key)
                self.take(self.reader.judge(item["raw"]), parked=True)

    # -- sending ----------------------------------------------------------------------------

    async def ship(self, entry: Entry) -> None:
        """Send the packages one shipped order still owes the cart; confirm it when all are in."""
        shipments = list((entry.data.get("shipments") or {}).values())
        shipped, ordered = shipped_units(shipments), ordered_units(entry)
        complete = ordered is None or shipped is None or all(shipped[sku] >= n for sku, n in ordered.items())
        if self.ctx.integration.split_shipments == "wait_for_all" and not complete:
            self.counts.waiting += 1
            done = sum(min(shipped[sku], n) for sku, n in ordered.items())
            self._note(entry, f"waiting for the rest (split_shipments: wait_for_all): "
                              f"{done} of {sum(ordered.values())} units shipped")
            return
        order = order_context(entry)
        for shipment in shipments:
            for unit in self._units(shipment):
                await self._send(entry, order, shipment, unit)
        self._settle(entry, shipments, complete)

    def _units(self, shipment: dict) -> list[list[dict]]:
        packages = shipment["packages"]
        return [[p] for p in packages] if self.per == "package" else [packages]

    async def _send(self, entry: Entry, order: dict, shipment: dict, packages: list[dict]) -> None:
        claims = [(p, self._claim(entry.key, p["tracking_number"], shipment["shipment_id"])) for p in packages]
        resumed = [p for p, claim in claims if claim == "resume"]      # lost answers first: their
        fresh = [p for p, claim in claims if claim == "new"]           # journal knows the group
        for mine in (resumed, fresh):
            if mine:
                await self._write(entry, order, shipment, mine)

    async def _write(self, entry: Entry, order: dict, shipment: dict, mine: list[dict]) -> None:
        subject = {"order": order, "shipment": {**shipment, "packages": mine}, "package": mine[0]}
        journal = protocol.journal(self.ctx, self.create, f"{entry.key}|{mine[0]['tracking_number']}")
        outcome = await protocol.perform(self.ctx, "source", self.create, subject, journal)
        state = {"ok": "confirmed", "error": "failed", "unknown": "unknown"}[outcome.status]
        ledger = self.ctx.ledger
        with ledger.batch():
            for package in mine:
                pkey = f"{entry.key}|{package['tracking_number']}"
                claim = ledger.kv_get(PACKAGES, pkey) or {}
                ledger.kv_set(PACKAGES, pkey, {**claim, "state": state, "id": outcome.id, "error": outcome.error,
                                               "at": iso(self.ctx.now())})
        self.counts.add({"ok": "sent", "error": "failed", "unknown": "unresolved"}[outcome.status], len(mine))

    def _claim(self, order_key: str, tracking: str, shipment_id: str) -> str | None:
        """Claim one package for this run: "new" (kv_add, or failed before with attempts left),
        "resume" (an earlier send's outcome is unknown, or a run stopped between claim and
        answer: the journal resolves it before anything is resent), or None (nothing to do).
        Two runs of this flow never overlap (the run lock), so a `sending` claim was interrupted."""
        ledger, pkey, now = self.ctx.ledger, f"{order_key}|{tracking}", iso(self.ctx.now())
        claim = {"state": "sending", "shipment": shipment_id, "attempts": 1, "at": now}
        if ledger.kv_add(PACKAGES, pkey, claim):
            return "new"
        with ledger.batch():
            current = ledger.kv_get(PACKAGES, pkey) or {}
            if current.get("state") == "failed" and current.get("attempts", 0) < MAX_ATTEMPTS:
                ledger.kv_set(PACKAGES, pkey, {**claim, "attempts": current["attempts"] + 1})
                return "new"
            if current.get("state") in ("sending", "unknown"):
                ledger.kv_set(PACKAGES, pkey, {**current, "state": "sending", "at": now})
                return "resume"
        return None

    def _settle(self, entry: Entry, shipments: list[dict], complete: bool) -> None:
        """Confirm the order when every package is confirmed and every line shipped; else note why not."""
        problems = []
        for shipment in shipments:
            for package in shipment["packages"]:
                claim = self.ctx.ledger.kv_get(PACKAGES, f"{entry.key}|{package['tracking_number']}") or {}
                if claim.get("state") == "failed":
                    problems.append(f"{package['tracking_number']}: failed {claim.get('attempts')}x: {claim.get('error')}")
                elif claim.get("state") == "unknown":
                    problems.append(f"{package['tracking_number']}: outcome unknown, resolved before any resend "
                                    f"by the next run: {claim.get('error')}")
                elif claim.get("state") != "confirmed":
                    problems.append(f"{package['tracking_number']}: in flight")
        if not problems and complete:
            if self.ctx.ledger.transition(entry.key, "shipped", "confirmed", last_error=None):
                self.counts.confirmed += 1
        else:
            self._note(entry, "; ".join(problems) or "partially shipped: waiting for the rest")

    def _note(self, entry: Entry, text: str) -> None:
        if entry.last_error != text:
            self.ctx.ledger.transition(entry.key, "shipped", "shipped", last_error=text)

    def _show(self, entry: Entry, shipment: dict) -> None:
        order = order_context(entry)
        for unit in self._units(shipment):
            ledger = self.ctx.ledger
            new = [p for p in unit if ledger.kv_get(PACKAGES, f"{entry.key}|{p['tracking_number']}") is None]
            if new:
                show(self.ctx, self.create, self.ctx.context(
                    "source", order=order, shipment={**shipment, "packages": new}, package=new[0]))


def ordered_units(entry: Entry) -> Counter | None:
    """WMS SKU -> quantity the WMS got; None when the entry predates keeping lines."""
    lines = entry.data.get("lines")
    if not lines:
        return None
    units: Counter = Counter()
    for sku, qty in lines:
        units[sku] += qty
    return units


def shipped_units(shipments: list[dict]) -> Counter | None:
    """WMS SKU -> quantity shipped so far; None when a shipment has no lines (the whole order)."""
    units: Counter = Counter()
    for shipment in shipments:
        if shipment.get("lines") is None:
            return None
        for line in shipment["lines"]:
            units[line["sku"]] += line["quantity"]
    return units
