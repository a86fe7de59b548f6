"""docs/deployment.md's examples are correct: every YAML block parses, every command they run is
a real `syncengine` command line, the Kubernetes objects refer to each other consistently, the
example integrations lint clean, and the systemd units pass `systemd-analyze verify`."""

from __future__ import annotations

import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import ROOT, cli
from engine.specs import lint_paths

DOC = ROOT / "docs" / "deployment.md"
BLOCK = re.compile(r"(?:`(?P<path>[^`\n]+)`[^`\n]*:\n\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S)
SYNCENGINE = Path(sys.executable).with_name("syncengine")


def blocks(lang: str | None = None) -> list[tuple[str | None, str, str]]:
    """(path named just before it, language, text) of each fenced block of the doc."""
    found = [(m["path"], m["lang"], m["body"]) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]
    return [block for block in found if lang is None or block[1] == lang]


def documents() -> list[dict[str, Any]]:
    return [doc for _, _, body in blocks("yaml") for doc in yaml.safe_load_all(body) if doc is not None]


def kube(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents() if doc.get("kind") == kind]


def containers() -> list[tuple[dict, dict]]:
    """(pod spec, container) of every workload."""
    pods = [job["spec"]["jobTemplate"]["spec"]["template"]["spec"] for job in kube("CronJob")]
    pods += [deployment["spec"]["template"]["spec"] for deployment in kube("Deployment")]
    return [(pod, container) for pod in pods for container in pod["containers"]]


def command_lines() -> list[list[str]]:
    """Every `syncengine …` command line the examples run: the containers' commands, the units'
    ExecStart, the shell scripts' (continuation lines joined)."""
    lines = [container["command"] for _, container in containers()]
    for _, lang, body in blocks():
        for line in body.replace("\\\n", " ").splitlines():
            if lang == "ini" and not line.startswith("ExecStart="):
                continue
            words = shlex.split(line.removeprefix("ExecStart="), comments=True)
            lines += [words[i:] for i, word in enumerate(words) if word.endswith("/bin/syncengine")][:1]
    return lines


def test_every_yaml_block_parses() -> None:
    """Each YAML block of the doc is valid YAML holding mappings."""
    yamls = blocks("yaml")
    assert len(yamls) >= 4
    for _, _, body in yamls:
        docs = [doc for doc in yaml.safe_load_all(body) if doc is not None]
        assert docs and all(isinstance(doc, dict) for doc in docs), body[:200]


def test_every_command_is_a_real_syncengine_command_line() -> None:
    """Every command the examples run parses with the CLI's own parser, as a known subcommand;
    redirections and the rest of a shell line are not part of it."""
    lines = command_lines()
    assert len(lines) == 5, lines            # 2 services, the cron script, CronJob, Deployment
    names = {command.name for command in cli.COMMANDS}
    for line in lines:
        argv = line[1:next((i for i, word in enumerate(line) if word.startswith((">", "2>", "|", "&&", ";"))), len(line))]
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            args = cli.build_parser(stdout, stderr).parse_args(argv)
        except SystemExit:
            pytest.fail(f"not a syncengine command line: {shlex.join(line)}\n{stderr.getvalue()}")
        assert args.command in names
        assert args.log_format == "json", line          # a collector reads these logs


def test_kubernetes_objects_refer_to_each_other() -> None:
    """The CronJob forbids overlaps; the Deployment runs one pod, replaced not rolled; every pod
    mounts the claim, ConfigMap and Secret defined beside it, reads only Secret keys that exist,
    and has a grace period above the engine's --grace."""
    [secret], [config_map], [claim] = kube("Secret"), kube("ConfigMap"), kube("PersistentVolumeClaim")
    [job], [deployment] = kube("CronJob"), kube("Deployment")
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    for pod, container in containers():
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        assert volumes["state"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert volumes["integrations"]["configMap"]["name"] == config_map["metadata"]["name"]
        assert volumes["secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        command = container["command"]
        assert mounts["state"] == command[command.index("--state-dir") + 1]
        assert mounts["integrations"] == command[command.index("--integrations") + 1]
        for item in container["env"]:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
        assert pod["terminationGracePeriodSeconds"] > float(command[command.index("--grace") + 1])
        files = {f"{mounts['secrets']}/{item['path']}" for item in volumes["secrets"]["secret"]["items"]}
        for spec in config_map["data"].values():
            for kind, name in re.findall(r"\$\{(env|file):([^}]+)\}", spec):
                assert name in ({item["name"] for item in container["env"]} if kind == "env" else files), name


def test_the_example_integrations_lint_clean(tmp_path: Path) -> None:
    """The integration spec of the doc, and the one in its ConfigMap, lint clean against the
    shipped connectors."""
    [config_map] = kube("ConfigMap")
    specs = [doc for doc in documents() if "spec_version" in doc]
    specs += [yaml.safe_load(text) for text in config_map["data"].values()]
    assert len(specs) == 2
    for n, spec in enumerate(specs):
        path = tmp_path / f"integrations-{n}" / f"{spec['name']}.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(spec), encoding="utf-8")
        assert lint_paths([ROOT / "connectors", path.parent]) == []


def test_the_cron_example_runs_the_script_it_shows(tmp_path: Path) -> None:
    """The cron line has five time fields, a user and the script the doc writes, and that
    script is valid shell that skips an overlapping start (`flock -n -E 0`)."""
    [(script_path, _, script)] = [block for block in blocks("sh") if block[0] and block[0].endswith("cron-run")]
    [cron] = [body for path, _, body in blocks("") if path == "/etc/cron.d/syncengine"]
    [entry] = [line for line in cron.splitlines() if line and not line.startswith("#") and "=" not in line.split()[0]]
    fields = entry.split()
    assert len(fields) == 7 and fields[5] == "syncengine" and fields[6] == script_path
    assert "flock -n -E 0" in script and script.startswith("#!/bin/sh\n")
    (tmp_path / "cron-run").write_text(script, encoding="utf-8")
    assert subprocess.run(["sh", "-n", str(tmp_path / "cron-run")], capture_output=True).returncode == 0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing to say about the units (the installed syncengine
    stands in for /opt/syncengine's)."""
    units = [(Path(path).name, body) for path, lang, body in blocks("ini") if path and path.startswith("/etc/systemd/")]
    assert sorted(name for name, _ in units) == ["syncengine-run.service", "syncengine-run.timer", "syncengine.service"]
    for name, body in units:
        (tmp_path / name).write_text(body.replace("/opt/syncengine/.venv/bin/syncengine", str(SYNCENGINE)), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *(str(tmp_path / name) for name, _ in units)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr
