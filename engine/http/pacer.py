"""`Pacer`: one client's turn-taking on its host's shared bucket, and the feedback it hands back.

    pacer = Pacer(bucket_for("shop.test:443", rate_limit), pacing, max_throttle_wait=900)
    cost = pacer.cost(request)                    # 0 without feedback; a query's last cost
    ticket = await pacer.acquire(cost, budget, where)   # waits for its turn (outside any lock)
    ...send...
    reading = pacer.settle(request, answer, cost, ticket)

`budget` is a one-item list: the seconds this request may still wait on the rate limit and on
throttles (`retry.max_throttle_wait`); a wait beyond it raises HTTPError instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from engine.errors import HTTPError

from .models import Answer, Request
from .pacing import NOTHING_READ, Pacing, Reading
from .redisbucket import RedisBucket
from .sharedbucket import SharedBucket, Ticket
from .waits import sleep

MAX_COSTS = 256                   # queries whose last cost a process remembers per host


class Pacer:
    """A client's side of its host's bucket: `pacing` reads each answer (None: no feedback)."""

    def __init__(self, bucket: SharedBucket | RedisBucket, pacing: Pacing | None, max_throttle_wait: float) -> None:
        self.bucket, self.pacing, self.max_throttle_wait = bucket, pacing, max_throttle_wait

    def cost(self, request: Request) -> float:
        """Units this request takes: 0 without feedback, else what the same query was last
        reported to cost (a GraphQL query's requested cost), else 1."""
        if self.pacing is None:
            return 0.0
        return self.bucket.costs.get(_query_key(request), 1.0)

    async def acquire(self, cost: float, budget: list[float], where: Callable[[], str]) -> Ticket:
        """Wait until the bucket gives this request its turn; the bucket's ticket for it."""
        while True:
            wait, ticket = self.bucket.take(cost)
            if not wait:
                return ticket
            if wait > budget[0]:
                raise HTTPError(f"{where()}: the host's rate limit asks to wait {wait:.1f}s more, "
                                f"beyond retry.max_throttle_wait ({self.max_throttle_wait:g}s in all)")
            budget[0] -= wait
            await sleep(wait, "rate_limit")

    def release(self, cost: float) -> None:
        """The request that took `cost` got no answer."""
        if cost:
            self.bucket.release(cost)

    def settle(self, request: Request, answer: Answer, cost: float, ticket: Ticket) -> Reading:
        """Hand what `answer` says about the budget to the bucket; what it said."""
        if self.pacing is None:
            return NOTHING_READ
        reading = self.pacing.read(answer)
        if reading.cost is not None:
            costs = self.bucket.costs
            if len(costs) > MAX_COSTS:
                costs.clear()
            costs[_query_key(request)] = reading.cost
        refund = max(0.0, cost - reading.actual) if reading.actual is not None else 0.0
        self.bucket.settle(cost, ticket, reading.available, reading.capacity, reading.rate,
                           reading.reset, refund)
        return reading

    def hold(self, seconds: float) -> None:
        """Nothing goes to the host for `seconds` (a Retry-After)."""
        self.bucket.hold(seconds)


def explains(reading: Reading) -> bool:
    """True when a throttled answer's reading says why: fewer units left than it needs."""
    return reading.available is not None and reading.available < (reading.cost or 1.0)


def _query_key(request: Request) -> tuple:
    """What identifies a query's cost: method, URL and a GraphQL body's query text."""
    body = request.json
    query = body.get("query") if isinstance(body, Mapping) else None
    return request.method, request.url, query
