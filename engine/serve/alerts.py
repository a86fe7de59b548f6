"""Alerts from `syncengine serve` to a webhook (JSON) and by e-mail (SMTP).

The settings are a YAML file (`alerts_version: 1`, schema `schemas/alerts.schema.json`, checked by
`syncengine lint` and refused by `serve` unless clean). Conditions (`rules`, all on by default):

- `failing_runs` (3): an integration's flow failed that many runs in a row;
- `held`, `quarantined`: a run held or quarantined orders: each with its reason and console link;
- `unmapped_ship_method`: of those, the orders held for a ship method not in ship_method_map;
- `unresolved_writes`: writes left with an unknown outcome after a run;
- `destination_down` (5): that many requests in a row to one host got no answer or a 5xx.

Each channel gathers alerts for its `digest` interval and sends them as one message (0s: at
once), at most `rate_limit.max` messages per `rate_limit.per`; alerts beyond that are counted and
the count goes with the next message that may leave. A channel that fails to send logs it (masked)
and keeps its alerts for the next try, never stopping the schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import time
from collections import deque
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from engine import control, http, secrets
from engine.errors import ConfigError, SpecError
from engine.flows import protocol
from engine.ledger import open_store
from engine.specs.settings import seconds

log = logging.getLogger("syncengine.alerts")
RULES = {"failing_runs": 3, "held": True, "quarantined": True, "unmapped_ship_method": True,
         "unresolved_writes": True, "destination_down": 5}
LISTED = 20                      # orders named in one alert (the rest counted)


@dataclass
class Channel:
    """One destination of alerts, with its digest queue and rate-limit window."""

    name: str
    type: str
    settings: dict[str, Any]
    digest: float = 0.0
    limit: tuple[int, float] | None = None
    queue: list[dict[str, Any]] = field(default_factory=list)
    sent: deque[float] = field(default_factory=deque)
    suppressed: int = 0
    since: float = field(default_factory=time.monotonic)

    def due(self, now: float) -> bool:
        return bool(self.queue) and now - self.since >= self.digest

    def allowed(self, now: float) -> bool:
        if self.limit is None:
            return True
        most, per = self.limit
        while self.sent and now - self.sent[0] >= per:
            self.sent.popleft()
        return len(self.sent) < most


class Alerts:
    """The alert rules and channels of one `serve` process."""

    def __init__(self, channels: list[Channel], rules: dict[str, Any], console_url: str) -> None:
        self.channels, self.rules, self.url = channels, {**RULES, **rules}, console_url.rstrip("/") + "/"
        self.failures: dict[tuple[str, str], int] = {}
        self.host_failures: dict[str, int] = {}
        self.state_dir: str | Path | None = None

    @classmethod
    def load(cls, path: str | Path, console_url: str) -> Alerts:
        """Read and lint the settings; SpecError with the findings when they are not clean."""
        from engine.specs.lint import load_clean      # the loader owns YAML

        try:
            [document] = load_clean([path])
        except SpecError as exc:
            raise ConfigError(f"{path}: " + "; ".join(f"line {f.line}: {f.message}" for f in exc.findings)) from None
        if document.kind != "alerts":
            raise ConfigError(f"{path} is not an alerts file (it needs alerts_version: 1)")
        channels = [_channel(item, Path(path).parent) for item in document.data["channels"]]
        return cls(channels, document.data.get("rules") or {}, console_url)

    # -- conditions ----------------------------------------------------------------------------

    def raise_(self, kind: str, integration: str, text: str, **extra: Any) -> None:
        alert = {"kind": kind, "integration": integration, "text": text, "at": control.now_iso(), **extra}
        log.warning("alert: %s", http.everywhere().mask(text))
        for channel in self.channels:
            if not channel.queue:
                channel.since = time.monotonic()
            channel.queue.append(alert)

    def outcome(self, outcome: Any) -> None:
        """Check one run's outcome (called by the schedule's report and the console's actions)."""
        for flow in outcome.counts or {"-": None}:
            key = (outcome.integration, flow)
            failed = bool(outcome.error) or bool(getattr(outcome.counts.get(flow), "failed", 0))   # every flow counts failed
            self.failures[key] = self.failures.get(key, 0) + 1 if failed else 0
            threshold = self.rules["failing_runs"]
            if threshold and self.failures[key] == threshold:
                self.raise_("failing_runs", outcome.integration,
                            f"{outcome.integration}: {flow} failed {threshold} runs in a row: "
                            f"{outcome.error or 'orders failed to deliver'}", link=self._link(outcome.integration))
        counts = outcome.counts.get("orders")
        if self.state_dir is not None and (counts is not None or self.rules["unresolved_writes"]):
            self._orders(outcome.integration, counts)

    def _orders(self, name: str, counts: Any) -> None:
        if not open_store(self.state_dir).exists(name):
            return
        with control.open_ledger(self.state_dir, name) as ledger:
            for status in ("held", "quarantined"):
                n = getattr(counts, status, 0) if counts is not None else 0
                if n:
                    self._problem_orders(ledger, name, status, n)
            if self.rules["unresolved_writes"]:
                open_writes = protocol.unresolved(ledger)
                if open_writes:
                    keys = ", ".join(key for key, _ in open_writes[:LISTED])
                    self.raise_("unresolved_writes", name, f"{name}: {len(open_writes)} write(s) unresolved "
                                f"(outcome unknown, resolved before any resend): {keys}", link=self._link(name))

    def _problem_orders(self, ledger: Any, name: str, status: str, n: int) -> None:
        entries = ledger.latest(status, min(n, LISTED))
        unmapped = [e for e in entries if status == "held" and "ship_method_map" in (e.reason or "")]
        rest = [e for e in entries if e not in unmapped]
        if unmapped and self.rules["unmapped_ship_method"]:
            self.raise_("unmapped_ship_method", name, f"{name}: {len(unmapped)} order(s) held for a ship method "
                        "not in ship_method_map", orders=[self._order(name, e) for e in unmapped])
        elif unmapped:
            rest += unmapped
        if rest and self.rules[status]:
            more = f" (and {n - len(entries)} more)" if n > len(entries) else ""
            self.raise_(status, name, f"{name}: {n} order(s) {status}{more}",
                        orders=[self._order(name, e) for e in rest])

    def answered(self, host: str, status: int | None, seconds_: float) -> None:
        """An HTTP exchange (`engine.http.observe`): count failures in a row per host."""
        down = status is None or status >= 500
        self.host_failures[host] = self.host_failures.get(host, 0) + 1 if down else 0
        threshold = self.rules["destination_down"]
        if threshold and self.host_failures[host] == threshold:
            self.raise_("destination_down", "-", f"{host} looks down: {threshold} requests in a row got "
                        f"{'no answer' if status is None else f'HTTP {status}'}")

    def _link(self, name: str, key: str | None = None) -> str:
        from urllib.parse import quote

        return f"{self.url}i/{quote(name)}" + (f"/orders/{quote(key, safe='')}" if key else "")

    def _order(self, name: str, entry: Any) -> dict[str, Any]:
        return {"key": entry.key, "reason": entry.reason or entry.last_error, "link": self._link(name, entry.key)}

    # -- sending -------------------------------------------------------------------------------

    async def run(self, console: Any, stop: asyncio.Event, tick: float = 1.0) -> None:
        """Send what is due on each channel every `tick` seconds until `stop`, then what is left."""
        self.state_dir = console.state_dir
        unwatch = http.observe.watch(answered=self.answered)
        try:
            while not stop.is_set():
                await self.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick)
            await self.flush(everything=True)
        finally:
            unwatch()

    async def flush(self, everything: bool = False) -> None:
        now = time.monotonic()
        for channel in self.channels:
            if not (channel.queue and (everything or channel.due(now))):
                continue
            if not channel.allowed(now):
                channel.suppressed += len(channel.queue)
                channel.queue.clear()
                continue
            alerts, suppressed = channel.queue[:], channel.suppressed
            try:
                await _SENDERS[channel.type](channel, alerts, suppressed, self.url)
            except Exception as exc:  # noqa: BLE001 - a channel down never stops the schedule
                log.warning("alert channel %s could not send: %s", channel.name,
                            http.everywhere().mask(f"{type(exc).__name__}: {exc}"))
                continue
            del channel.queue[:len(alerts)]
            channel.suppressed -= suppressed
            channel.sent.append(now)


