"""Orders/s per core of the read side: syncengine against dlt's rest_api, Airbyte's declarative
CDK and a plain httpx loop, on the same paged server, each in a fresh process.

    python bench/throughput.py [--orders 50000] [--page-size 250] [--repeat 1]
                               [--peer-python /work/benchenv/bin/python] [--only plain,dlt,airbyte,engine]
                               [--only plain,mapped,claimed,engine]     # the floors (see read_mapped)

A script to run and read, not a test (see bench/README.md, "throughput.py"). The cart of
`bench/server.py` runs in its own process (page-number paging, `?page=N&per_page=P`, Basic
auth); every reader reads the pages one after the other. Each reader runs in a fresh process
(`python bench/throughput.py --child NAME ...`), sets itself up untimed (imports, the engine's
load and lint, the peers' source construction), then reads every order while the clock and the
process's CPU time (`time.process_time`: every thread of it) run, and prints one JSON line.
In instructions (load-independent): `valgrind --tool=callgrind --collect-atstart=no
--toggle-collect=_operator_call python bench/throughput.py --child NAME CART SIZE` against a
running `bench/server.py` cart counts one reader's read alone (not Airbyte's worker threads).
dlt and airbyte-cdk are not dependencies of this project: they run under `--peer-python`, an
interpreter of a separate venv (`python3.11 -m venv /work/benchenv && /work/benchenv/bin/pip
install dlt airbyte-cdk orjson`); without them a peer is skipped with the reason.
"""

from __future__ import annotations

import argparse
import atexit
import json
import multiprocessing
import operator
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDERS_PATH = "/wp-json/wc/v3/orders"
USER, PASSWORD = "ck_bench", "cs_bench"
READERS = ("plain", "dlt", "airbyte", "engine")     # and "base", with --base; "mapped", "claimed" on request
WHAT = {"plain": "httpx.Client GET + orjson.loads, nothing else",
        "dlt": "dlt rest_api resource iterated (page_number paginator), no destination",
        "airbyte": "Airbyte declarative manifest (DefaultPaginator + PageIncrement), read() messages",
        "engine": "syncengine orders flow: pull, filter, key, ledger claim, map, validate, rules; no-op delivery",
        "base": "the same, with the engine of --base (another checkout: before/after)",
        "mapped": "plain + the engine's generated function (key, watermark, filter, map) and order check per record",
        "claimed": "mapped + one bare SQLite claim per page (INSERT OR IGNORE ... RETURNING, synchronous=FULL)"}


# -- readers (each runs in its own fresh process) -------------------------------------------------

def read_plain(cart: str, size: int) -> tuple[Callable[[], int], dict[str, str]]:
    import httpx
    import orjson
    _untimed_imports()

    def run() -> int:
        return sum(len(orjson.loads(content)) for content in _plain_pages(httpx, cart, size))

    return run, _versions("httpx", "orjson")


def _plain_pages(httpx: Any, cart: str, size: int) -> Iterator[bytes]:
    """The body of each page, one GET after the other with `httpx.Client`, until X-WP-TotalPages."""
    page = 1
    with httpx.Client(base_url=cart, auth=(USER, PASSWORD)) as client:
        while True:
            response = client.get(ORDERS_PATH, params={"page": page, "per_page": size})
            response.raise_for_status()
            yield response.content
            if page >= int(response.headers["x-wp-totalpages"]):
                return
            page += 1


def read_dlt(cart: str, size: int) -> tuple[Callable[[], int], dict[str, str]]:
    """dlt's rest_api source (https://dlthub.com/docs/dlt-ecosystem/verified-sources/rest_api/basic):
    a `page_number` paginator with no total (it stops after an empty page), iterated as a resource."""
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {"base_url": cart, "auth": {"type": "http_basic", "username": USER, "password": PASSWORD},
                   "paginator": {"type": "page_number", "base_page": 1, "page_param": "page",
                                 "total_path": None, "stop_after_empty_page": True}},
        "resources": [{"name": "orders", "endpoint": {"path": ORDERS_PATH.lstrip("/"),
                                                      "params": {"per_page": size}, "data_selector": "$"}}],
    })

    def run() -> int:
        return sum(1 for _ in source.resources["orders"])

    return run, _versions("dlt")


