"""Alerts to a webhook receiver and a local SMTP sink: the rules, the digest, the rate limit, lint."""

from __future__ import annotations

import asyncio
import io
import textwrap
from pathlib import Path

from console_support import console_rig
from http_server import LoopbackServer, Reply
from smtp_sink import SmtpSink

from engine import cli, runner
from engine.flows.base import Counts
from engine.serve.alerts import Alerts
from sync_rig import NAME


def settings(tmp_path: Path, webhook: str, smtp_port: int, extra: str = "") -> Path:
    path = tmp_path / "alerts.yaml"
    path.write_text(textwrap.dedent(f"""\
        alerts_version: 1
        channels:
          - {{name: ops-hook, type: webhook, url: "{webhook}"}}
          - name: ops-mail
            type: email
            smtp: {{host: 127.0.0.1, port: {smtp_port}, username: alerts, password: "${{env:ALERT_SMTP_PASSWORD}}"}}
            from: syncengine@3pl.test
            to: [ops@3pl.test]
        """) + extra, encoding="utf-8")
    return path


def held_run(counts: int) -> runner.Outcome:
    return runner.Outcome(NAME, {"orders": Counts(pulled=6, new=6, delivered=1, held=counts)})


def test_held_orders_reach_the_webhook_and_the_mailbox_with_reasons_and_links(tmp_path, monkeypatch):
    """A run that holds orders sends one alert per channel naming each order, its reason and its
    console link; the unmapped ship methods get their own alert; the SMTP password never shows."""
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "smtp-secret-913")
    with console_rig(tmp_path, monkeypatch) as c, LoopbackServer() as hook, SmtpSink() as sink:
        hook.route("/hook", Reply(204))
        alerts = Alerts.load(settings(tmp_path, hook.url("/hook"), sink.port), "http://127.0.0.1:8080")
        alerts.state_dir = c.rig.state
        alerts.outcome(held_run(5))
        asyncio.run(alerts.flush())
        [call] = hook.calls
        [alert] = call.json()["alerts"]
        assert alert["kind"] == "unmapped_ship_method" and len(alert["orders"]) == 5
        assert {"key": "1003", "reason": "ship method 'ups_ground' is not in ship_method_map",
                "link": f"http://127.0.0.1:8080/i/{NAME}/orders/1003"} in alert["orders"]
        [mail] = sink.messages
        assert mail["To"] == "ops@3pl.test" and "held for a ship method" in mail["Subject"]
        body = mail.get_content()
        assert f"http://127.0.0.1:8080/i/{NAME}/orders/1003" in body and "ups_ground" in body
        assert "smtp-secret-913" not in body + call.body.decode()
        assert sink.logins and sink.logins[0].startswith("AUTH PLAIN")      # it logged in with the password


def test_digest_gathers_and_the_rate_limit_counts_what_it_held_back(tmp_path, monkeypatch):
    """With a digest interval, alerts wait and leave as one message; over the rate limit they are
    not sent but counted, and the count goes with the next message allowed."""
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "x")
    with LoopbackServer() as hook, SmtpSink() as sink:
        hook.route("/hook", Reply(200))
        path = settings(tmp_path, hook.url("/hook"), sink.port)
        path.write_text(path.read_text().replace("type: webhook,", "type: webhook, digest: 1h, rate_limit: {max: 1, per: 1h},")
                        .replace("to: [ops@3pl.test]", "to: [ops@3pl.test]\n    rate_limit: {max: 1, per: 1h}"))
        alerts = Alerts.load(path, "http://console.test")
        for n in range(1, 4):
            alerts.raise_("failing_runs", NAME, f"alert {n}")
            asyncio.run(alerts.flush())
        assert hook.calls == []                               # the webhook's digest: not yet
        assert len(sink.messages) == 1 and sink.messages[0]["Subject"] == "syncengine: alert 1"
        mail = next(ch for ch in alerts.channels if ch.name == "ops-mail")
        assert mail.suppressed == 2 and mail.queue == []
        mail.sent.clear()                                     # the window has passed
        alerts.raise_("failing_runs", NAME, "alert 4")
        asyncio.run(alerts.flush(everything=True))
        [call] = hook.calls
        assert [a["text"] for a in call.json()["alerts"]] == ["alert 1", "alert 2", "alert 3", "alert 4"]
        assert "2 alert(s) were not sent" in sink.messages[1].get_content()


def test_failing_runs_and_a_destination_down(tmp_path, monkeypatch):
    """N failed runs in a row raise one alert (not one per run after); N failed requests in a row
    to one host raise one; a success resets the count."""
    monkeypatch.setenv("ALERT_SMTP_PASSWORD", "x")
    alerts = Alerts.load(settings(tmp_path, "http://127.0.0.1:9/hook", 25,
                                  "rules: {failing_runs: 2, destination_down: 3}\n"), "http://console.test")
    failed = runner.Outcome(NAME, {"orders": Counts()}, error="HTTP 503 from the WMS")
    for outcome in (failed, runner.Outcome(NAME, {"orders": Counts()}), failed, failed, failed):
        alerts.outcome(outcome)
    for status in (None, 502, 200, None, 503, None, None):
        alerts.answered("wms.test:443", status, 0.1)
    texts = [a["text"] for a in alerts.channels[0].queue]
    assert texts == [f"{NAME}: orders failed 2 runs in a row: HTTP 503 from the WMS",
                     "wms.test:443 looks down: 3 requests in a row got no answer"]


def test_lint_checks_the_alert_settings(tmp_path):
    """`lint` reads an alerts file: clean when right; a literal SMTP password, a webhook without a
    URL and an unknown rule are each reported with their line."""
    good = settings(tmp_path, "https://hooks.test/x", 25)
    out = io.StringIO()
    assert cli.run(["lint", str(good)], out, io.StringIO()) == 0, out.getvalue()
    bad = tmp_path / "bad" / "alerts.yaml"
    bad.parent.mkdir()
    bad.write_text(good.read_text().replace('"${env:ALERT_SMTP_PASSWORD}"', "hunter2")
                   .replace(', url: "https://hooks.test/x"', "") + "rules: {held: true, louder: true}\n")
    out = io.StringIO()
    assert cli.run(["lint", str(bad)], out, io.StringIO()) == 1
    text = out.getvalue()
    assert f"{bad}:6:" in text and "password" in text
    assert f"{bad}:3:" in text and "url" in text
    assert "louder" in text
