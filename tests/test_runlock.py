"""One run of a flow at a time per integration, released by the kernel whatever happens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from engine import ROOT, runlock
from engine.errors import LedgerError

HOLDER = """
import sys, time
from pathlib import Path
from engine import runlock
with runlock.hold(Path(sys.argv[1]), "acme", "orders"):
    print("held", flush=True)
    time.sleep(60)
"""


def start_holder(state) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_of_the_same_flow_is_refused(tmp_path):
    """While another process runs acme's orders flow, a second one stops with the holder's pid."""
    holder = start_holder(tmp_path)
    try:
        with pytest.raises(LedgerError, match=rf"another orders run for acme is in progress \(pid {holder.pid}\)"):
            with runlock.hold(tmp_path, "acme", "orders"):
                pass
        with runlock.hold(tmp_path, "acme", "shipments"), runlock.hold(tmp_path, "globex", "orders"):
            pass   # other flows and other integrations are not blocked
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    """SIGKILL of the holder releases the lock at once: the next run goes ahead."""
    holder = start_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    with runlock.hold(tmp_path, "acme", "orders"):
        assert (tmp_path / "acme" / "run-orders.lock").read_text() == str(os.getpid())


def test_the_lock_is_released_after_the_run(tmp_path):
    """Leaving the block releases the lock, even on an error."""
    with pytest.raises(RuntimeError):
        with runlock.hold(tmp_path, "acme", "orders"):
            raise RuntimeError("flow failed")
    with runlock.hold(tmp_path, "acme", "orders"):
        pass


def test_reset_refuses_during_an_orders_run(tmp_path):
    """`syncengine reset` during an orders run stops with a clear error instead of racing the run's watermark."""
    import io

    from engine.cli import run
    from engine.ledger import DiskLedger

    DiskLedger(tmp_path, "acme").close()
    holder = start_holder(tmp_path)
    try:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = run(["reset", "--state-dir", str(tmp_path), "--integration", "acme", "--since", "2026-01-01"], stdout, stderr)
        assert code == 2 and "another orders run for acme is in progress" in stderr.getvalue()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert run(["reset", "--state-dir", str(tmp_path), "--integration", "acme", "--since", "2026-01-01"],
               io.StringIO(), io.StringIO()) == 0
