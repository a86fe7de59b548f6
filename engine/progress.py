"""The live progress display of `syncengine run`, on a terminal only.

One row per integration and flow: the phase it is in (reconcile, send pending, read, send,
push, ...), a bar with items done of the total and the time left when a total is known (a paged
read whose answers give a total, a count of ledger entries to work through), and the flow's
counts so far:

    sync-shop  orders  read   ━━━━━━━━━━━━━━━━━━━╺━━━━━━━━━━━━━━  240/500  ETA 0:00:12  pulled 240 · delivered 236

Only when stderr is a terminal (`wanted`): in a pipe, a log file, cron, systemd or CI nothing
of it is written, not even an escape sequence. The rows are drawn by `rich` (redrawing in
place, what is left of the time from a moving average of the speed, fitting the terminal's
width), which this module alone imports, and only when it draws. It redraws from the event
loop (no thread: a run may fork workers); lines the command writes meanwhile (log records, a
dry run's requests) are printed above the rows, never through them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import fields, is_dataclass
from datetime import timedelta
from typing import Any, TextIO

from engine.flows.base import DONE
from engine.runner import Outcome

REFRESH = 0.25          # seconds between redraws


def wanted(stream: TextIO) -> bool:
    """True when `stream` is a terminal that can redraw lines (not a pipe, file or TERM=dumb)."""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):     # no isatty, or a closed stream
        return False
    return terminal and os.environ.get("TERM", "") not in ("dumb", "unknown")


@contextlib.asynccontextmanager
async def shown(outcomes: Callable[[], Sequence[Outcome]], stderr: TextIO, stdout: TextIO | None = None
                ) -> AsyncIterator[None]:
    """Show the progress of `outcomes()` on `stderr` while the block runs, when it is a terminal;
    otherwise do nothing. Lines written to `stderr` (and `stdout`, when it is a terminal too)
    meanwhile appear above the rows."""
    if not wanted(stderr):
        yield
        return
    display = Display(outcomes, stderr)
    diverted = [s for s in (stderr, stdout) if s is not None and hasattr(s, "divert") and wanted(s)]
    for stream in diverted:
        stream.divert = display.above
    display.start()
    task = asyncio.create_task(display.follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for stream in diverted:
            stream.divert = None
        display.stop()


class Display:
    """The rows (a `rich` Progress with one task per integration and flow) and their upkeep."""

    def __init__(self, outcomes: Callable[[], Sequence[Outcome]], stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        from rich.table import Column

        self.outcomes = outcomes
        raw = getattr(stream, "raw", stream)        # the terminal itself: `Masked.divert` leads here
        self.console = Console(file=raw, force_terminal=True, highlight=False, emoji=False, width=_width(raw))
        one_line = {"no_wrap": True, "overflow": "ellipsis"}
        self.bars = Progress(TextColumn("{task.description}", table_column=Column(**one_line)),
                             BarColumn(bar_width=16), MofNCompleteColumn(table_column=Column(**one_line)),
                             _eta_column(Column(**one_line)),
                             TextColumn("{task.fields[counts]}", table_column=Column(ratio=1, **one_line)),
                             console=self.console, auto_refresh=False, transient=True, expand=True,
                             redirect_stdout=False, redirect_stderr=False)
        self.rows: dict[tuple[str, str], tuple[Any, str]] = {}     # (integration, flow) -> (task id, phase)
        self._partial = ""

    def start(self) -> None:
        self.bars.start()

    def stop(self) -> None:
        """Draw the last state once, then clear the rows (the command's summary follows)."""
        self.update()
        if self._partial:
            self.above("\n")
        self.bars.stop()

    async def follow(self) -> None:
        while True:
            self.update()
            await asyncio.sleep(REFRESH)

    def update(self) -> None:
        """Bring every row to where its flow is, and redraw."""
        for outcome in self.outcomes():
            for flow, meter in list(outcome.meters.items()):
                counts = _counts(outcome.counts.get(flow))
                self._row(outcome.integration, flow, meter, counts)
        self.bars.refresh()

    def _row(self, integration: str, flow: str, meter: Any, counts: str) -> None:
        described = f"{integration}  {flow}  {meter.phase}"
        key = (integration, flow)
        if key not in self.rows:
            task = self.bars.add_task(described, total=meter.total, completed=meter.done, counts=counts)
            self.rows[key] = (task, meter.phase)
            return
        task, phase = self.rows[key]
        if phase != meter.phase and meter.phase != DONE:      # a new phase: a new total, a new speed
            self.bars.reset(task, total=meter.total, completed=meter.done, description=described, counts=counts)
            self._task(task).total = meter.total      # reset() keeps the old total when the new one is unknown
            self.rows[key] = (task, meter.phase)
        else:
            self.bars.update(task, total=meter.total, completed=meter.done, description=described, counts=counts)

    def _task(self, task_id: Any) -> Any:
        return next(task for task in self.bars.tasks if task.id == task_id)

    def above(self, text: str) -> None:
        """Print `text` (whole lines) above the rows; a partial line waits for its end."""
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)


def _counts(counts: Any) -> str:
    """`pulled 240 · delivered 236`: a flow's counts that are not zero."""
    if counts is None or not is_dataclass(counts):
        return ""
    return " · ".join(f"{f.name} {getattr(counts, f.name)}" for f in fields(counts) if getattr(counts, f.name))


def _width(stream: TextIO) -> int | None:
    """The terminal's width (None: let rich guess, 80 when nothing says)."""
    with contextlib.suppress(AttributeError, ValueError, OSError):
        return os.get_terminal_size(stream.fileno()).columns or None
    return None


def _eta_column(column: Any) -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Eta(ProgressColumn):
        """`ETA 0:00:12` when the row has a total (`ETA ?` until the speed is known), nothing
        when it has none."""

        def render(self, task: Any) -> Text:
            if task.total is None:
                return Text("")
            left = 0 if task.completed >= task.total else task.time_remaining
            shown = "?" if left is None else str(timedelta(seconds=int(left)))
            return Text(f"ETA {shown}", style="progress.remaining")

    return Eta(table_column=column)

