"""What the orders flow's intake costs, in instructions: stable on a loaded machine.

    valgrind --tool=callgrind --collect-atstart=no --toggle-collect=functools_reduce \\
        python bench/intake_cost.py [--pages 9] [--base DIR]

A script to run and read, not a test (see bench/README.md, "throughput.py"). It loads the bench
project of `bench/orders.py` (the woocommerce connector, a `DiskLedger` with fsync), warms up
on one page, then runs `OrdersFlow.intake` (assess every record, claim the page) on the other
pages of 250 fresh orders, `orjson.loads` of each page included, inside `functools.reduce`:
callgrind's `--toggle-collect=functools_reduce` counts only that. `--base DIR` measures another
checkout's engine. Without valgrind it prints the CPU time per order instead.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=9, help="pages of 250 orders (the first warms up)")
    parser.add_argument("--base", help="a checkout of syncengine to measure instead of this one")
    args = parser.parse_args(argv)
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    import orjson
    from orders import Settings, write_project

    if args.base:                                   # after `orders`, which puts this checkout first
        sys.path.insert(0, args.base)
    from engine import runner
    from engine.flows.orders import OrdersFlow
    from server import Cart                         # (the sample servers import the engine too)

    folder = Path(tempfile.mkdtemp(prefix="intake-cost-"))
    write_project(folder, Settings(0, "pull", 250, 0.0, 1), "http://127.0.0.1:9", "http://127.0.0.1:9")
    project = runner.load_project([folder])
    options = runner.Options(state_dir=folder / "state", emit=lambda line: None, workers=1)
    cart = Cart(250 * args.pages)
    pages = [cart.page(number, 250) for number in range(1, args.pages + 1)]

    async def measure() -> float:
        async with runner.open_context(project, project.select("bench")[0], options) as ctx:
            flow = OrdersFlow(ctx)
            flow.intake(orjson.loads(pages[0]))
            gc.freeze()
            started = time.process_time()
            functools.reduce(lambda _, __: [flow.intake(orjson.loads(page)) for page in pages[1:]], [0, 1])
            return time.process_time() - started

    seconds = asyncio.run(measure())
    orders = 250 * (args.pages - 1)
    print(f"{orders:,} orders ({Path(runner.__file__).parent}): {seconds / orders * 1e6:.1f} µs of CPU an order "
          f"(under callgrind: divide its 'Collected' count by {orders:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
