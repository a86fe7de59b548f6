"""Orders/s of the engine against a plain httpx + orjson loop making the same HTTP calls.

    python bench/orders.py [--orders 20000] [--mode full|pull|latency|memory]
                           [--page-size 250] [--latency-ms 50] [--concurrency 4] [--repeat 1]
                           [--workers N (default: the number of cores)]

A script to run and read, not a test (see bench/README.md). The cart and WMS (`bench/server.py`)
run in their own process; each measurement runs in a fresh `spawn` child, so its peak RSS
(`resource.getrusage`, the largest of that child and the workers it forked) is its own. The
engine runs as `syncengine run --workers N` would (a large read split over N processes).

- full: the engine's orders flow (runner.run_project: pull, filter, key, dedupe, map,
  validate, rules, render the WMS body, POST, ledger) vs a plain script doing the same GETs and
  POSTs at the same concurrency;
- pull: pull + map + dedupe (the ledger claims; delivery is a no-op) vs the plain pull loop;
- latency: `pull` with `--latency-ms` added to every answer;
- memory: the engine's pull flow (or `--memory-of full`) at `--orders` and at ten times as
  many; peak RSS of both.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"pull": 0.5, "full": 0.5}
LATENCY_TARGET = 12_000
MEMORY_TARGET_MB = 30
ORDERS_PATH = "/wp-json/wc/v3/orders"
PARAMS = {"status": "processing", "orderby": "id", "order": "asc",
          "modified_after": "2025-12-31T23:50:00", "dates_are_gmt": "true"}


@dataclass(frozen=True)
class Settings:
    orders: int
    mode: str
    page_size: int
    latency: float
    concurrency: int
    workers: int = 1


@dataclass(frozen=True)
class Result:
    orders: int
    seconds: float
    rss_before_mb: float
    peak_rss_mb: float
    detail: str = ""

    @property
    def rate(self) -> float:
        return self.orders / self.seconds


# -- the engine side ---------------------------------------------------------------------------

def write_project(folder: Path, settings: Settings, cart: str, wms: str) -> None:
    """Bench copies of the woocommerce and extensiv connectors (page size, concurrency, no rate
    limit) and one integration between them, under `folder`."""
    import yaml

    shutil.copytree(ROOT / "connectors" / "examples", folder / "examples")
    (folder / "carts").mkdir()
    woo = yaml.safe_load((ROOT / "connectors/carts/woocommerce.yaml").read_text())
    woo["http"].pop("rate_limit")
    woo["http"]["concurrency"] = settings.concurrency
    orders = woo["operations"]["list_orders"]
    orders["request"]["params"]["per_page"] = settings.page_size
    orders["paginate"]["concurrency"] = settings.concurrency
    (folder / "carts/woocommerce.yaml").write_text(yaml.safe_dump(woo, allow_unicode=True, sort_keys=False))
    extensiv = yaml.safe_load((ROOT / "connectors/wms/extensiv.yaml").read_text())
    extensiv["http"].pop("rate_limit")
    extensiv["http"]["concurrency"] = settings.concurrency
    (folder / "wms").mkdir()
    (folder / "wms/extensiv.yaml").write_text(yaml.safe_dump(extensiv, allow_unicode=True, sort_keys=False))
    os.environ.update(BENCH_CART=cart, BENCH_WMS=wms, BENCH_KEY="ck_bench", BENCH_SECRET="cs_bench",
                      BENCH_CLIENT="client-id", BENCH_CLIENT_SECRET="client-secret")
    (folder / "bench.yaml").write_text("""name: bench
spec_version: 1
source:
  connector: woocommerce
  config: {site_url: "${env:BENCH_CART}", consumer_key: "${env:BENCH_KEY}", consumer_secret: "${env:BENCH_SECRET}"}
destination:
  connector: extensiv
  config: {base_url: "${env:BENCH_WMS}", client_id: "${env:BENCH_CLIENT}",
           client_secret: "${env:BENCH_CLIENT_SECRET}", user_login_id: "42", customer_id: 7, facility_id: 1}
