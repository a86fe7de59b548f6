"""Sandboxed, strict, structural templates."""

from __future__ import annotations

import pytest

from engine import template
from engine.errors import TemplateError

CONTEXT = {"order": {"number": "1001", "lines": [{"sku": "A"}, {"sku": "B"}], "total": 9.5, "gift": False},
           "config": {"shop": "acme"}}


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ order.number }}", "1001"),
    ("{{ order.lines | length }}", 2),
    ("{{ order.total }}", 9.5),
    ("{{ order.gift }}", False),
    ("#{{ order.number }}", "#1001"),
    ("plain text", "plain text"),
    ("{{ order.lines | map(attribute='sku') | join(',') }}", "A,B"),
    ("{{ order | tojson }}", '{"gift": false, "lines": [{"sku": "A"}, {"sku": "B"}], "number": "1001", "total": 9.5}'),
])
def test_leaf_types(source, expected):
    """A leaf that is one expression keeps its type; any other leaf is text."""
    assert template.compile_structure({"v": source}).render(CONTEXT) == {"v": expected}


def test_structure_keeps_shape():
    """Objects and lists stay objects and lists; non-string leaves pass through."""
    body = {"ref": "{{ order.number }}", "items": [{"sku": "{{ order.lines[0].sku }}", "qty": 1}], "n": None}
    assert template.compile_structure(body).render(CONTEXT) == {"ref": "1001", "items": [{"sku": "A", "qty": 1}], "n": None}


@pytest.mark.parametrize("source", ["{{ nope }}", "{{ order.nope }}", "x {{ order.nope }} y"])
def test_undefined_is_an_error(source):
    """An undefined variable or attribute is an error, never an empty string."""
    with pytest.raises(TemplateError, match="undefined"):
        template.compile_template(source).render(CONTEXT)


@pytest.mark.parametrize("source", ["{{ config.__class__ }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}",
                                    "{{ order.lines.append(1) }}"])
def test_sandbox_blocks_internals(source):
    """Templates cannot reach Python internals or mutate their context."""
    with pytest.raises(TemplateError):
        template.compile_template(source).render(CONTEXT)


def test_syntax_error_has_line():
    """An unclosed expression is a TemplateError with the template's line number."""
    with pytest.raises(TemplateError) as info:
        template.compile_template("line one\n{{ order.number ")
    assert info.value.lineno == 2


def test_variables():
    """variables() lists the undeclared top-level names, not loop variables."""
    source = "{{ since }} {% for l in order.lines %}{{ l.sku }}{% endfor %}"
    assert template.variables(source) == {"since", "order"}
    assert template.structure_variables({"a": ["{{ config.x }}"], "b": "{{ now }}", "c": 1}) == {"config", "now"}


def test_for_each_builds_a_list():
    """A for_each object renders its item once per element, with the loop variable bound."""
    body = {"items": {"for_each": "{{ order.lines }}", "as": "line", "item": {"sku": "{{ line.sku }}", "n": "{{ order.number }}"}}}
    assert template.compile_structure(body).render(CONTEXT) == {"items": [{"sku": "A", "n": "1001"}, {"sku": "B", "n": "1001"}]}
    assert template.structure_variables(body) == {"order"}


def test_for_each_over_a_non_list_is_an_error():
    """for_each over a value that is not a list is a TemplateError naming the expression."""
    with pytest.raises(TemplateError, match="expected a list"):
        template.compile_structure({"for_each": "{{ order.number }}", "item": 1}).render(CONTEXT)


ONE_PASS_CASES = [
    {"a": "{{ order.number }}", "b": "{{ order.total * 2 }}", "c": "x{{ order.number }}", "d": 3, "e": None},
    {"lines": {"for_each": "{{ order.lines }}", "as": "line", "item": {"sku": "{{ line.sku }}", "n": "{{ order.number }}"}}},
    {"lines": {"for_each": "{{ order.missing | default(none) }}", "item": "{{ item }}"}},
    {"nested": [{"x": "{{ config.shop | upper }}"}, "{{ order.lines | length }}", "plain"]},
    {"ok": "{{ order.number }}", "bad": "{{ order.nope }}"},
    {"bad": "x {{ order.nope }} y", "ok": "{{ order.number }}"},
    {"first": "{{ order.nope }}", "then": "{{ 1 / 0 }}"},
    {"div": "{{ 1 / 0 }}", "undef": "{{ nope }}"},
    {"lines": {"for_each": "{{ order.number }}", "item": "{{ item }}"}},
    {"lines": {"for_each": "{{ order.lines }}", "as": "line", "item": {"sku": "{{ line.nope }}"}}},
    {"sandbox": "{{ order.__class__ }}"},
]


@pytest.mark.parametrize("body", ONE_PASS_CASES)
def test_one_pass_render_equals_leaf_by_leaf(body):
    """Rendering a structure in one Jinja call gives the leaf-by-leaf value, or the same error."""
    def outcome(render):
        try:
            return "ok", render(CONTEXT)
        except TemplateError as exc:
            return "error", str(exc)

    structure = template.compile_structure(body)
    assert structure._fast is not None
    assert outcome(structure.render) == outcome(structure._render)
