"""One large paged read split over several processes (`syncengine run --workers N`).

When a read's remaining pages are planned after its first page (page numbers once the total is
known, with `paginate.concurrency` above 1), `Team.split` deals them out: the running process
keeps pages 1, N+1, 2N+1, ... of the plan and each of N-1 forked workers takes its own stride.
A worker runs `work(requests, window, fraction)`, the same pipeline on its pages with its own
connections and its own connection to the ledger, and reports a JSON-able result; `join()` waits
for every worker and returns their reports, or raises WorkerError when one failed or died.

Why nothing is lost or sent twice: every key is claimed in the one ledger, an atomic
add-if-absent across processes, and a worker delivers only what it claimed; the caller moves the
watermark only after every worker reported; a worker that dies mid-send leaves `sending` entries
that the next run reconciles before sending anything. The connectors' limits hold in total:
while a read is split, each process keeps 1/N of every client's concurrency (`on_split(fraction)`)
and fetches its pages 1/N of the paging window at a time (a host's rate limit needs no share: its
bucket is one file for every process of the machine, `http/sharedbucket.py`); the
sends this process had in flight at the split (page 1's orders) finish first, and their slots
are withheld as they free up.

Workers inherit the run lock's file, so the kernel keeps the lock while any of them lives; they
ignore SIGINT (a Ctrl-C stops the parent, and each worker finishes its own pages rather than
leave them half-sent) and leave through `os._exit`, never running the parent's cleanup. Needs
`os.fork` (Linux, macOS); elsewhere a read is not split.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from engine.errors import WorkerError
from engine.http import Request

log = logging.getLogger("syncengine.workers")

#: `work(requests, window, fraction) -> report`: a worker's pipeline over its share of pages
Work = Callable[[list[Request], int, float], Awaitable[dict[str, Any]]]


class Team:
    """Up to `size` processes for one read: this one and the workers it forks at the split."""

    def __init__(self, size: int, work: Work, on_split: Callable[[float], None]) -> None:
        self.size, self.work, self.on_split = size, work, on_split
        self.children: list[tuple[int, int]] = []          # (pid, read end of its report pipe)

    def split(self, planned: list[Request], window: int) -> tuple[list[Request], int] | None:
        """Fork a worker per share of `planned` but the first; this process's (requests, window).
        None (no split) with fewer than two pages or no `os.fork`. When the system refuses a
        fork (a process limit), this process keeps the shares no worker took."""
        n = min(self.size, len(planned))
        if n < 2 or not hasattr(os, "fork") or self.children:
            return None
        share = max(1, window // n)
        sys.stdout.flush()
        sys.stderr.flush()                                 # a child must not re-flush our buffers
        for index in range(1, n):
            try:
                read_end, write_end = os.pipe()
            except OSError as exc:
                log.warning("no worker process for a split read (%s): this process reads its pages", exc)
                break
            try:
                pid = os.fork()
            except OSError as exc:                         # e.g. a process limit: read them here
                os.close(read_end)
                os.close(write_end)
                log.warning("no worker process for a split read (%s): this process reads its pages", exc)
                break
            if pid == 0:
                os.close(read_end)
                _worker(self.work, planned[index::n], share, 1 / n, write_end)
            os.close(write_end)
            self.children.append((pid, read_end))
        if not self.children:
            return None
        forked = len(self.children)                        # strides 1..forked went to workers
        mine = [request for number, request in enumerate(planned) if not 1 <= number % n <= forked]
        self.on_split((n - forked) / n)
        return mine, max(1, window * (n - forked) // n)

    async def join(self, *, strict: bool = True) -> list[dict[str, Any]]:
        """Wait for every worker; their reports, or WorkerError naming each that failed (with
        `strict=False`, the reports of those that did not)."""
        if not self.children:
            return []
        children, self.children = self.children, []
        try:
            results = await asyncio.to_thread(_collect, children)
        finally:
            self.on_split(1.0)
        errors = [result["error"] for result in results if "error" in result]
        if errors and strict:
            raise WorkerError(f"{len(errors)} of {len(results)} worker(s) failed: " + "; ".join(errors))
        return [result["report"] for result in results if "report" in result]


def _worker(work: Work, requests: list[Request], window: int, fraction: float, out: int) -> None:
    """The forked child: run `work` on a fresh event loop, write the outcome to `out`, exit."""
    outcome: dict[str, Any] = {"error": f"worker {os.getpid()} ended without a report"}
    code = 1
    try:
        try:
            signal.set_wakeup_fd(-1)                       # the parent's event loop's, not ours
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except ValueError:                                 # not forked from the main thread
            pass

        def run() -> None:                                 # a new thread has no running loop
            nonlocal outcome, code
            try:
                outcome, code = {"report": asyncio.run(work(requests, window, fraction))}, 0
            except BaseException as exc:                   # reported to the parent, which raises
                outcome = {"error": f"worker {os.getpid()}: {type(exc).__name__}: {exc}"}

        thread = threading.Thread(target=run, name="syncengine-worker")
        thread.start()
        thread.join()
        data = json.dumps(outcome, default=str).encode()
        while data:
            data = data[os.write(out, data):]
    finally:
        os._exit(code)


def _collect(children: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Read each worker's report to the end of its pipe, then reap it."""
    results = []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            data = pipe.read()
        _, status = os.waitpid(pid, 0)
        try:
            result = json.loads(data) if data else None
        except ValueError:
            result = None
        if not isinstance(result, dict) or ("report" not in result and "error" not in result):
            how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exited with code {os.waitstatus_to_exitcode(status)}")
            result = {"error": f"worker {pid} {how} without a report"}
        results.append(result)
    return results