start_date: "2026-01-01T00:00:00Z"
overlap: 10m
flows: {orders: {enabled: true}}
hold_minutes: 0
""")


def measure_engine(settings: Settings, cart: str, wms: str) -> Result:
    """Run the engine once in this (fresh) process; time the run, not the load and lint."""
    from engine import runner
    from engine.flows.orders import OrdersFlow

    class PullOnlyFlow(OrdersFlow):
        """Pull, map and dedupe (the ledger claims every page); deliver nothing."""

        async def deliver(self, ready: list) -> None:
            self.counts.add("delivered", len(ready))

    with tempfile.TemporaryDirectory() as tmp:
        write_project(Path(tmp), settings, cart, wms)
        project = runner.load_project([tmp])
        integration = project.select("bench")[0]
        options = runner.Options(state_dir=Path(tmp) / "state", emit=lambda line: None,
                                 workers=settings.workers)

        async def pull_only() -> Any:
            async with runner.open_context(project, integration, options) as ctx:
                flow = PullOnlyFlow(ctx)
                await flow.run()
                return flow.counts

        async def full() -> Any:
            outcome = (await runner.run_project(project, [integration], options))[0]
            if outcome.error:
                raise SystemExit(f"engine run failed: {outcome.error}")
            return outcome.counts["orders"]

        before = _rss_mb()
        started = time.perf_counter()
        counts = asyncio.run(full() if settings.mode == "full" else pull_only())
        elapsed = time.perf_counter() - started
    if counts.pulled != settings.orders or counts.delivered != settings.orders:
        raise SystemExit(f"engine moved the wrong number of orders: {counts.summary()}")
    return Result(counts.pulled, elapsed, before, _peak_mb(), counts.summary())


# -- the plain side ----------------------------------------------------------------------------

def measure_plain(settings: Settings, cart: str, wms: str) -> Result:
    """The same GETs (and POSTs) with httpx + orjson and nothing else."""
    import httpx  # noqa: F401 -- imported before the clock starts, as the engine's modules are
    import orjson  # noqa: F401

    before = _rss_mb()
    started = time.perf_counter()
    moved = asyncio.run(_plain(settings, cart, wms))
    elapsed = time.perf_counter() - started
    if moved != settings.orders:
        raise SystemExit(f"plain loop moved {moved} orders, expected {settings.orders}")
    return Result(moved, elapsed, before, _peak_mb())


async def _plain(settings: Settings, cart: str, wms: str) -> int:
    import httpx
    import orjson

    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
    params = {**PARAMS, "per_page": settings.page_size}
    async with httpx.AsyncClient(base_url=cart, auth=("ck_bench", "cs_bench"), limits=limits) as source, \
            httpx.AsyncClient(base_url=wms, limits=limits) as target:
        post = await _poster(target, orjson, settings.concurrency) if settings.mode == "full" else None

        async def page(number: int) -> list:
            response = await source.get(ORDERS_PATH, params={**params, "page": number})
            response.raise_for_status()
            return response

        first = await page(1)
        moved = await _take(orjson.loads(first.content), post)
        pending: deque = deque()
        for number in range(2, int(first.headers["x-wp-totalpages"]) + 1):
            pending.append(asyncio.ensure_future(page(number)))
            if len(pending) >= settings.concurrency:
                moved += await _take(orjson.loads((await pending.popleft()).content), post)
        while pending:
            moved += await _take(orjson.loads((await pending.popleft()).content), post)
        return moved


async def _poster(client: Any, orjson: Any, concurrency: int) -> Any:
    """A function POSTing one order, `concurrency` at a time (as the engine's client does:
    queueing hundreds of requests inside httpx's pool is much slower than a semaphore)."""
    slots = asyncio.Semaphore(concurrency)
    token = (await client.post("/AuthServer/api/Token", auth=("client-id", "client-secret"),
                               data={"grant_type": "client_credentials", "user_login_id": "42"})).json()
    headers = {"Authorization": f"Bearer {token['access_token']}",
               "Content-Type": "application/hal+json; charset=utf-8"}

    async def post(order: dict) -> None:
        body = plain_wms_body(order, order["number"])
        async with slots:
            response = await client.post("/orders", content=orjson.dumps(body), headers=headers)
        response.raise_for_status()

    return post


async def _take(orders: list, post: Any) -> int:
    if post is not None:
        await asyncio.gather(*(post(order) for order in orders))
    return len(orders)


# -- processes and reporting -------------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    """Peak RSS of this process or of the largest worker it forked and reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def _child(function: Any, settings: Settings, cart: str, wms: str, out: Any) -> None:
    out.put(function(settings, cart, wms))


def measure(function: Any, settings: Settings) -> tuple[Result, int]:
    """Start the servers, run `function` in a fresh child; the result and the orders the WMS got."""
    from server import serve

    spawn = multiprocessing.get_context("spawn")
    ready, stop, out = spawn.Queue(), spawn.Event(), spawn.Queue()
    servers = spawn.Process(target=serve, args=(settings.orders, settings.latency, ready, stop), daemon=True)
    servers.start()
    try:
        cart_port, wms_port = ready.get(timeout=60)
        child = spawn.Process(target=_child, args=(function, settings, f"http://127.0.0.1:{cart_port}",
                                                   f"http://127.0.0.1:{wms_port}", out))
        child.start()
        child.join()
        if child.exitcode != 0:
            raise SystemExit(f"{function.__name__} failed (exit code {child.exitcode})")
        result = out.get()
    finally:
        stop.set()
    received = ready.get(timeout=30)
    servers.join(10)
    return result, received


def best(function: Any, settings: Settings, repeat: int) -> Result:
    results = []
    for _ in range(repeat):
        result, received = measure(function, settings)
        expected = settings.orders if settings.mode == "full" else 0
        if received != expected:
            raise SystemExit(f"{function.__name__}: the WMS received {received} orders, expected {expected}")
        results.append(result)
    return max(results, key=lambda r: r.rate)


def report(name: str, result: Result) -> None:
    print(f"  {name:<8} {result.rate:>9,.0f} orders/s  ({result.orders:,} in {result.seconds:.2f} s)  "
          f"peak RSS {result.peak_rss_mb:.0f} MB (at start {result.rss_before_mb:.0f} MB)"
          + (f"\n           {result.detail}" if result.detail else ""))


def compare(settings: Settings, repeat: int) -> None:
    plain = best(measure_plain, settings, repeat)
    engine = best(measure_engine, settings, repeat)
    print(f"mode {settings.mode}: {settings.orders:,} orders, {settings.page_size} a page, "
          f"{settings.concurrency} pages/POSTs in flight, latency {settings.latency * 1000:g} ms, "
          f"engine --workers {settings.workers}")
    report("plain", plain)
    report("engine", engine)
    ratio = engine.rate / plain.rate
    if settings.mode == "latency":
        verdict = "meets" if engine.rate >= LATENCY_TARGET else "BELOW"
        print(f"  engine/plain {ratio:.2f}; target >= {LATENCY_TARGET:,} orders/s: {verdict}")
    else:
        verdict = "meets" if ratio >= TARGETS[settings.mode] else "BELOW"
        print(f"  engine/plain {ratio:.2f}; target >= {TARGETS[settings.mode]}: {verdict}")


def memory(settings: Settings, flow: str) -> None:
    small = Settings(settings.orders, flow, settings.page_size, settings.latency, settings.concurrency, settings.workers)
    large = Settings(settings.orders * 10, flow, settings.page_size, settings.latency, settings.concurrency,
                     settings.workers)
    results = [best(measure_engine, s, 1) for s in (small, large)]
    print(f"mode memory: the engine's {flow} flow, {settings.page_size} a page, --workers {settings.workers}")
    for result in results:
        report("engine", result)
    grew = results[1].peak_rss_mb - results[0].peak_rss_mb
    verdict = "meets" if grew <= MEMORY_TARGET_MB else "BELOW"
    print(f"  peak RSS grew {grew:.1f} MB from {small.orders:,} to {large.orders:,} orders; "
          f"target <= {MEMORY_TARGET_MB} MB: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--mode", choices=("full", "pull", "latency", "memory"), default="full")
    parser.add_argument("--page-size", type=int, default=250)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs per side; the best counts")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes the engine may split the read over (default: the number of cores)")
    parser.add_argument("--memory-of", choices=("pull", "full"), default="pull",
                        help="memory mode: which flow to run at --orders and 10x (full is slow)")
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000 if args.mode == "latency" else 0.0
    settings = Settings(args.orders, args.mode, args.page_size, latency, args.concurrency, args.workers)
    if args.mode == "memory":
        memory(settings, args.memory_of)
    else:
        compare(settings, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def plain_wms_body(order: dict, reference: str) -> dict:
    """The WMS order the plain baselines build from a cart order by hand (what the connector's
    template renders)."""
    shipping = order["shipping"]
    return {"customerIdentifier": {"id": 7}, "facilityIdentifier": {"id": 1},
            "referenceNum": reference, "poNum": str(order["id"]),
            "shipTo": {"name": f"{shipping['first_name']} {shipping['last_name']}",
                       "address1": shipping["address_1"], "city": shipping["city"], "country": shipping["country"]},
            "orderItems": [{"itemIdentifier": {"sku": line["sku"]}, "qty": line["quantity"]}
                           for line in order["line_items"]]}