def read_airbyte(cart: str, size: int) -> tuple[Callable[[], int], dict[str, str]]:
    """Airbyte's declarative (low-code) CDK: a manifest with one DeclarativeStream, a
    DefaultPaginator with PageIncrement (it stops at a page with fewer than `page_size` records),
    read through the source's `read` as the `read` entry point does."""
    import logging

    from airbyte_cdk.models import (AirbyteStream, ConfiguredAirbyteCatalog, ConfiguredAirbyteStream,
                                    DestinationSyncMode, SyncMode, Type)
    from airbyte_cdk.sources.declarative.concurrent_declarative_source import ConcurrentDeclarativeSource

    manifest = {
        "version": "6.0.0", "type": "DeclarativeSource",
        "check": {"type": "CheckStream", "stream_names": ["orders"]},
        "streams": [{
            "type": "DeclarativeStream", "name": "orders", "primary_key": [],
            "schema_loader": {"type": "InlineSchemaLoader", "schema": {"type": "object", "properties": {}}},
            "retriever": {
                "type": "SimpleRetriever",
                "requester": {"type": "HttpRequester", "url_base": cart, "path": ORDERS_PATH, "http_method": "GET",
                              "authenticator": {"type": "BasicHttpAuthenticator", "username": USER,
                                                "password": PASSWORD}},
                "record_selector": {"type": "RecordSelector",
                                    "extractor": {"type": "DpathExtractor", "field_path": []}},
                "paginator": {"type": "DefaultPaginator",
                              "page_size_option": {"type": "RequestOption", "inject_into": "request_parameter",
                                                   "field_name": "per_page"},
                              "page_token_option": {"type": "RequestOption", "inject_into": "request_parameter",
                                                    "field_name": "page"},
                              "pagination_strategy": {"type": "PageIncrement", "page_size": size,
                                                      "start_from_page": 1, "inject_on_first_request": True}},
            },
        }],
    }
    stream = AirbyteStream(name="orders", json_schema={}, supported_sync_modes=[SyncMode.full_refresh])
    catalog = ConfiguredAirbyteCatalog(streams=[ConfiguredAirbyteStream(
        stream=stream, sync_mode=SyncMode.full_refresh, destination_sync_mode=DestinationSyncMode.overwrite)])
    source = ConcurrentDeclarativeSource(catalog=catalog, config={}, state=None, source_config=manifest)
    logger = logging.getLogger("airbyte")
    logger.setLevel(logging.WARNING)

    def run() -> int:
        return sum(1 for message in source.read(logger, {}, catalog, None) if message.type == Type.RECORD)

    return run, _versions("airbyte-cdk")


