"""Specs cannot exhaust the machine (issue 10, point 5): each case is the clean cart of the lint
table with one hostile edit; lint must answer with a clear finding, exit 1, within seconds,
never a traceback and never a hang. The specs are written by the test into tmp_path."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.lint_cases import CART, WMS, cart
from tests.test_lint import lint_cli

WRITE_CASE = """examples:
  - name: a shipment
    operation: create_shipment
    input: {order: {key: "7", order_id: "7"}, package: {tracking_number: 1Z1}, shipment: {packages: [1]}}
    expect:
      request: {method: POST, path: /orders/7/shipments, json: {tracking: 1Z1, count: 1}}
"""


def _shipment_json(expression: str) -> str:
    """The cart whose create_shipment sends `expression`, with an example that renders it."""
    text = cart('json: {tracking: "{{ package.tracking_number }}", count: "{{ shipment.packages | length }}"}',
                f'json: {{tracking: "{{{{ package.tracking_number }}}}", count: "{expression}"}}')
    return text.replace("examples:\n", WRITE_CASE, 1)


LAUGHS = "".join(f"x{n + 1}: &x{n + 1} [{', '.join([f'*x{n}'] * 9)}]\n" for n in range(12))

CASES = [
    pytest.param(_shipment_json("{{ 'a' * 10**9 }}"), "a template value may have at most", id="string-times-billion"),
    pytest.param(_shipment_json("{{ 10 ** (10**8) }}"), "10 ** 100000000", id="power-tower"),
    pytest.param(_shipment_json("{{ range(10**9) | list }}"), "may yield at most 1000000 items", id="big-range"),
    pytest.param(_shipment_json("{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}"),
                 "may yield at most 1000000 items", id="nested-ranges"),
    pytest.param(_shipment_json("{{ 'a' | center(10**9) }}"), "center(1000000000)", id="sizing-filter"),
    pytest.param(_shipment_json("{{ '%*d' % (10**9, 1) }}"), "a format width of 1000000000", id="format-width"),
    pytest.param("x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + LAUGHS + CART,
                 "expands to more than 100000 values", id="billion-laughs"),
    pytest.param("loop: &loop [1, *loop]\n" + CART, "recursive alias", id="recursive-alias"),
    pytest.param(cart('base_url: "{{ config.site_url }}/api"', 'base_url: "{{ config.site_url }}/api"\n  timeout: .nan'),
                 ".nan is not a number a spec can use", id="nan-timeout"),
    pytest.param(cart("retry: {attempts: 3,", "rate_limit: {per_second: .inf}\n  retry: {attempts: 3,"),
                 ".inf is not a number a spec can use", id="inf-rate"),
    pytest.param(cart("retry: {attempts: 3,", "limits: {deadline: -.Inf}\n  retry: {attempts: 3,"),
                 "-.Inf is not a number a spec can use", id="inf-deadline"),
    pytest.param(cart("retry: {attempts: 3,", "limits: {max_body: 0}\n  retry: {attempts: 3,"),
                 "max_body", id="zero-body-cap"),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_a_hostile_spec_is_a_clear_finding(text: str, message: str, tmp_path: Path) -> None:
    (tmp_path / "shop.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "warehouse.yaml").write_text(WMS, encoding="utf-8")
    started = time.monotonic()
    code, findings, output = lint_cli(str(tmp_path))
    assert time.monotonic() - started < 10, "lint took too long"
    assert code == 1, output
    assert any(message in f"{f['path']}: {f['message']} {f.get('hint') or ''}" for f in findings), output


def _with_response_file(name: str) -> str:
    start, end = CART.index("    response:\n"), CART.index("    expect:\n")
    return CART[:start] + f"    response: {{file: examples/{name}}}\n" + CART[end:]


def test_a_deeply_nested_example_file_is_a_finding(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "shop.yaml").write_text(_with_response_file("deep.json"), encoding="utf-8")
    code, findings, output = lint_cli(str(tmp_path / "shop.yaml"))
    assert code == 1, output
    assert any("deep.json nests too deeply" in f["message"] for f in findings), output


def test_an_example_file_is_read_within_its_size_cap(tmp_path: Path) -> None:
    """A `{file: ...}` example larger than 4 MiB is refused, unread (a device such as `/dev/zero`, which never ends, is
    refused as not a regular file: tests/test_security_files.py)."""
    big = tmp_path / "examples" / "big.json"
    big.parent.mkdir()
    with big.open("wb") as file:
        file.truncate(4 * 1024 * 1024 + 1)          # sparse: costs no disk
    (tmp_path / "shop.yaml").write_text(_with_response_file("big.json"), encoding="utf-8")
    code, findings, output = lint_cli(str(tmp_path / "shop.yaml"))
    assert code == 1, output
    assert any("larger than 4194304 bytes" in f["message"] for f in findings), output
