"""`lint --update-examples` shows the diff of each golden `expect` file that no longer matches
what its case gives (or is missing), then writes it, never outside the spec's tree."""

from __future__ import annotations

import io
import json
from pathlib import Path

from engine.cli import run
from tests.lint_cases import CART

#: The lint table's clean cart, its one read case expecting a file instead of inline records.
SPEC = CART[:CART.index("    expect:")] + "    expect: {file: EXPECT}\n"
RECORD = {"key": "7", "order_id": "7", "order_number": "1007", "created_at": "2026-01-02T03:04:05Z",
          "ship_to": {"name": "Ann", "address1": "1 Main St", "city": "Oslo", "country": "NO"},
          "lines": [{"sku": "A-1", "quantity": 2}]}


def lint(*args: str) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(["lint", *args], stdout, stderr)
    output = stdout.getvalue() + stderr.getvalue()
    assert "Traceback" not in output
    return code, output


def project(tmp_path: Path, reference: str = "examples/shop.canonical.json") -> Path:
    """A copy of the cart spec in tmp_path/specs, its case expecting `reference`."""
    (tmp_path / "specs" / "examples").mkdir(parents=True)
    spec = tmp_path / "specs" / "shop.yaml"
    spec.write_text(SPEC.replace("EXPECT", reference))
    return spec


def test_a_stale_expect_file_is_shown_then_refreshed(tmp_path: Path) -> None:
    """The diff from the stale file to what the case gives is printed, the file is rewritten
    (key first, as the bundled files are), and lint is clean afterwards."""
    spec = project(tmp_path)
    expect = spec.parent / "examples" / "shop.canonical.json"
    expect.write_text(json.dumps([{**RECORD, "order_number": "old-1007"}], indent=2))
    assert lint(str(spec))[0] == 1
    code, output = lint("--update-examples", str(spec))
    assert code == 0, output
    assert f"updating {expect} (example 'one paid order' of shop):" in output, output
    assert '-    "order_number": "old-1007",' in output and '+    "order_number": "1007",' in output, output
    assert "updated 1 example file(s)" in output and "ok: no problems" in output, output
    assert json.loads(expect.read_text()) == [RECORD]
    assert list(json.loads(expect.read_text())[0])[0] == "key"
    assert lint(str(spec))[0] == 0
    assert "every expect file is up to date" in lint("--update-examples", str(spec))[1]


def test_a_missing_expect_file_is_written(tmp_path: Path) -> None:
    """A case whose expect file does not exist yet gets one (the diff is from null)."""
    spec = project(tmp_path, "examples/new.json")
    code, output = lint("--update-examples", str(spec))
    assert code == 0, output
    assert "-null" in output and "updated 1 example file(s)" in output, output
    assert json.loads((spec.parent / "examples" / "new.json").read_text()) == [RECORD]


def test_an_expect_file_outside_the_spec_tree_is_never_written(tmp_path: Path) -> None:
    """`../` out of the spec's tree is refused as lint refuses reading it: nothing is written."""
    spec = project(tmp_path, "../outside.json")
    outside = tmp_path / "outside.json"
    outside.write_text("[]")
    code, output = lint("--update-examples", str(spec))
    assert code == 1 and "refused file '../outside.json'" in output, output
    assert outside.read_text() == "[]" and "updated" not in output


def test_a_spec_with_other_problems_is_left_alone(tmp_path: Path) -> None:
    """A spec that does not lint clean but for its examples gets no example written."""
    spec = project(tmp_path, "examples/new.json")
    spec.write_text(spec.read_text().replace("param: page", "parm: page"))
    code, output = lint("--update-examples", str(spec))
    assert code == 1 and "did you mean 'param'?" in output, output
    assert not (spec.parent / "examples" / "new.json").exists()
