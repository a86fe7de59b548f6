"""Past one machine: integration x flow jobs on Celery workers, a shared PostgreSQL ledger.

- `syncengine worker` runs jobs `run_flow(integration, flow)`: one run of that flow, exactly as
  `syncengine run --integration I --flow F` would do it, in one of the worker's processes.
- `syncengine scheduler` (Celery beat) enqueues each enabled flow of each integration on its
  period (`flows.<name>.every`), the same periods `run --every` and `serve` keep.
- `syncengine enqueue` sends jobs now (an operator's "run it now", or a bench).

Why nothing is lost or done twice across machines:

- **one run at a time**: a job holds its (integration, flow) run lock for the whole run, a
  PostgreSQL advisory lock that the server releases when the holder's connection ends, however
  it ends. A job that finds the lock held is *skipped* (the run in progress does the work; the
  next period runs again), so a redelivered or doubly scheduled job never runs beside another;
- **acks_late**: a job is acknowledged only when its run has ended. A worker killed mid-run
  (SIGKILL, a lost machine) leaves the message unacknowledged and the broker hands it to another
  worker: at once when only the pool process died (`task_reject_on_worker_lost`), after
  `--redeliver-after` seconds (the Redis transport's visibility timeout) when the whole worker
  died; RabbitMQ redelivers as soon as the connection drops. The redelivered run is an ordinary
  run after a crash: orders left `sending` are reconciled through `find_order`, journaled writes
  through their `verify`/`skip_when`, before anything is sent again (DESIGN.md);
- **no pile-up**: a scheduled job expires when it has not started within its period (workers
  busier than the schedule drop stale jobs rather than queue them without end);
- **rate budgets**: each host's budget lives in Redis when the broker is Redis (or `--budget`),
  so the workers of every machine together keep a connector's limit.

Only this module imports Celery, and only when one of these commands runs (the `cluster`
extra: `pip install -e '.[cluster]'`). A worker keeps its project loaded and reloads it when a
spec file changes (checked every `RELOAD_CHECK` seconds), so thousands of short jobs do not each
lint and compile the specs again.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import hashlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, TextIO

from engine import control, runner
from engine.errors import ConfigError
from engine.specs.settings import seconds

log = logging.getLogger("syncengine.cluster")

RUN_FLOW = "syncengine.run_flow"
QUEUE = "syncengine"
REDELIVER_AFTER = 3600.0          # seconds; longer than any one run (a shorter run is redelivered while running: skipped)
RELOAD_CHECK = 5.0                # seconds between looks at the spec files' times and sizes


@dataclasses.dataclass
class Settings:
    """What a worker or scheduler was started with (a worker's pool processes inherit it)."""

    paths: list[str]
    state: str
    broker: str
    queue: str = QUEUE
    redeliver_after: float = REDELIVER_AFTER


_settings: Settings | None = None


def make_app(settings: Settings) -> Any:
    """The Celery app of this cluster: one task, acknowledged late, one job at a time per process."""
    try:
        from celery import Celery
    except ImportError:
        raise ConfigError("the worker, scheduler and enqueue commands need Celery: "
                          "pip install -e '.[cluster]'") from None
    app = Celery("syncengine", broker=settings.broker, set_as_current=False)
    app.conf.update(
        task_acks_late=True,                    # acknowledged when the run ended, not when it started
        task_reject_on_worker_lost=True,        # a pool process killed mid-run: its job goes back at once
        worker_prefetch_multiplier=1,           # a process holds no job it has not started
        task_default_queue=settings.queue,
        task_serializer="json", accept_content=["json"],
        task_ignore_result=True,                # outcomes are in the ledger's run history
        broker_transport_options={                # Redis: a dead worker's jobs come back after the
            "visibility_timeout": settings.redeliver_after,      # visibility timeout, found by a sweep
            "unacked_restore_interval": min(10.0, max(1.0, settings.redeliver_after / 10)),
            "unacked_restore_throttle": 1,        # every sweep looks (one sorted-set range read)
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False, worker_redirect_stdouts=False,
        enable_utc=True, timezone="UTC",
        beat_max_loop_interval=RELOAD_CHECK,
    )
    app.task(name=RUN_FLOW, ignore_result=True)(run_flow)
    return app


# -- the job -------------------------------------------------------------------------------

def run_flow(integration: str, flow: str) -> dict[str, Any]:
    """One run of `flow` for `integration` in this worker process; its summary (also logged)."""
    settings = _settings
    if settings is None:
        raise RuntimeError("run_flow runs in a `syncengine worker` process")
    project = _projects.get(settings.paths)
    target = project.integrations.get(integration)
    if target is None or flow not in target.flows or flow not in runner.FLOWS:
        log.warning("%s: %s job dropped: no such integration or flow is not enabled", integration, flow)
        return {"integration": integration, "flow": flow, "skipped": "not enabled"}
    if control.is_paused(settings.state, integration):
        log.info("%s: paused, %s not run (syncengine resume)", integration, flow)
        return {"integration": integration, "flow": flow, "skipped": "paused"}
    options = runner.Options(settings.state, [flow], emit=lambda line: log.info("%s", line), skip_busy=True)
    outcome = asyncio.run(runner.run_integration(project, target, options))
    from engine.commands import report

    report([outcome], _Discard())               # one log record per flow (`syncengine.run`)
    if outcome.busy:
        log.info("%s: %s skipped: another run of it is in progress", integration, flow)
    return {"integration": integration, "flow": flow, "busy": bool(outcome.busy), "error": outcome.error,
            "counts": {name: dataclasses.asdict(counts) for name, counts in outcome.counts.items()}}


class _Discard:
    def write(self, text: str) -> int:
        return len(text)


class _Projects:
    """The loaded project, reloaded when a file under its paths changed (checked at most every
    `RELOAD_CHECK` seconds). A spec that stops linting keeps the last good project running, loudly."""

    def __init__(self) -> None:
        self.project: runner.Project | None = None
        self.mark: tuple | None = None
        self.checked = 0.0

    def get(self, paths: list[str]) -> runner.Project:
        now = time.monotonic()
        if self.project is not None and now - self.checked < RELOAD_CHECK:
            return self.project
        self.checked = now
        mark = fingerprint(paths)
        if self.project is None or mark != self.mark:
            try:
                self.project = runner.load_project(paths)
            except Exception as exc:            # noqa: BLE001 - a bad edit must not stop the cluster
                if self.project is None:
                    raise
                log.error("the changed specs do not load (%s): running the last good ones", exc)
            self.mark = mark
        return self.project


_projects = _Projects()


def fingerprint(paths: list[str]) -> tuple:
    """Every file under `paths` with its modification time and size."""
    found = []
    for root in paths:
        for directory, _, files in os.walk(root):
            for name in files:
                try:
                    info = os.stat(os.path.join(directory, name))
                except OSError:
                    continue
                found.append((directory, name, info.st_mtime_ns, info.st_size))
    return tuple(sorted(found))


# -- the schedule --------------------------------------------------------------------------

def schedule_entries(project: runner.Project, every: float | None, flows: list[str] | None) -> dict[str, dict]:
    """Celery beat entries: one per enabled (integration, flow), on its period; a job not started
    within its period expires."""
    entries = {}
    for integration in project.integrations.values():
        for flow, period in integration.flows.items():
            if flow not in runner.FLOWS or (flows and flow not in flows):
                continue
            period = every or period
            entries[f"{integration.name} {flow}"] = {
                "task": RUN_FLOW, "args": (integration.name, flow),
                "schedule": datetime.timedelta(seconds=period), "options": {"expires": period},
            }
    return entries


def first_due(name: str, period: float, now: datetime.datetime) -> datetime.datetime:
    """The `last_run_at` a new entry starts with: its first run falls at a fixed offset into the
    first period (a hash of its name), so a thousand integrations started together are spread
    over the period instead of all due in the same second, and stay spread."""
    offset = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big") % max(1, int(period * 1000))
    return now - datetime.timedelta(seconds=period) + datetime.timedelta(milliseconds=offset)


def scheduler_class(settings: Settings, every: float | None, flows: list[str] | None) -> type:
    """beat's persistent scheduler, fed from the integrations and refreshed when a spec changes."""
    from celery.beat import PersistentScheduler

    class ProjectScheduler(PersistentScheduler):
        checked = 0.0
        mark: tuple | None = None

        def setup_schedule(self) -> None:
            super().setup_schedule()
            self._refresh(force=True)

        def tick(self, *args: Any, **kwargs: Any) -> float:
            self._refresh()
            return super().tick(*args, **kwargs)

        def _refresh(self, force: bool = False) -> None:
            now = time.monotonic()
            if not force and now - self.checked < RELOAD_CHECK:
                return
            self.checked = now
            mark = fingerprint(settings.paths)
            if mark == self.mark:
                return
            try:
                project = runner.load_project(settings.paths)
            except Exception as exc:            # noqa: BLE001 - keep the schedule it has
                log.error("the changed specs do not load (%s): keeping the schedule as it was", exc)
                self.mark = mark
                return
            self.mark = mark
            entries = schedule_entries(project, every, flows)
            clock = self.app.now()
            for name, entry in entries.items():
                if name not in self.schedule:
                    entry["last_run_at"] = first_due(name, entry["schedule"].total_seconds(), clock)
            self.merge_inplace(entries)
            self.sync()
            log.info("scheduling %d job(s) of %d integration(s)", len(entries), len(project.integrations))

        def merge_inplace(self, entries: dict) -> None:
            schedule = self.schedule
            for name in set(schedule) - set(entries):
                schedule.pop(name, None)
            for name, entry in entries.items():
                if name in schedule:
                    schedule[name].update(self.Entry(**dict(entry, name=name, app=self.app)))
                else:
                    schedule[name] = self.Entry(**dict(entry, name=name, app=self.app))

    return ProjectScheduler


# -- the commands --------------------------------------------------------------------------

def _settings_of(args: argparse.Namespace) -> Settings:
    from engine.commands import state_location

    broker = args.broker or os.environ.get("SYNCENGINE_BROKER")
    if not broker:
        raise ConfigError("no broker: give --broker redis://HOST:6379/0 (or amqp://...), or set $SYNCENGINE_BROKER")
    if not broker.startswith(("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://", "memory://")):
        raise ConfigError(f"unsupported broker URL {_safe(broker)!r}: give redis://, rediss:// or amqp://")
    _remember_password(broker)
    return Settings([args.connectors, args.integrations], state_location(args), broker,
                    queue=args.queue, redeliver_after=getattr(args, "redeliver_after", REDELIVER_AFTER))


def _remember_password(url: str) -> None:
    from urllib.parse import urlsplit

    from engine import http

    password = urlsplit(url).password
    if password:
        http.remember_secrets([password])


def _safe(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return url.replace(parts.password, "***") if parts.password else url


def _logging(verbose: int, stderr: TextIO) -> None:
    """Job summaries (`syncengine.run`) and Celery's own notices on the command's stderr."""
    handler = logging.getLogger("syncengine").handlers[:1]
    logging.getLogger("syncengine").propagate = False     # not again through Celery's root handler
    logging.getLogger("syncengine.run").setLevel(logging.INFO)
    logging.getLogger("syncengine.cluster").setLevel(logging.INFO)
    celery_log = logging.getLogger("celery")
    celery_log.handlers[:] = handler
    celery_log.setLevel(logging.INFO if verbose else logging.WARNING)
    celery_log.propagate = False


def worker_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run jobs until SIGTERM (a warm shutdown: runs in progress finish) or a second signal."""
    global _settings
    from engine.commands import load

    settings = _settings_of(args)
    _projects.project, _projects.mark = load(args, stdout, stderr), fingerprint(settings.paths)
    _projects.checked = time.monotonic()
    _use_budget(args, settings)
    _settings = settings
    app = make_app(settings)
    _logging(args.verbose, stderr)
    stdout.write(f"syncengine worker: {args.concurrency} process(es), broker {_safe(settings.broker)}, "
                 f"queue {settings.queue}, ledger {_store_location(settings.state)}\n")
    stdout.flush()
    worker = app.Worker(concurrency=args.concurrency, pool="prefork", queues=[settings.queue],
                        hostname=f"syncengine-{os.getpid()}@{socket.gethostname()}",
                        loglevel="WARNING",          # its root handler: other libraries' notices
                        without_gossip=True, without_mingle=True, optimization="fair",
                        max_tasks_per_child=args.max_jobs_per_process)
    worker.start()
    return worker.exitcode or 0


def scheduler_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Enqueue every enabled flow of every integration on its period until SIGTERM."""
    from engine.commands import load

    settings = _settings_of(args)
    project = load(args, stdout, stderr)           # refuse to start on specs that do not lint
    every = seconds(args.every) if args.every else None
    app = make_app(settings)
    _logging(args.verbose, stderr)
    jobs = schedule_entries(project, every, args.flow)
    stdout.write(f"syncengine scheduler: {len(jobs)} job(s) of {len(project.integrations)} integration(s), "
                 f"broker {_safe(settings.broker)}, queue {settings.queue}\n")
    stdout.flush()
    Path(args.schedule_file).parent.mkdir(parents=True, exist_ok=True)
    beat = app.Beat(scheduler=scheduler_class(settings, every, args.flow), schedule=args.schedule_file,
                    max_interval=RELOAD_CHECK, loglevel="INFO" if args.verbose else "WARNING", quiet=True)
    beat.run()
    return 0


def enqueue_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Send a job for each enabled flow (or `--flow`) of each integration (or `--integration`) now."""
    from engine.commands import load

    settings = _settings_of(args)
    project = load(args, stdout, stderr)
    app = make_app(settings)
    sent = 0
    for integration in project.select(args.integration):
        for flow in integration.flows:
            if flow in runner.FLOWS and (not args.flow or flow in args.flow):
                app.send_task(RUN_FLOW, (integration.name, flow), queue=settings.queue)
                sent += 1
    stdout.write(f"enqueued {sent} job(s) on {settings.queue}\n")
    return 0


def _store_location(state: str) -> str:
    from engine.ledger import open_store

    return open_store(state).location


def _use_budget(args: argparse.Namespace, settings: Settings) -> None:
    """Share each host's rate budget through Redis: `--budget`, else a Redis broker."""
    url = getattr(args, "budget", None) or (settings.broker if settings.broker.startswith(("redis://", "rediss://"))
                                             else None)
    if not url:
        return
    from engine import http

    use = getattr(http, "use_budget", None)
    if use is not None:
        use(url)
