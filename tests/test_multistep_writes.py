"""Multi-step writes (`steps:`) against the sample WooCommerce cart on 127.0.0.1: core tracking is
a customer note, then the order's status. Faults on either step and a SIGKILL between the steps
leave, after reruns, one note per tracking number and the order completed: no step lost, none
repeated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from flow_support import Gate, wait_for
from sync_rig import Rig, rig

from engine import ROOT
from engine.flows.protocol import unresolved
from engine.ledger.stores import is_url

ORDERS = "/wp-json/wc/v3/orders"


def core_tracking(spec: dict) -> None:
    """create_shipment as core WooCommerce does tracking: a customer note, then `completed`."""
    spec["operations"]["create_shipment"] = {"per": "package", "steps": [
        {"name": "note",
         "request": {"method": "POST", "path": "/wc/v3/orders/{{ order.order_id }}/notes",
                     "json": {"note": "Shipped: {{ package.tracking_number }}", "customer_note": True}},
         "capture": {"note_id": {"path": "id"}},
         "id": "to_string(id)",
         "verify": {"request": {"path": "/wc/v3/orders/{{ order.order_id }}/notes"},
                    "match": "contains(record.note, package.tracking_number)", "id": "to_string(id)"}},
        {"name": "complete",
         "request": {"method": "PUT", "path": "/wc/v3/orders/{{ order.order_id }}",
                     "json": {"status": "completed", "customer_note": "note {{ steps.note.note_id }}"}}},
    ]}
    spec["http"]["timeout"] = 1
    spec["examples"] = [case for case in spec["examples"] if case["operation"] != "create_shipment"]


def notes(r: Rig) -> Counter:
    with r.cart.state.lock:
        return Counter(n["note"] for items in r.cart.state.notes.values() for n in items)


def shipped(r: Rig, packages: int = 2) -> list[str]:
    """Order 1001 delivered and shipped in `packages` packages; their tracking numbers."""
    r.patch("woocommerce", core_tracking)
    r.write()
    assert r.cli("run", "--flow", "orders").code == 0
    oid = r.wms_id("1001")
    r.wms_app.ship(oid, packages=packages)
    return [f"1Z999AA1{oid:06d}{n:04d}" for n in range(1, packages + 1)]


def completed(r: Rig) -> bool:
    with r.cart.state.lock:
        return r.cart_app._find(1001)["status"] == "completed"


def test_each_step_runs_once_and_later_steps_see_earlier_captures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two packages: two notes, the order completed, the second step rendered with the note's id."""
    with rig(tmp_path, monkeypatch) as r:
        numbers = shipped(r)
        result = r.cli("run", "--flow", "shipments")
        assert result.code == 0 and "sent 2, confirmed 1" in result.out, result.out
        assert notes(r) == Counter(f"Shipped: {n}" for n in numbers) and completed(r)
        with r.cart.state.lock:
            assert r.cart_app._find(1001)["customer_note"].startswith("note 90")


@pytest.mark.parametrize("step", ["note", "complete"])
@pytest.mark.parametrize("fault", [{"drop": "after"}, {"acted_status": 502}, {"drop": "before"}, {"delay_after": 1.5}],
                         ids=["drop-after", "502-after", "drop-before", "timeout-after"])
def test_a_fault_on_one_step_repeats_no_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, fault: dict) -> None:
    """Whichever step loses its answer, reruns leave one note per package and the order completed."""
    with rig(tmp_path, monkeypatch) as r:
        numbers = shipped(r)
        path, method = (ORDERS + "/1001/notes", "POST") if step == "note" else (ORDERS + "/1001", "PUT")
        r.cart.faults.add(path_prefix=path, method=method, **fault)
        codes = [r.cli("run", "--flow", "shipments").code for _ in range(2)]
        assert notes(r) == Counter(f"Shipped: {n}" for n in numbers) and completed(r)
        assert codes[-1] == 0, codes
        with r.ledger() as ledger:
            assert unresolved(ledger) == [] and ledger.get("1001").status == "confirmed"


KILLS = [("POST", 0, "during-the-first-note"), ("PUT", 0, "between-the-steps"), ("POST", 1, "second-package-note")]


@pytest.mark.parametrize(("ledger_state", "held", "after"),
                         [pytest.param("disk", held, after, id=f"disk-{name}") for held, after, name in KILLS]
                         + [pytest.param("postgres", "PUT", 0, id="postgres-between-the-steps")],
                         indirect=["ledger_state"])
def test_a_sigkill_between_steps_resumes_at_the_next_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          ledger_state: str, held: str, after: int) -> None:
    """The engine is killed while a step's request is at the cart (which then acts on it); the
    rerun resolves that step and goes on, never sending a done step again (the write journal in
    either ledger)."""
    with rig(tmp_path, monkeypatch, state_url=ledger_state if is_url(ledger_state) else None) as r:
        numbers = shipped(r)
        path = ORDERS + "/1001/notes" if held == "POST" else ORDERS + "/1001"
        gate = Gate(r.cart, held, path, after=after)
        with (tmp_path / "run.log").open("wb") as log:
            process = subprocess.Popen([sys.executable, "-m", "engine", *r.args("run", "--flow", "shipments")],
                                       cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for(gate.reached.is_set, timeout=30, what="the held step")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            gate.opened.set()                  # the cart acts on the request the dead run sent
            if process.poll() is None:
                process.kill()
        acted = (lambda: sum(notes(r).values()) > after) if held == "POST" else (lambda: completed(r))
        wait_for(acted, timeout=10, what="the cart to act on the dead run's request")
        rerun = r.cli("run", "--flow", "shipments")
        assert rerun.code == 0, rerun.out + (tmp_path / "run.log").read_text()
        assert notes(r) == Counter(f"Shipped: {n}" for n in numbers) and completed(r)
        with r.ledger() as ledger:
            assert unresolved(ledger) == [] and ledger.get("1001").status == "confirmed"
