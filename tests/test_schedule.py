"""`syncengine run --every`: each flow on its own period, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sync_rig import SECRETS, WMS_SECRETS, rig

from engine import ROOT, runner, schedule


def test_periods_come_from_the_integration_unless_every_gives_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each enabled flow runs on its integration's `every` (or the default); `--every D` sets D for all."""
    with rig(tmp_path, monkeypatch) as r:
        r.write(flows={"orders": {"enabled": True, "every": "2m"}, "shipments": {"enabled": True},
                       "inventory": {"enabled": False}})
        project = runner.load_project([ROOT / "connectors", r.root / "integrations"])
        options = runner.Options(r.state)
        integrations = list(project.integrations.values())
        assert [(f, p) for _, f, p in schedule.jobs(integrations, options, None)] == [("orders", 120.0), ("shipments", 900.0)]
        assert [(f, p) for _, f, p in schedule.jobs(integrations, options, 7.0)] == [("orders", 7.0), ("shipments", 7.0)]
        only = runner.Options(r.state, flows=["shipments"])
        assert [f for _, f, _ in schedule.jobs(integrations, only, None)] == ["shipments"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_every_keeps_running_and_stops_cleanly_on_a_signal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int) -> None:
    """A subprocess running `--every 1s` repeats each flow, new orders are picked up, and a signal stops it with exit 0."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(flows={"orders": {"enabled": True}, "inventory": {"enabled": True}})
        log = tmp_path / "out.log"
        env = {**os.environ, **SECRETS["woocommerce"], **WMS_SECRETS}
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "engine", *r.args("run", "--every", "1s")], cwd=ROOT,
                                       env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: log.read_text().count("orders:") >= 1)
            r.cart_app.add_orders(1)
            wait_for(lambda: log.read_text().count("orders:") >= 3 and log.read_text().count("inventory:") >= 2)
            process.send_signal(sig)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        text = log.read_text()
        assert "stopped:" in text and "Traceback" not in text
        assert sorted(o["referenceNum"] for o in r.wms_app.state.created) == ["1001", "1002", "1003"]


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
