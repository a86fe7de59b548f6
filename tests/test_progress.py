"""The progress display of `syncengine run`: on a terminal only, one row per integration and
flow with its counts, and the total and time left when the total is known."""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import ROOT, cli
from engine.http.stops import Progress
from tests.sync_rig import SECRETS, WMS_SECRETS, rig
from tests.test_schedule import wait_for

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@contextlib.contextmanager
def terminal() -> Iterator[tuple[io.TextIOWrapper, bytearray]]:
    """A pseudo-terminal: the stream to write to (its slave side) and what was written so far."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))     # 40 rows, 120 columns
    written = bytearray()

    def drain() -> None:
        with contextlib.suppress(OSError):         # EIO once the slave side is closed
            while chunk := os.read(master, 65536):
                written.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    stream = open(slave, "w", encoding="utf-8")    # noqa: SIM115 - closed below, before the join
    try:
        yield stream, written
    finally:
        stream.close()
        reader.join(10)
        os.close(master)


def screen(written: bytearray) -> str:
    return ANSI.sub("", written.decode("utf-8", errors="replace")).replace("\r", "\n")


def test_a_run_on_a_terminal_shows_each_flow_with_its_total(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal, `run` shows a row per integration and flow with done/total, the time left
    and the counts; the summary still goes to stdout."""
    with rig(tmp_path, monkeypatch, orders=6) as r:
        r.write()
        stdout = io.StringIO()
        with terminal() as (stderr, written):
            code = cli.run(r.args("run"), stdout, stderr)
        shown = screen(written)
    assert code == 0, (stdout.getvalue(), shown)
    orders = [line for line in shown.splitlines() if "sync-shop  orders  " in line]
    assert orders and "6/6" in orders[-1] and "ETA" in orders[-1] and "delivered 6" in orders[-1], shown
    for flow in ("shipments", "inventory", "cancellations"):
        assert f"sync-shop  {flow}" in shown, shown
    assert "sync-shop: orders: pulled 6, new 6, delivered 6" in stdout.getvalue()
    assert "\x1b" not in stdout.getvalue()


def test_no_progress_when_stderr_is_not_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pipe or a log file (cron, systemd, CI) `run` writes no progress at all, not even an
    escape sequence."""
    with rig(tmp_path, monkeypatch, orders=6) as r:
        r.write()
        result = r.cli("run")
    assert result.code == 0 and "delivered 6" in result.out
    assert "\x1b" not in result.err and "sync-shop  orders" not in result.err and "ETA" not in result.err
    assert result.err == ""


def test_a_dumb_terminal_gets_no_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TERM=dumb cannot redraw lines: no display there either."""
    monkeypatch.setenv("TERM", "dumb")
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write()
        with terminal() as (stderr, written):
            code = cli.run(r.args("run", "--flow", "orders"), io.StringIO(), stderr)
    assert code == 0 and bytes(written) == b""


@pytest.mark.parametrize(("progress", "expected"), [
    (Progress(pages=1, records=50, total_records=142), 142),                  # {"total": 142}
    (Progress(pages=1, records=100, page_size=100, total_pages=5), 500),      # X-WP-TotalPages: 5, size 100
    (Progress(pages=2, records=40, total_pages=5), 100),                      # no size: the pages' mean
    (Progress(pages=5, records=421, page_size=100, total_pages=5), 421),      # the last page: exact
    (Progress(pages=3, records=300, page_size=100), None),                    # nothing says
])
def test_a_read_knows_its_total_from_the_answers(progress: Progress, expected: int | None) -> None:
    """The records a paged read will hold, from a total of records or of pages."""
    assert progress.expected() == expected


def test_run_every_on_a_terminal_shows_the_runs_as_they_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`run --every` on a terminal shows each flow's row, its runs' stamped summaries above the
    rows (stdout on a file here), and still stops with exit 0 on SIGTERM."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(flows={"orders": {"enabled": True}, "inventory": {"enabled": True}})
        env = {**os.environ, **SECRETS["woocommerce"], **WMS_SECRETS}
        out = tmp_path / "out.log"
        with terminal() as (stderr, written), out.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "engine", *r.args("run", "--every", "1s")], cwd=ROOT,
                                       env=env, stdout=sink, stderr=stderr, stdin=subprocess.DEVNULL)
            try:
                wait_for(lambda: "inventory: pulled 8" in out.read_text() and "orders: pulled 2" in out.read_text(),
                         timeout=90)
                process.send_signal(signal.SIGTERM)
                assert process.wait(timeout=15) == 0
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        shown = screen(written)
    assert "sync-shop  orders  " in shown and "sync-shop  inventory  " in shown
    assert "ETA" in shown and "pulled 8" in shown
    assert "sync-shop: orders: pulled 2" in out.read_text() and "\x1b" not in out.read_text()


def test_lines_written_meanwhile_print_whole_above_the_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With stdout on the same terminal, a dry run's request lines come out whole, each on its
    own line above the rows, never cut by a redraw."""
    with rig(tmp_path, monkeypatch, orders=3) as r:
        r.write(flows={"orders": {"enabled": True}})
        with terminal() as (stream, written):
            code = cli.run(r.args("run", "--dry-run"), stream, stream)
        shown = screen(written)
    requests = [line for line in shown.splitlines() if line.startswith("[dry-run] sync-shop create_order: would POST")]
    assert code == 0 and len(requests) == 3, shown
    assert all("sync-shop  orders" not in line for line in requests)
    assert "sync-shop: orders: pulled 3, new 3" in shown
