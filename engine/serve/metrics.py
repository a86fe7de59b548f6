"""`/metrics` in the Prometheus text format (prometheus-client), one registry per console.

Counted as runs and requests happen (counters and a histogram):

    syncengine_records_total{integration, flow, counted}         pulled, new, delivered, skipped, held, quarantined, failed
    syncengine_runs_total{integration, flow, outcome}             ok, partial, failed
    syncengine_http_requests_total{host, status_class}           2xx, 3xx, 4xx, 5xx, error (no answer)
    syncengine_http_request_duration_seconds{host}               histogram
    syncengine_http_throttled_total{host}                         429 answers
    syncengine_http_waits_total{reason} / _waits_seconds_total    backoff, retry_after, pacing, rate_limit

Read from the ledgers at each scrape (gauges):

    syncengine_orders{integration, status}                        orders in the ledger by status
    syncengine_writes_unresolved{integration}                     writes whose outcome is not known
    syncengine_integration_paused{integration}                    1 while an operator paused it
    syncengine_last_success_timestamp_seconds{integration, flow}  the last run that ended ok
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from engine import control
from engine.flows import protocol
from engine.http import observe
from engine.runner import Outcome
from engine.serve.views import as_dict

disable_created_metrics()            # no `_created` series beside every counter: nobody graphs them


class Metrics:
    """The console's metrics: `outcome()` after each run, HTTP observed while `watch()` is on."""

    def __init__(self, state_dir: Any, names: Callable[[], list[str]],
                 ledger: Callable[[str], Any] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.state_dir, self.names = state_dir, names
        self.ledger = ledger or (lambda name: control.open_ledger(state_dir, name))
        self.success: dict[tuple[str, str], float] = {}
        r = self.registry
        self.records = Counter("syncengine_records", "Records a flow run counted", ["integration", "flow", "counted"], registry=r)
        self.runs = Counter("syncengine_runs", "Flow runs by outcome", ["integration", "flow", "outcome"], registry=r)
        self.requests = Counter("syncengine_http_requests", "HTTP requests by host and status class",
                                ["host", "status_class"], registry=r)
        self.latency = Histogram("syncengine_http_request_duration_seconds", "HTTP request latency", ["host"],
                                 registry=r, buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
        self.throttled = Counter("syncengine_http_throttled", "429 answers by host", ["host"], registry=r)
        self.waits = Counter("syncengine_http_waits", "Waits the HTTP layer made", ["reason"], registry=r)
        self.waited = Counter("syncengine_http_waits_seconds", "Seconds the HTTP layer waited", ["reason"], registry=r)
        r.register(_LedgerCollector(self))

    def watch(self) -> Callable[[], None]:
        """Observe every HTTP exchange and wait of this process; returns the function to stop."""
        return observe.watch(answered=self.answered, waited=self.wait)

    def answered(self, host: str, status: int | None, seconds: float) -> None:
        self.requests.labels(host, f"{status // 100}xx" if status else "error").inc()
        self.latency.labels(host).observe(seconds)
        if status == 429:
            self.throttled.labels(host).inc()

    def wait(self, reason: str, seconds: float) -> None:
        self.waits.labels(reason).inc()
        self.waited.labels(reason).inc(max(0.0, seconds))

    def outcome(self, outcome: Outcome) -> None:
        for flow, counts in outcome.counts.items():
            counted = as_dict(counts)
            for name, value in counted.items():
                if value:
                    self.records.labels(outcome.integration, flow, name).inc(value)
            bad = outcome.error or counted.get("failed") or counted.get("quarantined") or counted.get("unresolved")
            self.runs.labels(outcome.integration, flow, "failed" if outcome.error else "partial" if bad else "ok").inc()
            if not bad:
                self.success[(outcome.integration, flow)] = time.time()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LedgerCollector:
    """Gauges read from every ledger at scrape time (indexed counts, the unresolved writes)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        orders = GaugeMetricFamily("syncengine_orders", "Orders in the ledger by status", labels=["integration", "status"])
        unresolved = GaugeMetricFamily("syncengine_writes_unresolved", "Writes whose outcome is not known yet",
                                       labels=["integration"])
        paused = GaugeMetricFamily("syncengine_integration_paused", "1 while an operator paused the integration",
                                   labels=["integration"])
        success = GaugeMetricFamily("syncengine_last_success_timestamp_seconds",
                                    "When the last run that ended ok finished", labels=["integration", "flow"])
        state_dir = self.metrics.state_dir
        for name in control.ledger_names(state_dir):
            with self.metrics.ledger(name) as ledger:
                for status, count in sorted(ledger.counts().items()):
                    orders.add_metric([name, status], count)
                unresolved.add_metric([name], len(protocol.unresolved(ledger)))
                paused.add_metric([name], 1 if control.paused(ledger) else 0)
        for (name, flow), at in sorted(self.metrics.success.items()):
            success.add_metric([name, flow], at)
        yield from (orders, unresolved, paused, success)
