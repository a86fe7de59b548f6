"""What operators decide about an integration, kept in its ledger: paused or not, held orders
they released, and the record of every action taken (who, when, what, the result).

The CLI (`pause`, `resume`, `release`, `retry`, `reset`) and the console (`engine/serve`) call
these same functions, so a pause set in one is seen by the other and by the scheduler, and the
action record lists both. Everything goes through the `Ledger` interface (`open_ledger` is the
one place that picks the store).

Ledger key/value namespaces used here:

- ``control`` / ``paused``: ``{"by": user, "at": ISO time}`` while the integration is paused;
- ``actions`` / ``<epoch nanoseconds, 20 digits>|<random>``: ``{"at", "by", "action", "target", "result"}``,
  at most ``ACTIONS_KEPT`` kept (the oldest go first).
"""

from __future__ import annotations

import os
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.ledger import Ledger, open_store

CONTROL, ACTIONS = "control", "actions"
ACTIONS_KEPT = 500


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def open_ledger(state_dir: str | Path, name: str) -> Ledger:
    """The ledger of integration `name` in the store `state_dir` names (a directory or a
    postgresql:// URL: `engine.ledger.stores`)."""
    return open_store(state_dir).open(name)


def ledger_names(state_dir: str | Path) -> list[str]:
    """The integrations that have a ledger in the store (none when nothing ran yet)."""
    return sorted(open_store(state_dir).names())


def whoami() -> str:
    """Who runs a CLI action: the login name (`$USER`), else the user id."""
    return os.environ.get("USER") or os.environ.get("LOGNAME") or f"uid {os.getuid()}"


def paused(ledger: Ledger) -> dict[str, Any] | None:
    """Who paused the integration and when, or None when it runs."""
    value = ledger.kv_get(CONTROL, "paused")
    return value if isinstance(value, dict) else None


def is_paused(state_dir: str | Path, name: str) -> bool:
    """Whether the scheduler should skip `name` now (no ledger yet: not paused)."""
    if not open_store(state_dir).exists(name):
        return False
    with open_ledger(state_dir, name) as ledger:
        return paused(ledger) is not None


def set_paused(ledger: Ledger, on: bool, by: str) -> str:
    """Pause (`on`) or resume; returns what was done, for the action record."""
    if on:
        ledger.kv_set(CONTROL, "paused", {"by": by, "at": now_iso()})
        return "paused: scheduled runs skip it until it is resumed"
    ledger.kv_delete(CONTROL, "paused")
    return "resumed: scheduled runs go on"


def record(ledger: Ledger, by: str, action: str, target: str, result: str) -> dict[str, Any]:
    """Record one operator action (and forget the oldest beyond ACTIONS_KEPT)."""
    entry = {"at": now_iso(), "by": by, "action": action, "target": target, "result": result}
    ledger.kv_set(ACTIONS, f"{time.time_ns():020d}|{secrets.token_hex(4)}", entry)   # sorts as it happened
    keys = sorted(key for key, _ in ledger.kv_items(ACTIONS))
    for key in keys[:-ACTIONS_KEPT]:
        ledger.kv_delete(ACTIONS, key)
    return entry


def actions(ledger: Ledger, n: int = 20, target: str | None = None) -> list[dict[str, Any]]:
    """The latest `n` actions, newest first (only those about `target` when given)."""
    found = sorted(ledger.kv_items(ACTIONS), reverse=True)
    return [value for _, value in found if target is None or value.get("target") == target][:n]


def mark_released(ledger: Ledger, key: str, by: str) -> None:
    """Let a held order go on despite its hold (the operator's decision), for `retry` to send."""
    entry = ledger.get(key)
    if entry is None:
        raise ConfigError(f"no order {key!r} in the ledger of {ledger.integration}")
    if entry.status != "held":
        raise ConfigError(f"order {key} is {entry.status}, not held: only a held order can be released")
    ledger.transition(key, "held", "held", data={"released": {"by": by, "at": now_iso()}})
