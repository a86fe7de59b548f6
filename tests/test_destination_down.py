"""A destination that is down, and the run after a crash, against the sample cart and WMS on
127.0.0.1: after `http.down_after` failed requests in a row the run stops sending to the host,
says why (summary line, exit 1, `status`), leaves the rest `pending`, and the next run with the
WMS back delivers everything exactly once; `sending` keys are reconciled concurrently and counted.
"""

from __future__ import annotations

import re
import socket
import threading

import pytest
from flow_support import WMS_ORDERS, FlowRig

from engine.ledger import DiskLedger

pytestmark = pytest.mark.usefixtures("http_testing")

ORDERS = 30
TOKEN = "/AuthServer/api/Token"


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def assert_delivered_once(rig: FlowRig) -> None:
    held = rig.wms_refs()
    assert sorted(held) == sorted(rig.eligible_refs())
    assert [ref for ref, n in held.items() if n > 1] == []


def count(result, name: str) -> int:
    return int(re.search(rf"\b{name} (\d+)", result.out).group(1))


def ledger_counts(rig: FlowRig) -> dict[str, int]:
    with DiskLedger(rig.state, "flow-shop") as ledger:
        return ledger.counts()


def down_after(n: int):
    def change(spec: dict) -> None:
        spec["http"]["down_after"] = n
    return change


def test_a_refused_port_stops_the_sends_says_why_and_the_next_run_delivers_everything(flow_rigs) -> None:
    """A WMS whose port refuses connections: after 5 refused requests in a row the run sends it
    nothing more, says so on the summary line and in `status`, exits 1, counts no order failed
    and loses none; with the WMS back, the next run delivers every order exactly once."""
    rig = flow_rigs(orders=ORDERS)
    port = closed_port()
    rig.write_integration(destination={**rig_destination(rig), "config": {
        **rig_destination(rig)["config"], "base_url": f"http://127.0.0.1:{port}"}})
    first = rig.cli("run")
    assert first.code == 1, first.text
    assert f"destination down: 127.0.0.1:{port} refused 5 in a row" in first.out
    assert f"{ORDERS} order(s) left pending for the next run" in first.out
    assert count(first, "delivered") == 0 and count(first, "failed") == 0
    assert ledger_counts(rig) == {"pending": ORDERS}
    status = rig.cli("status")
    assert f"host down         destination down: 127.0.0.1:{port} refused 5 in a row" in status.out

    rig.write_integration()                            # the WMS is back (its real address)
    second = rig.cli("run")
    assert second.code == 0, second.text
    assert count(second, "delivered") == ORDERS and "destination down" not in second.out
    assert_delivered_once(rig)
    assert ledger_counts(rig) == {"delivered": ORDERS}
    assert "host down" not in rig.cli("status").out   # the next run found it up: the note is gone


def test_orders_whose_every_try_was_refused_go_back_to_pending_and_fail_the_run(flow_rigs) -> None:
    """Below the threshold too, an order none of whose tries reached the WMS (connection
    refused) is not `failed` nor left `sending`: it is `pending` again with its raw record, the
    summary says how many wait, the run exits 1, and the next run sends them once."""
    rig = flow_rigs(orders=ORDERS)
    rig.patch_connector("extensiv", down_after(1000))
    port = closed_port()
    rig.write_integration(destination={**rig_destination(rig), "config": {
        **rig_destination(rig)["config"], "base_url": f"http://127.0.0.1:{port}"}})
    first = rig.cli("run")
    assert first.code == 1, first.text
    assert "destination down" not in first.out and count(first, "failed") == 0
    assert f"; {ORDERS} order(s) left pending for the next run" in first.out
    assert ledger_counts(rig) == {"pending": ORDERS}
    rig.write_integration()
    second = rig.cli("run")
    assert second.code == 0 and count(second, "delivered") == ORDERS, second.text
    assert_delivered_once(rig)


def rig_destination(rig: FlowRig) -> dict:
    from flow_support import integration
    return integration(rig.kind, rig.cart.url, rig.wms.url)["destination"]


