"""1,000 integrations on 1, 2 and 4 Celery worker processes: orders/s, scaling, cost per job, schedule kept.

    python bench/cluster.py [--integrations 1000] [--orders 20] [--processes 1,2,4]
                            [--period 30] [--periods 3] [--no-schedule] [--no-baseline]
                            [--redis redis://127.0.0.1:6379/13]
                            [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
    python bench/cluster.py --integrations 100 --orders 10 --period 10 --periods 2   # ~2 min

A script to run and read, not a test (see bench/README.md). It writes a project of
`--integrations` integrations (woocommerce -> extensiv, the shipped connectors without their
rate limits) into a temp dir, all reading one bench cart (`bench/server.py`, `--orders` orders)
and writing to one bench WMS, each under a `reference_prefix` of its own (B0001-, B0002-, ...),
so the WMS holds `integrations x orders` distinct references. The cart and WMS run in a process
of their own, started afresh for every measurement; the WMS counts each reference it receives
(an order sent twice would show). For each N in `--processes`:

- a fresh ledger database on the PostgreSQL server (created here, dropped at the end), and one
  `syncengine worker --concurrency N` (one Celery worker, N prefork pool processes) on a Redis
  queue of this run's own;
- round 1, "new": `syncengine enqueue` (one orders job per integration); timed from the
  enqueue until the ledger has every order `delivered` and every job's run recorded;
- round 2, "idle": the same again; the cart answers the same orders, which the ledger already
  holds, so each job is a run with nothing new: the fixed cost of a job;
- CPU: utime + stime (/proc/<pid>/stat) of the pool processes and of the worker's main process
  over each round, divided by the jobs; RSS (VmRSS) of the pool processes after the warm-up job
  and after both rounds, and their peak (VmHWM); the ledger's connections (pg_stat_activity),
  sampled while the jobs run;
- schedule (unless --no-schedule): `syncengine scheduler --every <period>s` for
  `--periods` + 1 periods (the first spreads the integrations over the period), then stopped;
  from each integration's run history, the gaps between its runs against the period.

Baselines in the same run, on the same project and servers: the engine's own one-process path
(`runner.run_project` over all integrations, as `syncengine run` does it, disk state), and a
plain httpx loop making the same GETs and POSTs (one token per integration, 4 POSTs in flight
each, 16 integrations at a time on 64 connections).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ENV = {"BENCH_KEY": "ck_bench", "BENCH_SECRET": "cs_bench", "BENCH_CLIENT": "client-id",
       "BENCH_CLIENT_SECRET": "client-secret"}
ORDERS_PATH = "/wp-json/wc/v3/orders"


# -- the servers -------------------------------------------------------------------------------

def serve(total: int, ready: Any, stop: Any) -> None:
    """Process entry point: the bench cart and a WMS that counts each reference it receives.
    Puts (cart_port, wms_port) on `ready`, serves until `stop`, then puts (received, distinct)."""
    import orjson
    import server

    class CountingWms(server.Wms):
        def __init__(self) -> None:
            super().__init__()
            self.references: collections.Counter = collections.Counter()

        def __call__(self, method: bytes, target: str, head: bytes, body: bytes) -> tuple[int, dict, bytes]:
            answer = super().__call__(method, target, head, body)
            if answer[0] == 201:
                self.references[orjson.loads(body).get("referenceNum")] += 1
            return answer

    async def main() -> None:
        loop = asyncio.get_running_loop()
        cart, wms = server.Cart(total), CountingWms()
        servers = [await loop.create_server(lambda h=h: server._Connection(h, 0.0), "127.0.0.1", 0, backlog=1024)
                   for h in (cart, wms)]
        ready.put(tuple(s.sockets[0].getsockname()[1] for s in servers))
        await loop.run_in_executor(None, stop.wait)
        for each in servers:
            each.close()
        ready.put((wms.received, len(wms.references)))

    asyncio.run(main())


class Servers:
    """The cart and WMS in a spawned process; `close()` returns (orders received, distinct references)."""

    def __init__(self, orders: int) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.ready, self.stop = spawn.Queue(), spawn.Event()
        self.process = spawn.Process(target=serve, args=(orders, self.ready, self.stop), daemon=True)
        self.process.start()
        cart, wms = self.ready.get(timeout=60)
        self.environ = {**ENV, "BENCH_CART": f"http://127.0.0.1:{cart}", "BENCH_WMS": f"http://127.0.0.1:{wms}"}

    def close(self) -> tuple[int, int]:
        self.stop.set()
        received = self.ready.get(timeout=30)
        self.process.join(10)
        return received


# -- the project -------------------------------------------------------------------------------

def write_project(folder: Path, integrations: int) -> tuple[Path, Path]:
    """Copies of the woocommerce and extensiv connectors without rate limits, and `integrations`
    integrations between them; (connectors dir, integrations dir)."""
    import yaml

    connectors, specs = folder / "connectors", folder / "integrations"
    shutil.copytree(ROOT / "connectors" / "examples", connectors / "examples")
    for kind, name in (("carts", "woocommerce"), ("wms", "extensiv")):
        spec = yaml.safe_load((ROOT / "connectors" / kind / f"{name}.yaml").read_text())
        spec["http"].pop("rate_limit", None)    # the shipped limits would pace 1,000 integrations on one host
        (connectors / kind).mkdir(parents=True)
        (connectors / kind / f"{name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False))
    specs.mkdir()
    for number in range(1, integrations + 1):
        (specs / f"b{number:04d}.yaml").write_text(f"""name: b{number:04d}
