"""What every flow gets: the integration's connectors, clients, ledger and output, and its counts."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from engine import http
from engine.ledger import Ledger
from engine.specs.settings import Integration, iso
from engine.specs.model import Connector, Operation


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


DONE = "done"


@dataclass
class Meter:
    """Where one flow run is, for a progress display: its phase ("read", "send", ...), the items
    done in that phase and their total when something says it (a paged read's total, a count of
    ledger entries to reconcile). Flows only write it; the display reads it now and then."""

    phase: str = "starting"
    done: int = 0
    total: int | None = None

    def start(self, phase: str, total: int | None = None) -> None:
        self.phase, self.done, self.total = phase, 0, total

    def finish(self) -> None:
        """The flow ended: its last phase's figures stay, as they were."""
        self.phase = DONE

    def advance(self, n: int = 1, expected: int | None = None) -> None:
        """`n` more items done; `expected`, the phase's total when it became known."""
        self.done += n
        if expected is not None:
            self.total = expected


@dataclass
class FlowContext:
    """One integration, ready to run: compiled connectors, resolved configs, open clients."""

    integration: Integration
    source: Connector
    destination: Connector
    source_config: Mapping[str, Any]
    destination_config: Mapping[str, Any]
    source_client: http.HttpClient
    destination_client: http.HttpClient
    ledger: Ledger | None                      # None only in a dry run with no state yet
    redact: http.Redactor = field(default_factory=http.Redactor)
    emit: Callable[[str], None] = print        # lines for the user (a dry run's requests)
    dry_run: bool = False
    now: Callable[[], datetime] = utcnow
    workers: int = 1                           # processes a large paged read may be split over
    transport: Any = None                      # tests may hand an httpx transport
    stopping: Any = None                       # an asyncio.Event set by Ctrl-C / SIGTERM (one-shot run)
    meter: Meter = field(default_factory=Meter)   # where the running flow is (progress display)
    team: Any = None                           # how a split read finds its helpers: `workers.Team` (forked
                                               # processes) when None, Celery workers in a cluster

    def stopped(self) -> bool:
        """True once the run was asked to stop: read no further, start no new batch; what is in
        flight finishes (the command cancels it after a grace period, which the flows survive)."""
        return self.stopping is not None and self.stopping.is_set()

    @contextlib.asynccontextmanager
    async def reopened(self, fraction: float) -> AsyncIterator[FlowContext]:
        """This context for a forked worker (`flows/workers.py`): its own clients, keeping
        `fraction` of each connector's concurrency (the rate limit is machine-wide already), and
        its own ledger connection."""
        secrets = self.redact.secrets
        async with self.source.client(self.source_config, secrets=secrets, transport=self.transport) as source, \
                self.destination.client(self.destination_config, secrets=secrets, transport=self.transport) as destination:
            source.share_limits(fraction)
            destination.share_limits(fraction)
            ledger = self.ledger.reopen() if self.ledger is not None else None
            try:
                yield dataclasses.replace(self, source_client=source, destination_client=destination,
                                          ledger=ledger, workers=1, team=None)
            finally:
                if ledger is not None:
                    ledger.close()

    def context(self, side: str, **values: Any) -> dict[str, Any]:
        """A template context for one side ('source' or 'destination')."""
        config = self.source_config if side == "source" else self.destination_config
        return {"config": config, "now": iso(self.now()), **values}

    def show(self, operation: Operation, request: http.Request) -> None:
        """Print, redacted, a request a dry run would send."""
        body = request.json if request.json is not http.NOTHING else request.form
        line = f"would {request.method} {request.url} params={request.params or {}} body={body}"
        self.emit(self.redact(f"[dry-run] {self.integration.name} {operation.name}: {line}"))


@dataclass
class Counts:
    """What one flow run did; `summary()` is the one line the CLI prints.

    `reconciled`: orders a crashed or cut-off run left `sending`, settled through `find_order`
    (found at the WMS, or certainly not there and sent again). `down` (not a count): why the
    destination counted as down for the rest of the run, and `waiting` how many orders were
    left `pending` for the next run, unsent (the destination was down, or refused every try)."""

    pulled: int = 0
    new: int = 0
    delivered: int = 0
    skipped: int = 0
    quarantined: int = 0
    held: int = 0
    failed: int = 0
    reconciled: int = 0
    down = None                      # class defaults, not fields: `as_dict` holds counts only
    waiting = 0

    def add(self, status: str, n: int = 1) -> None:
        setattr(self, status, getattr(self, status) + n)

    def merge(self, other: Mapping[str, int]) -> None:
        """Add another run's counts (a worker's report) to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + int(other.get(f.name, 0)))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        line = ", ".join(f"{f.name} {getattr(self, f.name)}" for f in fields(self))
        if self.down:
            line += f"; {self.down}"
        if self.waiting:
            line += f"; {self.waiting} order(s) left pending for the next run"
        return line
