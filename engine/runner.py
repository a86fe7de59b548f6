"""Running integrations: load and lint the project, resolve secrets, open clients and ledgers,
run the enabled flows of each integration concurrently, and report one summary per integration.

A spec that does not lint clean is refused before any request is made (`load_project` raises
SpecError with the findings).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import http, logs, runlock, secrets
from engine.errors import ConfigError, SyncEngineError
from engine.flows.base import Counts, FlowContext, Meter
from engine.flows.cancellations import CancellationsFlow, WmsCancellationsFlow
from engine.flows.inventory import InventoryFlow
from engine.flows.orders import OrdersFlow
from engine.flows.shipments import ShipmentsFlow
from engine.ledger import DiskLedger
from engine.specs.lint import load_clean
from engine.specs.model import Connector
from engine.specs.settings import Integration

log = logging.getLogger("syncengine.runner")

#: flow name -> the class that runs it: `FLOWS[name](ctx)`, then `await flow.run()`
FLOWS: dict[str, Callable[[FlowContext], Any]] = {
    "orders": OrdersFlow, "shipments": ShipmentsFlow, "inventory": InventoryFlow, "cancellations": CancellationsFlow,
    "wms_cancellations": WmsCancellationsFlow,
}


@dataclass
class Project:
    """Every connector and integration found, compiled."""

    connectors: dict[str, Connector]
    integrations: dict[str, Integration]

    def select(self, name: str | None) -> list[Integration]:
        if name is None:
            return list(self.integrations.values())
        if name not in self.integrations:
            known = ", ".join(sorted(self.integrations)) or "none"
            raise ConfigError(f"no integration named {name!r} (found: {known})")
        return [self.integrations[name]]


def load_project(paths: Iterable[str | Path]) -> Project:
    """Load, lint (SpecError on any finding) and compile every spec under `paths`."""
    documents = load_clean(paths)
    connectors, integrations = {}, {}
    for document in documents:
        if document.kind == "connector":
            connectors[document.name] = Connector.from_data(document.data)
        elif document.kind == "integration":
            integrations[document.name] = Integration.from_data(document.data, document.path)
    for integration in integrations.values():
        for endpoint in (integration.source, integration.destination):
            if endpoint.connector not in connectors:
                raise ConfigError(f"integration {integration.name}: connector {endpoint.connector!r} not found")
    return Project(connectors, integrations)


@dataclass
class Outcome:
    """What running one integration did."""

    integration: str
    counts: dict[str, Counts] = field(default_factory=dict)
    meters: dict[str, Meter] = field(default_factory=dict)     # where each flow is (progress display)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(c.failed or c.quarantined or getattr(c, "unresolved", 0)
                                             for c in self.counts.values())


@dataclass
class Options:
    state_dir: Path
    flows: Sequence[str] | None = None        # None: every enabled flow
    dry_run: bool = False
    emit: Callable[[str], None] = print
    transport: Any = None                      # tests may hand an httpx transport
    workers: int = 1                           # processes a large paged read may be split over
    stop: asyncio.Event | None = None          # set by Ctrl-C / SIGTERM: read no further, finish what is in flight


@contextlib.asynccontextmanager
async def open_context(project: Project, integration: Integration, options: Options) -> AsyncIterator[FlowContext]:
    """Resolve secrets, open both clients and the ledger; close them all afterwards."""
    source = project.connectors[integration.source.connector]
    destination = project.connectors[integration.destination.connector]
    base = integration.path.parent
    source_config, source_secrets = secrets.resolve(
        source.with_defaults(integration.source.config), base, source.secret_fields())
    destination_config, destination_secrets = secrets.resolve(
        destination.with_defaults(integration.destination.config), base, destination.secret_fields())
    redact = http.Redactor(source_secrets | destination_secrets)
    http.remember_secrets(redact.secrets)          # what this process prints is masked too
    ledger = None
    try:
        with masked_errors(redact):
            source, destination = source.configured(source_config), destination.configured(destination_config)
            ledger = _open_ledger(options, integration.name, redact.mask)
            async with source.client(source_config, secrets=redact.secrets, transport=options.transport) as source_client, \
                    destination.client(destination_config, secrets=redact.secrets, transport=options.transport) as destination_client, \
                    _startup_frozen():
                yield FlowContext(integration, source, destination, source_config, destination_config,
                                  source_client, destination_client, ledger, redact=redact, emit=options.emit,
                                  dry_run=options.dry_run, workers=options.workers, transport=options.transport,
                                  stopping=options.stop)
    finally:
        if ledger is not None:
            ledger.close()


@contextlib.contextmanager
def masked_errors(redact: http.Redactor) -> Iterator[None]:
    """Mask the secrets in any SyncEngineError leaving the block (its message, context and
    StatusError body): a template error naming a secret's value, an echo in an answer."""
    try:
        yield
    except SyncEngineError as exc:
        exc.message = redact.mask(exc.message)
        exc.args = (exc.message, *exc.args[1:])
        exc.context = {key: redact.mask(str(value)) for key, value in exc.context.items()}
        if isinstance(getattr(exc, "body", None), str):
            exc.body = redact.mask(exc.body)
        raise


