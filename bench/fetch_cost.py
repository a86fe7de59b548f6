"""What reading a cart's pages costs the engine, in instructions: stable on a loaded machine.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=_operator_call \\
        python bench/fetch_cost.py [--reader pages|flow|plain] [--pages 21] [--base DIR]

A script to run and read, not a test (see bench/README.md, "throughput.py"). The cart of
`bench/server.py` runs in a `spawn` process (not counted: callgrind follows this process only).
One reader, after a warm-up read of one page, reads `--pages` pages of 250 orders one at a time
inside `operator.call` (callgrind's `--toggle-collect=_operator_call` counts only that; not
`functools.reduce`, which jinja calls while the project loads),
counting records and nothing else:

- pages: the engine's `HttpClient.pages` with the bench woocommerce connector's `list_orders`
  (request, paginator, records expression), as `OrdersFlow` opens it;
- flow: the same pages through `OrdersFlow._pipeline` (its fetch task, the queue, the consume
  loop), with the intake replaced by counting;
- plain: an `httpx.AsyncClient` GET + `orjson.loads` loop: the floor.

`--base DIR` measures another checkout's engine. It prints the CPU time per order too (the
least of `--repeat` reads; noisy on a shared machine, unlike the instruction count).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import multiprocessing
import operator
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = 250
ORDERS_PATH = "/wp-json/wc/v3/orders"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", choices=("pages", "flow", "plain"), default="pages")
    parser.add_argument("--pages", type=int, default=21, help="pages of 250 orders read (timed)")
    parser.add_argument("--repeat", type=int, default=1, help="timed reads; the least CPU counts")
    parser.add_argument("--base", help="a checkout of syncengine to measure instead of this one")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    if args.base:                                   # before anything imports the engine (server does)
        sys.path.insert(0, args.base)
    from server import serve

    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Queue(), spawn.Event()
    server = spawn.Process(target=serve, args=(SIZE * args.pages, 0.0, ready, stop), daemon=True)
    server.start()
    try:
        cart = f"http://127.0.0.1:{ready.get(timeout=60)[0]}"
        orders, seconds = measure(args, cart)
    finally:
        stop.set()
        server.join(10)
    import engine
    where = "plain httpx.AsyncClient" if args.reader == "plain" else str(Path(engine.__file__).parent)
    print(f"{args.reader}: {orders:,} orders ({where}): {seconds / orders * 1e6:.2f} µs of CPU an order "
          f"(least of {args.repeat}; under callgrind: divide 'Collected' by {orders * args.repeat:,})")
    return 0


def measure(args: argparse.Namespace, cart: str) -> tuple[int, float]:
    if args.reader == "plain":
        read = plain_reader(cart)
    else:
        read = engine_reader(args, cart)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(read(1))                   # warm-up: connections, imports, caches
        gc.collect()
        gc.freeze()
        best, orders = float("inf"), 0
        for _ in range(args.repeat):
            started = time.process_time()
            orders = operator.call(loop.run_until_complete, read(args.pages))
            best = min(best, time.process_time() - started)
        return orders, best
    finally:
        loop.close()


def plain_reader(cart: str):
    import httpx
    import orjson

    client = None

    async def read(pages: int) -> int:
        nonlocal client
        client = client or httpx.AsyncClient(base_url=cart, auth=("ck_bench", "cs_bench"))
        count = 0
        for page in range(1, pages + 1):
            response = await client.get(ORDERS_PATH, params={"page": page, "per_page": SIZE})
            response.raise_for_status()
            count += len(orjson.loads(response.content))
        return count

    return read


def engine_reader(args: argparse.Namespace, cart: str):
    from orders import Settings, write_project

    if args.base:                                   # `orders` put this checkout first
        sys.path.remove(args.base)
        sys.path.insert(0, args.base)
    from engine import runner
    from engine.flows.orders import OrdersFlow

    folder = Path(tempfile.mkdtemp(prefix="fetch-cost-"))
    write_project(folder, Settings(0, "pull", SIZE, 0.0, 1), cart, "http://127.0.0.1:9")
    project = runner.load_project([folder])
    options = runner.Options(state_dir=folder / "state", emit=lambda line: None, workers=1, dry_run=True)
    contexts: list = []

    class Counting(OrdersFlow):
        counted = 0

        def intake(self, raws: list) -> list:
            self.counted += len(raws)
            return []

        async def deliver(self, ready: list) -> None:
            pass

    async def context():
        if not contexts:
            opened = runner.open_context(project, project.select("bench")[0], options)
            contexts.append((opened, await opened.__aenter__()))
        return contexts[0][1]

    async def read(pages: int) -> int:
        ctx = await context()
        operation = ctx.source.operations["list_orders"]
        request = operation.request.render(ctx.context("source", since="2026-01-01T00:00:00Z"))
        paginator = operation.paginator()
        stream = ctx.source_client.pages(request, paginator, operation.extract_records)
        if args.reader == "flow":
            flow = Counting(ctx)
            await flow._pipeline(_first(stream, pages))
            return flow.counted
        count = 0
        async for page in _first(stream, pages):
            count += len(page.records)
        return count

    return read


async def _first(stream, pages: int):
    """The first `pages` pages of `stream` (the cart holds that many: the read ends there)."""
    number = 0
    async with contextlib.aclosing(stream):
        async for page in stream:
            yield page
            number += 1
            if number >= pages:
                return


if __name__ == "__main__":
    sys.exit(main())