def _channel(item: dict[str, Any], base: Path) -> Channel:
    settings = dict(item)
    if item["type"] == "email":
        smtp, found = secrets.resolve(item["smtp"], base, ["password"])
        http.remember_secrets(found)
        settings["smtp"] = smtp
    limit = item.get("rate_limit")
    return Channel(item["name"], item["type"], settings, seconds(item.get("digest", "0s")),
                   (limit["max"], seconds(limit["per"])) if limit else None)


def message(alerts: list[dict[str, Any]], suppressed: int, console: str) -> tuple[str, str]:
    """(subject, plain-text body) of one e-mail."""
    subject = f"syncengine: {alerts[0]['text']}" if len(alerts) == 1 else f"syncengine: {len(alerts)} alerts"
    lines = []
    for alert in alerts:
        lines.append(f"[{alert['at']}] {alert['text']}")
        lines += [f"  {o['key']}: {o['reason']}  {o['link']}" for o in alert.get("orders", ())]
        if alert.get("link"):
            lines.append(f"  {alert['link']}")
    if suppressed:
        lines.append(f"\n{suppressed} alert(s) were not sent: this channel's rate limit was reached.")
    lines.append(f"\nConsole: {console}")
    return subject, "\n".join(lines) + "\n"


async def _webhook(channel: Channel, alerts: list[dict[str, Any]], suppressed: int, console: str) -> None:
    payload = {"alerts": alerts, "suppressed": suppressed, "console": console}
    async with http.HttpClient(channel.settings["url"], retry=http.RetryPolicy(attempts=2)) as client:
        await client.send(http.Request("POST", channel.settings["url"], json=payload))


async def _email(channel: Channel, alerts: list[dict[str, Any]], suppressed: int, console: str) -> None:
    subject, body = message(alerts, suppressed, console)
    mail = EmailMessage()
    mail["Subject"], mail["From"], mail["To"] = http.everywhere().mask(subject), channel.settings["from"], \
        ", ".join(channel.settings["to"])
    mail.set_content(http.everywhere().mask(body))
    await asyncio.to_thread(_smtp_send, channel.settings["smtp"], mail)


def _smtp_send(smtp: dict[str, Any], mail: EmailMessage) -> None:
    with smtplib.SMTP(smtp["host"], smtp.get("port", 25), timeout=30) as server:
        if smtp.get("starttls"):
            server.starttls()
        if smtp.get("username"):
            server.login(smtp["username"], smtp.get("password", ""))
        server.send_message(mail)


_SENDERS = {"webhook": _webhook, "email": _email}
