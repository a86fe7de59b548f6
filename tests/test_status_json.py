"""`syncengine status`: the run history per integration x flow, `--format json` (the document of
`engine.status`), and the exit code that alerts on held, quarantined, unresolved and failed
items, through the command line against real runs on loopback servers."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sync_rig import NAME, rig

from engine import runlock, status
from engine.ledger import RUNS_KEPT, DiskLedger

NOTES = "/wp-json/wc/v3/orders/1001/notes"


def status_json(r, *extra: str) -> tuple[int, dict]:
    result = r.cli("status", "--format", "json", *extra)
    return result.code, json.loads(result.out)


def test_each_flow_run_is_recorded_and_status_json_shows_the_last_one(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A run records, per flow, when it started, how long it took, its outcome and its counts;
    `status --format json` shows the last run of each flow, and exits 0 when all is clear."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        assert r.cli("run").code == 0
        code, document = status_json(r)
        assert code == 0 and document["exit_code"] == 0 and document["alerts"] == []
        assert document["format"] == 1 and document["runs_kept"] == RUNS_KEPT
        flows = document["integrations"][NAME]["flows"]
        orders = flows["orders"]["last_run"]
        assert orders["outcome"] == "ok" and orders["command"] == "run"
        assert orders["counts"]["delivered"] == 6 and orders["unresolved"] == {"count": 0, "items": []}
        assert datetime.fromisoformat(orders["started"]).utcoffset().total_seconds() == 0
        assert orders["started"].endswith("Z") and orders["duration"] >= 0 and orders["error"] is None
        assert {flow for flow, state in flows.items() if state["last_run"]} == {"orders", "shipments", "inventory",
                                                                                "cancellations"}
        assert document["integrations"][NAME]["orders"]["delivered"] == 6
        assert status.status_document(r.state) | {"generated": None} == document | {"generated": None}
        text = r.cli("status")
        assert text.code == 0 and "last run        orders" in text.out and "ok at" in text.out, text.out


def test_held_orders_raise_the_held_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orders held for an unmapped ship method: the run goes through (exit 0), `status` lists them
    with reasons and exits 4; after the map is fixed `retry` releases them, is recorded as the
    orders flow's last run, and `status` is clear again."""
    with rig(tmp_path, monkeypatch) as r:
        r.write(ship_method_map={"map": {"flat_rate": "UPS Ground"}, "on_unmapped": "hold"})
        assert r.cli("run", "--flow", "orders").code == 0
        code, document = status_json(r)
        held = document["integrations"][NAME]["flows"]["orders"]["problems"]["held"]
        assert code == 4 and document["alerts"] == ["held"] and held["count"] > 0 and held["waiting"] == 0
        assert all("ship_method_map" in item["reason"] for item in held["items"])
        assert r.cli("status").code == 4 and "attention: held" in r.status()
        r.write(ship_method_map={"map": {"flat_rate": "UPS Ground"}, "on_unmapped": "default", "default": "UPS Ground"})
        assert r.cli("retry").code == 0
        code, document = status_json(r)
        last = document["integrations"][NAME]["flows"]["orders"]["last_run"]
        assert code == 0 and last["command"] == "retry" and last["counts"]["delivered"] == held["count"]


def test_orders_waiting_out_the_hold_window_raise_no_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orders held by the hold window are held on purpose (a later run releases them): listed, no alert."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(hold_minutes=10**8)
        assert "held 2" in r.cli("run", "--flow", "orders").out
        code, document = status_json(r)
        held = document["integrations"][NAME]["flows"]["orders"]["problems"]["held"]
        assert code == 0 and (held["count"], held["waiting"]) == (2, 2)


