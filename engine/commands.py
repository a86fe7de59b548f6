"""The commands that move data or read the ledger: `run`, `status`, `retry`, `reset`.

Each is a handler `(args, stdout, stderr) -> exit code` (its arguments are in `engine.arguments`);
`engine.cli.COMMANDS` lists them and imports this module only when one of them runs. Exit
codes (docs/operations.md, "Exit codes"): 0 all went well, 1 something failed (an order that
could not be delivered, an integration that stopped), 2 usage or spec errors; `status` sums the
alerts' bits (`engine.status.ALERTS`: 4 held, 8 quarantined, 16 unresolved, 32 failed).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import signal
import time
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit

from engine import control, history, http, progress, runner, schedule, status
from engine.errors import ConfigError, SpecError
from engine.flows.orders import OrdersFlow
from engine.ledger import Store, open_store
from engine.ledger.stores import is_url
from engine.specs.settings import seconds

RETRYABLE = ("error", "quarantined", "held")
runs = logging.getLogger("syncengine.run")


def load(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> runner.Project:
    """Load and lint the project; a spec with a lint error stops here, before any request (its
    warnings go to stderr)."""
    paths = [args.connectors, args.integrations]
    missing = [path for path in paths if not Path(path).exists()]
    if missing:
        raise ConfigError("no such directory: " + ", ".join(missing))
    from engine.cli import format_finding       # the one place findings are formatted
    try:
        project = runner.load_project(paths)
    except SpecError as exc:
        stdout.writelines(format_finding(finding) for finding in exc.findings)
        count = sum(finding.severity == "error" for finding in exc.findings)
        raise ConfigError(f"{count} problem(s) in the specs: nothing was run") from None
    stderr.writelines(format_finding(finding) for finding in project.warnings)
    return project


def run_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run the enabled flows of every (or one) integration once."""
    project = load(args, stdout, stderr)
    http.use_budget(args.budget)
    options = runner.Options(state_location(args), args.flow, args.dry_run, emit=lambda line: print(line, file=stdout),
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
            bad = any(getattr(counts, name, 0) for name in ("failed", "quarantined", "unresolved", "down", "waiting"))
            runs.log(logging.ERROR if bad else logging.INFO, "%s", line,
                     extra={"integration": outcome.integration, "flow": flow, "counts": dataclasses.asdict(counts)})
        if outcome.error:
            stdout.write(f"{outcome.integration}: FAILED: {outcome.error}\n")
            runs.error("%s: FAILED: %s", outcome.integration, outcome.error,
                       extra={"integration": outcome.integration, "flow": None})



def status_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Per integration: counts by status, the last run of each flow, and the failed, quarantined,
    held, skipped and unresolved items with reasons (text, or `--format json`: the document of
    `engine.status`). The exit code sums the alerts' bits: 0 all clear (docs/operations.md)."""
    document = status.status_document(state_location(args), args.integration, limit=args.limit)
    if args.format == "json":
        json.dump(document, stdout, indent=2, ensure_ascii=False)
        stdout.write("\n")
    else:
        for name, integration in document["integrations"].items():
            _status_text(name, integration, args.limit, stdout)
        if document["alerts"]:
            stdout.write(f"attention: {', '.join(document['alerts'])} (exit {document['exit_code']}; "
                         "see docs/operations.md, exit codes)\n")
    return document["exit_code"]


#: how the text status introduces each problem kind, in the order it lists them: (flow, kind, title)
TITLES = (("orders", "failed", "error"), ("orders", "quarantined", "quarantined"), ("orders", "held", "held"),
          ("orders", "skipped", "skipped"), ("orders", "unresolved", "sending"), ("shipments", "errors", "shipped"),
          ("cancellations", "too_late", "cancel_too_late"))
NOTES = (("shipments", "unresolved", "write unresolved"), ("inventory", "unresolved", "write unresolved"),
         ("cancellations", "unresolved", "write unresolved"), ("wms_cancellations", "unresolved", "write unresolved"),
         ("inventory", "skipped", "inventory skipped"), ("inventory", "errors", "inventory failed"),
         ("shipments", "parked", "shipment parked"), ("cancellations", "parked", "cancel parked"),
         ("wms_cancellations", "parked", "cart cancel parked"))


def _status_text(name: str, integration: dict, limit: int, stdout: TextIO) -> None:
    """One integration's status as text: counts, the last run per flow, then the problems."""
    counts, flows = integration["orders"], integration["flows"]
    shown = ", ".join(f"{state} {n}" for state, n in counts.items() if n)
    stdout.write(f"{name}: {shown or 'no orders yet'}; watermark {integration['watermarks']['orders'] or '-'}\n")
    for flow, state in flows.items():
        run = state["last_run"]
        if run is not None:
            summary = ", ".join(f"{key} {value}" for key, value in run["counts"].items() if value)
            stdout.write(f"  {'last run':<15} {flow:<24} {run['outcome']} at {run['started']} "
                         f"({run['duration']:g}s){': ' + summary if summary else ''}"
                         f"{' (running now)' if state['running'] else ''}\n")
            if run.get("error"):
                stdout.write(f"  {'':<15} {'':<24} {run['error']}\n")
    for flow, kind, title in TITLES:
        problem = flows[flow]["problems"][kind]
        for item in problem["items"]:
            stdout.write(f"  {title:<15} {item['key']:<24} attempts {item.get('attempts', '-')}  {item['reason'] or ''}\n")
        if problem["count"] > limit and (flow, kind) != ("shipments", "errors"):
            stdout.write(f"  {title:<15} … and {problem['count'] - limit} more (--limit N shows more)\n")
    for flow, kind, title in NOTES:
        problem = flows[flow]["problems"][kind]
        for item in problem["items"]:
            stdout.write(f"  {title:<17} {item['key']:<24} {item['reason']}\n")
        if problem["count"] > limit:
            stdout.write(f"  {title}: … {problem['count'] - limit} more\n")
    for side, note in integration.get("hosts_down", {}).items():
        stdout.write(f"  {'host down':<17} {note.get('reason')} (last run, {note.get('at')}): what it "
                     "did not send waits for the next run\n")


def state_location(args: argparse.Namespace) -> str:
    """What `--state` names (a directory or a postgresql:// URL); a password in the URL is
    masked in everything this command prints from here on."""
    location = str(args.state_dir)
    if is_url(location):
        password = urlsplit(location).password
        if password:
            http.remember_secrets([password])
    return location


def ledger_names(store: Store, only: str | None) -> list[str]:
    """The integrations that have a ledger in `store`."""
    return status.ledger_names(store, only)



def retry_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Re-assess errored, quarantined and held orders (e.g. after a spec or map fix) and deliver them."""
    location = state_location(args)
    ledger_names(open_store(location), args.integration)     # refuses a state where nothing ran
    project = load(args, stdout, stderr)
    keys = getattr(args, "key", None)
    if keys and not args.integration:
        raise ConfigError("--key needs --integration")
    failed = False
    for integration in project.select(args.integration):
        released, counts = asyncio.run(retry(project, integration, location, keys))
        stdout.write(f"{integration.name}: released {released}; {counts.summary()}\n")
        failed = failed or counts.failed > 0
        _record(location, integration.name, "retry", ",".join(keys or []) or "all",
                f"released {released}; {counts.summary()}")
    return 1 if failed else 0


async def retry(project: runner.Project, integration, state_dir: str | Path, keys: list[str] | None = None):
    """`syncengine retry` for one integration (the console's too): re-assess the errored,
    quarantined and held orders (only `keys` when given), deliver what passes; (released, counts)."""
    options = runner.Options(state_dir, ["orders"])
    async with runner.open_context(project, integration, options) as ctx:
        with options.store.lock(integration.name, "orders"):
            flow = OrdersFlow(ctx)
            if keys:
                entries = [entry for entry in map(ctx.ledger.get, keys) if entry and entry.status in RETRYABLE]
            else:
                entries = ctx.ledger.iter_status(*RETRYABLE)
            with history.recorded(ctx.ledger, "orders", flow.counts, stopped=ctx.stopped, command="retry"):
                released = flow.release(await flow.reenrich(entries))
                await flow.recover()
            return released, flow.counts


def release_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Send held orders on despite their hold (an operator's decision), then deliver them."""
    location = state_location(args)
    ledger_names(open_store(location), args.integration)
    project = load(args, stdout, stderr)
    [integration] = project.select(args.integration)
    by = control.whoami()
    with control.open_ledger(location, integration.name) as ledger:
        for key in args.key:
            control.mark_released(ledger, key, by)
    released, counts = asyncio.run(retry(project, integration, location, args.key))
    stdout.write(f"{integration.name}: released {released}; {counts.summary()}\n")
    _record(location, integration.name, "release", ",".join(args.key),
            f"released {released}; {counts.summary()}", by)
    return 1 if counts.failed else 0


def pause_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Pause (or, as `resume`, resume) the scheduled runs of an integration."""
    location = state_location(args)
    [name] = ledger_names(open_store(location), args.integration)
    on = args.command == "pause"
    with control.open_ledger(location, name) as ledger:
        done = control.set_paused(ledger, on, control.whoami())
        control.record(ledger, control.whoami(), args.command, name, done)
    stdout.write(f"{name}: {done}\n")
    return 0


def _record(state_dir: str | Path, name: str, action: str, target: str, result: str, by: str | None = None) -> None:
    with control.open_ledger(state_dir, name) as ledger:
        control.record(ledger, by or control.whoami(), action, target, result)


def reset_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """The explicit, bounded re-pull: watermark back to --since; delivered keys stay."""
    location = state_location(args)
    [name] = ledger_names(open_store(location), args.integration)
    released = reset(location, name, args.since)
    stdout.write(f"{name}: orders will be re-read from {args.since}; {released} skipped order(s) will be re-assessed; "
                 f"delivered orders still block duplicates\n")
    _record(location, name, "reset", f"since {args.since}", f"{released} skipped order(s) released")
    return 0


def reset(state_dir: str | Path, name: str, since: str) -> int:
    """`syncengine reset --since` (the console's too); the number of skipped orders released."""
    store = open_store(state_dir)
    with store.lock(name, "orders"), store.open(name) as ledger:
        return ledger.reset_since(since)   # under the lock: a running pull would move it on again