def read_mapped(cart: str, size: int, claim: bool = False) -> tuple[Callable[[], int], dict[str, str]]:
    """A floor, not a reader: the plain loop plus the per-record work no engine doing this job
    can skip, with nothing of the engine around it: the engine's own generated function (key,
    watermark, filter, map of the shipped woocommerce `list_orders`, and the canonical-order
    check it holds, as the engine compiles it) on each record; with `claim`, one SQLite transaction per page
    inserting each key with a small JSON document, as the ledger's claim does (WAL,
    synchronous=FULL). What the engine spends beyond `claimed` is its own overhead."""
    import sqlite3

    import httpx
    import orjson
    import yaml

    sys.path.insert(0, str(ROOT))
    from engine import extract, records
    _untimed_imports()

    data = yaml.safe_load((ROOT / "connectors/carts/woocommerce.yaml").read_text())["operations"]["list_orders"]
    function = extract.compile_record([data["key"], data["watermark"], data["filter"]], data["map"],
                                      guard=data["filter"], check=records.FusedCheck("order", frozenset({"key"})))
    whole = getattr(function, "checked", None) != "order"       # else the function checks the order itself
    check = records.fast_check("order") if whole else records.property_check("order", "key")
    database = sqlite3.connect(_scratch() / "claims.db", isolation_level=None)
    for statement in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                      "CREATE TABLE Entries (rowid INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, status TEXT NOT NULL,"
                      " updated REAL NOT NULL, doc TEXT NOT NULL, raw TEXT)",
                      "CREATE INDEX Entries_status_updated ON Entries(status, updated)"):
        database.execute(statement)

    def claim_page(rows: list) -> None:
        values = ", ".join(["(?, ?, ?, ?, NULL)"] * len(rows))
        database.execute("BEGIN IMMEDIATE")
        database.execute(f"INSERT OR IGNORE INTO Entries(key, status, updated, doc, raw) VALUES {values} RETURNING key",
                         [value for row in rows for value in row]).fetchall()
        database.execute("COMMIT")

    def run() -> int:
        count = 0
        for content in _plain_pages(httpx, cart, size):
            rows, now = [], time.time()
            for raw in orjson.loads(content):
                key, mark, _, order = function(raw)
                order["key"] = key
                if not (check(order) if whole else check(key)):
                    raise SystemExit(f"mapped: order {key} does not pass the check")
                doc = {"v": 3, "created": now, "data": {"order_id": order["order_id"],
                                                         "order_number": order["order_number"], "updated": mark}}
                rows.append((key, "pending", now, orjson.dumps(doc).decode()))
            if claim and rows:
                claim_page(rows)
            count += len(rows)
        return count

    return run, _versions("httpx", "orjson")


def read_claimed(cart: str, size: int) -> tuple[Callable[[], int], dict[str, str]]:
    return read_mapped(cart, size, claim=True)


def read_engine(cart: str, size: int) -> tuple[Callable[[], int], dict[str, str]]:
    """The orders flow of `bench/orders.py --mode pull --workers 1`, pages read one at a time."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(HERE))
    from orders import Settings, write_project

    if os.environ.get("THROUGHPUT_BASE"):            # the "base" reader: another checkout's engine
        sys.path.insert(0, os.environ["THROUGHPUT_BASE"])
    from engine import runner
    from engine.flows.orders import OrdersFlow
    _untimed_imports()

    class PullOnlyFlow(OrdersFlow):
        async def deliver(self, ready: list) -> None:
            self.counts.add("delivered", len(ready))

    folder = _scratch()
    write_project(folder, Settings(0, "pull", size, 0.0, 1), cart, "http://127.0.0.1:9")
    project = runner.load_project([folder])
    integration = project.select("bench")[0]
    options = runner.Options(state_dir=folder / "state", emit=lambda line: None, workers=1)

    async def pull() -> int:
        async with runner.open_context(project, integration, options) as ctx:
            flow = PullOnlyFlow(ctx)
            await flow.run()
        if flow.counts.delivered != flow.counts.pulled:
            raise SystemExit(f"engine: {flow.counts.summary()}")
        return flow.counts.pulled

    versions = _versions("syncengine", "httpx", "orjson")
    versions["from"] = str(Path(runner.__file__).resolve().parent.parent)
    return lambda: asyncio.run(pull()), versions


def _scratch() -> Path:
    """A directory for a reader's ledger, removed when its process ends (a 200,000-order ledger
    is ~100 MB; runs of the bench left gigabytes in /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="throughput-"))
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _untimed_imports() -> None:
    """What httpx imports only when its first client is made (httpcore, and with it trio where
    it is installed: ~0.1 s of CPU): set-up, like the peers' imports, not part of the read."""
    import anyio._backends._asyncio  # noqa: F401
    import httpcore  # noqa: F401


def _versions(*names: str) -> dict[str, str]:
    from importlib.metadata import version

    found = {name: version(name) for name in names}
    found["python"] = sys.version.split()[0]
    return found


