"""Crash tests: `python -m engine run` is killed with SIGKILL at chosen instants of the orders
flow, then run again until it completes; the WMS must end up holding every eligible order
exactly once (the "effectively-once delivery" guarantee of DESIGN.md).

The cart and the WMS are the sample servers, run as threads of this test process; the engine
runs in a subprocess so a kill is a real crash (no finally blocks, no flushed buffers). The WMS
here accepts a duplicate referenceNum, so a resend that should have been reconciled shows up as
a second order instead of being quietly refused. Kill points are reached by holding a request
on the server side (a gate) or by polling server state, never by sleeping and hoping.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from flow_support import LIST_PATHS, NAME, WMS_ORDERS, FlowRig, subprocess_run, wait_for

from engine.ledger.stores import is_url

ORDERS = 40
TOKEN = "/AuthServer/api/Token"


def fast(spec: dict) -> None:
    """No client-side rate limit: the subprocess cannot use the testing switch that zeroes waits."""
    spec["http"]["rate_limit"] = {"per_second": 1000, "burst": 1000}


@dataclass(frozen=True)
class KillPoint:
    """How to make a run reach one instant, and how to tell it got there."""

    name: str
    arm: Callable[[FlowRig], Callable[[], bool]]       # sets the servers up; returns "reached?"


def reading_the_cart(rig: FlowRig) -> Callable[[], bool]:
    """Before anything is claimed: the cart is still answering the first page."""
    return rig.hold(rig.cart, "GET", LIST_PATHS["woocommerce"]).reached.is_set


def fetching_the_wms_token(rig: FlowRig) -> Callable[[], bool]:
    """Every order claimed and marked `sending`, none sent: the first send waits for its token."""
    return rig.hold(rig.wms, "POST", TOKEN).reached.is_set


def during_sends(after: int) -> Callable[[FlowRig], Callable[[], bool]]:
    """Some orders created at the WMS, others in flight or not sent yet (each create takes a while)."""
    def arm(rig: FlowRig) -> Callable[[], bool]:
        rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", delay=0.02, times=10_000)
        return lambda: len(rig.wms.state.created) >= after
    return arm


def stored_not_answered(at: int) -> Callable[[FlowRig], Callable[[], bool]]:
    """The WMS stored order number `at` but has not answered yet: the ledger cannot know it arrived."""
    def arm(rig: FlowRig) -> Callable[[], bool]:
        rig.wms_app.stall_at = at
        return rig.wms_app.stalled.is_set
    return arm


READING = KillPoint("reading the cart", reading_the_cart)
TOKEN_WAIT = KillPoint("fetching the WMS token", fetching_the_wms_token)
MID_SENDS = KillPoint("after 10 creates", during_sends(10))
STORED_FIRST = KillPoint("first order stored, not answered", stored_not_answered(1))
STORED_LAST = KillPoint("last order stored, not answered", stored_not_answered(ORDERS))
STORED_LATER = KillPoint("25th order stored, not answered", stored_not_answered(25))

SEQUENCES = {
    "reading-the-cart": [READING],
    "before-any-send": [TOKEN_WAIT],
    "during-sends": [MID_SENDS],
    "stored-not-answered-first": [STORED_FIRST],
    "stored-not-answered-last": [STORED_LAST],
    "killed-three-times": [MID_SENDS, STORED_LATER, TOKEN_WAIT],
}
#: the PostgreSQL leg: the reconcile windows, and three kills in a row (which pass through the
#: kill points of "during-sends" and "before-any-send"); "reading-the-cart" claims nothing
ON_POSTGRES = ("stored-not-answered-first", "stored-not-answered-last", "killed-three-times")
CASES = [pytest.param("disk", kills, id=f"disk-{name}") for name, kills in SEQUENCES.items()] + \
        [pytest.param("postgres", SEQUENCES[name], id=f"postgres-{name}") for name in ON_POSTGRES]


@pytest.fixture
def crash_rig(flow_rigs, ledger_state) -> FlowRig:
    """The rig, once with the embedded ledger and once with the PostgreSQL one."""
    rig = flow_rigs("woocommerce", orders=ORDERS)
    rig.state_url = ledger_state if is_url(ledger_state) else None
    rig.patch_connector("extensiv", fast)
    rig.patch_connector("woocommerce", fast)
    return rig


def env_for(rig: FlowRig) -> dict[str, str]:
    return {**os.environ, **rig.environ}


def kill_at(rig: FlowRig, point: KillPoint, log: Path) -> None:
    """Start a run, SIGKILL it once `point` is reached, and wait until the servers are idle again."""
    reached = point.arm(rig)
    process = subprocess_run(rig, env_for(rig), log)
    try:
        wait_for(lambda: reached() or process.poll() is not None, 20, f"kill point {point.name!r}")
        assert process.poll() is None, f"the run ended before {point.name!r}:\n{log.read_text()}"
        process.kill()
    finally:
        process.kill()
        process.wait(10)
    rig.open_gates()
    rig.quiet()
    disarm(rig)


def disarm(rig: FlowRig) -> None:
    rig.wms.faults.clear()
    rig.cart.faults.clear()
    rig.gates.clear()
    rig.wms_app.stall_at = None
    rig.wms_app.stalled.clear()
    rig.wms_app.release.clear()


def run_to_completion(rig: FlowRig, log: Path) -> str:
    """One whole run in a subprocess; its output. It must succeed."""
    start = log.stat().st_size if log.exists() else 0
    process = subprocess_run(rig, env_for(rig), log)
    try:
        code = process.wait(30)
    finally:
        process.kill()
        process.wait(10)
    output = log.read_text(encoding="utf-8")[start:]
    assert code == 0, output
    return output


def assert_exactly_once(rig: FlowRig) -> None:
    held = rig.wms_refs()
    assert sorted(held) == sorted(rig.eligible_refs()), "orders missing at the WMS"
    assert {ref: n for ref, n in held.items() if n > 1} == {}, "orders duplicated at the WMS"


@pytest.mark.parametrize(("ledger_state", "kills"), CASES, indirect=["ledger_state"])
def test_a_crash_at_any_point_loses_no_order_and_duplicates_none(crash_rig, tmp_path, kills) -> None:
    """After SIGKILLs at these points and a rerun, the WMS holds every eligible order exactly once."""
    rig, log = crash_rig, tmp_path / "runs.log"
    for point in kills:
        kill_at(rig, point, log)
    assert len(rig.wms_refs()) < ORDERS or kills[-1] is STORED_LAST
    run_to_completion(rig, log)
    assert_exactly_once(rig)
    with rig.ledger() as ledger:
        assert ledger.counts() == {"delivered": ORDERS}
    creates = rig.creates()
    again = run_to_completion(rig, log)
    assert "delivered 0," in again
    assert rig.creates() == creates
    assert_exactly_once(rig)


def test_the_crash_window_is_real(crash_rig, tmp_path) -> None:
    """Killed between the WMS storing an order and answering, the ledger still says `sending` for it."""
    rig = crash_rig
    kill_at(rig, STORED_FIRST, tmp_path / "runs.log")
    assert len(rig.wms_refs()) >= 1
    with rig.ledger() as ledger:
        counts = ledger.counts()
    assert counts.get("delivered", 0) == 0 and counts.get("sending", 0) >= 1


def test_orders_claimed_but_never_sent_are_claimed_again_by_the_next_run(crash_rig, monkeypatch) -> None:
    """A run that stops between claiming a page and marking it `sending` leaves `pending` keys
    without a raw record (it is stored on the way to `sending`); that run never moved the
    watermark, so the next one releases them, re-reads and delivers each exactly once."""
    from engine.flows.orders import OrdersFlow

    rig, real = crash_rig, OrdersFlow.deliver

    async def stop_before_sending(self, ready):
        raise RuntimeError("stopped between the claim and the send")

    monkeypatch.setattr(OrdersFlow, "deliver", stop_before_sending)
    assert rig.cli("run").code != 0
    with rig.ledger() as ledger:
        assert ledger.counts() == {"pending": ORDERS} and ledger.watermark("orders") is None
        assert all(entry.raw is None for entry in ledger.iter_status("pending"))
    monkeypatch.setattr(OrdersFlow, "deliver", real)
    result = rig.cli("run")
    assert result.code == 0, result.text
    assert f"new {ORDERS}, delivered {ORDERS}" in result.out
    assert_exactly_once(rig)
    with rig.ledger() as ledger:
        assert ledger.counts() == {"delivered": ORDERS}