def test_a_wms_answering_503_stops_after_the_threshold_and_nothing_is_lost(flow_rigs) -> None:
    """A WMS answering every create with 503 (after every retry): once 3 creates failed in a row
    (`http.down_after: 3`) the run sends no further create (the cart's later pages stay
    `pending`), the summary says why; the next run reconciles the `sending` ones and delivers
    every order exactly once."""
    orders, page = 250, 100                                 # woocommerce pages of 100
    rig = flow_rigs(orders=orders)
    rig.patch_connector("extensiv", down_after(3))
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", status=503, times=100_000)
    first = rig.cli("run")
    assert first.code == 1, first.text
    assert re.search(r"destination down: 127\.0\.0\.1:\d+ answered 503 3 in a row", first.out), first.out
    assert rig.creates() <= page * 6                        # the first page's sends (6 attempts each), no more
    assert rig.wms_refs() == {}
    counts = ledger_counts(rig)
    assert counts.get("pending", 0) >= orders - page and counts.get("pending", 0) + counts.get("sending", 0) == orders
    assert f"{counts['pending']} order(s) left pending" in first.out
    assert count(first, "failed") == counts.get("sending", 0)

    rig.wms.faults.clear()
    second = rig.cli("run")
    assert second.code == 0, second.text
    assert count(second, "reconciled") == counts.get("sending", 0)
    assert_delivered_once(rig)
    assert ledger_counts(rig) == {"delivered": orders}


def test_a_wms_dropping_connections_stops_after_the_threshold(flow_rigs) -> None:
    """A WMS that drops every create's connection unanswered: the run stops after 5 in a row,
    says "dropped the connection", and the next run delivers every order exactly once."""
    rig = flow_rigs(orders=ORDERS)
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", drop="before", times=10_000)
    first = rig.cli("run")
    assert first.code == 1, first.text
    assert re.search(r"destination down: 127\.0\.0\.1:\d+ dropped the connection 5 in a row", first.out), first.out
    assert rig.creates() < ORDERS
    rig.wms.faults.clear()
    second = rig.cli("run")
    assert second.code == 0, second.text
    assert_delivered_once(rig)
    assert ledger_counts(rig) == {"delivered": ORDERS}


def test_a_few_failures_that_are_not_in_a_row_do_not_stop_the_run(flow_rigs) -> None:
    """Failures with answers in between never add up: every other create failing with 500 (one
    at a time, `down_after: 2`) leaves the breaker closed, and every order is tried this run."""
    rig = flow_rigs(orders=12)
    rig.patch_connector("extensiv", lambda spec: spec["http"].update(concurrency=1, down_after=2))
    for _ in range(6):
        rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", status=500)
        rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", status=400, body={"message": "bad"})
    result = rig.cli("run")
    assert "destination down" not in result.out, result.out
    assert rig.creates() == 12


class Observed:
    """The most `find_order` requests the WMS served at once."""

    def __init__(self, rig: FlowRig) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()
        app, dispatch = rig.wms.app, rig.wms.app.dispatch

        def watched(request):
            looking = request.method == "GET" and request.path == WMS_ORDERS
            if looking:
                with self.lock:
                    self.now += 1
                    self.most = max(self.most, self.now)
            try:
                return dispatch(request)
            finally:
                if looking:
                    with self.lock:
                        self.now -= 1

        app.dispatch = watched


def test_sending_orders_left_by_a_crash_are_reconciled_concurrently_and_counted(flow_rigs) -> None:
    """Many orders left `sending` (their answers lost: the WMS stored 20, never got 20): the next
    run looks them up several at a time within the connector's `http.concurrency`, counts
    `reconciled 40`, sends only the 20 the WMS lacks, and delivers the new orders too."""
    rig = flow_rigs(orders=40)
    rig.patch_connector("extensiv", down_after(1000))
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", drop="after", times=20)
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", drop="before", times=20)
    first = rig.cli("run")
    assert first.code == 1 and ledger_counts(rig) == {"sending": 40}, first.text
    assert len(rig.wms_refs()) == 20

    rig.cart.add_orders(5)
    observed = Observed(rig)
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="GET", delay=0.05, times=10_000)   # lookups overlap
    second = rig.cli("run")
    assert second.code == 0, second.text
    assert count(second, "reconciled") == 40
    assert 1 < observed.most <= 4                          # extensiv's http.concurrency: 4
    assert_delivered_once(rig)
    assert ledger_counts(rig) == {"delivered": 45}


def test_a_cart_that_is_down_fails_the_inventory_run_and_says_why(tmp_path, monkeypatch) -> None:
    """A write-back flow whose host goes down says so: a cart answering 503 to every products
    call fails the inventory run with the reason (exit 1), `status` names it, and the next run
    with the cart back pushes every level."""
    from sync_rig import rig

    products = "/wp-json/wc/v3/products"
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        r.cart.faults.add(path_prefix=products, status=503, times=100_000)
        first = r.cli("run", "--flow", "inventory")
        assert first.code == 1, first.text
        reason = r"source down: 127\.0\.0\.1:\d+ answered 503 5 in a row"
        assert re.search("FAILED: " + reason, first.out), first.out
        assert re.search(r"host down +" + reason, r.status())
        r.cart.faults.clear()
        second = r.cli("run", "--flow", "inventory")
        assert second.code == 0 and "pushed 8" in second.out, second.text
        assert "host down" not in r.status()
