"""A Redis server for the cluster tests (Celery's broker, shared rate budgets).

Found once per test run by the controlling process, like PostgreSQL (`pg_support`), and handed
to the test processes in the environment:

1. ``SYNCENGINE_TEST_REDIS``: a server URL to use (``off`` skips the tests that need Redis);
2. else the machine's own server on 127.0.0.1:6379, if it answers PING;
3. else a throwaway ``redis-server`` started here on a free port (nothing kept on disk), stopped
   at the end of the run;
4. else those tests are skipped, and the run's summary says why.

Each test process uses a database number of its own (`database_url`), and each test its own
queue names, so parallel tests never take each other's jobs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

SERVER, SKIPPED = "SYNCENGINE_TEST_REDIS_SERVER", "SYNCENGINE_TEST_REDIS_SKIPPED"
LOCAL = "redis://127.0.0.1:6379"


def _reachable(url: str) -> str | None:
    """None when `url` answers PING, else why not."""
    try:
        import redis
    except ImportError:
        return "the redis client is not installed (pip install -e '.[test]')"
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def find_server() -> tuple[str | None, str | None, object]:
    """(server URL, why there is none, what to stop at the end)."""
    given = os.environ.get("SYNCENGINE_TEST_REDIS")
    if given == "off":
        return None, "SYNCENGINE_TEST_REDIS=off", None
    url = given or LOCAL
    why = _reachable(url)
    if why is None or given:
        return (url, None, None) if why is None else (None, f"{url}: {why}", None)
    if why.startswith("the redis client"):
        return None, why, None
    instance = Throwaway.start()
    if isinstance(instance, str):
        return None, f"no Redis on 127.0.0.1:6379 ({why}) and {instance}", None
    return instance.url, None, instance


class Throwaway:
    """A redis-server on a free port of 127.0.0.1, keeping nothing on disk."""

    def __init__(self, process: subprocess.Popen, directory: str, port: int) -> None:
        self.process, self.directory, self.port = process, directory, port
        self.url = f"redis://127.0.0.1:{port}"

    @classmethod
    def start(cls) -> Throwaway | str:
        binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                                  else None)
        if not binary:
            return "no redis-server to start a throwaway one (install Redis's server)"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        directory = tempfile.mkdtemp(prefix="syncengine-test-redis-")
        process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", directory],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        instance = cls(process, directory, port)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _reachable(instance.url) is None:
                return instance
            if process.poll() is not None:
                break
            time.sleep(0.05)
        instance.stop()
        return "a throwaway redis-server did not start"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
        shutil.rmtree(self.directory, ignore_errors=True)


def database_url(server: str) -> str:
    """`server` with a database number of this test process's own (1 to 15; 0 is left alone)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    number = 1 + int(worker[2:] or 0) % 15 if worker.startswith("gw") else 1
    return f"{server.rstrip('/')}/{number}"
