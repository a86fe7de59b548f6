"""Shared pytest fixtures. Each area namespaces its fixtures (`http_*` for the HTTP layer)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import pg_support
import pytest
import redis_support
from http_server import LoopbackServer

from engine.http import reset_buckets, set_testing

# Every process of a test run (CLI subprocesses, forked workers) shares per-host rate-limit
# buckets under one fresh directory, never the machine's real one.
os.environ["SYNCENGINE_BUCKET_DIR"] = tempfile.mkdtemp(prefix="syncengine-test-buckets-")
# ... and one start-up cache (engine.startcache), never the user's ~/.cache.
os.environ.setdefault("SYNCENGINE_CACHE_DIR", tempfile.mkdtemp(prefix="syncengine-test-cache-"))


_pg_instance: list = []             # a throwaway PostgreSQL this run started, to stop at its end
_redis_instance: list = []          # a throwaway Redis likewise


def pytest_configure(config: pytest.Config) -> None:
    """Find (or start) the PostgreSQL server once, in the controlling process; the test
    processes it starts inherit the answer through the environment (`pg_support`)."""
    if hasattr(config, "workerinput"):
        return
    for support, started in ((pg_support, _pg_instance), (redis_support, _redis_instance)):
        if support.SERVER in os.environ or support.SKIPPED in os.environ:
            continue
        url, why, instance = support.find_server()
        if instance is not None:
            started.append(instance)
        os.environ[support.SERVER if url else support.SKIPPED] = url or why


def pytest_unconfigure(config: pytest.Config) -> None:
    for started in (_pg_instance, _redis_instance):
        while started:
            started.pop().stop()


def pytest_terminal_summary(terminalreporter) -> None:
    why = os.environ.get(pg_support.SKIPPED)
    if why:
        terminalreporter.write_line(f"PostgreSQL ledger tests skipped: {why}", yellow=True)
    elif _pg_instance:
        terminalreporter.write_line(f"PostgreSQL ledger tests ran on a throwaway server ({_pg_instance[0].url})")
    why = os.environ.get(redis_support.SKIPPED)
    if why:
        terminalreporter.write_line(f"Redis (cluster, shared rate budget) tests skipped: {why}", yellow=True)
    elif _redis_instance:
        terminalreporter.write_line(f"Redis (cluster, shared rate budget) tests ran on a throwaway server ({_redis_instance[0].url})")


@pytest.fixture
def redis_budget(redis_url: str) -> Iterator[str]:
    """Every host's bucket in the test Redis under a key prefix of this test's own (the
    database's URL); this machine's files again afterwards."""
    from engine.http import use_budget

    prefix = redis_support.prefix()
    use_budget(redis_url, prefix=prefix)
    yield redis_url
    use_budget(None)
    redis_support.forget(redis_url, prefix)


@pytest.fixture(params=["file", "redis"])
def bucket_kind(request: pytest.FixtureRequest) -> str:
    """Once with this machine's bucket files, once with the buckets in Redis."""
    if request.param == "redis":
        request.getfixturevalue("redis_budget")
    return request.param


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test process's own on the PostgreSQL server, dropped at the end."""
    server = os.environ.get(pg_support.SERVER)
    if not server:
        pytest.skip(f"no PostgreSQL server: {os.environ.get(pg_support.SKIPPED)}")
    url = pg_support.create_database(server)
    yield url
    pg_support.drop_database(server, url)


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """A PostgreSQL ledger URL of this test's own (a fresh schema)."""
    return pg_support.schema_url(pg_database)


@pytest.fixture
def redis_url() -> str:
    """A Redis database of this test process's own (the cluster's broker, shared budgets)."""
    server = os.environ.get(redis_support.SERVER)
    if not server:
        pytest.skip(f"no Redis server: {os.environ.get(redis_support.SKIPPED)}")
    return redis_support.database_url(server)


@pytest.fixture(params=["disk", "postgres"])
def ledger_state(request: pytest.FixtureRequest, tmp_path) -> str:
    """Where a test's ledgers live, once per ledger: a state directory, then a PostgreSQL URL."""
    if request.param == "disk":
        return str(tmp_path / "state")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def http_testing() -> Iterator[None]:
    """Zero (and record) every HTTP-layer wait; forget per-host rate-limit buckets."""
    set_testing(True)
    reset_buckets()
    yield
    set_testing(False)
    reset_buckets()


@pytest.fixture
def http_server() -> Iterator[LoopbackServer]:
    """A loopback test server on 127.0.0.1 (the spec's host)."""
    with LoopbackServer("127.0.0.1") as server:
        yield server


@pytest.fixture
def http_foreign_server() -> Iterator[LoopbackServer]:
    """A loopback test server on 127.0.0.2: a different host than `http_server`."""
    with LoopbackServer("127.0.0.2") as server:
        yield server


@pytest.fixture
def flow_rigs(tmp_path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """`make(kind, orders=30, accept_duplicates=True)`: a cart + WMS rig with its integration
    written and its secrets in the environment; everything is stopped after the test."""
    from flow_support import open_rig

    with contextlib.ExitStack() as stack:
        def make(kind: str = "woocommerce", *, orders: int = 30, accept_duplicates: bool = True):
            rig = stack.enter_context(open_rig(tmp_path, kind, orders=orders, accept_duplicates=accept_duplicates))
            for name, value in rig.environ.items():
                monkeypatch.setenv(name, value)
            rig.write_integration()
            return rig

        yield make
