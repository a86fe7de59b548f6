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
import functools
import hashlib
import io
import json
import threading
import uuid
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any, TextIO

from engine import control, http, runner
from engine.errors import ConfigError, SyncEngineError, WorkerError
from engine.specs.settings import seconds

log = logging.getLogger("syncengine.cluster")

RUN_FLOW = "syncengine.run_flow"
READ_SHARE = "syncengine.read_share"
QUEUE = "syncengine"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
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
    split: int = 1                    # a large paged read is dealt out to this many jobs (`--split`)
    coordinator: str | None = None    # the Redis the shares of a split read report through


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
        result_expires=None,                    # no results, so beat schedules no result cleanup
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
    app.task(name=READ_SHARE, ignore_result=True)(read_share)
    return app


# -- the job -------------------------------------------------------------------------------

def run_flow(integration: str, flow: str) -> dict[str, Any]:
    """One run of `flow` for `integration` in this worker process; its summary (also logged).
    A ledger that cannot be reached, or specs that no longer load, end the job with one error
    line (the next period tries again); nothing was claimed, so nothing is lost."""
    settings = _settings
    if settings is None:
        raise RuntimeError("run_flow runs in a `syncengine worker` process")
    try:
        return _run_flow(settings, integration, flow)
    except SyncEngineError as exc:
        log.error("%s: %s job not run: %s", integration, flow, exc)
        return {"integration": integration, "flow": flow, "error": str(exc)}


def _run_flow(settings: Settings, integration: str, flow: str) -> dict[str, Any]:
    project = _projects.get(settings.paths)
    target = project.integrations.get(integration)
    if target is None or flow not in target.flows or flow not in runner.FLOWS:
        log.warning("%s: %s job dropped: no such integration or flow is not enabled", integration, flow)
        return {"integration": integration, "flow": flow, "skipped": "not enabled"}
    if control.is_paused(settings.state, integration):
        log.info("%s: paused, %s not run (syncengine resume)", integration, flow)
        return {"integration": integration, "flow": flow, "skipped": "paused"}
    options = runner.Options(settings.state, [flow], emit=lambda line: log.info("%s", line), skip_busy=True,
                             workers=settings.split,
                             team=functools.partial(ClusterTeam, settings=settings, integration=integration, flow=flow)
                             if settings.split > 1 else None)
    outcome = asyncio.run(runner.run_integration(project, target, options))
    from engine.commands import report

    report([outcome], io.StringIO())            # its log records (`syncengine.run`) are what the worker shows
    if outcome.busy:
        log.info("%s: %s skipped: another run of it is in progress", integration, flow)
    return {"integration": integration, "flow": flow, "busy": bool(outcome.busy), "error": outcome.error,
            "counts": {name: dataclasses.asdict(counts) for name, counts in outcome.counts.items()}}


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


def dated_entries(project: runner.Project, every: float | None, flows: list[str] | None,
                  now: datetime.datetime) -> dict[str, dict]:
    """`schedule_entries`, each with the first run of a new entry (`first_due`); beat keeps an
    entry's stored last run when it has one, so only new entries take it."""
    entries = schedule_entries(project, every, flows)
    for name, entry in entries.items():
        entry["last_run_at"] = first_due(name, entry["schedule"].total_seconds(), now)
    return entries


def scheduler_class(settings: Settings, every: float | None, flows: list[str] | None) -> type:
    """beat's persistent scheduler (the last run of each entry kept in its file across restarts),
    its entries refreshed from the integrations when a spec file changes."""
    from celery.beat import PersistentScheduler

    class ProjectScheduler(PersistentScheduler):
        checked = 0.0
        mark: tuple | None = None

        def setup_schedule(self) -> None:
            super().setup_schedule()           # the command's entries merged into the stored ones
            self.mark, self.checked = fingerprint(settings.paths), time.monotonic()

        def tick(self, *args: Any, **kwargs: Any) -> float:
            self._refresh()
            return super().tick(*args, **kwargs)

        def _refresh(self) -> None:
            now = time.monotonic()
            if now - self.checked < RELOAD_CHECK:
                return
            self.checked = now
            mark = fingerprint(settings.paths)
            if mark == self.mark:
                return
            self.mark = mark
            try:
                project = runner.load_project(settings.paths)
            except Exception as exc:            # noqa: BLE001 - keep the schedule it has
                log.error("the changed specs do not load (%s): keeping the schedule as it was", exc)
                return
            entries = dated_entries(project, every, flows, self.app.now())
            self.merge_inplace(entries)        # beat rebuilds its heap when the entries changed
            self.sync()
            log.info("scheduling %d job(s) of %d integration(s)", len(entries), len(project.integrations))

    return ProjectScheduler


# -- a large read split over the cluster ---------------------------------------------------

SHARE_LEASE = 10                  # seconds a share's liveness key lives without a heartbeat
SHARE_KEPT = 3600                 # seconds a share's state and report are kept in Redis


