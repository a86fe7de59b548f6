"""A user's mistake is a clear message and an exit code, never an "internal error" or a traceback.

Each row makes one mistake against the sample servers on 127.0.0.1 (or none, where the mistake
needs no server) and checks the exit code and that the message names what to fix.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis_support import free_port
from sync_rig import Rig, rig

from engine import ROOT, cli


@dataclass(frozen=True)
class Mistake:
    name: str
    make: Callable[[Rig], list[str]]       # sets the mistake up; returns the command line
    code: int
    says: tuple[str, ...]


def empty_base_url(r: Rig) -> list[str]:
    r.write(source={"connector": "woocommerce", "config": {
        "site_url": "${env:SYNC_EMPTY}", "consumer_key": "${env:SYNC_CART_KEY}", "consumer_secret": "${env:SYNC_CART_SECRET}"}})
    os.environ["SYNC_EMPTY"] = ""
    return r.args("run", "--flow", "orders")


def host_without_scheme(r: Rig) -> list[str]:
    data = r.write()
    text = data.read_text().replace(r.wms.url, "127.0.0.1:9")
    data.write_text(text)
    return r.args("run", "--flow", "orders")


def binary_sku_map(r: Rig) -> list[str]:
    r.write(sku_map={"file": "skus.csv"})
    (r.root / "integrations" / "skus.csv").write_bytes(b"\xff\xfe\x00\x01PNG\x89")
    return r.args("run", "--flow", "orders")


def template_gives_no_json(r: Rig) -> list[str]:
    r.write()
    r.patch("extensiv", lambda spec: spec["operations"]["create_order"]["request"]["json"].update(
        notes="{{ range(3) }}"))
    return r.args("run", "--flow", "orders")


def disabled_flow(r: Rig) -> list[str]:
    r.write(flows={"orders": {"enabled": True}})
    return r.args("run", "--flow", "inventory")


def retry_without_state(r: Rig) -> list[str]:
    r.write()
    return r.args("retry")


def status_negative_limit(r: Rig) -> list[str]:
    r.write()
    return ["status", "--state-dir", str(r.state), "--limit", "-1"]


def lint_finds_no_specs(r: Rig) -> list[str]:
    (r.root / "x.yaml").mkdir()
    return ["lint", str(r.root / "x.yaml")]


def budget_unreachable(r: Rig) -> list[str]:
    r.write()
    return r.args("run", "--flow", "orders", "--budget", f"redis://:hunter2@127.0.0.1:{free_port()}/0")


def budget_not_redis(r: Rig) -> list[str]:
    r.write()
    return r.args("run", "--flow", "orders", "--budget", "postgresql://127.0.0.1/x")


MISTAKES = [
    Mistake("empty base_url", empty_base_url, 1, ("FAILED", "http.base_url", "not an absolute http(s) URL")),
    Mistake("a host without https://", host_without_scheme, 1, ("FAILED", "gives '127.0.0.1:9'",)),
    Mistake("a binary sku_map file", binary_sku_map, 2, ("sku_map file", "skus.csv", "not UTF-8 text")),
    Mistake("a template that gives no JSON value", template_gives_no_json, 1,
            ("failed 6", )),
    Mistake("--flow names a disabled flow", disabled_flow, 2,
            ("not enabled, not run: inventory", "no selected integration enables inventory")),
    Mistake("retry where nothing ran", retry_without_state, 2, ("no state directory",)),
    Mistake("status --limit -1", status_negative_limit, 2, ("--limit", "expected a whole number")),
    Mistake("lint a directory named x.yaml", lint_finds_no_specs, 2, ("no spec files",)),
    Mistake("--budget names a Redis that is down", budget_unreachable, 2,
            ("syncengine run: error: rate budget at redis://127.0.0.1:", "unreachable", "Connection refused")),
    Mistake("--budget names no Redis", budget_not_redis, 2, ("--budget: expected redis://HOST:PORT/DB",)),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.name for m in MISTAKES])
def test_a_mistake_is_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mistake: Mistake) -> None:
    monkeypatch.setenv("SYNC_EMPTY", "")
    with rig(tmp_path, monkeypatch) as r:
        args = mistake.make(r)
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.run(args, stdout, stderr)
        said = stdout.getvalue() + stderr.getvalue()
        assert "Traceback" not in said and "internal error" not in said, said
        assert "hunter2" not in said, said
        assert code == mistake.code, said
        for words in mistake.says:
            assert words in said, said
        assert not (r.state.exists() and mistake.name == "retry where nothing ran"), "retry created a ledger"


def test_the_failed_order_names_the_operation_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with rig(tmp_path, monkeypatch) as r:
        template_gives_no_json(r)
        assert r.cli("run", "--flow", "orders").code == 1
        status = r.status()
        assert "create_order request: json.notes: the template gives a range, not a JSON value" in status, status


def test_status_into_a_closed_pipe_is_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`syncengine status | head -1`: the reader is gone before status writes. No BrokenPipeError,
    no "Exception ignored" at exit: nothing on stderr, exit 141 (as a command ended by SIGPIPE)."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        assert r.cli("run", "--flow", "orders").code == 0
        process = subprocess.Popen([sys.executable, "-m", "engine", "status", "--state-dir", str(r.state)],
                                   cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdout.close()                      # the reader goes away first
        _, err = process.communicate(timeout=60)
        assert err == b"", err
        assert process.returncode == 141
