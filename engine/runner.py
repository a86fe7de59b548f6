"""Running integrations: load and lint the project, resolve secrets, open clients and ledgers,
run the enabled flows of each integration concurrently, and report one summary per integration.

A spec that does not lint clean is refused before any request is made (`load_project` raises
SpecError with the findings).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import contextlib
import functools
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import history, http, logs, secrets
from engine.errors import ConfigError, HostDownError, LedgerError, RunBusyError, SyncEngineError
from engine.flows.base import Counts, FlowContext, Meter
from engine.flows.cancellations import CancellationsFlow, WmsCancellationsFlow
from engine.flows.inventory import InventoryFlow
from engine.flows.orders import OrdersFlow
from engine.flows.shipments import ShipmentsFlow
from engine.ledger import Ledger, Store, open_store
from engine.specs.findings import Finding
from engine.specs.lint import find_connectors, load_clean
from engine.status import HOSTS_DOWN
from engine.specs.model import Connector
from engine.specs.settings import Integration, iso

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
    warnings: list[Finding] = field(default_factory=list)     # lint warnings (a shadowed connector)

    def select(self, name: str | None) -> list[Integration]:
        if name is None:
            return list(self.integrations.values())
        if name not in self.integrations:
            known = ", ".join(sorted(self.integrations)) or "none"
            raise ConfigError(f"no integration named {name!r} (found: {known})")
        return [self.integrations[name]]


def load_project(paths: Iterable[str | Path]) -> Project:
    """Load, lint (SpecError on any error) and compile every spec under `paths`; an integration
    finds its connectors as lint does (`find_connectors`: the user's, then the bundled ones)."""
    warnings: list[Finding] = []
    documents = load_clean(paths, warnings)
    found = find_connectors(documents)
    connectors, integrations = {}, {}
    for document in documents:
        if document.kind == "connector":
            connectors[document.name] = _compiled(document.data)
        elif document.kind == "integration":
            integrations[document.name] = Integration.from_data(document.data, document.path)
    for integration in integrations.values():
        for endpoint in (integration.source, integration.destination):
            if endpoint.connector not in connectors and endpoint.connector in found:
                connectors[endpoint.connector] = _compiled(found[endpoint.connector])
            if endpoint.connector not in connectors:
                raise ConfigError(f"integration {integration.name}: connector {endpoint.connector!r} not found")
    return Project(connectors, integrations, warnings)


#: Connectors compiled by this process, by a digest of their spec's data (compiling every
#: template is most of a load; `run --every`, `serve` and in-process callers load the same specs
#: over and over). A compiled connector is never changed: `configured` makes a new one.
_COMPILED: dict[str, Connector] = {}


def _compiled(data: Any) -> Connector:
    key = hashlib.blake2b(json.dumps(data, sort_keys=True, default=repr).encode(), digest_size=20).hexdigest()
    if key not in _COMPILED:
        _COMPILED[key] = Connector.from_data(data)
        while len(_COMPILED) > 256:
            _COMPILED.pop(next(iter(_COMPILED)))
    return _COMPILED[key]


@dataclass
class Outcome:
    """What running one integration did."""

    integration: str
    counts: dict[str, Counts] = field(default_factory=dict)
    meters: dict[str, Meter] = field(default_factory=dict)     # where each flow is (progress display)
    error: str | None = None
    busy: list[str] = field(default_factory=list)   # flows skipped: another run held their lock (`Options.skip_busy`)

    @property
    def failed(self) -> bool:
        return self.error is not None or any(c.failed or c.quarantined or getattr(c, "unresolved", 0)
                                             or getattr(c, "down", None) or getattr(c, "waiting", 0)
                                             for c in self.counts.values())


@dataclass
class Options:
    state_dir: str | Path                      # a state directory or a postgresql:// URL (`--state`)
    flows: Sequence[str] | None = None        # None: every enabled flow
    dry_run: bool = False
    emit: Callable[[str], None] = print
    transport: Any = None                      # tests may hand an httpx transport
    workers: int = 1                           # processes a large paged read may be split over
    stop: asyncio.Event | None = None          # set by Ctrl-C / SIGTERM: read no further, finish what is in flight
    team: Any = None                           # a split read's helpers (`FlowContext.team`): Celery workers in a cluster
    skip_busy: bool = False                    # a flow whose run lock another run holds is skipped, not an error
                                               # (a worker's job: the run in progress does the work)

    @functools.cached_property
    def store(self) -> Store:
        """Where the ledgers and run locks live (`engine.ledger.stores`)."""
        return open_store(self.state_dir)


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
                                  stopping=options.stop, team=options.team)
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
_frozen_runs = 0                              # freezes so far in this process
FULL_COLLECT_EVERY = 50                       # freezes between full collections (one walks every object)
YOUNG_THRESHOLD = 3000                        # allocations between young collections during a run
_thresholds: tuple[int, int, int] | None = None    # the thresholds before the run, restored after


