"""One run of a flow at a time per integration on a state directory.

Two `syncengine run` processes over the same ledger must not both run the orders flow: one
could reconcile (find_order: "not there yet") an order the other is sending at that moment and
send it again. Each flow run therefore holds an OS file lock, `<state>/<integration>/run-<flow>.lock`,
taken without waiting: a second run of the same flow stops with a clear message instead. The
kernel releases the lock when its process ends, however it ends (SIGKILL included), so a crash
never leaves a stale lock behind. The lock covers processes that share the state directory's
file system; the PostgreSQL ledger holds a cluster-wide advisory lock instead
(`engine.ledger.stores.PostgresStore.lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from engine.errors import RunBusyError


@contextlib.contextmanager
def hold(state_dir: Path, integration: str, flow: str) -> Iterator[None]:
    """Hold the run lock of (integration, flow), or raise LedgerError naming the holder."""
    path = Path(state_dir) / integration / f"run-{flow}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunBusyError(f"another {flow} run for {integration} is in progress (pid {holder}); "
                              f"it holds {path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def busy(state_dir: Path, integration: str, flow: str) -> bool:
    """Whether a run of (integration, flow) holds its lock right now (creates nothing)."""
    try:
        fd = os.open(Path(state_dir) / integration / f"run-{flow}.lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)              # closing drops the shared lock this took, if it took one
    return False