def test_quarantined_orders_raise_the_quarantined_alert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A quarantined order fails the run (exit 1, outcome partial) and `status` exits 8, naming it and why."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        odd = r.cart.state.orders[2]
        odd["line_items"][0]["quantity"] = str(odd["line_items"][0]["quantity"])
        assert r.cli("run", "--flow", "orders").code == 1
        code, document = status_json(r)
        orders = document["integrations"][NAME]["flows"]["orders"]
        assert code == 8 and document["alerts"] == ["quarantined"]
        assert orders["last_run"]["outcome"] == "partial" and orders["last_run"]["counts"]["quarantined"] == 1
        [item] = orders["problems"]["quarantined"]["items"]
        assert item["key"] == str(odd["id"]) and "invalid order" in item["reason"]


def test_an_unresolved_write_is_recorded_and_raises_the_unresolved_alert(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracking write whose answer is lost and cannot be verified: the run's record says
    `unresolved` with the write's key, `status` exits 16; once resolved, all is clear."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        assert r.cli("run", "--flow", "orders").code == 0
        r.wms_app.ship(r.wms_id("1001"), packages=2)
        r.cart.faults.add(path_prefix=NOTES, method="POST", drop="after")
        r.cart.faults.add(path_prefix=NOTES, method="GET", status=500, times=50)
        assert r.cli("run", "--flow", "shipments").code == 1
        code, document = status_json(r)
        shipments = document["integrations"][NAME]["flows"]["shipments"]
        run = shipments["last_run"]
        assert code == 16 and document["alerts"] == ["unresolved"]
        assert run["outcome"] == "unresolved" and run["unresolved"]["count"] == 1
        assert run["unresolved"]["items"][0]["key"].startswith("create_shipment|1001|")
        assert shipments["problems"]["unresolved"]["items"][0]["key"] == run["unresolved"]["items"][0]["key"]
        r.cart.faults.clear()
        assert r.cli("run", "--flow", "shipments").code == 0
        assert status_json(r)[0] == 0
        [newest, older] = status.runs(r.state, NAME, "shipments")
        assert (newest["outcome"], older["outcome"]) == ("ok", "unresolved")


def test_a_run_that_fails_before_its_flows_is_recorded_as_failed(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An integration whose secret no longer resolves: each flow's last run is `failed` with the
    reason, and `status` exits 32."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        assert r.cli("run", "--flow", "orders").code == 0
        monkeypatch.delenv("SYNC_WMS_SECRET")
        assert r.cli("run", "--flow", "orders").code == 1
        code, document = status_json(r)
        run = document["integrations"][NAME]["flows"]["orders"]["last_run"]
        assert code == 32 and document["alerts"] == ["failed"]
        assert run["outcome"] == "failed" and "SYNC_WMS_SECRET" in run["error"]
        assert "SYNC_WMS_SECRET" in r.status()


def test_a_flow_running_now_is_not_alerted_for_its_sends_in_flight(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An order `sending` while its flow holds the run lock is in flight, not unresolved: status
    marks the flow running and stays clear; with no run holding the lock it is unresolved (16)."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write()
        assert r.cli("run", "--flow", "orders").code == 0
        with r.ledger() as ledger:
            ledger.set_status("1001", "sending", last_error="timed out")
        with runlock.hold(r.state, NAME, "orders"):
            code, document = status_json(r)
        orders = document["integrations"][NAME]["flows"]["orders"]
        assert code == 0 and orders["running"] and orders["problems"]["unresolved"]["count"] == 1
        code, document = status_json(r)
        [item] = document["integrations"][NAME]["flows"]["orders"]["problems"]["unresolved"]["items"]
        assert code == 16 and item["key"] == "1001" and item["reason"] == "timed out"


def test_a_write_journal_of_an_unknown_operation_still_counts_as_unresolved(tmp_path: Path) -> None:
    """A journal in flight that no flow claims is listed (under orders) and alerts, never dropped."""
    with DiskLedger(tmp_path, "shop") as ledger:
        ledger.kv_set("writes", "mystery_write|42", {"inflight": "main", "error": "answer lost"})
    document = status.status_document(tmp_path)
    [item] = document["integrations"]["shop"]["flows"]["orders"]["problems"]["unresolved"]["items"]
    assert document["exit_code"] == 16 and item == {"key": "mystery_write|42", "reason": "step main: answer lost",
                                                    "step": "main"}
