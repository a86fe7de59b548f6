"""Golden-example files stay inside the directory tree the spec was found under: no `..` out of
it, no absolute path, no symlink out, regular files only, at most `MAX_DATA_FILE` bytes; lint says
where the reference is written instead of reading it."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.specs import load as load_module
from tests.lint_cases import CART
from tests.test_lint import lint_cli

TOKEN = "ghp_outside_tree_7f3a91"
RECORDS = [{"key": "7", "order_id": "7", "order_number": "1007", "created_at": "2026-01-02T03:04:05Z",
            "ship_to": {"name": "Ann", "address1": "1 Main St", "city": "Oslo", "country": "NO"},
            "lines": [{"sku": "A-1", "quantity": 2}]}]


def _project(tmp_path: Path, reference: str) -> tuple[Path, Path]:
    """tmp/connectors/carts/shop.yaml whose example expects `{file: reference}`; a token file
    outside the connectors tree. Returns (connectors dir, spec file)."""
    connectors = tmp_path / "connectors"
    (connectors / "carts").mkdir(parents=True)
    (connectors / "examples").mkdir()
    (tmp_path / "hosts.yml").write_text(f"github.com:\n  oauth_token: {TOKEN}\n")
    start = CART.index("    expect:\n")
    spec = connectors / "carts" / "shop.yaml"
    spec.write_text(CART[:start] + f"    expect: {{file: {json.dumps(reference)}}}\n")
    return connectors, spec


def _symlink_out(tmp_path: Path) -> str:
    (tmp_path / "connectors" / "examples" / "link.json").symlink_to(tmp_path / "hosts.yml")
    return "../examples/link.json"


def _fifo(tmp_path: Path) -> str:
    fifo = tmp_path / "connectors" / "examples" / "pipe.json"
    os.mkfifo(fifo)
    threading.Thread(target=_unblock, args=(fifo,), daemon=True).start()
    return "../examples/pipe.json"


def _unblock(fifo: Path) -> None:
    """Without the fix lint would wait on the FIFO forever: open its other end for a moment."""
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError:
            time.sleep(0.05)


def _large(tmp_path: Path) -> str:
    (tmp_path / "connectors" / "examples" / "big.json").write_text(json.dumps(RECORDS) + " " * 300)
    return "../examples/big.json"


#: (case, how the reference is made, what the finding says)
REFUSED: list[tuple[str, Callable[[Path], str], str]] = [
    ("dot-dot out of the tree", lambda tmp: "../../hosts.yml", "leads outside"),
    ("dot-dot deep", lambda tmp: "../examples/../../../hosts.yml", "leads outside"),
    ("absolute path", lambda tmp: str(tmp / "hosts.yml"), "absolute path"),
    ("symlink out of the tree", _symlink_out, "leads outside"),
    ("a FIFO", _fifo, "not a regular file"),
    ("larger than the cap", _large, "larger than 200 bytes"),
]


@pytest.mark.parametrize("make, says", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_an_example_file_outside_the_rules_is_a_finding_not_a_read(
        make: Callable[[Path], str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reference is reported at its line (path examples[0].expect.file); nothing it names is printed."""
    monkeypatch.setattr(load_module, "MAX_DATA_FILE", 200)
    connectors, spec = _project(tmp_path, "placeholder")
    spec.write_text(spec.read_text().replace('"placeholder"', json.dumps(make(tmp_path))))
    code, findings, output = lint_cli(str(connectors))
    assert code == 1, output
    assert TOKEN not in output
    line = spec.read_text().splitlines().index(next(l for l in spec.read_text().splitlines() if "expect:" in l)) + 1
    found = [f for f in findings if f["path"] == "examples[0].expect.file"]
    assert found and says in found[0]["message"], output
    assert (found[0]["file"], found[0]["line"]) == (str(spec), line)


@pytest.mark.parametrize("lint_what", ["directory", "file"])
def test_dot_dot_inside_the_tree_is_allowed(lint_what: str, tmp_path: Path) -> None:
    """`../examples/x.json` from connectors/carts/ stays inside the connectors tree: read and compared,
    whether lint is given the connectors directory or the spec file itself."""
    connectors, spec = _project(tmp_path, "../examples/shop.canonical.json")
    (connectors / "examples" / "shop.canonical.json").write_text(json.dumps(RECORDS))
    code, findings, output = lint_cli(str(connectors if lint_what == "directory" else spec))
    assert (code, findings) == (0, []), output


def test_a_spec_named_alone_is_confined_to_its_folder(tmp_path: Path) -> None:
    """A spec given as a single file outside the connectors layout may not read its parent folder."""
    (tmp_path / "hosts.yml").write_text(f"oauth_token: {TOKEN}\n")
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "shop.yaml"
    start = CART.index("    expect:\n")
    spec.write_text(CART[:start] + "    expect: {file: ../hosts.yml}\n")
    code, findings, output = lint_cli(str(spec))
    assert code == 1 and TOKEN not in output
    assert [f["path"] for f in findings] == ["examples[0].expect.file"], output


@pytest.mark.parametrize("answer", ["{file: ../../hosts.yml}", "[{body: {items: []}}, {file: ../../hosts.yml}]"])
def test_a_subresponse_file_is_confined_too(answer: str, tmp_path: Path) -> None:
    """An `enrich` case's canned sub-answer file (alone or in a list) obeys the same rule."""
    from tests.lint_cases import ENRICH
    connectors, spec = _project(tmp_path, "../examples/shop.canonical.json")
    text = spec.read_text().replace("    records: data\n", ENRICH, 1)
    spec.write_text(text + f"    subresponses:\n      /orders/7/lines: {answer}\n")
    code, findings, output = lint_cli(str(connectors))
    assert code == 1 and TOKEN not in output
    found = [f for f in findings if "subresponses" in f["path"] and f["path"].endswith("file")]
    assert found and "leads outside" in found[0]["message"], output
