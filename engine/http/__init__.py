"""The HTTP layer: httpx.AsyncClient with auth flows, paginators, retries, rate limits.

Knows nothing of specs, YAML, Jinja or JMESPath: where it reads an answer by an expression,
it takes an already-compiled callable (`compile_path`). Only this package imports httpx.
"""

from __future__ import annotations

from .auth import AUTH_TYPES, build_auth
from .breaker import DEFAULT_THRESHOLD as DEFAULT_DOWN_AFTER
from .breaker import Breaker
from .canned import canned_client
from .client import HttpClient, logger
from .limits import Limits, build_limits
from .models import NOTHING, Answer, Page, Request
from .pacing import PACING_TYPES, Reading, build_pacing
from .paginators import PAGINATORS, Paginator, build_paginator, parse_link_header
from .ratelimit import (RateLimit, bucket_dir, build_rate_limit, reset_buckets, set_bucket_dir, use_broker_budget,
                        use_budget)
from .redact import Redactor, everywhere, forget_secrets, remember_secrets
from .retry import Backoff, RetryPolicy, backoff, build_retry, retry_after
from .stops import STOP_CONDITIONS, StopCondition
from .waits import recorded_waits, set_testing

__all__ = [
    "AUTH_TYPES", "DEFAULT_DOWN_AFTER", "NOTHING", "PACING_TYPES", "PAGINATORS", "STOP_CONDITIONS", "Answer", "Backoff", "Breaker",
    "HttpClient", "Limits", "Page", "Paginator", "RateLimit", "Reading", "Redactor", "Request", "RetryPolicy",
    "StopCondition", "backoff", "bucket_dir", "build_auth", "build_limits", "build_pacing", "build_paginator",
    "build_rate_limit", "build_retry", "canned_client", "everywhere", "forget_secrets", "logger",
    "parse_link_header", "recorded_waits", "remember_secrets", "reset_buckets", "retry_after",
    "set_bucket_dir", "set_testing", "use_broker_budget", "use_budget",
]
