"""`Limits`: what one answer and one read may cost, so a hostile or broken server cannot take a
run down: the size of a body, the whole time of one request, the pages and records of one read.
(How deeply the JSON of an answer may nest is fixed: `models.MAX_DEPTH`.)

    limits = build_limits(spec.get("limits"), timeout=30)   # deadline defaults to 4 x timeout
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

#: 64 MiB: ~200 times a page of 250 orders of ~1.25 KB of JSON each (bench/server.py's shape).
MAX_BODY = 64 * 1024 * 1024
#: Pages and records one read (one paging walk) may fetch before it fails as endless.
MAX_PAGES = 100_000
MAX_RECORDS = 10_000_000
#: The deadline of one request, as a multiple of the per-read `timeout`.
DEADLINE_FACTOR = 4


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """`max_body` bytes per answer (after decompression), `deadline` seconds per request (from
    sending to the last byte, whatever the read timeout per chunk), `max_pages` and
    `max_records` per read."""

    max_body: int = MAX_BODY
    deadline: float = 30.0 * DEADLINE_FACTOR
    max_pages: int = MAX_PAGES
    max_records: int = MAX_RECORDS


def build_limits(spec: Mapping[str, Any] | None, timeout: float = 30.0) -> Limits:
    """Limits from a spec's `http.limits` (each key optional); `deadline` defaults to
    DEADLINE_FACTOR x `timeout`."""
    spec = spec or {}
    deadline = float(spec.get("deadline", timeout * DEADLINE_FACTOR))
    if not math.isfinite(deadline) or deadline <= 0:
        raise ValueError(f"limits.deadline must be a positive number of seconds, got {deadline!r}")
    return Limits(max_body=int(spec.get("max_body", MAX_BODY)), deadline=deadline,
                  max_pages=int(spec.get("max_pages", MAX_PAGES)),
                  max_records=int(spec.get("max_records", MAX_RECORDS)))
