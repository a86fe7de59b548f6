"""Start-up work kept across processes (`engine.startcache`): a connector's lint findings and
Jinja's compiled templates are reused by a later process only while the spec, the example
files it names and the engine are the same; an unreadable entry is ignored."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine import ROOT, startcache, template
from engine.errors import SpecError, TemplateError
from engine.specs import lint


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache directory of this test's own."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("SYNCENGINE_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def linted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The connectors `load_clean` lints, as a list of names; each call of `load_clean` then
    starts as a new process would (nothing remembered in memory)."""
    names: list[str] = []
    problems = lint.problems

    def counted(document, connectors):
        if document.kind == "connector":
            names.append(document.name)
        return problems(document, connectors)

    monkeypatch.setattr(lint, "problems", counted)
    return names


def _load(folder: Path) -> list:
    lint._CONNECTOR_FINDINGS.clear()           # a fresh process remembers nothing in memory
    return lint.load_clean([folder])


def _woocommerce(tmp_path: Path) -> Path:
    folder = tmp_path / "connectors"
    (folder / "carts").mkdir(parents=True)
    shutil.copy(ROOT / "connectors/carts/woocommerce.yaml", folder / "carts")
    shutil.copytree(ROOT / "connectors/examples", folder / "examples")
    return folder


def test_an_unchanged_connector_is_not_linted_again(tmp_path: Path, cache: Path, linted: list[str]) -> None:
    """The second load of the same spec takes its findings from the cache."""
    folder = _woocommerce(tmp_path)
    _load(folder)
    _load(folder)
    assert linted == ["woocommerce"]
    assert list((cache / "lint").rglob("*"))


def test_a_changed_spec_is_linted_again(tmp_path: Path, cache: Path, linted: list[str]) -> None:
    """Editing the spec (a changed rate limit) makes its stored findings not apply."""
    folder = _woocommerce(tmp_path)
    _load(folder)
    spec = folder / "carts/woocommerce.yaml"
    spec.write_text(spec.read_text().replace("rate_limit: {per_second: 5, burst: 10}",
                                             "rate_limit: {per_second: 4, burst: 10}"))
    _load(folder)
    assert linted == ["woocommerce", "woocommerce"]


def test_a_changed_example_file_is_linted_again(tmp_path: Path, cache: Path, linted: list[str]) -> None:
    """An example file the spec names that changed is linted again, and its error reported."""
    folder = _woocommerce(tmp_path)
    _load(folder)
    expect = folder / "examples/woocommerce-orders.canonical.json"
    records = json.loads(expect.read_text(encoding="utf-8"))
    records[0]["order_number"] = "not what the example maps to"
    expect.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(SpecError):
        _load(folder)
    assert linted == ["woocommerce", "woocommerce"]


