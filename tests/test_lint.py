"""Lint: every broken spec is reported with the right message, line and path; the sample specs
lint clean, and breaking them is reported where the break is."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from engine import ROOT
from engine.cli import run
from engine.specs import lint_paths, load_file
from tests.lint_cases import CART, INTEGRATION, INVALID_SPECS, MULTISTEP_CART, OAUTH_CART, OAUTH_WMS, WMS, SpecCase


def lint_cli(*args: str) -> tuple[int, list[dict], str]:
    """Run `syncengine lint --format json ARGS` in-process: exit code, findings, all output."""
    stdout, stderr = io.StringIO(), io.StringIO()
    code = run(["lint", "--format", "json", *args], stdout, stderr)
    output = stdout.getvalue() + stderr.getvalue()
    assert "Traceback" not in output
    return code, json.loads(stdout.getvalue() or "[]"), output


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory with the clean companion connectors an integration case refers to."""
    (tmp_path / "connectors").mkdir()
    (tmp_path / "connectors" / "shop.yaml").write_text(CART)
    (tmp_path / "connectors" / "warehouse.yaml").write_text(WMS)
    return tmp_path


def test_base_specs_lint_clean(workdir: Path) -> None:
    """The clean cart, WMS and integration the table edits lint without findings."""
    (workdir / "integration.yaml").write_text(INTEGRATION)
    code, findings, _ = lint_cli(str(workdir))
    assert (code, findings) == (0, [])


@pytest.mark.parametrize("text", [OAUTH_CART, OAUTH_WMS], ids=["header-json-body", "query-token-host"])
def test_oauth_placement_specs_lint_clean(text: str, tmp_path: Path) -> None:
    """OAuth2 auth with place (header or query), token_body and token_hosts lints clean."""
    (tmp_path / "spec.yaml").write_text(text)
    code, findings, _ = lint_cli(str(tmp_path / "spec.yaml"))
    assert (code, findings) == (0, [])


def test_a_multistep_write_with_golden_cases_lints_clean_and_says_its_guarantee(tmp_path: Path) -> None:
    """steps, capture, idempotency_key and verify lint clean; their golden cases run; lint names
    the guarantee of each step."""
    (tmp_path / "spec.yaml").write_text(MULTISTEP_CART)
    code, findings, _ = lint_cli(str(tmp_path / "spec.yaml"))
    assert (code, findings) == (0, [])
    out = io.StringIO()
    assert run(["lint", str(tmp_path / "spec.yaml")], out, io.StringIO()) == 0
    assert "shop: create_shipment (shipments): effectively once (note: verify + match; complete: idempotent)" in out.getvalue()
    broken = MULTISTEP_CART.replace("expect: {idempotency_key: 7-1Z1}", "expect: {idempotency_key: 7-1Z2}")
    (tmp_path / "spec.yaml").write_text(broken)
    assert lint_cli(str(tmp_path / "spec.yaml"))[0] == 1


@pytest.mark.parametrize("case", INVALID_SPECS, ids=[case.id for case in INVALID_SPECS])
def test_invalid_spec(case: SpecCase, workdir: Path) -> None:
    """Each broken spec is reported with its message, at its line and path, exit 1."""
    is_integration = "source:" in case.yaml_text
    target = workdir / "case.yaml"
    target.write_text(case.yaml_text)
    paths = [str(target), str(workdir / "connectors")] if is_integration else [str(target)]
    code, findings, output = lint_cli(*paths)
    assert code == 1, output
    ours = [f for f in findings if f["file"] == str(target)]
    assert len(ours) == len(findings), output
    matching = [f for f in ours if case.message in " ".join(
        str(f[k]) for k in ("message", "expected", "hint"))]
    assert matching, output
    assert (matching[0]["line"], matching[0]["path"]) == (case.line, case.path), output


def test_table_is_large_enough() -> None:
    """The table covers at least thirty distinct broken specs."""
    assert len(INVALID_SPECS) >= 30
    assert len({case.id for case in INVALID_SPECS}) == len(INVALID_SPECS)


def test_every_problem_is_reported(tmp_path: Path) -> None:
    """Three independent problems in one file give three findings, in line order."""
    text = CART.replace("param: page", "parm: page").replace("kind: cart", "kind: crat")
    text = text.replace("records: data", "records: data[")
    (tmp_path / "many.yaml").write_text(text)
    findings = lint_paths([tmp_path])
    assert [f.line for f in findings] == [2, 20, 22]


def test_secret_literal_is_not_repeated(workdir: Path) -> None:
    """A literal secret is an error whose output never contains the secret itself."""
    (workdir / "integration.yaml").write_text(INTEGRATION.replace('"${env:SHOP_KEY}"', "sk_live_999"))
    code, _, output = lint_cli(str(workdir))
    assert code == 1 and "sk_live_999" not in output


def test_integration_alone_uses_project_connectors(tmp_path: Path) -> None:
    """An integration linted alone resolves connector names among the project's connectors/."""
    text = INTEGRATION.replace("connector: shop\n", "connector: woocommerce\n")
    (tmp_path / "i.yaml").write_text(text.replace("connector: warehouse", "connector: extensiv"))
    findings = lint_paths([tmp_path])
    assert findings and not any("unknown connector" in f.message for f in findings)


def test_loader_positions_and_plain_data(tmp_path: Path) -> None:
    """The loader gives plain dicts, string keys and dates, and the line of every key."""
    (tmp_path / "c.yaml").write_text(CART + "extra:\n  2026-01-01: on\n  7: x\n")
    document = load_file(tmp_path / "c.yaml")
    assert document.kind == "connector" and type(document.data) is dict
    assert document.data["extra"] == {"2026-01-01": True, "7": "x"}
    assert document.locate(("operations", "list_orders", "paginate", "type")) == (19, 7)
    assert document.locate(("operations", "list_orders", "paginate", "nope")) == (18, 5)


# --- the real sample specs: clean, and every kind of break reported at its line -----------

SAMPLES = sorted(p for d in ("connectors", "samples") for p in (ROOT / d).rglob("*.y*ml")
                 if "examples" not in p.relative_to(ROOT).parts)


def test_samples_lint_clean() -> None:
    """`syncengine lint connectors/ samples/` exits 0."""
    code, findings, output = lint_cli(str(ROOT / "connectors"), str(ROOT / "samples"))
    assert (code, findings) == (0, []), output


def _copy_tree(tmp_path: Path, sample: Path) -> Path:
    """A copy of the sample's directory (its example files included); returns the copy."""
    root = tmp_path / "copy"
    shutil.copytree(sample.parent.parent if sample.parent.name in ("carts", "wms")
                    else sample.parent, root)
    return root / sample.relative_to(sample.parent.parent if sample.parent.name in
                                     ("carts", "wms") else sample.parent)


def _mutations(text: str) -> list[tuple[str, str, int]]:
    """(kind, mutated text, line of the break) for each break we can make in `text`."""
    lines = text.splitlines(keepends=True)
    out = []
    key_line = _first(lines, r"^\s*(records|paginate|request|start_date|connector):\s")
    if key_line is not None:
        out.append(("rename-key", _sub(lines, key_line, r"^(\s*)(\w+):", r"\1\2x:"), key_line + 1))
        out.append(("duplicate-key", _dup(lines, key_line), key_line + 2))
    jmes = _first(lines, r"^\s+(key|records|when):\s+\S")
    if jmes is not None:
        out.append(("break-jmespath", _sub(lines, jmes, r":\s+(.*)$", r": 'a[?'"), jmes + 1))
    tmpl = _first(lines, r"^[^#]*\{\{.*\}\}")
    if tmpl is not None:
        out.append(("unclose-template", _sub(lines, tmpl, r"\}\}", ""), tmpl + 1))
    flow = _first(lines, r"^\s+\w+: \{[^}]*\}\s*$")
    if flow is not None:
        out.append(("break-yaml", _sub(lines, flow, r"\}\s*$", "\n"), flow + 1))
    colon = _first(lines, r"^\s+(method|connector|split_shipments): [A-Za-z]")
    if colon is not None:   # "key: a: b" is not YAML (a mapping value where a scalar goes)
        out.append(("break-yaml-colon", _sub(lines, colon, r": ([A-Za-z])", r": x: \1"), colon + 1))
    return out


def _first(lines: list[str], pattern: str) -> int | None:
    return next((i for i, line in enumerate(lines) if re.search(pattern, line)), None)


def _sub(lines: list[str], index: int, pattern: str, replacement: str) -> str:
    changed = list(lines)
    changed[index] = re.sub(pattern, replacement, changed[index], count=1)
    return "".join(changed)


def _dup(lines: list[str], index: int) -> str:
    return "".join(lines[: index + 1] + [lines[index]] + lines[index + 1:])


@pytest.mark.parametrize("sample", SAMPLES, ids=[str(p.relative_to(ROOT)) for p in SAMPLES])
def test_sample_mutations(sample: Path, tmp_path: Path) -> None:
    """Renaming a key, breaking JMESPath or YAML, unclosing `{{` or duplicating a key in a real
    spec is reported at the line of the break, with exit 1 and no traceback."""
    text = sample.read_text()
    mutations = _mutations(text)
    assert mutations
    for kind, mutated, line in mutations:
        copy = _copy_tree(tmp_path / kind, sample)
        copy.write_text(mutated)
        code, findings, output = lint_cli(str(copy), str(ROOT / "connectors"))
        assert code == 1, (kind, output)
        lines = {f["line"] for f in findings if f["file"] == str(copy)}
        assert lines, (kind, output)
        if line is not None:
            assert line in lines, (kind, line, output)


def test_parallel_lint_finds_what_serial_lint_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Linting many specs in forked workers gives exactly the findings of one process."""
    from engine.specs import lint

    for index, case in enumerate(INVALID_SPECS):
        (tmp_path / f"case{index:02}.yaml").write_text(case.yaml_text)
    for index in range(8):
        (tmp_path / f"clean{index}.yaml").write_text(CART.replace("name: ", f"name: c{index}", 1))
    monkeypatch.setattr(lint, "PARALLEL_FROM", 10 ** 6)
    serial = lint_paths([tmp_path])
    monkeypatch.setattr(lint, "PARALLEL_FROM", 2)
    monkeypatch.setattr(lint.os, "cpu_count", lambda: 3)
    assert lint_paths([tmp_path]) == serial and len(serial) >= len(INVALID_SPECS)


PACING_FORMS = [  # each `http.pacing` form as a spec writes it
    "{type: used_limit, header: X-Shopify-Shop-Api-Call-Limit, per_second: 2}",
    "{type: remaining_reset, remaining: X-Rate-Limit-Requests-Left, reset: X-Rate-Limit-Time-Reset-Ms, "
    "reset_unit: milliseconds, limit: X-Rate-Limit-Requests-Quota}",
    "{type: remaining_reset, remaining: X-Rate-Limit-Remaining, reset: X-Rate-Limit-Reset}",
    "{type: ratelimit_fields, policy: burst}",
    "{type: cost_bucket, available: extensions.cost.throttleStatus.currentlyAvailable, "
    "restore_rate: extensions.cost.throttleStatus.restoreRate, "
    "maximum: extensions.cost.throttleStatus.maximumAvailable, cost: extensions.cost.requestedQueryCost, "
    "actual: extensions.cost.actualQueryCost}",
]


@pytest.mark.parametrize("form", PACING_FORMS)
def test_every_pacing_form_lints_clean_and_reaches_the_client(form: str, tmp_path: Path) -> None:
    """Each `http.pacing` form (with `retry.max_throttle_wait`) lints clean and its client paces by it."""
    from engine.specs.model import Connector
    text = CART.replace("  retry: {attempts: 3", f"  pacing: {form}\n  retry: {{max_throttle_wait: 600, attempts: 3")
    (tmp_path / "shop.yaml").write_text(text)
    code, findings, output = lint_cli(str(tmp_path / "shop.yaml"))
    assert (code, findings) == (0, []), output
    client = Connector.from_data(load_file(tmp_path / "shop.yaml").data).client(
        {"site_url": "https://shop.test", "api_key": "k"})
    asyncio.run(client.aclose())
    assert client._pacer.pacing is not None and client.retry.max_throttle_wait == 600
