"""The inventory flow: WMS `list_inventory` -> chosen warehouses summed per WMS SKU -> minus the
orders pulled but not yet at the WMS -> cart SKUs (SKU map reversed, kits) -> buffer and minimum
-> only values changed since the last successful push -> the cart's `update_inventory`.

- Warehouses: `integration.inventory.warehouses` (absent or empty: every warehouse), summed.
- Open orders: entries in `pending`, `sending` and `held` are re-mapped from their raw cart
  record (SKU map and kits applied, as the orders flow would send them) and their quantities
  subtracted, because the cart already counted them sold and the WMS has not seen them yet.
- Cart SKUs: a WMS SKU that `sku_map` targets is pushed under every cart SKU mapping to it,
  any other under its own name; a kit's availability is the minimum over its components of
  floor(available / quantity), and a kit with a component the WMS does not list is not pushed.
- Then `buffer` is subtracted (never below 0) and a result below `minimum` becomes 0.
- A cart that needs its own item id has `lookup_item`; its answer is cached per SKU (kv
  `items`). A SKU the cart does not know is `skipped`, listed in `syncengine status`, and looked
  up again a day later, never an error per run. A failed push forgets the cached item.
- kv `inventory_pushed` holds the last value the cart accepted per SKU; equal values are not sent.
- Each push goes through the write protocol (`flows/protocol.py`), journaled per SKU: a push
  whose answer was lost is resolved (its `verify`, `skip_when` or idempotency) before a newer
  value for the SKU is sent, and counted `unresolved` (the run exits 1) until it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from engine.errors import ExtractError, HostDownError, HTTPError, TemplateError
from engine.flows import rules
from engine.flows.base import FlowContext
from engine.flows import protocol
from engine.flows.writes import Reader, Tally, show
from engine.specs.settings import iso, parse_time

log = logging.getLogger("syncengine.inventory")
OPEN = ("pending", "sending", "held")
PUSHED, ITEMS, SKIPPED, ERRORS = "inventory_pushed", "items", "inventory_skipped", "inventory_errors"
LOOK_AGAIN = timedelta(days=1)
CHUNK = 20


@dataclass
class InventoryCounts(Tally):
    """pulled: WMS levels read; pushed: SKUs the cart took; unchanged: same as last push;
    skipped: SKUs the cart does not know; unresolved: pushes whose outcome is not known yet."""

    pulled: int = 0
    quarantined: int = 0
    pushed: int = 0
    unchanged: int = 0
    skipped: int = 0
    failed: int = 0
    unresolved: int = 0


class InventoryFlow:
    """One run of the inventory flow for one integration."""

    def __init__(self, ctx: FlowContext) -> None:
        self.ctx = ctx
        self.reader = Reader(ctx, "destination", ctx.destination.operations["list_inventory"], "inventory")
        self.update = ctx.source.operations["update_inventory"]
        self.lookup = ctx.source.operations.get("lookup_item")
        self.settings = ctx.integration.inventory
        self.counts = InventoryCounts()

    async def run(self) -> InventoryCounts:
        """Read every level, compute what the cart should show, push what changed."""
        available = await self.read()
        if self.reader.cut:
            return self.counts         # stopped mid-read: partial totals would push wrong levels
        self.subtract_open(available)
        changed = [(sku, value) for sku, value in self.levels(available).items() if self._changed(sku, value)]
        self.ctx.meter.start("push", len(changed))
        for start in range(0, len(changed), CHUNK):
            done = await asyncio.gather(*(self.push(sku, value) for sku, value in changed[start:start + CHUNK]),
                                        return_exceptions=True)
            self.ctx.meter.advance(len(changed[start:start + CHUNK]))
            for error in (result for result in done if isinstance(result, BaseException)):
                raise error            # the cart is down (every push of the chunk has ended first)
        return self.counts

    async def read(self) -> dict[str, int]:
        """WMS SKU -> units available in the chosen warehouses."""
        wanted = {str(w) for w in self.settings.get("warehouses") or ()}
        totals: dict[str, int] = defaultdict(int)
        async for page in self.reader.pages():
            for judged in page:
                self.counts.pulled += 1
                if judged.problem:
                    self.counts.quarantined += 1
                    log.warning("%s: inventory record %s: %s", self.ctx.integration.name, judged.key, judged.problem)
                elif judged.record and (not wanted or judged.record["warehouse"] in wanted):
                    totals[judged.record["sku"]] += judged.record["available"]
        return totals

    def subtract_open(self, available: dict[str, int]) -> None:
        """Take away what orders pulled but not yet at the WMS hold (WMS SKUs)."""
        if self.ctx.ledger is None:
            return
        read = self.ctx.source.operations["list_orders"]
        for entry in self.ctx.ledger.iter_status(*OPEN):
            try:
                order = read.map(entry.raw) if read.map and entry.raw is not None else None
            except ExtractError:
                order = None
            # rules._map_lines is what the orders flow applies: SKU map, then kits exploded
            for line in rules._map_lines((order or {}).get("lines") or [], self.ctx.integration):
                if line["sku"] in available and isinstance(line.get("quantity"), int):
                    available[line["sku"]] -= line["quantity"]

    def levels(self, available: dict[str, int]) -> dict[str, int]:
        """Cart SKU -> the value to show: reversed SKU map, kits, buffer, minimum."""
        integration = self.ctx.integration
        mapped = set(integration.sku_map.values())
        raw = {sku: units for sku, units in available.items() if sku not in mapped}
        for cart_sku, wms_sku in integration.sku_map.items():
            if wms_sku in available:
                raw[cart_sku] = available[wms_sku]
        for kit, parts in integration.kits.items():
            if parts and all(part["sku"] in available for part in parts):
                raw[kit] = min(max(available[p["sku"]], 0) // max(int(p.get("quantity", 1)), 1) for p in parts)
        return {sku: self.adjust(units) for sku, units in raw.items()}

    def adjust(self, units: int) -> int:
        """Subtract the buffer (never below 0); below the minimum, 0."""
        value = max(units - int(self.settings.get("buffer") or 0), 0)
        return 0 if value < int(self.settings.get("minimum") or 0) else value

    def _changed(self, sku: str, value: int) -> bool:
        ledger = self.ctx.ledger
        if ledger is not None and ledger.kv_get(PUSHED, sku) == value:
            self.counts.unchanged += 1
            return False
        return True

    # -- pushing ----------------------------------------------------------------------------

    async def push(self, sku: str, value: int) -> None:
        """Send one SKU's level to the cart (looking up its item first when the cart needs it)."""
        warehouses = ",".join(str(w) for w in self.settings.get("warehouses") or ()) or "all"
        inventory = {"key": sku, "sku": sku, "warehouse": warehouses, "available": value, "updated_at": None}
        try:
            item = await self.item(inventory)
        except HostDownError:
            raise                      # the cart is down for this run: the rest waits for the next
        except (HTTPError, ExtractError, TemplateError) as exc:
            return self._failed(sku, f"lookup_item: {self.ctx.redact(str(exc))}")
        if item is None:
            return self._skipped(sku)
        context = self.ctx.context("source", inventory=inventory, item=item)
        if self.ctx.dry_run:
            self.counts.pushed += 1
            return show(self.ctx, self.update, context)
        journal = protocol.journal(self.ctx, self.update, sku)
        outcome = await protocol.perform(self.ctx, "source", self.update, {"inventory": inventory, "item": item},
                                         journal, supersede=True)
        if outcome.status == "unknown":
            self.counts.unresolved += 1
            return self._note(sku, f"outcome unknown, resolved before the next push: {outcome.error}")
        if not outcome.ok:
            self.ctx.ledger.kv_delete(ITEMS, sku)          # a stale id fails too: look it up again
            return self._failed(sku, outcome.error or outcome.status)
        with self.ctx.ledger.batch():
            self.ctx.ledger.kv_set(PUSHED, sku, value)
            self.ctx.ledger.kv_delete(ERRORS, sku)
            self.ctx.ledger.kv_delete(SKIPPED, sku)
        self.counts.pushed += 1

    async def item(self, inventory: dict) -> dict[str, Any] | None:
        """The cart's item for a SKU (cached), {} when the cart needs none, None when unknown."""
        if self.lookup is None:
            return {}
        ledger, sku = self.ctx.ledger, inventory["sku"]
        cached = ledger.kv_get(ITEMS, sku) if ledger is not None else None
        if cached is not None and not cached.get("missing"):
            return cached
        if cached is not None and parse_time(cached["at"]) > self.ctx.now() - LOOK_AGAIN:
            return None
        found = await self._look_up(inventory)
        if ledger is not None and not self.ctx.dry_run:
            ledger.kv_set(ITEMS, sku, found if found is not None else {"missing": True, "at": iso(self.ctx.now())})
        return found

    async def _look_up(self, inventory: dict) -> dict[str, Any] | None:
        op = self.lookup
        request = op.request.render(self.ctx.context("source", inventory=inventory))
        answer = await self.ctx.source_client.send(request, accept=(404,))
        found = op.extract_records(answer.body) if answer.status != 404 else []
        found = [raw for raw in found if op.filter is None or op.filter(raw)]
        if not found:
            return None
        return op.map(found[0]) if op.map else dict(found[0])

    def _skipped(self, sku: str) -> None:
        self.counts.skipped += 1
        if self.ctx.ledger is not None and not self.ctx.dry_run:
            self.ctx.ledger.kv_set(SKIPPED, sku, f"the cart has no item with SKU {sku} (lookup_item found none)")

    def _failed(self, sku: str, error: str) -> None:
        self.counts.failed += 1
        self._note(sku, error)

    def _note(self, sku: str, error: str) -> None:
        log.warning("%s: inventory %s: %s", self.ctx.integration.name, sku, error)
        if self.ctx.ledger is not None and not self.ctx.dry_run:
            self.ctx.ledger.kv_set(ERRORS, sku, error)
