"""How fast the console answers with 100,000 orders in one integration (`syncengine serve`).

    python bench/console.py              # ~1 min: fills a ledger, then times each page
    python bench/console.py --orders 20000

Fills a fresh ledger (95% delivered, 3% held, 1% error, 1% skipped, each with an order number,
lines and a raw record where the status keeps one), serves the console on 127.0.0.1 (uvicorn in
a thread, as `serve` does) and times each page over real HTTP: the median of 7 loads after one
warm-up. The target is < 300 ms a page.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from console_support import TOKEN, serving, users_file  # noqa: E402

from engine import runner  # noqa: E402
from engine.ledger import DiskLedger  # noqa: E402
from engine.serve.access import Users  # noqa: E402
from engine.serve.service import build  # noqa: E402

NAME = "big-shop"


def fill(state: Path, orders: int) -> None:
    with DiskLedger(state, NAME, fsync=False) as ledger:
        batch = []
        for n in range(orders):
            key = str(100000 + n)
            share = n % 100
            status = "held" if share < 3 else "error" if share == 3 else "skipped" if share == 4 else "delivered"
            fields = {"status": status, "data": {"order_number": f"#{key}", "order_id": key,
                                                 "lines": [[f"SKU-{n % 500}", 1], [f"SKU-{(n * 7) % 500}", 2]]}}
            if status == "held":
                fields |= {"reason": "ship method 'ups_ground' is not in ship_method_map",
                           "raw": {"id": int(key), "number": key, "shipping_lines": [{"method_id": "ups_ground"}]}}
            elif status == "error":
                fields |= {"raw": {"id": int(key)}}
            elif status == "skipped":
                fields |= {"reason": "order filter 'paid only'"}
            else:
                ledger.kv_set("order_number", f"#{key}", key)
            batch.append((key, fields))
            if len(batch) == 5000:
                ledger.claim_many(batch)
                batch = []
        ledger.claim_many(batch)
        for n in range(0, orders, 100):               # errors carry their last error
            ledger.set_status(str(100003 + n), "error", last_error="HTTP 400: address incomplete") \
                if n + 3 < orders else None


def timed(client: httpx.Client, path: str) -> float:
    client.get(path).raise_for_status()
    times = []
    for _ in range(7):
        started = time.perf_counter()
        client.get(path).raise_for_status()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        started = time.perf_counter()
        fill(state, args.orders)
        print(f"filled a ledger with {args.orders} orders in {time.perf_counter() - started:.1f} s")
        console = build(runner.Project({}, {}), state, Users.load(users_file(Path(tmp) / "users")))
        pages = {
            "overview": "/",
            "integration (held, default)": f"/i/{NAME}",
            "delivered, page 1": f"/i/{NAME}?status=delivered",
            "delivered, page 20": f"/i/{NAME}?status=delivered&page=20",
            "search: order number": f"/i/{NAME}?status=delivered&q=%23150005",
            "search: key": f"/i/{NAME}?q=150001",
            "search: SKU (delivered, newest 5,000)": f"/i/{NAME}?status=delivered&q=SKU-42",
            "search: SKU (held, a scan)": f"/i/{NAME}?status=held&q=SKU-42",
            "skipped with reason filter": f"/i/{NAME}?status=skipped&reason=order+filter+%27paid+only%27",
            "order page (held, raw + canonical)": f"/i/{NAME}/orders/100000",
            "metrics": "/metrics",
        }
        with serving(console) as url, httpx.Client(base_url=url, timeout=60,
                                                    headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            print(f"{'page':<40} {'median ms':>10}")
            for title, path in pages.items():
                print(f"{title:<40} {timed(client, path):>10.1f}")


if __name__ == "__main__":
    main()
