"""A PostgreSQL server for the tests of the shared ledger, and a fresh schema per test.

The server is found once per test run, by the controlling process (`find_server`), and handed
to the test processes (xdist workers) in the environment:

1. ``SYNCENGINE_TEST_POSTGRES``: a server URL to use (``off`` skips the PostgreSQL tests);
2. else the machine's own server on 127.0.0.1:5432 as user postgres (trust auth), if it answers;
3. else a throwaway instance started here with ``initdb``/``pg_ctl`` (under
   /usr/lib/postgresql/*/bin or on PATH), stopped and removed at the end of the run;
4. else the PostgreSQL tests are skipped, and the run's summary says why.

Each test process creates one database of its own, ``syncengine_test_<random>``, and drops it
when it ends; each test gets a schema of its own in it (`schema_url`), so tests never share a
ledger and nothing is left behind on the server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from urllib.parse import quote

SERVER, SKIPPED = "SYNCENGINE_TEST_PG_SERVER", "SYNCENGINE_TEST_PG_SKIPPED"
LOCAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(url: str) -> str | None:
    """None when `url` accepts a connection, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[test]')"
    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]
    return None


def find_server() -> tuple[str | None, str | None, object]:
    """(server URL, why there is none, what to stop at the end)."""
    given = os.environ.get("SYNCENGINE_TEST_POSTGRES")
    if given == "off":
        return None, "SYNCENGINE_TEST_POSTGRES=off", None
    url = given or LOCAL
    why = _reachable(url)
    if why is None or given:
        return (url, None, None) if why is None else (None, f"{url}: {why}", None)
    if why.startswith("psycopg is not installed"):
        return None, why, None
    instance = Throwaway.start()
    if isinstance(instance, str):
        return None, f"no server on 127.0.0.1:5432 ({why}) and {instance}", None
    return instance.url, None, instance


class Throwaway:
    """A PostgreSQL instance in a temporary directory, on a free port of 127.0.0.1."""

    def __init__(self, bindir: str, directory: str, port: int, user: str | None) -> None:
        self.bindir, self.directory, self.port, self.user = bindir, directory, port, user
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    @classmethod
    def start(cls) -> Throwaway | str:
        """The running instance, or why none could be started."""
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
        if not found[-1]:
            return "no initdb to start a throwaway one (install PostgreSQL's server binaries)"
        bindir = os.path.dirname(found[-1])
        user = None
        if os.geteuid() == 0:                      # initdb refuses root: run it as postgres
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root with no postgres user to run initdb as"
            user = "postgres"
        directory = tempfile.mkdtemp(prefix="syncengine-test-pg-")
        if user:
            shutil.chown(directory, user)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        instance = cls(bindir, directory, port, user)
        try:
            instance._run("initdb", "-D", f"{directory}/data", "-U", "postgres", "--auth=trust", "--no-sync")
            instance._run("pg_ctl", "-D", f"{directory}/data", "-w", "-l", f"{directory}/log", "start", "-o",
                          f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off")
        except (OSError, subprocess.CalledProcessError) as exc:
            instance.stop()
            return f"a throwaway instance did not start ({exc})"
        return instance

    def _run(self, program: str, *args: str) -> None:
        command = [os.path.join(self.bindir, program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", f"{self.directory}/data", "-m", "immediate", "stop")
        except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


def with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


def create_database(server: str) -> str:
    """A new, empty database on `server`; its URL."""
    import psycopg

    name = f"syncengine_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        # a test never outlives the server: commits need not wait for the disk (the ledger's
        # guarantees against a killed *client* do not depend on it)
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return with_database(server, name)


def drop_database(server: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def schema_url(database: str) -> str:
    """A new schema in `database`; the URL whose connections keep the ledger in it."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database}?options={quote(f'-csearch_path={schema}')}"
