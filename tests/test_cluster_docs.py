"""docs/cluster.md's compose file is what it says: it parses, runs PostgreSQL, Redis, workers,
one scheduler and a console that schedules nothing, all on the same ledger and broker, and every
syncengine command in it is a real command line."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from engine import ROOT, cli

DOC = ROOT / "docs" / "cluster.md"
BLOCK = re.compile(r"`(?P<path>[^`\n]+)`:\n\n```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)


def block(path: str) -> str:
    [body] = [m["body"] for m in BLOCK.finditer(DOC.read_text(encoding="utf-8")) if m["path"] == path]
    return body


def compose() -> dict:
    return yaml.safe_load(block("compose.yaml"))


def test_the_compose_file_has_every_part_of_the_cluster() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "worker", "scheduler", "serve"}
    assert "replicas" not in services["scheduler"].get("deploy", {})        # one scheduler
    assert services["worker"]["stop_grace_period"]                          # warm shutdown time


def test_every_syncengine_process_shares_the_ledger_and_the_broker() -> None:
    services = compose()["services"]
    for name in ("worker", "scheduler", "serve"):
        environment = services[name]["environment"]
        assert environment["SYNCENGINE_STATE"].startswith("postgresql://") and "@postgres:5432/" in environment["SYNCENGINE_STATE"]
        assert environment["SYNCENGINE_BROKER"].startswith("redis://redis:6379/")
        assert set(services[name]["depends_on"]) == {"postgres", "redis"}


def test_every_command_is_a_real_command_line() -> None:
    names = set()
    for name in ("worker", "scheduler", "serve"):
        argv = compose()["services"][name]["command"]
        assert argv[0] == "syncengine"
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            args = cli.build_parser(stdout, stderr).parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"not a syncengine command line: {argv}\n{stderr.getvalue()}")
        names.add(args.command)
        assert args.log_format == "json"
        if args.command == "serve":
            assert args.no_schedule, "the scheduler schedules; the console must not run flows on its own clock"
    assert names == {"worker", "scheduler", "serve"}


def test_the_dockerfile_installs_the_cluster_extra() -> None:
    assert ".[cluster]" in block("Dockerfile")
    assert "cluster" in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker is not installed")
def test_docker_compose_accepts_it(tmp_path: Path) -> None:
    check = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if check.returncode != 0:
        pytest.skip("docker compose is not installed")
    (tmp_path / "compose.yaml").write_text(block("compose.yaml"), encoding="utf-8")
    (tmp_path / "Dockerfile").write_text(block("Dockerfile"), encoding="utf-8")
    (tmp_path / ".env").write_text("PG_PASSWORD=example\n", encoding="utf-8")
    (tmp_path / "secrets.env").write_text("", encoding="utf-8")
    done = subprocess.run(["docker", "compose", "-f", str(tmp_path / "compose.yaml"), "config", "-q"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