def child(name: str, cart: str, size: int) -> None:
    """Set the reader up, then time one read of every order; print the JSON result."""
    try:
        run, versions = globals()[f"read_{name}"](cart, size)
    except ImportError as exc:
        print(json.dumps({"skipped": f"not installed ({exc.name}): pip install "
                                     + {"dlt": "dlt", "airbyte": "airbyte-cdk"}.get(name, str(exc.name))}))
        return
    wall, cpu = time.perf_counter(), time.process_time()
    orders = operator.call(run)     # under callgrind, --toggle-collect=_operator_call counts the read alone
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"orders": orders, "wall": wall, "cpu": cpu, "versions": versions}))


# -- the parent: server, fresh processes, report ---------------------------------------------------

def measure(name: str, python: str, cart: str, size: int, base: str | None) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": "", "PYTHONHASHSEED": "0", "THROUGHPUT_BASE": ""}
    if name == "base":
        env["THROUGHPUT_BASE"] = base or ""
        name = "engine"
    done = subprocess.run([python, str(Path(__file__).resolve()), "--child", name, cart, str(size)],
                          capture_output=True, text=True, env=env, cwd=str(ROOT))
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"skipped": f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--page-size", type=int, default=250)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each reader; the best (by CPU) counts")
    parser.add_argument("--peer-python", default=os.environ.get("PEER_PYTHON", "/work/benchenv/bin/python"),
                        help="interpreter with dlt and airbyte-cdk installed")
    parser.add_argument("--only", default=",".join(READERS), help="readers to run, comma-separated")
    parser.add_argument("--base", help="a checkout of syncengine to measure as reader 'base' too (before/after)")
    parser.add_argument("--child", nargs=3, metavar=("NAME", "CART", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return 0
    sys.path.insert(0, str(HERE))
    from server import serve

    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Queue(), spawn.Event()
    server = spawn.Process(target=serve, args=(args.orders, 0.0, ready, stop), daemon=True)
    server.start()
    results: dict[str, dict[str, Any]] = {}
    try:
        cart = f"http://127.0.0.1:{ready.get(timeout=60)[0]}"
        for _ in range(args.repeat):
            for name in args.only.split(",") + (["base"] if args.base else []):
                python = args.peer_python if name in ("dlt", "airbyte") else sys.executable
                if not Path(python).exists():
                    results[name] = {"skipped": f"no interpreter {python} (--peer-python)"}
                    continue
                result = measure(name, python, cart, args.page_size, args.base)
                if "skipped" in result and name in results:
                    continue
                if name not in results or result.get("cpu", 1e9) < results[name].get("cpu", 1e9):
                    results[name] = result
    finally:
        stop.set()
        server.join(10)
    report(results, args)
    return 0


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    print(f"{args.orders:,} orders, {args.page_size} a page, pages read one after the other; "
          f"best of {args.repeat} by CPU; load {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    plain = results.get("plain", {})
    print(f"  {'reader':<8} {'orders/s wall':>14} {'orders/CPU-s':>13} {'wall/plain':>10} {'CPU/plain':>10}  versions")
    for name, result in results.items():
        if "skipped" in result:
            print(f"  {name:<8} skipped: {result['skipped']}")
            continue
        wall, cpu = result["orders"] / result["wall"], result["orders"] / result["cpu"]
        ratios = ("", "")
        if "orders" in plain:
            ratios = (f"{wall / (plain['orders'] / plain['wall']):.2f}",
                      f"{cpu / (plain['orders'] / plain['cpu']):.2f}")
        if result["orders"] != args.orders:
            name += "!"       # read the wrong number of orders
        versions = " ".join(f"{k} {v}" for k, v in result["versions"].items())
        print(f"  {name:<8} {wall:>14,.0f} {cpu:>13,.0f} {ratios[0]:>10} {ratios[1]:>10}  {versions}")
    for name in results:
        print(f"  {name}: {WHAT[name]}")


if __name__ == "__main__":
    sys.exit(main())
