"""`syncengine serve`, `user`, `release`, `pause`/`resume`: the process, its bind rule, the CLI twins
of the console's actions, and the scheduler skipping a paused integration."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from console_support import HOLD_UNMAPPED, few_connectors, users_file
from sync_rig import NAME, SECRETS, WMS_SECRETS, rig

from engine import ROOT, cli, control, runner, schedule
from engine.serve.access import Users, check_password
from test_schedule import wait_for


def test_serve_runs_the_schedule_and_the_console_then_stops_on_sigterm(tmp_path: Path, monkeypatch) -> None:
    """One process: it delivers on its schedule, answers /healthz, /readyz and a logged-in page,
    and stops with exit 0 on SIGTERM."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(flows={"orders": {"enabled": True}, "shipments": {"enabled": True}})
        few_connectors(tmp_path)
        users = users_file(tmp_path / "users")
        log = tmp_path / "out.log"
        env = {**os.environ, **SECRETS["woocommerce"], **WMS_SECRETS}
        with log.open("wb") as sink:
            process = subprocess.Popen([sys.executable, "-m", "engine", *r.args("serve", "--listen", "127.0.0.1:0",
                                                                                "--users", str(users), "--every", "1h")],
                                       cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for(lambda: "orders: pulled" in log.read_text() and "shipments: pulled" in log.read_text(), timeout=60)
            url = re.search(r"console at (\S+)", log.read_text())[1]
            assert url.startswith("http://127.0.0.1:")
            assert httpx.get(url + "healthz").text == "ok\n"
            assert httpx.get(url + "readyz").text == "ready\n"
            token_page = httpx.get(url + "index.json", headers={"Authorization": "Bearer ci-token-0123456789abcdef"})
            [row] = token_page.json()["integrations"]
            assert row["name"] == NAME and row["counts"] == {"delivered": 2}
            runs = {flow["flow"]: flow for flow in row["flows"]}
            assert runs["orders"]["last"]["outcome"] == "ok" and runs["orders"]["next"]
            assert runs["shipments"]["last"]["outcome"] == "ok"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        text = log.read_text()
        assert "stopped:" in text and "Traceback" not in text


def test_serve_refuses_beyond_loopback_unless_told(tmp_path: Path) -> None:
    """`--listen 0.0.0.0:PORT` without --allow-remote is refused with the reason; a bad --listen too."""
    users = users_file(tmp_path / "users")
    for listen, expected in (("0.0.0.0:0", "beyond loopback"), ("127.0.0.1:http", "wants HOST:PORT")):
        out, err = io.StringIO(), io.StringIO()
        code = cli.run(["serve", "--listen", listen, "--users", str(users), "--state-dir", str(tmp_path)], out, err)
        assert code == 2 and expected in err.getvalue(), err.getvalue()


def test_serve_refuses_a_bad_users_file(tmp_path: Path) -> None:
    """A users file with a plain-text password is refused with its file and line, before anything runs."""
    users = tmp_path / "users"
    users.write_text("# users\nalice:operator:hunter22\n")
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["serve", "--listen", "127.0.0.1:0", "--users", str(users), "--state-dir", str(tmp_path)], out, err)
    assert code == 2 and f"{users}:2: the credential is neither a scrypt hash" in err.getvalue()


def test_user_add_writes_a_salted_hash_and_a_token(tmp_path: Path, monkeypatch) -> None:
    """`user add` stores a salted scrypt hash (never the password), `--token` prints a token once
    and stores its hash; `user remove` drops the line; the file is private (0600)."""
    users = tmp_path / "users"
    for name in ("alice", "bob"):
        monkeypatch.setattr(sys, "stdin", io.StringIO("correct horse\n"))
        out = io.StringIO()
        assert cli.run(["user", "add", name, "--users", str(users), "--password-stdin"], out, io.StringIO()) == 0
    out = io.StringIO()
    assert cli.run(["user", "add", "bot", "--users", str(users), "--role", "read-only", "--token"], out, io.StringIO()) == 0
    token = out.getvalue().rsplit(": ", 1)[1].strip()
    text = users.read_text()
    assert "correct horse" not in text and token not in text and oct(users.stat().st_mode)[-3:] == "600"
    loaded = Users.load(users)
    alice, bob = loaded.users["alice"], loaded.users["bob"]
    assert alice.credential != bob.credential and check_password("correct horse", alice.credential)
    assert loaded.login("alice", "correct horse") == alice and loaded.login("alice", "wrong horse") is None
    assert loaded.bearer(token).role == "read-only"
    assert cli.run(["user", "remove", "bob", "--users", str(users)], io.StringIO(), io.StringIO()) == 0
    assert "bob" not in Users.load(users).users


def test_release_pause_and_resume_from_the_cli_are_recorded(tmp_path: Path, monkeypatch) -> None:
    """`release` sends a held order on despite its hold; `pause`/`resume` set what the scheduler
    reads; each is recorded with who did it."""
    monkeypatch.setenv("USER", "ops-alice")
    with rig(tmp_path, monkeypatch) as r:
        r.write(ship_method_map=HOLD_UNMAPPED)
        few_connectors(tmp_path)
        r.cli("run", "--flow", "orders")
        assert r.cli("release", "--integration", NAME, "--key", "1003").out.startswith(f"{NAME}: released 1;")
        assert r.cli("release", "--integration", NAME, "--key", "1003").code == 2       # delivered now
        assert state_cli(r, "pause") == 0 and control.is_paused(r.state, NAME)
        assert state_cli(r, "resume") == 0 and not control.is_paused(r.state, NAME)
        with r.ledger() as ledger:
            assert ledger.get("1003").status == "delivered"
            done = [(a["action"], a["by"]) for a in control.actions(ledger)]
        assert done == [("resume", "ops-alice"), ("pause", "ops-alice"), ("release", "ops-alice")]


def test_the_schedule_skips_a_paused_integration(tmp_path: Path, monkeypatch, caplog) -> None:
    """While paused, the schedule runs nothing for the integration (and says so in its log)."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(flows={"orders": {"enabled": True}})
        few_connectors(tmp_path)
        r.cli("run", "--flow", "orders")
        assert state_cli(r, "pause") == 0
        project = runner.load_project([r.connectors, r.root / "integrations"])
        ran: list = []

        async def main() -> None:
            stopper = schedule.Stopper()
            options = runner.Options(r.state, stop=stopper.stop)
            task = asyncio.create_task(schedule.serve(project, list(project.integrations.values()), options,
                                                      every=3600, stopper=stopper, report=ran.append))
            while "paused, orders not run" not in caplog.text:
                await asyncio.sleep(0.01)
            stopper.signal()
            await task

        with caplog.at_level(logging.INFO, logger="syncengine.schedule"):
            asyncio.run(asyncio.wait_for(main(), 30))
        assert ran == []


def state_cli(r, command: str) -> int:
    """`syncengine pause|resume --integration NAME --state-dir DIR` (no project arguments)."""
    return cli.run([command, "--integration", NAME, "--state-dir", str(r.state)], io.StringIO(), io.StringIO())


def test_demo_serve_keeps_the_demo_behind_a_live_console(tmp_path: Path) -> None:
    """`demo --serve` runs the demo, then serves the console over its sample servers with a
    printed login; the overview lists every sample integration; SIGTERM stops it with exit 0."""
    log = tmp_path / "demo.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "engine", "demo", "--serve", "--listen", "127.0.0.1:0"],
                                   cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: "console at" in log.read_text(), timeout=120)
        url, password = re.search(r"console at (\S+)\s+\(log in as demo / (\S+)\)", log.read_text()).groups()
        with httpx.Client(base_url=url, timeout=60) as client:
            login = client.get("/login")
            token = re.search(r'name="csrf" value="([^"]+)"', login.text)[1]
            client.post("/login", data={"user": "demo", "password": password, "csrf": token})
            names = [row["name"] for row in client.get("/index.json").json()["integrations"]]
        assert "acme-woo-to-extensiv" in names and "hooli-woo-to-shipstation" in names
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Traceback" not in log.read_text()
