"""A large paged read split over worker processes (`syncengine run --workers N`), against the
sample WooCommerce cart and Extensiv WMS on 127.0.0.1: every order reaches the WMS exactly once,
counts and watermark add up, the connectors' limits hold in total, and a worker that fails or
is killed fails the run without losing or duplicating anything on the next one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path

import pytest
from flow_support import LIST_PATHS, NAME, WMS_ORDERS
from samples.servers.base import Answer

from engine.flows import workers
from engine.http import HttpClient, RateLimit, reset_buckets
from engine.ledger import DiskLedger
from engine.ledger.stores import is_url

pytestmark = [pytest.mark.usefixtures("http_testing"),
              pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need os.fork")]

ORDERS, PER_PAGE = 230, 10                  # 23 pages: page 1, then 22 planned


def small_pages(spec: dict) -> None:
    spec["operations"]["list_orders"]["request"]["params"]["per_page"] = PER_PAGE


@pytest.fixture
def rig(flow_rigs):
    rig = flow_rigs("woocommerce", orders=ORDERS)
    rig.patch_connector("woocommerce", small_pages)
    return rig


@pytest.fixture
def splits(monkeypatch) -> list[tuple[int, int]]:
    """(planned pages, pages this process kept) for each split the parent made."""
    seen, real = [], workers.Team.split

    def spy(self, planned, window):
        kept = real(self, planned, window)
        if kept is not None:
            seen.append((len(planned), len(kept[0])))
        return kept

    monkeypatch.setattr(workers.Team, "split", spy)
    return seen


def assert_delivered_once(rig) -> None:
    held = rig.wms_refs()
    assert sorted(held) == sorted(rig.eligible_refs()) and max(held.values()) == 1


@pytest.mark.parametrize("n", [2, 3])
def test_a_split_read_delivers_every_order_exactly_once(rig, splits, n) -> None:
    """N processes share the 22 planned pages; each page is asked once, each order reaches the
    WMS once, the summary counts every process's orders and the watermark is the newest seen."""
    result = rig.cli("run", "--workers", str(n))
    assert result.code == 0, result.text
    assert splits == [(22, len(range(0, 22, n)))]              # this process kept 1/N of them
    assert rig.list_calls() == 23
    assert_delivered_once(rig)
    assert f"pulled {ORDERS}, new {ORDERS}, delivered {ORDERS}, skipped 0, quarantined 0" in result.out
    with DiskLedger(rig.state, NAME) as ledger:
        assert ledger.counts() == {"delivered": ORDERS}
        newest = max(order["date_modified_gmt"] for order in rig.cart.state.orders) + "Z"
        assert ledger.watermark("orders") == newest
    again = rig.cli("run", "--workers", str(n))
    assert again.code == 0 and "new 0, delivered 0" in again.out             # the overlap only
    assert_delivered_once(rig)


def test_one_worker_or_a_dry_run_never_forks(rig, splits) -> None:
    """`--workers 1` (the default) and dry runs read in this process only."""
    assert rig.cli("run", "--dry-run", "--workers", "2").code == 0
    assert rig.cli("run").code == 0
    assert splits == []
    assert_delivered_once(rig)


def test_the_processes_keep_the_connectors_concurrency_in_total(rig) -> None:
    """With two processes creating orders, the WMS never sees more creates in flight than the
    extensiv connector's http.concurrency (4), nor the cart more list requests than 4."""
    most = {"cart": 0, "wms": 0}
    lock = threading.Lock()

    def counted(server, side, path):
        dispatch, now = server.app.dispatch, {"n": 0}

        def wrapped(request):
            if request.path == path:
                with lock:
                    now["n"] += 1
                    most[side] = max(most[side], now["n"])
            try:
                if request.path == path:
                    threading.Event().wait(0.01)
                return dispatch(request)
            finally:
                if request.path == path:
                    with lock:
                        now["n"] -= 1

        server.app.dispatch = wrapped

    counted(rig.cart, "cart", LIST_PATHS["woocommerce"])
    counted(rig.wms, "wms", WMS_ORDERS)
    result = rig.cli("run", "--workers", "2")
    assert result.code == 0, result.text
    assert_delivered_once(rig)
    assert 1 <= most["cart"] <= 4 and 2 <= most["wms"] <= 4