class ClusterTeam:
    """`workers.Team` across the cluster: a split read's shares go to other workers as
    `read_share` jobs instead of forked processes (`--split N`).

    Each share has a state key in Redis, taken once with SET NX: by the worker that runs it
    ("started"), or by the run that split the read ("here") when that run has read its own pages
    and the share has not started yet, which it then reads itself; so a busy cluster never leaves
    a run waiting for shares nobody takes, and no share is read twice. A started share keeps a
    lease key alive while it runs and pushes its report when done; a share whose lease lapsed
    without a report died with its worker, and the run fails as a split run whose forked worker
    died does (`WorkerError`): its watermark stays, and the next run reconciles what the share
    left `sending` and reads its pages again. The requests travel with every secret replaced by
    a placeholder (a digest of it), which the worker fills in from its own resolved secrets.
    """

    def __init__(self, size: int, work: Any, on_split: Any, *, settings: Settings, integration: str,
                 flow: str) -> None:
        self.size, self.work, self.on_split = size, work, on_split
        self.settings, self.integration, self.flow = settings, integration, flow
        self.shares: list[tuple[str, list[http.Request], int, float]] = []

    def split(self, planned: list[http.Request], window: int) -> tuple[list[http.Request], int] | None:
        n = min(self.size, len(planned))
        if n < 2 or self.shares:
            return None
        share_window, fraction = max(1, window // n), 1 / n
        app, secrets = make_app(self.settings), http.everywhere().secrets
        for index in range(1, n):
            requests, share = planned[index::n], f"{uuid.uuid4().hex}"
            app.send_task(READ_SHARE, (self.integration, self.flow, share, [_request_data(r, secrets) for r in requests],
                                       share_window, fraction), queue=self.settings.queue)
            self.shares.append((share, requests, share_window, fraction))
        self.on_split(fraction)
        log.info("%s: %s read split into %d shares", self.integration, self.flow, n)
        return planned[0::n], share_window

    async def join(self, *, strict: bool = True) -> list[dict[str, Any]]:
        shares, self.shares = self.shares, []
        reports, errors = [], []
        try:
            for share, requests, window, fraction in shares:
                report = await self._outcome(share, requests, window, fraction)
                (errors.append(report["error"]) if "error" in report else reports.append(report["report"]))
        finally:
            self.on_split(1.0)
        if errors and strict:
            raise WorkerError(f"{len(errors)} of {len(shares)} share(s) of the split read failed: " + "; ".join(errors))
        return reports

    async def _outcome(self, share: str, requests: list, window: int, fraction: float) -> dict[str, Any]:
        redis = _coordinator(self.settings)
        if redis.set(_key(share, "state"), "here", nx=True, ex=SHARE_KEPT):
            log.info("%s: share %s not started elsewhere: read here", self.integration, share[:8])
            try:
                return {"report": await self.work(requests, window, fraction)}
            except Exception as exc:         # noqa: BLE001 - reported like a share that failed
                return {"error": f"share {share[:8]}: {type(exc).__name__}: {exc}"}
        while True:
            found = await asyncio.to_thread(redis.blpop, [_key(share, "report")], 1)
            if found:
                return json.loads(found[1])
            if not redis.exists(_key(share, "lease")):
                found = redis.lpop(_key(share, "report"))      # it may have finished just now
                if found:
                    return json.loads(found)
                return {"error": f"share {share[:8]}: its worker died before reporting"}


def read_share(integration: str, flow: str, share: str, requests: list[dict], window: int, fraction: float) -> None:
    """A share of another run's split read: its pages through the same pipeline, the report
    pushed to Redis. Nothing to do when the share was taken already (by the run that split it,
    or by this job's earlier delivery, whose worker died: that run fails and the next reads again)."""
    settings = _settings
    if settings is None:
        raise RuntimeError("read_share runs in a `syncengine worker` process")
    redis = _coordinator(settings)
    redis.set(_key(share, "lease"), "1", ex=SHARE_LEASE)
    if not redis.set(_key(share, "state"), "started", nx=True, ex=SHARE_KEPT):
        return
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(redis, share, stop), daemon=True)
    beat.start()
    try:
        try:
            report = {"report": asyncio.run(_read_share(settings, integration, flow, requests, window, fraction))}
        except Exception as exc:             # noqa: BLE001 - the run that split the read reports it
            report = {"error": f"share {share[:8]} on {socket.gethostname()}: {type(exc).__name__}: {exc}"}
        redis.rpush(_key(share, "report"), json.dumps(report, default=str))
        redis.expire(_key(share, "report"), SHARE_KEPT)
    finally:
        stop.set()


async def _read_share(settings: Settings, integration: str, flow: str, requests: list[dict], window: int,
                      fraction: float) -> dict[str, Any]:
    project = _projects.get(settings.paths)
    target = project.integrations[integration]
    options = runner.Options(settings.state, [flow], emit=lambda line: log.info("%s", line))
    async with runner.open_context(project, target, options) as ctx:
        ctx.source_client.share_limits(fraction)
        ctx.destination_client.share_limits(fraction)
        filled = [_request(data, ctx.redact.secrets) for data in requests]
        return await runner.FLOWS[flow](ctx).read_share(filled, window)


