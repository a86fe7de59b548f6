"""Shared pytest fixtures. Each area namespaces its fixtures (`http_*` for the HTTP layer)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

import pytest
from http_server import LoopbackServer

from engine.http import reset_buckets, set_testing

# Every process of a test run (CLI subprocesses, forked workers) shares per-host rate-limit
# buckets under one fresh directory, never the machine's real one.
os.environ["SYNCENGINE_BUCKET_DIR"] = tempfile.mkdtemp(prefix="syncengine-test-buckets-")


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
