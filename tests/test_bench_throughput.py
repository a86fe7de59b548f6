"""bench/throughput.py at a tiny size (1,000 orders), so the script cannot rot: the plain loop,
the two floors and the engine each read every order of the bench cart in a fresh process. The
figures are not checked (no timing asserts); a reader that read the wrong number of orders is
marked with `!` and one that failed says `skipped: failed`, which this test refuses."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from flow_support import ROOT


def test_the_throughput_bench_runs_at_a_tiny_size() -> None:
    pytest.importorskip("orjson")
    result = subprocess.run([sys.executable, "bench/throughput.py", "--orders", "1000", "--page-size", "250",
                             "--only", "plain,mapped,claimed,engine"],
                            cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {match[1]: match[2] for match in re.finditer(r"^  (\w+!?) +([\d,]+) ", result.stdout, re.MULTILINE)}
    assert set(rows) == {"plain", "mapped", "claimed", "engine"}, result.stdout