def _heartbeat(redis: Any, share: str, stop: threading.Event) -> None:
    while not stop.wait(SHARE_LEASE / 3):
        try:
            redis.set(_key(share, "lease"), "1", ex=SHARE_LEASE)
        except Exception:                    # noqa: BLE001 - the lease lapses, the run reports it
            log.warning("share %s: its lease could not be renewed", share[:8])


def _key(share: str, part: str) -> str:
    return f"syncengine:share:{share}:{part}"


_redis_clients: dict[str, Any] = {}


def _coordinator(settings: Settings) -> Any:
    url = settings.coordinator
    if not url:
        raise ConfigError("a split read across the cluster needs Redis: a redis:// broker or --budget redis://...")
    if url not in _redis_clients:
        import redis

        _redis_clients[url] = redis.Redis.from_url(url)
    return _redis_clients[url]


PLACEHOLDER = "@@syncengine-secret:"


def _forms(secret: str) -> set[str]:
    """The spellings of a secret a rendered request may hold: as is, or URL-encoded."""
    from urllib.parse import quote, quote_plus

    return {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}


def _placeholder(form: str) -> str:
    return PLACEHOLDER + hashlib.blake2b(form.encode(), digest_size=12).hexdigest() + "@@"


def _request_data(request: http.Request, secrets: frozenset[str]) -> dict[str, Any]:
    """A request as JSON-able data for the broker, each secret replaced by a placeholder."""
    text = json.dumps({"method": request.method, "url": request.url, "params": request.params,
                       "headers": request.headers, "form": request.form, "has_json": request.json is not http.NOTHING,
                       "json": None if request.json is http.NOTHING else request.json}, default=str)
    forms = {form for secret in secrets for form in _forms(secret)}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(json.dumps(form)[1:-1], _placeholder(form))
    return json.loads(text)


def _request(data: dict[str, Any], secrets: frozenset[str]) -> http.Request:
    """The request `_request_data` sent, its placeholders filled from this worker's own secrets."""
    text = json.dumps(data)
    for form in {form for secret in secrets for form in _forms(secret)}:
        text = text.replace(_placeholder(form), json.dumps(form)[1:-1])
    if PLACEHOLDER in text:
        raise ConfigError("a share of a split read names a secret this worker did not resolve "
                          "(do all workers see the same secrets?)")
    data = json.loads(text)
    return http.Request(method=data["method"], url=data["url"], params=data["params"], headers=data["headers"],
                        json=data["json"] if data["has_json"] else http.NOTHING, form=data["form"])


# -- the commands --------------------------------------------------------------------------

def _settings_of(args: argparse.Namespace) -> Settings:
    from engine.commands import state_location

    broker = args.broker or os.environ.get("SYNCENGINE_BROKER")
    if not broker:
        raise ConfigError("no broker: give --broker redis://HOST:6379/0 (or amqp://...), or set $SYNCENGINE_BROKER")
    if not broker.startswith(("redis://", "rediss://", "amqp://", "amqps://", "pyamqp://", "memory://")):
        raise ConfigError(f"unsupported broker URL {_safe(broker)!r}: give redis://, rediss:// or amqp://")
    _remember_password(broker)
    budget = getattr(args, "budget", None)
    coordinator = next((url for url in (budget, broker) if url and url.startswith(REDIS_SCHEMES)), None)
    split = getattr(args, "split", 1)
    if split > 1 and not coordinator:
        raise ConfigError("--split needs Redis for the shares' reports: a redis:// broker or --budget redis://...")
    if budget:
        _remember_password(budget)
    return Settings([args.connectors, args.integrations], state_location(args), broker,
                    queue=args.queue, redeliver_after=getattr(args, "redeliver_after", REDELIVER_AFTER),
                    split=split, coordinator=coordinator)


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
    app = make_app(settings)                       # first: says so when Celery is not installed
    _projects.project, _projects.mark = load(args, stdout, stderr), fingerprint(settings.paths)
    _projects.checked = time.monotonic()
    _use_budget(args, settings)
    _settings = settings
    _logging(args.verbose, stderr)
    stdout.write(f"syncengine worker: {args.concurrency} process(es), split reads {settings.split} way(s), "
                 f"broker {_safe(settings.broker)}, "
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
    jobs = app.conf.beat_schedule = dated_entries(project, every, args.flow, app.now())
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
    """Where each host's rate budget lives: `--budget` (a Redis, or `file` for this machine's
    files), else the broker when it is Redis (`http.use_broker_budget`)."""
    budget = getattr(args, "budget", None)
    if budget:
        http.use_budget(budget)
    else:
        http.use_broker_budget(settings.broker)