spec_version: 1
source:
  connector: woocommerce
  config: {{site_url: "${{env:BENCH_CART}}", consumer_key: "${{env:BENCH_KEY}}",
           consumer_secret: "${{env:BENCH_SECRET}}"}}
destination:
  connector: extensiv
  config: {{base_url: "${{env:BENCH_WMS}}", client_id: "${{env:BENCH_CLIENT}}",
           client_secret: "${{env:BENCH_CLIENT_SECRET}}", user_login_id: "42", customer_id: 7,
           facility_id: 1, reference_prefix: "B{number:04d}-"}}
start_date: "2026-01-01T00:00:00Z"
overlap: 10m
flows: {{orders: {{enabled: true, every: 5m}}}}
hold_minutes: 0
""")
    return connectors, specs


# -- the ledger database -----------------------------------------------------------------------

class Database:
    """A database of its own on the PostgreSQL server (asynchronous commits, as the tests'), dropped at the end."""

    def __init__(self, server: str) -> None:
        import psycopg

        self.server = server
        self.name = f"syncengine_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = server.rsplit("/", 1)[0] + "/" + self.name
        self.conn = psycopg.connect(self.url, autocommit=True)

    def one(self, sql: str, *args: Any) -> Any:
        import psycopg

        try:
            return self.conn.execute(sql, args).fetchone()[0]
        except psycopg.errors.UndefinedTable:       # no job has created the ledger's tables yet
            return 0

    def delivered(self) -> int:
        return self.one("SELECT count(*) FROM syncengine_entries WHERE status = 'delivered'")

    def runs(self) -> int:
        return self.one("SELECT count(*) FROM syncengine_runs WHERE flow = 'orders'")

    def connections(self) -> int:
        return self.one("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                        self.name)

    def history(self) -> dict[str, list[dict]]:
        import orjson

        found: dict[str, list[dict]] = collections.defaultdict(list)
        for name, doc in self.conn.execute("SELECT integration, doc FROM syncengine_runs WHERE flow = 'orders'"
                                           " ORDER BY seq"):
            found[name].append(orjson.loads(doc))
        return found

    def window(self, since: float) -> float:
        """Seconds from the first start to the last finish of the runs that started after `since`."""
        runs = [run for runs in self.history().values() for run in runs if stamp(run["started"]) >= since]
        return max(stamp(run["finished"]) for run in runs) - min(stamp(run["started"]) for run in runs)

    def drop(self) -> None:
        import psycopg

        self.conn.close()
        with psycopg.connect(self.server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# -- processes ---------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK          # utime + stime


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":")
                values[name] = int(value.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


def children(pid: int) -> list[int]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as listed:
            found += [int(each) for each in listed.read().split()]
    return found


@dataclass
class Cluster:
    """The bench's project, servers and ledger database, and the commands run against them."""

    connectors: Path
    integrations: Path
    broker: str
    queue: str
    environ: dict[str, str]
    state: str
    logs: Path
    processes: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)

    def args(self, command: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "engine", *(["-v"] if command == "scheduler" else []), command,
                "--connectors", str(self.connectors), "--integrations", str(self.integrations),
                "--state", self.state, "--broker", self.broker, "--queue", self.queue, *extra]

    def start(self, command: str, *extra: str) -> tuple[subprocess.Popen, Path]:
        log = self.logs / f"{command}-{len(self.processes)}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(self.args(command, *extra), cwd=ROOT, env={**os.environ, **self.environ},
                                       stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self.processes.append((process, log))
        return process, log

    def enqueue(self) -> None:
        result = subprocess.run(self.args("enqueue", "--flow", "orders"), cwd=ROOT,
                                env={**os.environ, **self.environ}, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"syncengine enqueue failed:\n{result.stdout}{result.stderr}")

    def send_unknown(self) -> None:
        """A job for an integration that does not exist: a worker drops it (the warm-up)."""
        from engine.cluster import RUN_FLOW, Settings, make_app

        app = make_app(Settings([], self.state, self.broker, queue=self.queue))
        app.send_task(RUN_FLOW, ("bench-warm-up", "orders"), queue=self.queue)

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(10)
        self.processes.clear()


def wait(condition: Any, timeout: float, what: str, log: Path | None = None, every: float = 0.2,
         sample: Any = None) -> float:
    """Poll `condition` until true; the seconds it took. SystemExit (with the log's tail) on timeout."""
    started = time.monotonic()
    while not condition():
        if sample is not None:
            sample()
        if time.monotonic() - started > timeout:
            tail = log.read_text(errors="replace")[-3000:] if log else ""
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
        time.sleep(every)
    return time.monotonic() - started


# -- the cluster measurement -------------------------------------------------------------------

@dataclass
class Round:
    seconds: float                 # from `syncengine enqueue` starting to the last run recorded
    window: float                  # from the first run's start to the last run's end (the ledger's times)
    jobs: int
    orders: int
    pool_cpu: float
    main_cpu: float
    peak_connections: int

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.window


@dataclass
class Measured:
    processes: int
    new: Round
    idle: Round
    rss_before: list[float]
    rss_between: list[float]       # after round 1
    rss_after: list[float]
    rss_peak: list[float]
    received: int
    distinct: int
    schedule: dict | None = None


def measure_cluster(options: argparse.Namespace, processes: int, connectors: Path, specs: Path,
                    work: Path) -> Measured:
    total = options.integrations * options.orders
    servers, database = Servers(options.orders), Database(options.postgres)
    logs = Path(tempfile.mkdtemp(dir=work, prefix=f"logs-{processes}-"))
    cluster = Cluster(connectors, specs, options.redis, f"syncengine-bench-{uuid.uuid4().hex[:8]}",
                      servers.environ, database.url, logs)
    try:
        worker, log = cluster.start("worker", "--concurrency", str(processes))
        cluster.send_unknown()
        wait(lambda: "bench-warm-up: orders job dropped" in log.read_text(errors="replace"), 120,
             "the warm-up job", log)
        wait(lambda: len(children(worker.pid)) == processes, 60, "the worker's pool processes", log)
        pool = children(worker.pid)
        rss_before = [memory_mb(pid)[0] for pid in pool]

        def round_of(runs_before: int, delivered: int) -> Round:
            peak = [0]
            last = [0.0]

            def sample() -> None:
                if time.monotonic() - last[0] > 1:
                    last[0] = time.monotonic()
                    peak[0] = max(peak[0], database.connections())

            pool_cpu, main_cpu = sum(cpu_seconds(pid) for pid in pool), cpu_seconds(worker.pid)
            started, since = time.monotonic(), time.time()
            cluster.enqueue()
            wait(lambda: database.runs() >= runs_before + options.integrations and database.delivered() >= delivered,
                 options.timeout, "every job's run", log, sample=sample)
            seconds = time.monotonic() - started
            return Round(seconds, database.window(since), options.integrations, 0 if runs_before else total,
                         sum(cpu_seconds(pid) for pid in pool) - pool_cpu, cpu_seconds(worker.pid) - main_cpu,
                         peak[0])

        new = round_of(0, total)
        rss_between = [memory_mb(pid)[0] for pid in pool]
        idle = round_of(options.integrations, total)
        memory = [memory_mb(pid) for pid in pool]
        if set(children(worker.pid)) != set(pool):
            print(f"  note: the pool changed during the rounds ({pool} -> {children(worker.pid)})")
        result = Measured(processes, new, idle, rss_before, rss_between, [m[0] for m in memory],
                          [m[1] for m in memory], 0, 0)
        if options.schedule:
            result.schedule = keep_schedule(options, cluster, database, log)
        cluster.stop()
        if database.delivered() != total:
            raise SystemExit(f"the ledger has {database.delivered()} orders delivered, expected {total}")
    finally:
        cluster.stop()
        received = servers.close()
        database.drop()
        forget_queue(options.redis, cluster.queue)
    result.received, result.distinct = received
    if result.received != total or result.distinct != total:
        raise SystemExit(f"N={processes}: the WMS received {result.received} orders ({result.distinct} distinct "
                         f"references), expected {total} once each")
    return result


def keep_schedule(options: argparse.Namespace, cluster: Cluster, database: Database, worker_log: Path) -> dict:
    """`syncengine scheduler --every <period>s` for periods + 1 periods, stopped, the queue drained;
    then the gaps between each integration's runs that started after the scheduler did."""
    period = options.period
    since = time.time()
    scheduler, log = cluster.start("scheduler", "--every", f"{period:g}s",
                                   "--schedule-file", str(cluster.logs / f"beat-{uuid.uuid4().hex[:6]}"))
    time.sleep(period * (options.periods + 1))
    scheduler.send_signal(signal.SIGTERM)
    scheduler.wait(60)
    ended = time.time()
    import redis

    client = redis.Redis.from_url(options.redis)
    try:
        wait(lambda: client.llen(cluster.queue) == 0, options.timeout, "the queue drained", worker_log)
    finally:
        client.close()
    settled = [database.runs(), time.monotonic()]

    def quiet() -> bool:                       # no new run recorded for 2 s: the jobs taken are done
        now = database.runs()
        if now != settled[0]:
            settled[:] = [now, time.monotonic()]
        return time.monotonic() - settled[1] > 2

    wait(quiet, options.timeout, "the last runs", worker_log)
    sent = log.read_text(errors="replace").count("Sending due task")
    gaps, runs, late = [], 0, 0
    for runs_of in database.history().values():
        starts = sorted(stamp(run["started"]) for run in runs_of if stamp(run["started"]) >= since)
        runs += len(starts)
        gaps += [b - a for a, b in zip(starts, starts[1:])]
    tolerance = max(1.0, period * options.tolerance)
    late = sum(1 for gap in gaps if gap > period + tolerance)
    return {"period": period, "seconds": ended - since, "sent": sent, "ran": runs, "expired": sent - runs,
            "gaps": len(gaps), "late": late, "tolerance": tolerance,
            "worst_late": max((gap - period for gap in gaps), default=0.0),
            "median_gap": sorted(gaps)[len(gaps) // 2] if gaps else 0.0}


def forget_queue(url: str, queue: str) -> None:
    """Drop what Celery kept in Redis for the bench's queue (its bindings, any message left)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.zrem("_kombu.binding_deadlines", queue)
    finally:
        client.close()


def stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the baselines -----------------------------------------------------------------------------

def result_of(child: Any, out: Any, timeout: float) -> Any:
    """What `child` put on `out`; SystemExit when it died without a result or took too long."""
    import queue

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = out.get(timeout=1)
        except queue.Empty:
            if not child.is_alive():
                raise SystemExit(f"a baseline process died (exit code {child.exitcode}): see its traceback above")
            continue
        child.join(30)
        return result
    child.terminate()
    raise SystemExit(f"a baseline process took more than {timeout:.0f} s")


def _engine_child(connectors: str, specs: str, state: str, environ: dict, out: Any) -> None:
    os.environ.update(environ)
    from engine import runner

    started = time.perf_counter()
    project = runner.load_project([connectors, specs])
    loaded = time.perf_counter() - started
    options = runner.Options(state_dir=Path(state), emit=lambda line: None)
    integrations = list(project.integrations.values())
    cpu = time.process_time()
    started = time.perf_counter()
    outcomes = asyncio.run(runner.run_project(project, integrations, options))
    seconds = time.perf_counter() - started
    errors = [o.error for o in outcomes if o.error]
    delivered = sum(o.counts["orders"].delivered for o in outcomes if "orders" in o.counts)
    out.put((seconds, time.process_time() - cpu, loaded, delivered, errors[:3], len(errors)))


def measure_engine(options: argparse.Namespace, connectors: Path, specs: Path, work: Path) -> dict:
    """The engine's one-process path: run_project over every integration at once (as `syncengine
    run` does), disk state; the load and lint of the project timed apart."""
    servers = Servers(options.orders)
    spawn = multiprocessing.get_context("spawn")
    out = spawn.Queue()
    state = tempfile.mkdtemp(dir=work, prefix="state-")
    try:
        child = spawn.Process(target=_engine_child, args=(str(connectors), str(specs), state, servers.environ, out))
        child.start()
        seconds, cpu, loaded, delivered, errors, failed = result_of(child, out, options.timeout)
    finally:
        received, distinct = servers.close()
        shutil.rmtree(state, ignore_errors=True)
    total = options.integrations * options.orders
    if failed or delivered != total or received != total or distinct != total:
        raise SystemExit(f"engine baseline: {failed} integrations failed ({errors}), delivered {delivered}, "
                         f"the WMS received {received} ({distinct} distinct), expected {total}")
    return {"seconds": seconds, "cpu": cpu, "loaded": loaded}


def _plain_child(integrations: int, environ: dict, out: Any) -> None:
    import httpx
    import orjson
    from orders import plain_wms_body

    async def main() -> int:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=environ["BENCH_CART"], auth=("ck_bench", "cs_bench"),
                                     limits=limits) as cart, \
                httpx.AsyncClient(base_url=environ["BENCH_WMS"], limits=limits) as wms:
            async def one(number: int) -> int:
                response = await cart.get(ORDERS_PATH, params={"status": "processing", "per_page": 100, "page": 1,
                                                               "orderby": "id", "order": "asc"})
                response.raise_for_status()
                orders = orjson.loads(response.content)
                token = (await wms.post("/AuthServer/api/Token", auth=("client-id", "client-secret"),
                                        data={"grant_type": "client_credentials", "user_login_id": "42"})).json()
                headers = {"Authorization": f"Bearer {token['access_token']}",
                           "Content-Type": "application/hal+json; charset=utf-8"}
                slots = asyncio.Semaphore(4)

                async def post(order: dict) -> None:
                    body = plain_wms_body(order, f"B{number:04d}-{order['number']}")
                    async with slots:
                        answer = await wms.post("/orders", content=orjson.dumps(body), headers=headers)
                    answer.raise_for_status()

                await asyncio.gather(*(post(order) for order in orders))
                return len(orders)

            at_once = asyncio.Semaphore(16)         # 16 integrations x 4 POSTs: the 64 connections, no queue in httpx

            async def gated(number: int) -> int:
                async with at_once:
                    return await one(number)

            return sum(await asyncio.gather(*(gated(n) for n in range(1, integrations + 1))))

    cpu = time.process_time()
    started = time.perf_counter()
    moved = asyncio.run(main())
    out.put((time.perf_counter() - started, time.process_time() - cpu, moved))


def measure_plain(options: argparse.Namespace) -> dict:
    servers = Servers(options.orders)
    spawn = multiprocessing.get_context("spawn")
    out = spawn.Queue()
    try:
        child = spawn.Process(target=_plain_child, args=(options.integrations, servers.environ, out))
        child.start()
        seconds, cpu, moved = result_of(child, out, options.timeout)
    finally:
        received, distinct = servers.close()
    total = options.integrations * options.orders
    if moved != total or received != total or distinct != total:
        raise SystemExit(f"plain baseline moved {moved}, the WMS received {received} ({distinct}), expected {total}")
    return {"seconds": seconds, "cpu": cpu}


# -- reporting ---------------------------------------------------------------------------------

def report(options: argparse.Namespace, results: list[Measured], engine: dict | None, plain: dict | None) -> None:
    jobs, total = options.integrations, options.integrations * options.orders
    with open("/proc/loadavg") as load:
        print(f"load average at the end: {' '.join(load.read().split()[:3])} ({os.cpu_count()} cores)")
    print(f"{jobs:,} integrations x {options.orders} orders = {total:,} orders; one `syncengine worker "
          f"--concurrency N` (N prefork pool processes), PostgreSQL ledger, Redis broker")
    base = {}
    if plain:
        base["plain"] = total / plain["seconds"]
        print(f"  plain httpx loop, 1 process      {base['plain']:>8,.0f} orders/s  {jobs / plain['seconds']:>7,.1f} "
              f"integrations/s  ({plain['seconds']:.1f} s, CPU {plain['cpu']:.1f} s)")
    if engine:
        base["run"] = total / engine["seconds"]
        print(f"  syncengine run, 1 process (disk) {base['run']:>8,.0f} orders/s  {jobs / engine['seconds']:>7,.1f} "
              f"integrations/s  ({engine['seconds']:.1f} s, CPU {engine['cpu']:.1f} s; load+lint "
              f"{engine['loaded']:.1f} s apart)")
    first = results[0].new.jobs_per_s if results else 1.0
    for r in results:
        new, idle = r.new, r.idle
        rate = total / new.window
        ratios = "  ".join(f"{rate / value:.2f}x {name}" for name, value in base.items())
        print(f"  N={r.processes}: new   {rate:>8,.0f} orders/s  {new.jobs_per_s:>7,.1f} jobs/s  "
              f"({new.window:.1f} s; {new.seconds:.1f} s from the enqueue)  scaling {new.jobs_per_s / first:.2f}x N=1"
              + (f"  vs {ratios}" if ratios else ""))
        print(f"       idle  {'':>8}           {idle.jobs_per_s:>7,.1f} jobs/s  ({idle.window:.1f} s; "
              f"{idle.seconds:.1f} s from the enqueue)  scaling {idle.jobs_per_s / results[0].idle.jobs_per_s:.2f}x N=1")
        print(f"       CPU per job: pool {1000 * new.pool_cpu / jobs:.0f} ms new ({options.orders} orders), "
              f"{1000 * idle.pool_cpu / jobs:.0f} ms idle -> {1000 * (new.pool_cpu - idle.pool_cpu) / total:.2f} ms "
              f"an order; worker main process {1000 * new.main_cpu / jobs:.1f} / {1000 * idle.main_cpu / jobs:.1f} ms")
        print(f"       RSS per pool process: {_mb(r.rss_before)} after the warm-up, {_mb(r.rss_between)} after "
              f"round 1, {_mb(r.rss_after)} after round 2 ({2 * jobs // r.processes:,} jobs each; peak "
              f"{_mb(r.rss_peak)}); ledger connections at most {max(new.peak_connections, idle.peak_connections)}; "
              f"WMS got {r.received:,} orders, {r.distinct:,} distinct")
        if r.schedule:
            s = r.schedule
            print(f"       schedule every {s['period']:g} s for {s['seconds']:.0f} s: {s['sent']:,} jobs sent, "
                  f"{s['ran']:,} ran, {s['expired']:,} expired (not started within the period); "
                  f"{s['gaps'] - s['late']:,}/{s['gaps']:,} gaps between runs within period + {s['tolerance']:g} s, "
                  f"worst {s['worst_late']:+.1f} s late, median gap {s['median_gap']:.1f} s")
        keeps = idle.jobs_per_s * options.period
        print(f"       keeps (extrapolated from idle jobs/s x period): ~{keeps:,.0f} integrations every "
              f"{options.period:g} s, ~{idle.jobs_per_s * 300:,.0f} every 5 min")


def _mb(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values) + " MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--integrations", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=20, help="orders per integration (the cart's, at most 100)")
    parser.add_argument("--processes", default="1,2,4", help="worker pool sizes to measure, comma separated")
    parser.add_argument("--period", type=float, default=30.0, help="the scheduler's --every, in seconds")
    parser.add_argument("--periods", type=int, default=3, help="periods the schedule is watched after the first")
    parser.add_argument("--tolerance", type=float, default=0.1, help="a gap within period x (1 + this) is on time")
    parser.add_argument("--no-schedule", dest="schedule", action="store_false")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13", help="broker (a database number of its own)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres",
                        help="a server where the bench may create and drop databases")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds any one wait may take")
    options = parser.parse_args(argv)
    if not 1 <= options.orders <= 100:
        parser.error("--orders: 1 to 100 (one page of the cart)")
    sizes = [int(n) for n in options.processes.split(",")]
    with tempfile.TemporaryDirectory(prefix="syncengine-bench-cluster-") as tmp:
        work = Path(tmp)
        connectors, specs = write_project(work, options.integrations)
        plain = measure_plain(options) if options.baseline else None
        engine = measure_engine(options, connectors, specs, work) if options.baseline else None
        results = []
        for size in sizes:
            results.append(measure_cluster(options, size, connectors, specs, work))
            print(f"  (N={size} measured)", flush=True)
        report(options, results, engine, plain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
