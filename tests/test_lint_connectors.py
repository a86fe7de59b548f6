"""`lint` and `run` find the connectors an integration names the same way: the user's connectors
first, then the bundled ones; a user's connector named like a bundled one is a warning."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine import ROOT
from engine.cli import run
from tests.lint_cases import CART
from tests.sync_rig import rig


def lint(*paths: str) -> tuple[int, list[dict], str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(["lint", "--format", "json", *paths], stdout, stderr)
    assert "Traceback" not in stdout.getvalue() + stderr.getvalue()
    return code, json.loads(stdout.getvalue() or "[]"), stdout.getvalue() + stderr.getvalue()


def test_a_connector_shadowing_a_bundled_one_is_a_warning_naming_both(tmp_path: Path) -> None:
    """A user's connector called like a bundled one lints with one warning at its `name:`, naming
    both files; a warning alone still exits 0."""
    spec = tmp_path / "carts" / "mine.yaml"
    spec.parent.mkdir()
    spec.write_text(CART.replace("name: shop", "name: woocommerce", 1))
    code, findings, output = lint(str(tmp_path))
    assert code == 0, output
    assert [(f["severity"], f["line"], f["column"], f["path"]) for f in findings] == [("warning", 1, 1, "name")], output
    message = findings[0]["message"]
    assert str(spec) in message and str(ROOT / "connectors" / "carts" / "woocommerce.yaml") in message, output
    text = io.StringIO()
    assert run(["lint", str(tmp_path)], text, io.StringIO()) == 0
    assert f"{spec}:1:1: warning: connector 'woocommerce' shadows the bundled connector" in text.getvalue()
    assert "ok: no problems" in text.getvalue() and "(1 warning(s))" in text.getvalue()


def test_the_bundled_connectors_themselves_do_not_shadow() -> None:
    """Linting the bundled connectors directory is no shadowing: no warning."""
    code, findings, output = lint(str(ROOT / "connectors"))
    assert (code, findings) == (0, []), output


def test_run_finds_a_bundled_connector_as_lint_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An integration naming bundled connectors its --connectors dir lacks lints clean and runs
    (it used to lint clean, then fail with "connector not found")."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        (r.root / "connectors").mkdir()                      # the user's connectors: none
        assert lint(str(r.root / "connectors"), str(r.root / "integrations"))[0] == 0
        result = r.cli("run", "--flow", "orders")
        assert result.code == 0, result
        assert r.wms.state.created, result


def test_run_warns_of_a_shadowing_connector_and_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose connectors dir holds a copy of a bundled connector says so on stderr, naming
    both files, and runs with the copy."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        r.patch("woocommerce", lambda spec: None)
        result = r.cli("run", "--flow", "orders")
        assert result.code == 0, result
        copy = next((r.root / "connectors").glob("*/woocommerce.yaml"))
        assert f"{copy}:1:1: warning: connector 'woocommerce' shadows the bundled connector" in result.err, result
        assert str(ROOT / "connectors" / "carts" / "woocommerce.yaml") in result.err
        assert r.wms.state.created, result