def test_share_limits_divides_concurrency_but_not_the_machine_wide_rate() -> None:
    """A client keeps `fraction` of its concurrency (at least 1); its host's rate limit stays
    whole, since every process of the machine already draws on that one bucket."""
    reset_buckets()

    async def main() -> None:
        async with HttpClient("https://shop.test", concurrency=4,
                              rate_limit=RateLimit(10, burst=6)) as client:
            client.share_limits(0.5)
            await asyncio.sleep(0)
            assert client._slots._value == 2
            assert (client._pacer.bucket.rate, client._pacer.bucket.burst) == (10, 6)
            client.share_limits(1 / 8)
            await asyncio.sleep(0)
            assert client._slots._value == 1
            client.share_limits(1)
            assert client._slots._value == 4
            assert (client._pacer.bucket.rate, client._pacer.bucket.burst) == (10, 6)

    async def busy() -> None:
        """Slots in use when the share is applied are taken out as they are freed: the
        requests already in flight are never cut short, and none start beyond the share."""
        async with HttpClient("https://shop.test", concurrency=4) as client:
            held = [asyncio.ensure_future(client._slots.acquire()) for _ in range(4)]
            await asyncio.gather(*held)
            client.share_limits(0.5)
            await asyncio.sleep(0)
            assert client._slots._value == 0 and client._withheld == 0
            for _ in range(3):
                client._slots.release()
            await asyncio.sleep(0)
            assert client._withheld == 2 and client._slots._value == 1
            client.share_limits(1)
            assert client._slots._value == 3 and client._withheld == 0

    asyncio.run(main())
    asyncio.run(busy())
    reset_buckets()


def fail_page(rig, page: str, status: int = 400) -> None:
    """The cart answers `status` to every request for order-list page `page`."""
    dispatch = rig.cart.app.dispatch

    def failing(request):
        if request.path == LIST_PATHS["woocommerce"] and request.query.get("page") == page:
            return Answer(status, {"code": "woocommerce_rest_invalid_page"})
        return dispatch(request)

    rig.cart.app.dispatch = failing
    return dispatch


@pytest.mark.parametrize(("page", "who"), [("3", "worker"), ("2", "parent")])
def test_a_failing_process_fails_the_run_and_the_next_run_delivers_the_rest_once(rig, splits, page, who) -> None:
    """Page 2 is this process's first planned page, page 3 the worker's (strides of 2). When the
    cart refuses it, that process stops, as a single-process read stops at a failing page, while
    the other finishes its own pages; the run exits 1 naming the failure and leaves the watermark
    alone, and the next run delivers the rest, each order once."""
    healthy = fail_page(rig, page)
    result = rig.cli("run", "--workers", "2")
    assert result.code == 1 and "400" in result.text
    assert ("1 of 1 worker(s) failed" in result.text) == (who == "worker")
    assert f"delivered {PER_PAGE * 12}," in result.out              # every process's orders
    with DiskLedger(rig.state, NAME) as ledger:
        assert ledger.watermark("orders") is None
        assert ledger.counts() == {"delivered": PER_PAGE * 12}     # page 1 and the other's 11
    rig.cart.app.dispatch = healthy
    again = rig.cli("run", "--workers", "2")
    assert again.code == 0, again.text
    assert f"new {ORDERS - PER_PAGE * 12}, delivered {ORDERS - PER_PAGE * 12}" in again.out
    assert_delivered_once(rig)


def children_of(pid: int) -> set[int]:
    """Live (not zombie) child processes of `pid` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except (OSError, ValueError):
                continue
            if int(parent) == pid and state != "Z":
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker through /proc")
@pytest.mark.parametrize("ledger_state", ["disk", "postgres"], indirect=True)
def test_a_worker_killed_mid_send_loses_nothing_and_duplicates_nothing(rig, ledger_state) -> None:
    """SIGKILL a worker while the WMS has stored orders it has not answered yet: the run fails,
    and the next run reconciles the worker's `sending` orders through find_order before sending
    anything, so the WMS (which would accept a duplicate) ends with each order exactly once
    (each forked worker with its own connection to either ledger)."""
    rig.state_url = ledger_state if is_url(ledger_state) else None
    wms = rig.wms_app
    wms.stall_at = 40                      # after 40 stored orders, answers wait for `release`
    outcome: dict = {}
    before = children_of(os.getpid())
    run = threading.Thread(target=lambda: outcome.update(result=rig.cli("run", "--workers", "2")))
    run.start()
    try:
        assert wms.stalled.wait(20)
        [worker] = children_of(os.getpid()) - before
        os.kill(worker, signal.SIGKILL)
    finally:
        wms.stall_at = None
        wms.release.set()
        run.join(60)
    assert outcome["result"].code == 1 and "killed by signal 9" in outcome["result"].text
    again = rig.cli("run", "--workers", "2")
    assert again.code == 0, again.text
    assert_delivered_once(rig)
    with rig.ledger() as ledger:
        assert ledger.counts() == {"delivered": ORDERS}


@pytest.mark.parametrize("forks_allowed", [0, 1])
def test_a_refused_fork_leaves_its_pages_to_this_process(rig, monkeypatch, forks_allowed) -> None:
    """With three processes asked and the system refusing a fork (a process limit) after
    `forks_allowed` of them, this process reads the pages no worker took: every page is asked
    once and every order reaches the WMS once."""
    real, calls = os.fork, []

    def limited() -> int:
        calls.append(1)
        if len(calls) > forks_allowed:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real()

    monkeypatch.setattr(workers.os, "fork", limited)
    result = rig.cli("run", "--workers", "3")
    assert result.code == 0, result.text
    assert rig.list_calls() == 23
    assert_delivered_once(rig)
    assert f"pulled {ORDERS}, new {ORDERS}, delivered {ORDERS}" in result.out
