"""`syncengine run --every`: keep running each enabled flow of each integration on its own period.

Each (integration, flow) is one loop: run the flow once (fresh clients and ledger, closed after),
report it, sleep what is left of its period, again. One loop per pair means a flow never
overlaps itself, however long a run takes (a late run starts the next one at once, never two at
a time); different flows and integrations run concurrently, which the ledger's claims and
compare-and-sets make safe.

The period is the integration's `flows.<name>.every` (defaults: orders 5m, shipments 15m,
inventory 1h, cancellations 5m), or `--every DURATION` for every flow when one is given.

A paused integration (`syncengine pause`, or the console's Pause) is skipped: each of its loops
checks at the start of every period and runs nothing until it is resumed.

Stopping: the first SIGINT or SIGTERM stops starting runs and lets the runs in flight finish
for up to `grace` seconds; after that (or on a second signal) they are cancelled. Cancelling
is safe because every flow is crash-safe (claims before sends, reconciliation after): the
clients and ledgers close on the way out and the command exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import Callable, Iterator

from engine import control, runner
from engine.specs.settings import Integration

log = logging.getLogger("syncengine.schedule")
GRACE = 10.0


@dataclasses.dataclass
class Stopper:
    """Set by the first signal (`stop`); the second one (`hurry`) cancels runs in flight."""

    stop: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    hurry: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    signum: int | None = None                  # the first signal received

    def signal(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        (self.hurry if self.stop.is_set() else self.stop).set()


def jobs(integrations: list[Integration], options: runner.Options,
         every: float | None) -> list[tuple[Integration, str, float]]:
    """(integration, flow, period in seconds) for every enabled flow that should run."""
    return [(integration, flow, every or integration.flows[flow])
            for integration in integrations for flow in integration.flows
            if flow in runner.FLOWS and (not options.flows or flow in options.flows)]


async def serve(project: runner.Project, integrations: list[Integration], options: runner.Options, *,
                every: float | None, stopper: Stopper, report: Callable[[runner.Outcome], None],
                grace: float = GRACE, latest: dict[tuple[str, str], runner.Outcome] | None = None) -> None:
    """Run every job on its period until `stopper` says stop; then finish or cancel what runs.
    `latest` gets the outcome of each job's current (or last) run as it starts (progress)."""
    latest = {} if latest is None else latest
    loops = [asyncio.create_task(_loop(project, integration, flow, period, options, stopper.stop, report, latest),
                                 name=f"{integration.name}:{flow}")
             for integration, flow, period in jobs(integrations, options, every)]
    if not loops:
        return
    await stopper.stop.wait()
    hurry = asyncio.create_task(stopper.hurry.wait())
    deadline = asyncio.create_task(asyncio.sleep(grace))
    await asyncio.wait([asyncio.gather(*loops, return_exceptions=True), hurry, deadline],
                       return_when=asyncio.FIRST_COMPLETED)
    for task in (*loops, hurry, deadline):
        task.cancel()
    await asyncio.gather(*loops, hurry, deadline, return_exceptions=True)


async def _loop(project: runner.Project, integration: Integration, flow: str, period: float,
                options: runner.Options, stop: asyncio.Event, report: Callable[[runner.Outcome], None],
                latest: dict[tuple[str, str], runner.Outcome]) -> None:
    one = dataclasses.replace(options, flows=[flow])
    while not stop.is_set():
        started = time.monotonic()
        latest[integration.name, flow] = outcome = runner.Outcome(integration.name)
        try:
            if _paused(options, integration.name):
                log.info("%s: paused, %s not run (syncengine resume)", integration.name, flow)
                outcome = None
            else:
                await runner.run_integration(project, integration, one, outcome)
        except Exception as exc:  # noqa: BLE001 - a bug in one run must not stop the schedule
            log.exception("%s: %s run failed", integration.name, flow)
            outcome = runner.Outcome(integration.name, error=f"{flow}: {type(exc).__name__}: {exc}")
        if outcome is not None:
            report(outcome)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, period - (time.monotonic() - started)))


def _paused(options: runner.Options, name: str) -> bool:
    """An operator paused the integration (`syncengine pause`, or the console); a dry run never
    writes the ledger a pause would be read from."""
    return not options.dry_run and control.is_paused(options.state_dir, name)


def run_every(project: runner.Project, integrations: list[Integration], options: runner.Options, *,
              every: float | None, report: Callable[[runner.Outcome], None], grace: float = GRACE,
              shown: Callable[[Callable[[], list[runner.Outcome]]], contextlib.AbstractAsyncContextManager]
              | None = None) -> None:
    """Serve until SIGINT or SIGTERM; returns once everything is closed. `shown(outcomes)`, a
    progress display following the runs, is open meanwhile."""

    async def main() -> None:
        stopper, latest = Stopper(), {}
        display = shown(lambda: list(latest.values())) if shown else contextlib.nullcontext()
        async with display:
            with signals(stopper):       # runs in flight stop reading at the first signal, then finish
                await serve(project, integrations, dataclasses.replace(options, stop=stopper.stop), every=every,
                            stopper=stopper, report=report, grace=grace, latest=latest)

    asyncio.run(main())


@contextlib.contextmanager
def signals(stopper: Stopper) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):   # not on this platform/thread
            loop.add_signal_handler(sig, stopper.signal, sig)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
