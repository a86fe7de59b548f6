"""Rate-limit feedback: what each answer says about the host's budget (`http.pacing`).

Each form reads one answer into a `Reading` (units available now, the bucket's capacity or
the window's quota, a continuous refill rate, seconds until the window resets, what this
request cost); the client hands it to the host's shared bucket (`sharedbucket.py`), which
paces every later request of every process and computes the wait of a throttled retry::

    pacing: {type: used_limit, header: X-Call-Limit, per_second: 2}          # "32/40", leaking 2/s
    pacing: {type: remaining_reset, remaining: X-Remaining, reset: X-Reset-Ms,
             reset_unit: milliseconds, limit: X-Quota}                        # a fixed window
    pacing: {type: ratelimit_fields}                        # RateLimit / RateLimit-Policy (IETF)
    pacing: {type: cost_bucket, available: extensions.cost.throttleStatus.currentlyAvailable,
             maximum: extensions.cost.throttleStatus.maximumAvailable,
             restore_rate: extensions.cost.throttleStatus.restoreRate,
             cost: extensions.cost.requestedQueryCost,
             actual: extensions.cost.actualQueryCost}                        # JMESPath on the body

A malformed or absent value reads as nothing (the IETF draft: "malformed RateLimit header
fields MUST be ignored"); the request is then paced by what the bucket already knew.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from .models import Answer

Path = Callable[[Any], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """What one answer said; None where it said nothing."""

    available: float | None = None
    capacity: float | None = None
    rate: float | None = None
    reset: float | None = None
    cost: float | None = None
    actual: float | None = None


NOTHING_READ = Reading()


@dataclasses.dataclass(frozen=True, slots=True)
class UsedLimit:
    """`X-Call-Limit: 32/40`: 32 of 40 slots used, a bucket that leaks `per_second`."""

    header: str
    per_second: float

    def read(self, answer: Answer) -> Reading:
        used, _, limit = (answer.headers.get(self.header) or "").partition("/")
        used_n, limit_n = _number(used), _number(limit)
        if used_n is None or limit_n is None:
            return NOTHING_READ
        return Reading(available=limit_n - used_n, capacity=limit_n, rate=self.per_second)


RESET_UNITS = ("seconds", "milliseconds", "epoch_seconds")


@dataclasses.dataclass(frozen=True, slots=True)
class RemainingReset:
    """`X-Remaining: 35` and `X-Reset: 15000` (`reset_unit`: seconds, milliseconds, or an
    epoch in seconds): requests left in a fixed window and when it starts again; `limit`
    names the header with the window's quota, if any."""

    remaining: str
    reset: str
    reset_unit: str = "seconds"
    limit: str | None = None
    now: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.reset_unit not in RESET_UNITS:
            raise ValueError(f"pacing.reset_unit must be one of {list(RESET_UNITS)}, got {self.reset_unit!r}")

    def read(self, answer: Answer) -> Reading:
        headers = answer.headers
        remaining, reset = _number(headers.get(self.remaining)), _number(headers.get(self.reset))
        if remaining is None:
            return NOTHING_READ
        if reset is not None:
            reset = {"seconds": reset, "milliseconds": reset / 1000.0,
                     "epoch_seconds": reset - self.now()}[self.reset_unit]
        capacity = _number(headers.get(self.limit)) if self.limit else None
        return Reading(available=remaining, capacity=capacity, reset=reset)


_ITEM = re.compile(r'\s*(?:"([^"]*)"|([A-Za-z*][\w.:/*-]*))((?:\s*;\s*[a-z*][\w.*-]*(?:=[^;,]*)?)*)\s*(?:,|$)')
_PARAM = re.compile(r'\s*;\s*([a-z*][\w.*-]*)(?:=([^;,]*))?')


