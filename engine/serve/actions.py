"""The console's actions: each one calls the very function its CLI command calls, and is recorded
(`engine.control.record`) with who did it and when, whatever its result.

| action  | what it needs | the CLI command                                   |
|---------|---------------|---------------------------------------------------|
| run     | flow          | `syncengine run --integration N --flow F`         |
| retry   | key (or none) | `syncengine retry --integration N [--key K]`      |
| release | key (held)    | `syncengine release --integration N --key K`      |
| resend  | key (error)   | `syncengine retry --integration N --key K`        |
| reset   | since         | `syncengine reset --integration N --since T`      |
| pause   |               | `syncengine pause --integration N`                |
| resume  |               | `syncengine resume --integration N`               |

`resend` sends again an order the WMS refused (status `error`) once it is fixed there: the same
re-assessment as `retry`, for one key. A delivered order is never resent: its key blocks
duplicates for good (DESIGN.md), and the ledger no longer holds its raw record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import commands, control, runner
from engine.errors import ConfigError, SyncEngineError

ACTIONS = ("run", "retry", "release", "resend", "reset", "pause", "resume")
#: action -> (the one-line question the confirmation page asks, the fields it needs)
QUESTIONS = {
    "run": ("Run the {flow} flow of {name} now?", ("flow",)),
    "retry": ("Re-assess {what} of {name} and deliver what passes?", ()),
    "release": ("Send held order {key} of {name} on despite its hold?", ("key",)),
    "resend": ("Send order {key} of {name} to the destination again?", ("key",)),
    "reset": ("Re-read the orders of {name} since {since}? Delivered orders still block duplicates.", ("since",)),
    "pause": ("Pause the scheduled runs of {name}?", ()),
    "resume": ("Resume the scheduled runs of {name}?", ()),
}


@dataclass
class Result:
    ok: bool
    message: str


def question(action: str, name: str, values: dict[str, str]) -> str:
    text, _ = QUESTIONS[action]
    what = f"order {values['key']}" if values.get("key") else "every errored, quarantined and held order"
    return text.format(name=name, what=what, **{k: values.get(k, "") for k in ("flow", "key", "since")})


def missing(action: str, values: dict[str, str]) -> list[str]:
    return [name for name in QUESTIONS[action][1] if not values.get(name)]


async def perform(project: runner.Project, state_dir: Path, name: str, action: str, values: dict[str, str],
                  user: str, report: Callable[[runner.Outcome, float], None]) -> Result:
    """Carry out `action` on integration `name` as `user`; record it, whatever happens."""
    target = values.get("key") or values.get("flow") or (f"since {values['since']}" if values.get("since") else name)
    try:
        integration = project.select(name)[0]
        message = await _ACTIONS[action](project, state_dir, integration, values, user, report)
        result = Result(True, message)
    except SyncEngineError as exc:
        result = Result(False, f"failed: {exc}")
    with control.open_ledger(state_dir, name) as ledger:
        control.record(ledger, user, action, target, result.message)
    return result


async def _run(project, state_dir, integration, values, user, report) -> str:
    flow = values["flow"]
    if flow not in integration.flows or flow not in runner.FLOWS:
        raise ConfigError(f"{integration.name} does not enable the {flow} flow")
    started = time.time()
    outcome = await runner.run_integration(project, integration, runner.Options(state_dir, [flow]))
    report(outcome, started)
    if outcome.error:
        raise ConfigError(outcome.error)
    return f"{flow}: {outcome.counts[flow].summary()}" if flow in outcome.counts else f"{flow}: not run"


async def _retry(project, state_dir, integration, values, user, report) -> str:
    keys = [values["key"]] if values.get("key") else None
    started = time.time()
    released, counts = await commands.retry(project, integration, state_dir, keys)
    report(runner.Outcome(integration.name, {"orders": counts}), started)      # an orders run: counted
    return f"released {released}; {counts.summary()}"


async def _release(project, state_dir, integration, values, user, report) -> str:
    with control.open_ledger(state_dir, integration.name) as ledger:
        control.mark_released(ledger, values["key"], user)
    return await _retry(project, state_dir, integration, values, user, report)


async def _resend(project, state_dir, integration, values, user, report) -> str:
    with control.open_ledger(state_dir, integration.name) as ledger:
        entry = ledger.get(values["key"])
    if entry is None or entry.status != "error":
        status = entry.status if entry else "not in the ledger"
        raise ConfigError(f"order {values['key']} is {status}: only an order in error is resent")
    return await _retry(project, state_dir, integration, values, user, report)


async def _reset(project, state_dir, integration, values, user, report) -> str:
    released = commands.reset(state_dir, integration.name, values["since"])
    return f"orders will be re-read from {values['since']}; {released} skipped order(s) released"


def _pause(on: bool) -> Callable[..., Any]:
    async def act(project, state_dir, integration, values, user, report) -> str:
        with control.open_ledger(state_dir, integration.name) as ledger:
            return control.set_paused(ledger, on, user)
    return act


_ACTIONS = {"run": _run, "retry": _retry, "release": _release, "resend": _resend, "reset": _reset,
            "pause": _pause(True), "resume": _pause(False)}
