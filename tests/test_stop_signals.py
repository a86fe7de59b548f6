"""Ctrl-C and SIGTERM on a one-shot `syncengine run` (a real subprocess, real signals).

The first signal stops reading (no new page is fetched or claimed, the watermark stays), lets
the sends in flight finish for up to `--grace` seconds, prints the summary and exits 128 +
the signal (130 for SIGINT, 143 for SIGTERM), without a traceback. When the grace runs out, or a
second signal comes, the sends still in flight are cut off; every flow is crash-safe, so the
next run reconciles them. Either way the next run delivers every eligible order exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flow_support import WMS_ORDERS, FlowRig, wait_for

from engine import ROOT
from engine.ledger import DiskLedger

ORDERS = 60


def small_pages(spec: dict) -> None:
    """Six pages of ten, read one at a time, and no client-side rate limit."""
    spec["http"]["rate_limit"] = {"per_second": 1000, "burst": 1000}
    read = spec["operations"]["list_orders"]
    read["request"]["params"]["per_page"] = 10
    read["paginate"]["concurrency"] = 1


def fast(spec: dict) -> None:
    spec["http"]["rate_limit"] = {"per_second": 1000, "burst": 1000}


@pytest.fixture
def stop_rig(flow_rigs) -> FlowRig:
    rig = flow_rigs("woocommerce", orders=ORDERS)
    rig.patch_connector("woocommerce", small_pages)
    rig.patch_connector("extensiv", fast)
    return rig


def start(rig: FlowRig, log: Path, *extra: str) -> subprocess.Popen:
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "engine", *rig.args("run"), *extra], cwd=ROOT,
                                env={**os.environ, **rig.environ}, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def ended(process: subprocess.Popen, within: float) -> tuple[int, float]:
    """The exit code and how long it took to come after the signal."""
    sent = time.monotonic()
    try:
        code = process.wait(within)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
        raise AssertionError(f"the run did not stop within {within}s of the signal") from None
    return code, time.monotonic() - sent


def ledger_counts(rig: FlowRig) -> dict[str, int]:
    with DiskLedger(rig.state, "flow-shop") as ledger:
        return ledger.counts()


def finish_and_check(rig: FlowRig) -> None:
    """The next run ends cleanly and the WMS holds every eligible order exactly once."""
    rig.open_gates()
    rig.quiet()
    rig.wms.faults.clear()
    rig.wms_app.stall_at = None
    again = rig.cli("run")
    assert again.code == 0, again
    assert rig.wms_refs() == {ref: 1 for ref in rig.eligible_refs()}


def test_sigint_stops_reading_lets_sends_finish_and_exits_130(stop_rig: FlowRig, tmp_path: Path) -> None:
    rig = stop_rig
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", delay=0.05, times=10_000)
    log = tmp_path / "run.log"
    process = start(rig, log)
    wait_for(lambda: len(rig.wms_app.state.created) >= 10 or process.poll() is not None, 30, "10 creates")
    process.send_signal(signal.SIGINT)
    code, took = ended(process, 15)
    out = log.read_text()
    assert code == 130, out
    assert "Traceback" not in out and "internal error" not in out, out
    assert "stopped by SIGINT: reading stopped and every send in flight finished" in out, out
    assert "flow-shop: orders: pulled" in out, out                     # the summary is printed
    counts = ledger_counts(rig)
    assert counts.get("sending", 0) == 0, counts                       # nothing left in doubt
    created = len(rig.wms_app.state.created)
    assert counts.get("delivered", 0) == created < len(rig.eligible_refs()), (counts, created)
    with DiskLedger(rig.state, "flow-shop") as ledger:
        assert ledger.watermark("orders") is None                      # the read did not end
        assert ledger.last_runs()["orders"]["outcome"] == "stopped"    # the run history says so
    finish_and_check(rig)


def test_sigterm_cuts_off_a_stuck_send_after_the_grace_and_exits_143(stop_rig: FlowRig, tmp_path: Path) -> None:
    """A WMS that stored an order and never answers: the run does not wait for it past --grace
    (nor hang on its own page queue), and the next run finds that order instead of resending it."""
    rig = stop_rig
    rig.wms_app.stall_at = 3
    log = tmp_path / "run.log"
    process = start(rig, log, "--grace", "0.5")
    wait_for(lambda: rig.wms_app.stalled.is_set() or process.poll() is not None, 30, "a stalled answer")
    process.send_signal(signal.SIGTERM)
    code, took = ended(process, 10)
    out = log.read_text()
    assert code == 143, out
    assert took < 5, took
    assert "Traceback" not in out and "stopped by SIGTERM: sends still in flight after 0.5s were cut off" in out, out
    assert ledger_counts(rig).get("sending", 0) >= 1                  # left for the next run to reconcile
    with DiskLedger(rig.state, "flow-shop") as ledger:
        run = ledger.last_runs()["orders"]
    assert run["outcome"] == "stopped" and run["unresolved"]["count"] >= 1, run
    finish_and_check(rig)


def test_a_second_sigint_cuts_off_at_once(stop_rig: FlowRig, tmp_path: Path) -> None:
    rig = stop_rig
    rig.wms_app.stall_at = 3
    log = tmp_path / "run.log"
    process = start(rig, log)                                          # the default grace: 10 s
    wait_for(lambda: rig.wms_app.stalled.is_set() or process.poll() is not None, 30, "a stalled answer")
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert process.poll() is None                                      # still waiting for the send
    process.send_signal(signal.SIGINT)
    code, took = ended(process, 5)
    out = log.read_text()
    assert code == 130 and "cut off" in out and "Traceback" not in out, out
    finish_and_check(rig)
