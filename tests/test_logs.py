"""Log lines: dated in ISO-8601 UTC, `--log-format json` one masked JSON object per line naming
the integration and flow, through the command line on a real run."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from engine import logs
from engine.flows import orders
from engine.http import forget_secrets, remember_secrets
from engine.http.redact import spellings
from tests.sync_rig import SECRETS, WMS_SECRETS, rig

DATED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (DEBUG|INFO|WARNING|ERROR|CRITICAL) syncengine[.\w]*: ")
CART_KEY = SECRETS["woocommerce"]["SYNC_CART_KEY"]


def recent(stamp: str) -> bool:
    """The stamp is UTC and of this run (not local time, not another day)."""
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return abs(datetime.now(timezone.utc) - moment) < timedelta(minutes=10)


def leak_in_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the orders flow log a warning holding the cart's key, raw and JSON-escaped, as a
    careless message would."""
    original = orders.OrdersFlow.recover

    async def recover(self: orders.OrdersFlow) -> None:
        orders.log.warning("echo %s and %s", CART_KEY, json.dumps({"key": CART_KEY}))
        await original(self)

    monkeypatch.setattr(orders.OrdersFlow, "recover", recover)


def test_log_lines_carry_an_iso_utc_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every log line of a run (-v) starts with its ISO-8601 UTC date and time, then level and
    logger; a warning shows without -v too, dated the same way."""
    leak_in_reconcile(monkeypatch)
    with rig(tmp_path, monkeypatch, orders=3) as r:
        r.write(flows={"orders": {"enabled": True}})
        verbose = r.cli("run", before=("-v",))
        quiet = r.cli("run")
    lines = verbose.err.splitlines()
    assert verbose.code == 0 and any("paging" in line for line in lines), verbose.err
    for line in lines:
        match = DATED.match(line)
        assert match and recent(match.group(1)), line
    [warning] = quiet.err.splitlines()
    assert DATED.match(warning) and " WARNING syncengine.orders: echo *** and " in warning
    assert CART_KEY not in verbose.err + quiet.err


def test_log_format_json_is_one_masked_object_per_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--log-format json`: each stderr line is a JSON object with time, level, logger, message,
    and the integration and flow of the run; the secret is masked in every spelling."""
    leak_in_reconcile(monkeypatch)
    with rig(tmp_path, monkeypatch, orders=3) as r:
        r.write(flows={"orders": {"enabled": True}, "inventory": {"enabled": True}})
        result = r.cli("run", before=("-v", "--log-format", "json"))
    assert result.code == 0 and "delivered 3" in result.out
    records = [json.loads(line) for line in result.err.splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= set(record) for record in records)
    assert all(recent(record["time"]) and record["time"].endswith("Z") for record in records)
    echo = next(record for record in records if record["message"].startswith("echo"))
    assert echo == {**echo, "level": "WARNING", "logger": "syncengine.orders", "integration": "sync-shop",
                    "flow": "orders", "message": 'echo *** and {"key": "***"}'}
    flows = {record.get("flow") for record in records if record["logger"].startswith("syncengine.http")}
    assert {"orders", "inventory"} <= flows, records
    summary = next(record for record in records if record["logger"] == "syncengine.run" and record["flow"] == "orders")
    assert summary["level"] == "INFO" and summary["integration"] == "sync-shop"
    assert summary["counts"]["delivered"] == 3 and summary["message"].startswith("sync-shop: orders: pulled 3")
    assert not [form for form in spellings(CART_KEY) if form in result.err]
    assert not [form for form in spellings(WMS_SECRETS["SYNC_WMS_SECRET"]) if form in result.err]


def test_the_json_formatter_masks_what_it_adds_itself() -> None:
    """An exception's text, which no message filter sees, is masked by the JSON formatter."""
    remember_secrets(["tok-5f2a9c"])
    try:
        try:
            raise ValueError("refused tok-5f2a9c")
        except ValueError:
            record = logging.LogRecord("syncengine.x", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
        line = json.loads(logs.JsonFormatter().format(record))
    finally:
        forget_secrets()
    assert "refused ***" in line["exception"] and "tok-5f2a9c" not in json.dumps(line)


def test_an_unknown_log_format_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--log-format xml` is refused with the choices, exit 2."""
    with rig(tmp_path, monkeypatch, orders=1) as r:
        r.write()
        result = r.cli("run", before=("--log-format", "xml"))
    assert result.code == 2 and "invalid choice: 'xml'" in result.err and "json" in result.err


def test_a_failed_run_is_an_error_in_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without -v, a run whose orders could not be sent (the WMS is unreachable) logs its
    summary as an ERROR record with the counts (what a log-based alert matches, `run --every`
    having no exit code per run)."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        path = r.write(flows={"orders": {"enabled": True}})
        path.write_text(path.read_text().replace(r.wms.url, "http://127.0.0.1:9"), encoding="utf-8")
        result = r.cli("run", before=("--log-format", "json"))
    assert result.code == 1 and "2 order(s) left pending for the next run" in result.out   # refused: never sent
    [error] = [json.loads(line) for line in result.err.splitlines() if '"syncengine.run"' in line]
    assert error["level"] == "ERROR" and error["integration"] == "sync-shop" and error["flow"] == "orders"
    assert error["message"].startswith("sync-shop: orders: pulled 2") and "2 order(s) left pending" in error["message"]
