"""The commands that move data or read the ledger: `run`, `status`, `retry`, `reset`.

Each is a handler `(args, stdout, stderr) -> exit code` (its arguments are in `engine.arguments`);
`engine.cli.COMMANDS` lists them and imports this module only when one of them runs. Exit codes: 0 all went well, 1 something failed (an order
that could not be delivered, an integration that stopped), 2 usage or spec errors.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import time
from pathlib import Path
from typing import TextIO

from engine import progress, runlock, runner, schedule
from engine.errors import ConfigError, SpecError
from engine.flows import protocol
from engine.flows.orders import OrdersFlow
from engine.ledger import STATUSES, DiskLedger
from engine.specs.settings import seconds

RETRYABLE = ("error", "quarantined", "held")
runs = logging.getLogger("syncengine.run")


def load(args: argparse.Namespace, stdout: TextIO) -> runner.Project:
    """Load and lint the project; a spec that does not lint clean stops here, before any request."""
    paths = [args.connectors, args.integrations]
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise ConfigError("no such directory: " + ", ".join(missing))
    try:
        return runner.load_project(paths)
    except SpecError as exc:
        from engine.cli import format_finding   # the one place findings are formatted
        stdout.writelines(format_finding(finding) for finding in exc.findings)
        raise ConfigError(f"{len(exc.findings)} problem(s) in the specs: nothing was run") from None


def run_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run the enabled flows of every (or one) integration once."""
    project = load(args, stdout)
    options = runner.Options(Path(args.state_dir), args.flow, args.dry_run, emit=lambda line: print(line, file=stdout),
                             workers=args.workers)
    _disabled_flows(project.select(args.integration), args.flow, stdout)
    if args.every is not None:
        return _run_every(project, args, options, stdout, stderr)
    integrations = project.select(args.integration)
    outcomes = [runner.Outcome(integration.name) for integration in integrations]
    signum, cut = asyncio.run(_run_once(project, integrations, options, outcomes, args.grace, stdout, stderr))
    report(outcomes, stdout)
    if signum is not None:
        name = signal.Signals(signum).name
        if cut:
            stdout.write(f"stopped by {name}: sends still in flight after {args.grace:g}s were cut off; "
                         "the next run reconciles them (nothing is lost or sent twice)\n")
        else:
            stdout.write(f"stopped by {name}: reading stopped and every send in flight finished; "
                         "the next run reads on from where this one stopped\n")
        return 128 + signum
    return 1 if any(outcome.failed for outcome in outcomes) else 0


async def _run_once(project: runner.Project, integrations: list, options: runner.Options,
                    outcomes: list[runner.Outcome], grace: float, stdout: TextIO, stderr: TextIO
                    ) -> tuple[int | None, bool]:
    """Run once, its progress shown on stderr when that is a terminal. The first SIGINT/SIGTERM
    stops reading and lets sends in flight finish for up to `grace` seconds, a second one (or
    the end of the grace) cancels them: every flow is crash-safe, so a cancelled send is
    reconciled by the next run. (signal or None, cut off)."""
    async with progress.shown(lambda: outcomes, stderr, stdout):
        return await _stoppable(project, integrations, options, outcomes, grace)


