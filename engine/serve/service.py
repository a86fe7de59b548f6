"""`syncengine serve`: the schedules of `run --every` and the console in one process, one event
loop. uvicorn serves the app on a socket bound here (so a busy port is a clear error, not an
exit from inside uvicorn); the schedule's loops run beside it; the first SIGINT/SIGTERM stops
starting runs, lets those in flight finish within `--grace`, then closes the server.

The console listens on loopback unless `--allow-remote` is given: it then says so, and the
session cookie should be marked Secure (`--secure-cookies`) behind TLS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import uvicorn

from engine import http, runner, schedule, secrets
from engine.commands import load, report, state_location
from engine.errors import ConfigError, SyncEngineError
from engine.serve.access import Users
from engine.serve.app import Console, create_app
from engine.serve.metrics import Metrics
from engine.specs.settings import seconds

log = logging.getLogger("syncengine.serve")


def serve_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Serve until SIGINT or SIGTERM; exit 0 once every run finished or was safely cut off."""
    sock = bind(args.listen, args.allow_remote)
    try:
        users = Users.load(args.users)
        project = load(args, stdout, stderr)
        http.use_budget(args.budget)
        alerts = _alerts(args.alerts, args.public_url or public_url(sock))
        every = seconds(args.every) if args.every else None
        if every is not None and every <= 0:
            raise ConfigError("--every must be above zero")
        console = build(project, state_location(args), users, secure_cookies=args.secure_cookies)
        integrations = project.select(args.integration)
        options = runner.Options(state_location(args), emit=lambda line: print(line, file=stdout))
        stdout.write(f"console at {public_url(sock)} (users from {args.users}); "
                     f"{'no schedule' if args.no_schedule else 'flows on ' + (args.every or 'their own schedules')}; "
                     "stop with Ctrl-C or SIGTERM\n")
        stdout.flush()
        asyncio.run(run(console, sock, [] if args.no_schedule else integrations, options, every=every,
                        grace=args.grace, stdout=stdout, alerts=alerts))
    finally:
        sock.close()
    stdout.write("stopped: every run finished or was cancelled safely; console closed\n")
    return 0


def build(project: runner.Project, state_dir: Path, users: Users, *, secure_cookies: bool = False) -> Console:
    """The console of `project`, with its metrics, and every integration's secrets remembered
    so that no page shows one."""
    remember_secrets(project)
    console = Console(project, state_dir, users, secure_cookies=secure_cookies)
    console.metrics = Metrics(state_dir, console.names, console.ledger)
    console.on_outcome = console.metrics.outcome
    return console


def remember_secrets(project: runner.Project) -> None:
    """Resolve each integration's secret fields (as a run would) and mask them everywhere; an
    integration whose secrets do not resolve yet is left to fail, with a clear error, when it runs."""
    for integration in project.integrations.values():
        for endpoint in (integration.source, integration.destination):
            connector = project.connectors[endpoint.connector]
            with contextlib.suppress(SyncEngineError, OSError):
                _, found = secrets.resolve(connector.with_defaults(endpoint.config), integration.path.parent,
                                           connector.secret_fields())
                http.remember_secrets(found)


def bind(listen: str, allow_remote: bool) -> socket.socket:
    """A listening socket on HOST:PORT; beyond loopback only with `allow_remote`."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen wants HOST:PORT, got {listen!r}")
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--listen: cannot resolve {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    if not ipaddress.ip_address(address[0]).is_loopback and not allow_remote:
        raise ConfigError(f"--listen {listen} is beyond loopback: the console would be reachable from other "
                          "machines; pass --allow-remote to mean it (and put TLS in front, with --secure-cookies)")
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    return sock


def public_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def _alerts(path: str | None, url: str):
    if not path:
        return None
    from engine.serve.alerts import Alerts

    return Alerts.load(path, url)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `schedule.signals` owns SIGINT/SIGTERM here."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:       # older uvicorn
        pass


async def run(console: Console, sock: socket.socket, integrations: list, options: runner.Options, *,
              every: float | None, grace: float, stdout: TextIO, alerts=None,
              stopper: schedule.Stopper | None = None) -> None:
    """Serve the console on `sock` and run the schedule until `stopper` says stop."""
    stopper = stopper or schedule.Stopper()
    server = _Server(uvicorn.Config(create_app(console), log_level="warning", access_log=False, lifespan="off"))
    options = dataclasses.replace(options, stop=stopper.stop)
    for integration, flow, period in schedule.jobs(integrations, options, every):
        console.book.periods[(integration.name, flow)] = period
    unwatch = console.metrics.watch() if console.metrics is not None else (lambda: None)
    on_outcome = _fan_out(console, alerts)
    console.on_outcome = on_outcome
    with schedule.signals(stopper):
        web = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not web.done():
            await asyncio.sleep(0.01)
        console.ready = True
        watcher = asyncio.create_task(alerts.run(console, stopper.stop)) if alerts else None
        try:
            await schedule.serve(console.project, integrations, options, every=every, stopper=stopper,
                                 report=_reporter(console, stdout), grace=grace)
            await stopper.stop.wait()
        finally:
            console.ready = False
            server.should_exit = True
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await asyncio.gather(web, return_exceptions=True)
            unwatch()
            console.close()


def _fan_out(console: Console, alerts) -> Callable[[runner.Outcome], None]:
    def on_outcome(outcome: runner.Outcome) -> None:
        if console.metrics is not None:
            console.metrics.outcome(outcome)
        if alerts is not None:
            alerts.outcome(outcome)
    return on_outcome


def _reporter(console: Console, stdout: TextIO) -> Callable[[runner.Outcome], None]:
    def stamped(outcome: runner.Outcome) -> None:
        try:
            console.report(outcome)
        except Exception:  # noqa: BLE001 - the console's bookkeeping never stops the schedule
            log.exception("%s: the console could not record this run", outcome.integration)
        stdout.write(f"[{time.strftime('%Y-%m-%dT%H:%M:%S')}] ")
        report([outcome], stdout)
        stdout.flush()
    return stamped
