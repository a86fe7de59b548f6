"""One run of a flow at a time per integration, released by the kernel whatever happens."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import ROOT
from engine.errors import LedgerError
from engine.ledger import open_store
from engine.ledger.stores import is_url

HOLDER = """
import sys, time
from engine.ledger import open_store
with open_store(sys.argv[1]).lock("acme", "orders"):
    print("held", flush=True)
    time.sleep(60)
"""


def start_holder(state) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(state)], cwd=ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_of_the_same_flow_is_refused(ledger_state):
    """While another process runs acme's orders flow, a second one stops with the holder's pid
    (on PostgreSQL: from any machine, the lock being the server's)."""
    holder, store = start_holder(ledger_state), open_store(ledger_state)
    try:
        with pytest.raises(LedgerError, match=rf"another orders run for acme is in progress \((syncengine .+ )?pid {holder.pid}\)"):
            with store.lock("acme", "orders"):
                pass
        with store.lock("acme", "shipments"), store.lock("globex", "orders"):
            pass   # other flows and other integrations are not blocked
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_a_killed_holder_leaves_no_stale_lock(ledger_state):
    """SIGKILL of the holder releases the lock: the next run goes ahead."""
    holder = start_holder(ledger_state)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    with open_store(ledger_state).lock("acme", "orders"):
        if not is_url(ledger_state):
            assert (Path(ledger_state) / "acme" / "run-orders.lock").read_text() == str(os.getpid())


def test_the_lock_is_released_after_the_run(ledger_state):
    """Leaving the block releases the lock, even on an error."""
    store = open_store(ledger_state)
    with pytest.raises(RuntimeError):
        with store.lock("acme", "orders"):
            raise RuntimeError("flow failed")
    with store.lock("acme", "orders"):
        pass


def test_reset_refuses_during_an_orders_run(ledger_state):
    """`syncengine reset` during an orders run stops with a clear error instead of racing the run's watermark."""
    import io

    from engine.cli import run
    open_store(ledger_state).open("acme").close()
    holder = start_holder(ledger_state)
    try:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = run(["reset", "--state", ledger_state, "--integration", "acme", "--since", "2026-01-01"], stdout, stderr)
        assert code == 2 and "another orders run for acme is in progress" in stderr.getvalue()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert run(["reset", "--state", ledger_state, "--integration", "acme", "--since", "2026-01-01"],
               io.StringIO(), io.StringIO()) == 0