def test_another_engine_version_lints_again(tmp_path: Path, cache: Path, linted: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries written by another engine (version, sources or Python) are not read."""
    folder = _woocommerce(tmp_path)
    _load(folder)
    monkeypatch.setattr(startcache, "ENGINE", startcache.ENGINE + "-other")
    _load(folder)
    assert linted == ["woocommerce", "woocommerce"]


def test_findings_read_back_are_the_findings(tmp_path: Path, cache: Path, linted: list[str]) -> None:
    """A spec with an error is refused with the same findings (file, line, column, message)
    whether they were found afresh or read from the cache."""
    folder = _woocommerce(tmp_path)
    spec = folder / "carts/woocommerce.yaml"
    spec.write_text(spec.read_text().replace("key: to_string(id)", "key: to_string(id"))
    found = []
    for _ in range(2):
        with pytest.raises(SpecError) as raised:
            _load(folder)
        found.append(raised.value.findings)
    assert linted == ["woocommerce"]
    assert found[0] == found[1] and found[0]


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"[{\"unknown\": 1}]", b"\x00\xff" * 40])
def test_a_corrupt_entry_is_ignored(tmp_path: Path, cache: Path, linted: list[str], garbage: bytes) -> None:
    """An entry that does not read back as findings is linted again and rewritten."""
    folder = _woocommerce(tmp_path)
    _load(folder)
    for entry in (cache / "lint").rglob("*"):
        if entry.is_file():
            entry.write_bytes(garbage)
    assert _load(folder)
    assert linted == ["woocommerce", "woocommerce"]
    _load(folder)
    assert linted == ["woocommerce", "woocommerce"]      # the rewritten entry is used


def test_a_corrupt_compiled_template_is_ignored(cache: Path) -> None:
    """A stored Jinja code object that does not load is compiled again; the template renders."""
    source = "{{ config.site_url }}/orders?page={{ page + 1 }}"
    assert template.compile_template(source).render({"config": {"site_url": "http://h"}, "page": 1}) \
        == "http://h/orders?page=2"
    entries = [entry for entry in (cache / "jinja").rglob("*") if entry.is_file()]
    assert entries
    for entry in entries:
        entry.write_bytes(b"\xe3garbage")
    assert template.compile_template(source).render({"config": {"site_url": "http://h"}, "page": 2}) \
        == "http://h/orders?page=3"


def test_a_syntax_error_is_reported_each_time(cache: Path) -> None:
    """A template that does not compile is never stored: the error comes every time."""
    for _ in range(2):
        with pytest.raises(TemplateError, match="syntax error"):
            template.compile_template("{{ config.site_url }")


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, linted: list[str]) -> None:
    """SYNCENGINE_CACHE_DIR=off: nothing is stored, every process lints."""
    monkeypatch.setenv("SYNCENGINE_CACHE_DIR", "off")
    folder = _woocommerce(tmp_path)
    _load(folder)
    _load(folder)
    assert linted == ["woocommerce", "woocommerce"]


def test_a_second_process_neither_lints_nor_generates_templates(tmp_path: Path, cache: Path) -> None:
    """Two real processes loading the same project: the second one's lint and Jinja's parsing
    and code generation are skipped."""
    folder = _woocommerce(tmp_path)
    script = (
        "import jinja2, sys\n"
        "from engine.specs import lint\n"
        "from engine import runner\n"
        "calls = []\n"
        "problems, generate = lint.problems, jinja2.Environment._generate\n"
        "parse = jinja2.parser.Parser.parse_expression\n"
        "lint.problems = lambda *a: calls.append('lint') or problems(*a)\n"
        "jinja2.Environment._generate = lambda *a, **k: calls.append('jinja') or generate(*a, **k)\n"
        "jinja2.parser.Parser.parse_expression = lambda *a, **k: calls.append('parse') or parse(*a, **k)\n"
        "runner.load_project([sys.argv[1]])\n"
        "print(calls.count('lint'), calls.count('jinja'), calls.count('parse'))\n")
    runs = [subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True,
                           env={**os.environ, "SYNCENGINE_CACHE_DIR": str(cache)}, cwd=ROOT, check=True)
            for _ in range(2)]
    first, second = ([int(n) for n in run.stdout.split()] for run in runs)
    assert first[0] == 1 and first[1] > 0 and first[2] > 0
    assert second == [0, 0, 0]


def test_a_directory_others_can_write_to_is_not_used(tmp_path: Path, cache: Path, linted: list[str]) -> None:
    """Stored code is run as it is read: a cache directory writable by others is ignored."""
    folder = _woocommerce(tmp_path)
    _load(folder)
    cache.chmod(0o777)
    _load(folder)
    assert linted == ["woocommerce", "woocommerce"]
    cache.chmod(0o700)
    _load(folder)
    assert linted == ["woocommerce", "woocommerce"]


def test_entries_of_another_engine_are_removed_once_idle_for_a_day(tmp_path: Path, cache: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade does not leave the old engine's entries behind for ever; a version written
    to within the day (two versions running side by side) keeps its entries."""
    folder = _woocommerce(tmp_path)
    _load(folder)
    old = [entry for entry in (cache / "lint").iterdir()]
    assert len(old) == 1
    monkeypatch.setattr(startcache, "ENGINE", "0" * 32)
    _load(folder)
    assert old[0].exists()                           # written to a moment ago: kept
    os.utime(old[0], (0, 0))
    monkeypatch.setattr(startcache, "ENGINE", "1" * 32)
    _load(folder)
    assert not old[0].exists()
    assert sorted(entry.name for entry in (cache / "lint").iterdir()) == ["0" * 16, "1" * 16]
