"""The HTTP layer stays a leaf: it imports nothing of the engine but its errors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

HTTP = Path(__file__).resolve().parent.parent / "engine" / "http"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    return names


@pytest.mark.parametrize("path", sorted(HTTP.glob("*.py")), ids=lambda p: p.name)
def test_http_imports_only_engine_errors(path):
    """engine/http imports no engine module but engine.errors, and no yaml, jinja2 or jmespath."""
    banned = {m for m in imported_modules(path)
              if (m.startswith("engine") and m != "engine.errors")
              or m.split(".")[0] in {"yaml", "jinja2", "jmespath"}}
    assert banned == set()
