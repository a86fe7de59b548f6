"""A console on a synced project for the serve tests: a WooCommerce cart and the Extensiv WMS on
127.0.0.1 (`sync_rig.rig`), one orders run that holds the orders whose ship method is not mapped,
users `op` (operator), `viewer` (read-only) and a `ci` token, and the Starlette test client.

    with console_rig(tmp_path, monkeypatch) as c:
        c.login("op")
        c.client.get("/i/sync-shop?status=held")
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from engine import runner
from engine.serve.access import Users, hash_password, token_credential
from engine.serve.app import create_app
from engine.specs.settings import Integration
from engine.serve.service import _Server, bind, build, public_url
from sync_rig import CONNECTORS, NAME, Rig, rig

PASSWORDS = {"op": "operator-pass-1", "viewer": "viewer-pass-1"}
TOKEN = "ci-token-0123456789abcdef"
HOLD_UNMAPPED = {"map": {"flat_rate": "UPS Ground"}, "on_unmapped": "hold"}
FAST = (1024, 8, 1)                        # scrypt cost for tests: the same code, less work


def users_file(path: Path) -> Path:
    path.write_text("# test users\n"
                    f"op:operator:{hash_password(PASSWORDS['op'], cost=FAST)}\n"
                    f"viewer:read-only:{hash_password(PASSWORDS['viewer'], cost=FAST)}\n"
                    f"ci:operator:{token_credential(TOKEN)}\n", encoding="utf-8")
    return path


@dataclass
class ConsoleRig:
    rig: Rig
    console: Any
    client: httpx.Client

    def login(self, name: str, password: str | None = None) -> Any:
        page = self.client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
        return self.client.post("/login", data={"user": name, "password": password or PASSWORDS[name],
                                                "csrf": token, "next": "/"}, follow_redirects=False)

    def csrf(self, path: str = "/") -> str:
        return re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)[1]

    def act(self, action: str, **values: str) -> Any:
        """Confirm and do `action` as the logged-in user, the way the confirmation form posts it."""
        data = {"csrf": self.csrf(), "confirm": "yes", **values}
        return self.client.post(f"/i/{NAME}/actions/{action}", data=data, follow_redirects=True)

    def entry(self, key: str) -> Any:
        with self.rig.ledger() as ledger:
            return ledger.get(key)


@contextlib.contextmanager
def console_rig(root: Path, monkeypatch: pytest.MonkeyPatch, *, secure_cookies: bool = False,
                **overrides: Any) -> Iterator[ConsoleRig]:
    with rig(root, monkeypatch) as r:
        path = r.write(ship_method_map=HOLD_UNMAPPED, **overrides)
        project = load(path)
        [outcome] = asyncio.run(runner.run_project(project, list(project.integrations.values()),
                                                   runner.Options(r.state, ["orders"])))
        assert outcome.error is None, outcome.error
        console = build(project, r.state, Users.load(users_file(root / "users")), secure_cookies=secure_cookies)
        with serving(console) as url, httpx.Client(base_url=url, timeout=30) as client:
            yield ConsoleRig(r, console, client)


_connectors: dict[str, Any] = {}


def load(path: Path) -> runner.Project:
    """The project of the rig's integration: the two connectors it uses are loaded and linted
    once per process (every connector, each test, would cost seconds), the integration each time."""
    if not _connectors:
        _connectors.update(runner.load_project([CONNECTORS / "carts" / "woocommerce.yaml",
                                                CONNECTORS / "wms" / "extensiv.yaml"]).connectors)
    integration = Integration.from_data(yaml.safe_load(path.read_text(encoding="utf-8")), path)
    return runner.Project(dict(_connectors), {integration.name: integration})


def few_connectors(root: Path) -> Path:
    """`root/connectors` with only the two connectors the rig uses (and their examples), which
    `Rig.connectors` then hands to the command line: loading every connector costs seconds."""
    target = root / "connectors"
    for part in ("carts/woocommerce.yaml", "wms/extensiv.yaml", "examples"):
        source, copy = CONNECTORS / part, target / part
        copy.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, copy, dirs_exist_ok=True)
        else:
            shutil.copy(source, copy)
    return target


@contextlib.contextmanager
def serving(console: Any) -> Iterator[str]:
    """The console served by uvicorn on a free 127.0.0.1 port, in a thread; its base URL."""
    sock = bind("127.0.0.1:0", allow_remote=False)
    server = _Server(uvicorn.Config(create_app(console), log_level="warning", access_log=False, lifespan="off"))
    unwatch = console.metrics.watch()
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the console did not start")
            thread.join(0.01)
        yield public_url(sock).rstrip("/")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        unwatch()
        console.close()