_running = 0                                  # open contexts, for `_startup_frozen`


@contextlib.asynccontextmanager
async def _startup_frozen() -> AsyncIterator[None]:
    """While any integration runs, leave the objects alive before the run (modules, compiled
    specs) out of the cyclic collector's walks (`gc.freeze`), so that its collections cost what
    the run's own objects cost: +5-10% orders/s in `bench/orders.py`.

    The thresholds stay as they are: collecting less often (gen 0 at 10,000) was as fast, but a
    run leaves some cyclic garbage per page (HTTP answers, futures) and peak memory then grew
    by 65 MB from 20k to 200k orders instead of 6.
    """
    global _running
    if _running == 0:
        gc.freeze()
    _running += 1
    try:
        yield
    finally:
        _running -= 1
        if _running == 0:
            gc.unfreeze()


def _open_ledger(options: Options, name: str, mask: Callable[[str], str] | None = None) -> DiskLedger | None:
    if options.dry_run and not (options.state_dir / name).exists():
        return None        # a dry run writes nothing anywhere, not even an empty ledger
    return DiskLedger(options.state_dir, name, mask=mask)


def _exclusive(options: Options, integration: str, flow: str) -> contextlib.AbstractContextManager:
    """The run lock of (integration, flow); a dry run writes nothing, not even a lock file."""
    return contextlib.nullcontext() if options.dry_run else runlock.hold(options.state_dir, integration, flow)


async def run_integration(project: Project, integration: Integration, options: Options,
                          outcome: Outcome | None = None) -> Outcome:
    """Run the chosen enabled flows of one integration, one after another."""
    with logs.working_on(integration.name):        # its log records name it (and the flow)
        return await _run_integration(project, integration, options, outcome or Outcome(integration.name))


async def _run_integration(project: Project, integration: Integration, options: Options,
                           outcome: Outcome) -> Outcome:
    wanted = [f for f in (options.flows or integration.flows) if f in integration.flows and f in FLOWS]
    ctx: FlowContext | None = None
    try:
        async with open_context(project, integration, options) as ctx:
            for name in wanted:
                if ctx.stopped():
                    break
                ctx.meter = outcome.meters[name] = Meter()
                flow = FLOWS[name](ctx)
                outcome.counts[name] = flow.counts
                with _exclusive(options, integration.name, name), logs.working_on(integration.name, name):
                    await flow.run()
                ctx.meter.finish()
    except SyncEngineError as exc:
        outcome.error = str(exc)
    except Exception as exc:      # noqa: BLE001 - whatever stops one integration never stops the others
        text = f"internal error: {type(exc).__name__}: {exc}"[:500]
        outcome.error = ctx.redact.mask(text) if ctx is not None else text
    return outcome


async def run_project(project: Project, integrations: list[Integration], options: Options,
                      outcomes: list[Outcome] | None = None) -> list[Outcome]:
    """Run integrations concurrently. `outcomes` (one per integration) are filled as they go,
    so a caller that cancels the run still has the counts of what was done, and a progress
    display can follow them (`Outcome.meters`)."""
    outcomes = outcomes if outcomes is not None else [Outcome(i.name) for i in integrations]
    await asyncio.gather(*(run_integration(project, i, options, o) for i, o in zip(integrations, outcomes)))
    return outcomes
