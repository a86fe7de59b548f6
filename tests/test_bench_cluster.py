"""bench/cluster.py at a tiny size (3 integrations, 1 worker process), so the script cannot rot:
it runs a real `syncengine worker`, `enqueue` and `scheduler` against the bench servers, with a
database of its own on the test PostgreSQL server and a Redis database of this test process.
The figures are not checked (no timing asserts); the script itself refuses to finish when the
WMS did not get every order exactly once or the ledger does not hold them all delivered."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import pg_support
from flow_support import ROOT


def test_the_cluster_bench_runs_at_a_tiny_size(redis_url) -> None:
    pytest.importorskip("celery")
    pytest.importorskip("orjson")
    server = os.environ.get(pg_support.SERVER)
    if not server:
        pytest.skip(f"no PostgreSQL server: {os.environ.get(pg_support.SKIPPED)}")
    result = subprocess.run([sys.executable, "bench/cluster.py", "--integrations", "3", "--orders", "4",
                             "--processes", "1", "--period", "1", "--periods", "1", "--redis", redis_url,
                             "--postgres", server, "--timeout", "60"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "N=1: new" in out and "WMS got 12 orders, 12 distinct" in out, out
    assert "plain httpx loop" in out and "syncengine run, 1 process" in out, out
    assert "schedule every 1 s" in out and "CPU per job" in out, out