@dataclasses.dataclass(frozen=True, slots=True)
class RateLimitFields:
    """The IETF fields (draft-ietf-httpapi-ratelimit-headers):
    `RateLimit: "default";r=50;t=30` (r units left, t seconds of the window) and
    `RateLimit-Policy: "default";q=100;w=60` (q units per w seconds). With several
    policies, `policy` picks one by name; otherwise the one with the fewest units left."""

    policy: str | None = None

    def read(self, answer: Answer) -> Reading:
        limits = _items(answer.headers.get("ratelimit"))
        if self.policy is not None:
            limits = {name: params for name, params in limits.items() if name == self.policy}
        usable = {name: params for name, params in limits.items() if _number(params.get("r")) is not None}
        if not usable:
            return NOTHING_READ
        name = min(usable, key=lambda n: (_number(usable[n]["r"]), -(_number(usable[n].get("t")) or 0)))
        params = usable[name]
        quota = _number(_items(answer.headers.get("ratelimit-policy")).get(name, {}).get("q"))
        return Reading(available=_number(params["r"]), capacity=quota, reset=_number(params.get("t")))


@dataclasses.dataclass(frozen=True, slots=True)
class CostBucket:
    """A cost bucket reported in the body (GraphQL `extensions.cost`): `available` points now,
    `maximum`, `restore_rate` per second, the `cost` the query asked for and the `actual` cost
    it was charged (the difference is given back); compiled paths."""

    available: Path
    restore_rate: Path
    maximum: Path | None = None
    cost: Path | None = None
    actual: Path | None = None

    def read(self, answer: Answer) -> Reading:
        body = answer.body
        if not isinstance(body, Mapping):
            return NOTHING_READ
        available, rate = _search(self.available, body), _search(self.restore_rate, body)
        if available is None or not rate or rate <= 0:
            return NOTHING_READ
        return Reading(available=available, rate=rate, capacity=_search(self.maximum, body),
                       cost=_search(self.cost, body), actual=_search(self.actual, body))


Pacing = UsedLimit | RemainingReset | RateLimitFields | CostBucket
PACING_TYPES: dict[str, type] = {"used_limit": UsedLimit, "remaining_reset": RemainingReset,
                                 "ratelimit_fields": RateLimitFields, "cost_bucket": CostBucket}
_PATHS = ("available", "restore_rate", "maximum", "cost", "actual")


def build_pacing(spec: Mapping[str, Any] | None,
                 compile_path: Callable[[str], Path] | None = None) -> Pacing | None:
    """The feedback form of the `http.pacing` dict (None: none); body paths compiled here."""
    if not spec:
        return None
    spec = dict(spec)
    kind = spec.pop("type", None)
    cls = PACING_TYPES.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"pacing.type must be one of {sorted(PACING_TYPES)}, got {kind!r}")
    if cls is CostBucket:
        if compile_path is None:
            raise ValueError("pacing type cost_bucket needs compile_path to compile its paths")
        spec = {key: compile_path(value) if key in _PATHS and value is not None else value
                for key, value in spec.items()}
    valid = [field.name for field in dataclasses.fields(cls) if field.name != "now"]
    unknown = sorted(set(spec) - set(valid))
    if unknown:
        raise ValueError(f"pacing: unknown key(s) {unknown} for type {kind}; valid: {valid}")
    try:
        return cls(**spec)
    except TypeError as exc:
        raise ValueError(f"pacing ({kind}): {exc}") from None


def _items(value: str | None) -> dict[str, dict[str, str]]:
    """A structured-field list `"a";k=1;j=2, "b";k=3` as {name: {param: value}}; {} if malformed."""
    found: dict[str, dict[str, str]] = {}
    position, text = 0, (value or "").strip()
    while position < len(text):
        match = _ITEM.match(text, position)
        if match is None or match.end() == position:
            return {}
        name = match.group(1) if match.group(1) is not None else match.group(2)
        found[name] = {key: (raw or "").strip() for key, raw in _PARAM.findall(match.group(3))}
        position = match.end()
    return found


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _search(path: Path | None, body: Any) -> float | None:
    if path is None:
        return None
    try:
        return _number(path(body))
    except Exception:  # a path that cannot read this body reads nothing
        return None
