"""A process reuses a connector it has linted and compiled (`load_clean`, `runner.load_project`)
only while nothing its lint reads has changed: its data and the example files it names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine import ROOT
from engine.errors import SpecError
from engine.specs.lint import load_clean


def _copy(tmp_path: Path) -> Path:
    connectors = tmp_path / "connectors"
    shutil.copytree(ROOT / "connectors", connectors)
    return connectors


def test_an_edited_example_file_is_linted_again(tmp_path: Path) -> None:
    connectors = _copy(tmp_path)
    assert load_clean([connectors])                              # clean, and now remembered
    expect = connectors / "examples" / "woocommerce-orders.canonical.json"
    records = json.loads(expect.read_text(encoding="utf-8"))
    records[0]["order_number"] = "not what the example maps to"
    expect.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(SpecError) as raised:
        load_clean([connectors])
    assert any("woocommerce.yaml" in finding.file for finding in raised.value.findings)


def test_an_example_file_that_becomes_a_link_out_of_the_tree_is_refused(tmp_path: Path) -> None:
    connectors = _copy(tmp_path)
    assert load_clean([connectors])
    expect = connectors / "examples" / "woocommerce-orders.canonical.json"
    outside = tmp_path / "outside.json"
    shutil.move(expect, outside)
    expect.symlink_to(outside)                                   # same content, now outside the tree
    with pytest.raises(SpecError) as raised:
        load_clean([connectors])
    assert any("outside" in finding.message for finding in raised.value.findings)


def test_files_beside_the_specs_that_no_spec_names_do_not_matter(tmp_path: Path) -> None:
    connectors = _copy(tmp_path)
    assert load_clean([connectors])
    (connectors / "examples" / "notes.txt").write_text("scratch", encoding="utf-8")
    assert load_clean([connectors])
