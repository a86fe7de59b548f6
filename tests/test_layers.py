"""The architecture's import rules, checked on the source (DESIGN.md, "Layout")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from engine import ROOT

ENGINE = ROOT / "engine"
#: module (relative to engine/) -> the engine modules it may not import
LAYERS = {
    "errors": {"*"},
    "zones": {"*"},                  # IANA zones: the standard library only
    "records": {"specs", "flows", "runner", "cli", "commands", "demo", "http", "ledger"},
    "extract": {"specs", "flows", "runner", "cli", "commands", "demo", "http", "ledger", "template"},
    # the JMESPath code generators: jmespath and engine.errors only; the source writer uses the closures
    "jmespath_compile": {"records", "extract", "jmespath_source", "template", "ledger", "http", "specs", "flows",
                         "runner", "cli", "commands", "demo"},
    "jmespath_source": {"records", "extract", "template", "ledger", "http", "specs", "flows", "runner", "cli",
                        "commands", "demo"},
    "template": {"specs", "flows", "runner", "cli", "commands", "demo", "http", "ledger", "extract", "jmespath_compile", "jmespath_source"},
    "template_paths": {"specs", "flows", "runner", "cli", "commands", "demo", "http", "ledger", "extract", "jmespath_compile", "jmespath_source"},
    "ledger": {"specs", "flows", "runner", "cli", "commands", "demo", "http", "extract", "jmespath_compile", "jmespath_source", "template"},
    "http": {"specs", "flows", "runner", "cli", "commands", "demo", "ledger", "extract", "jmespath_compile", "jmespath_source", "template", "records"},
    "specs": {"flows", "runner", "cli", "commands", "demo"},
    "flows": {"runner", "cli", "commands", "demo"},
    "runner": {"cli", "commands", "demo", "serve"},
    "schedule": {"cli", "commands", "demo", "serve"},
    "control": {"specs", "flows", "runner", "schedule", "cli", "commands", "demo", "http", "serve"},
    "logs": {"specs", "flows", "runner", "cli", "commands", "demo", "ledger", "progress", "schedule", "serve"},
    "progress": {"cli", "commands", "demo", "schedule", "serve"},
    "cluster": {"cli", "demo", "serve"},           # beside `commands`: it runs what `run` runs, on Celery
}
CART_NAMES = re.compile(r"\b(shopify|woocommerce|bigcommerce|magento|shipstation|extensiv|shiphero)\b", re.I)


def modules() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-node.level])
                found.add(f"{package}.{node.module}")
            else:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def layer(path: Path) -> str:
    return path.relative_to(ENGINE).with_suffix("").parts[0]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    """No engine module imports a layer above its own."""
    forbidden = LAYERS.get(layer(path), set())
    for name in imports(path):
        parts = name.split(".")
        if parts[0] != "engine" or len(parts) < 2:
            continue
        target = parts[1]
        if target in forbidden or ("*" in forbidden and target not in (layer(path),)):
            pytest.fail(f"{path.relative_to(ROOT)} imports {name}, a layer above it")


@pytest.mark.parametrize(("package", "owner"), [("yaml", "engine/specs/load.py"), ("httpx", "engine/http/"),
                                               ("rich", "engine/progress.py"), ("celery", "engine/cluster.py"),
                                               ("kombu", "engine/cluster.py")])
def test_only_one_place_imports(package, owner):
    """Only the spec loader imports yaml, only http/ imports httpx, only the progress display rich,
    only the cluster commands Celery."""
    offenders = [str(p.relative_to(ROOT)) for p in modules()
                 if any(n == package or n.startswith(package + ".") for n in imports(p))
                 and not str(p.relative_to(ROOT)).startswith(owner)]
    assert offenders == []


def test_engine_names_no_cart_or_wms():
    """No cart or WMS name appears in engine/: their behaviour belongs in YAML specs."""
    offenders = [str(p.relative_to(ROOT)) for p in modules() if CART_NAMES.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_the_checks_can_fail(tmp_path):
    """The import parser sees a forbidden import when there is one."""
    bad = tmp_path / "bad.py"
    bad.write_text("import yaml\nfrom engine.flows import orders\n")
    assert {"yaml", "engine.flows", "engine.flows.orders"} <= imports(bad)