@contextlib.asynccontextmanager
async def _startup_frozen() -> AsyncIterator[None]:
    """While any integration runs, leave the objects alive before the run (modules, compiled
    specs) out of the cyclic collector's walks (`gc.freeze`), so that its collections cost what
    the run's own objects cost: +5-10% orders/s in `bench/orders.py`.

    The youngest generation is collected every YOUNG_THRESHOLD allocations during a run instead
    of 700: each collection walks what is alive in it, and a page's objects all live until the
    page is claimed, so at 700 most of them were walked twice (young, then middle generation);
    at 3,000 (`bench/throughput.py` engine under callgrind's cache model, 20,000 orders):
    -2.2% instructions, -12% last-level and -13% first-level data misses an order, for ~8 MB
    more peak memory (76 -> 84 MB at 20,000 orders, 80 -> 89 at 200,000). Higher costs memory
    without end: at 10,000 a run's cyclic garbage per page (HTTP answers, futures) outlives the
    young collections, and peak memory grew from 80 to 159 MB at 200,000 orders.

    A process that runs one run after another (a worker's pool process, `run --every`) must not
    freeze the last run's garbage with the rest: unfrozen, it joins the oldest generation, and
    the next freeze takes it again, so no full collection ever reaches it (a pool process grew
    ~100 KB a job without end, bench/cluster.py). So the run's garbage is collected before the
    unfreeze (only the run's objects are walked then), young garbage before each freeze, and
    everything before every `FULL_COLLECT_EVERY`-th freeze (not the first: a process's first
    run would pay a walk of every module and compiled spec, ~80 ms, to free the little that
    loading left; a one-off run's garbage goes with the process).
    """
    global _running, _frozen_runs, _thresholds
    if _running == 0:
        _frozen_runs += 1
        gc.collect(2 if _frozen_runs % FULL_COLLECT_EVERY == 0 else 1)    # garbage since the last run
        gc.freeze()
        _thresholds = gc.get_threshold()
        gc.set_threshold(max(YOUNG_THRESHOLD, _thresholds[0]), *_thresholds[1:])
    _running += 1
    try:
        yield
    finally:
        _running -= 1
        if _running == 0:
            gc.collect()        # the run's own garbage: the objects from before the run are not walked
            gc.unfreeze()
            if _thresholds is not None:
                gc.set_threshold(*_thresholds)


def _open_ledger(options: Options, name: str, mask: Callable[[str], str] | None = None) -> Ledger | None:
    if options.dry_run and not options.store.exists(name):
        return None        # a dry run writes nothing anywhere, not even an empty ledger
    return options.store.open(name, mask=mask)


def _exclusive(options: Options, integration: str, flow: str) -> contextlib.AbstractContextManager:
    """The run lock of (integration, flow) in the store (a file lock on disk, an advisory lock in
    PostgreSQL); a dry run writes nothing, not even a lock file."""
    return contextlib.nullcontext() if options.dry_run else options.store.lock(integration, flow)


async def run_integration(project: Project, integration: Integration, options: Options,
                          outcome: Outcome | None = None) -> Outcome:
    """Run the chosen enabled flows of one integration, one after another."""
    with logs.working_on(integration.name):        # its log records name it (and the flow)
        return await _run_integration(project, integration, options, outcome or Outcome(integration.name))


async def _run_integration(project: Project, integration: Integration, options: Options,
                           outcome: Outcome) -> Outcome:
    wanted = [f for f in (options.flows or integration.flows) if f in integration.flows and f in FLOWS]
    ctx: FlowContext | None = None
    started = time.time()
    down: list[str] = []
    try:
        async with open_context(project, integration, options) as ctx:
            try:
                for name in wanted:
                    if ctx.stopped():
                        break
                    with contextlib.ExitStack() as held:
                        try:
                            held.enter_context(_exclusive(options, integration.name, name))
                        except RunBusyError as exc:
                            if not options.skip_busy:
                                raise
                            log.info("%s: %s skipped: %s", integration.name, name, exc)
                            outcome.busy.append(name)
                            continue
                        ctx.meter = outcome.meters[name] = Meter()
                        flow = FLOWS[name](ctx)
                        outcome.counts[name] = flow.counts
                        with logs.working_on(integration.name, name), \
                                history.recorded(None if options.dry_run else ctx.ledger, name, flow.counts,
                                                 stopped=ctx.stopped):
                            await flow.run()
                        ctx.meter.finish()
            finally:
                down = note_hosts_down(ctx)
        if down and not any(getattr(counts, "down", None) for counts in outcome.counts.values()):
            outcome.error = "; ".join(down)        # no flow's summary says it: the FAILED line does
    except SyncEngineError as exc:
        outcome.error = "; ".join(down) if isinstance(exc, HostDownError) and down else str(exc)
    except Exception as exc:      # noqa: BLE001 - whatever stops one integration never stops the others
        text = f"internal error: {type(exc).__name__}: {exc}"[:500]
        outcome.error = ctx.redact.mask(text) if ctx is not None else http.everywhere().mask(text)
    if ctx is None and outcome.error is not None and not options.dry_run:
        _record_unopened(options, integration.name, wanted, outcome.error, started)
    return outcome


def _record_unopened(options: Options, name: str, flows: list[str], error: str, started: float) -> None:
    """An integration that failed before any of its flows could start (a secret that does not
    resolve, a connector that does not configure, a ledger that does not open): a `failed`
    record for each flow it was to run, so that `status` and monitoring see it."""
    try:
        with options.store.open(name, mask=http.everywhere().mask) as ledger:
            for flow in flows:
                ledger.record_run(history.run_record(ledger, flow, None, started=started, error=error,
                                                     duration=time.time() - started, stopped=False))
    except LedgerError as exc:
        log.warning("%s: the failed run could not be recorded in the history: %s", name, exc)




def note_hosts_down(ctx: FlowContext) -> list[str]:
    """Why each side's host was down in this run ("destination down: ..."), also kept in the
    ledger for `status`; a side that answered this run is forgotten there (it is up again, or
    the integration now points elsewhere)."""
    down = []
    for side, client in (("source", ctx.source_client), ("destination", ctx.destination_client)):
        breaker = client.breaker
        if breaker.open:
            down.append(f"{side} down: {breaker.reason}")
        if ctx.ledger is None or ctx.dry_run:
            continue
        if breaker.open:
            ctx.ledger.kv_set(HOSTS_DOWN, side, {"reason": down[-1], "at": iso(ctx.now())})
        elif breaker.answered:
            ctx.ledger.kv_delete(HOSTS_DOWN, side)
    return down


async def run_project(project: Project, integrations: list[Integration], options: Options,
                      outcomes: list[Outcome] | None = None) -> list[Outcome]:
    """Run integrations concurrently. `outcomes` (one per integration) are filled as they go,
    so a caller that cancels the run still has the counts of what was done, and a progress
    display can follow them (`Outcome.meters`)."""
    outcomes = outcomes if outcomes is not None else [Outcome(i.name) for i in integrations]
    await asyncio.gather(*(run_integration(project, i, options, o) for i, o in zip(integrations, outcomes)))
    return outcomes