async def _stoppable(project: runner.Project, integrations: list, options: runner.Options,
                     outcomes: list[runner.Outcome], grace: float) -> tuple[int | None, bool]:
    stopper = schedule.Stopper()
    options.stop = stopper.stop
    cut = False
    with schedule.signals(stopper):
        work = asyncio.create_task(runner.run_project(project, integrations, options, outcomes=outcomes))
        stop = asyncio.create_task(stopper.stop.wait())
        try:
            await asyncio.wait([work, stop], return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                hurry = asyncio.create_task(stopper.hurry.wait())
                await asyncio.wait([work, hurry], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
                hurry.cancel()
                if not work.done():
                    cut = True
                    work.cancel()
        finally:
            stop.cancel()
        try:
            await work
        except asyncio.CancelledError:
            if not cut:
                raise
    return stopper.signum, cut


def _disabled_flows(integrations: list, flows: list[str] | None, stdout: TextIO) -> None:
    """Say which flows named with --flow an integration does not enable (they are not run there);
    refuse when none of them is enabled anywhere, since the run would do nothing."""
    if not flows:
        return
    for integration in integrations:
        off = [flow for flow in flows if flow not in integration.flows]
        if off:
            stdout.write(f"{integration.name}: not enabled, not run: {', '.join(off)} "
                         f"(set flows.<name>.enabled: true in {integration.path})\n")
    if not any(flow in integration.flows for integration in integrations for flow in flows):
        raise ConfigError(f"no selected integration enables {' or '.join(flows)}: nothing to run")


def _run_every(project: runner.Project, args: argparse.Namespace, options: runner.Options, stdout: TextIO,
               stderr: TextIO) -> int:
    every = seconds(args.every) if args.every else None
    if every is not None and every <= 0:
        raise ConfigError("--every must be above zero")

    def stamped(outcome: runner.Outcome) -> None:
        stdout.write(f"[{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}] ")
        report([outcome], stdout)
        stdout.flush()

    stdout.write(f"running every {args.every or 'flow on its own schedule'}; stop with Ctrl-C or SIGTERM\n")
    stdout.flush()
    schedule.run_every(project, project.select(args.integration), options, every=every, report=stamped,
                       grace=args.grace, shown=lambda outcomes: progress.shown(outcomes, stderr, stdout))
    stdout.write("stopped: every run finished or was cancelled safely; clients and ledgers closed\n")
    return 0


def report(outcomes: list[runner.Outcome], stdout: TextIO) -> None:
    """One line per integration and flow; the error when an integration stopped. Each is a log
    record too (`syncengine.run`): INFO, ERROR when something failed, so that a log collector
    sees every run's outcome, `--every` runs included, which have no exit code of their own."""
    for outcome in outcomes:
        for flow, counts in outcome.counts.items():
            line = f"{outcome.integration}: {flow}: {counts.summary()}"
            stdout.write(line + "\n")
            bad = any(getattr(counts, name, 0) for name in ("failed", "quarantined", "unresolved"))
            runs.log(logging.ERROR if bad else logging.INFO, "%s", line,
                     extra={"integration": outcome.integration, "flow": flow, "counts": dataclasses.asdict(counts)})
        if outcome.error:
            stdout.write(f"{outcome.integration}: FAILED: {outcome.error}\n")
            runs.error("%s: FAILED: %s", outcome.integration, outcome.error,
                       extra={"integration": outcome.integration, "flow": None})



def status_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Counts by status, latest errors, and the skipped, quarantined and held orders with reasons."""
    names = ledger_names(Path(args.state_dir), args.integration)
    for name in names:
        with DiskLedger(args.state_dir, name) as ledger:
            counts = ledger.counts()
            shown = ", ".join(f"{status} {counts[status]}" for status in STATUSES if counts.get(status))
            stdout.write(f"{name}: {shown or 'no orders yet'}; watermark {ledger.watermark('orders') or '-'}\n")
            for status in ("error", "quarantined", "held", "skipped", "sending", "shipped", "cancel_too_late"):
                for entry in ledger.latest(status, args.limit):
                    why = entry.last_error if status in ("error", "sending", "shipped") else entry.reason
                    if status != "shipped" or why:
                        stdout.write(f"  {status:<15} {entry.key:<24} attempts {entry.attempts}  {why or ''}\n")
                if status != "shipped" and counts.get(status, 0) > args.limit:
                    stdout.write(f"  {status:<15} … and {counts[status] - args.limit} more (--limit N shows more)\n")
            _status_notes(ledger, args.limit, stdout)
    return 0


#: kv namespaces the other flows keep problems in -> how status introduces them
NOTES = {"inventory_skipped": "inventory skipped", "inventory_errors": "inventory failed",
         "shipments_parked": "shipment parked", "cancellations_parked": "cancel parked",
         "wms_cancellations_parked": "cart cancel parked"}


def _status_notes(ledger: DiskLedger, limit: int, stdout: TextIO) -> None:
    """Writes whose outcome is unknown, SKUs the cart does not know, failed pushes, shipments
    and cancellations waiting."""
    for n, (key, state) in enumerate(protocol.unresolved(ledger)):
        if n == limit:
            stdout.write("  write unresolved: … more\n")
            break
        stdout.write(f"  {'write unresolved':<17} {key:<24} step {state['inflight']}: {state.get('error') or 'in flight'}\n")
    for namespace, title in NOTES.items():
        for n, (key, value) in enumerate(ledger.kv_items(namespace)):
            if n == limit:
                stdout.write(f"  {title}: … more\n")
                break
            why = value.get("reason") if isinstance(value, dict) else value
            stdout.write(f"  {title:<17} {key:<24} {why}\n")


def ledger_names(state_dir: Path, only: str | None) -> list[str]:
    """The integrations that have a ledger under `state_dir`."""
    if not state_dir.is_dir():
        raise ConfigError(f"no state directory {state_dir}: nothing has run yet")
    names = sorted(path.name for path in state_dir.iterdir() if (path / "cache.db").exists())
    if only is not None:
        if only not in names:
            raise ConfigError(f"no ledger for integration {only!r} in {state_dir}")
        return [only]
    return names



def retry_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Re-assess errored, quarantined and held orders (e.g. after a spec or map fix) and deliver them."""
    ledger_names(Path(args.state_dir), args.integration)     # refuses a state dir where nothing ran
    project = load(args, stdout)
    options = runner.Options(Path(args.state_dir), ["orders"])
    failed = False
    for integration in project.select(args.integration):
        released, counts = asyncio.run(_retry(project, integration, options))
        stdout.write(f"{integration.name}: released {released}; {counts.summary()}\n")
        failed = failed or counts.failed > 0
    return 1 if failed else 0


async def _retry(project: runner.Project, integration, options: runner.Options):
    async with runner.open_context(project, integration, options) as ctx:
        with runlock.hold(options.state_dir, integration.name, "orders"):
            flow = OrdersFlow(ctx)
            released = flow.release(await flow.reenrich(ctx.ledger.iter_status(*RETRYABLE)))
            await flow.recover()
            return released, flow.counts



def reset_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """The explicit, bounded re-pull: watermark back to --since; delivered keys stay."""
    [name] = ledger_names(Path(args.state_dir), args.integration)
    with runlock.hold(Path(args.state_dir), name, "orders"), DiskLedger(args.state_dir, name) as ledger:
        released = ledger.reset_since(args.since)   # under the lock: a running pull would move it on again
    stdout.write(f"{name}: orders will be re-read from {args.since}; {released} skipped order(s) will be re-assessed; "
                 f"delivered orders still block duplicates\n")
    return 0


