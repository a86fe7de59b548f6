"""Jinja: writing requests. Sandboxed, strict, compiled once at load.

Templates cannot reach Python internals (ImmutableSandboxedEnvironment) and an undefined
variable is an error, never an empty string (StrictUndefined). Bodies are rendered
*structurally*: objects and lists are kept as they are and only string leaves are templates.
A leaf that is exactly one expression, `"{{ order.lines | length }}"`, keeps the type of its value
(a number stays a number); any other leaf renders to a string. Types are never guessed from text.

A list built from a list is an object with `for_each` (one expression giving a list), `as` (the
loop variable's name, default `item`) and `item` (the structure rendered for each element):

    orderItems: {for_each: "{{ order.lines }}", as: line, item: {sku: "{{ line.sku }}", qty: "{{ line.quantity }}"}}
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine import startcache, zones
from engine.errors import TemplateError

#: The most characters or items a value made by a template may have, and the most bits of an
#: integer it computes: `{{ 'a' * 10**9 }}` or `{{ 10 ** (10**8) }}` is refused before it is
#: computed, never left to exhaust the machine.
MAX_SIZE = 10_000_000
MAX_BITS = 100_000
#: Items all the `range(...)` calls of one template evaluation may yield together (nested
#: loops multiply: `range(100000)` inside `range(100000)` is refused at once).
MAX_STEPS = 1_000_000
_steps = [MAX_STEPS]
#: Filters whose integer arguments set the size of what they make (`center(10**9)`).
_SIZING_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice", "format",
                             "replace", "join"})


def _refuse(what: str) -> jinja2.exceptions.SecurityError:
    return jinja2.exceptions.SecurityError(f"{what}: a template value may have at most {MAX_SIZE} "
                                           f"characters or items, and integers {MAX_BITS} bits")


def _bounded(value: Any) -> Any:
    """`value`, unless it is larger than a template value may be."""
    if isinstance(value, (str, bytes, list, tuple, dict)) and len(value) > MAX_SIZE:
        raise _refuse(f"a value of {len(value)} characters or items")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_BITS:
        raise _refuse(f"an integer of {value.bit_length()} bits")
    return value


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


class _Bounded(ImmutableSandboxedEnvironment):
    """The sandbox with sizes bounded: `*`, `**`, `+` and `%` check what they would make
    before making it (they are never folded at compile time, being intercepted), `range`
    draws on the evaluation's MAX_STEPS, and sizing filters refuse a size beyond MAX_SIZE."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    _compiling = threading.local()          # .expression: the source `compile_expression` compiles

    def compile(self, source: Any, name: str | None = None, filename: str | None = None,
                raw: bool = False, defer_init: bool = False) -> Any:
        """Jinja's compile, its code object kept across processes (`engine.startcache`) by the
        template's text (or the expression's, from `compile_expression`) and Jinja's version: a spec loaded again
        skips Jinja's code generation and Python's compiler. A syntax error is never cached."""
        text = source if isinstance(source, str) else getattr(self._compiling, "expression", None)
        if text is None or raw or name is not None or filename is not None or defer_init:
            return super().compile(source, name, filename, raw, defer_init)
        key = _code_key(text, expression=not isinstance(source, str))
        code = startcache.get_code("jinja", key)
        if code is None:
            code = super().compile(source)
            startcache.put_code("jinja", key, code)
        return code

    def compile_expression(self, source: str, undefined_to_none: bool = True) -> Any:
        """Jinja's compile_expression; with its code stored (`compile`), not even parsed."""
        code = startcache.get_code("jinja", _code_key(source, expression=True))
        if code is not None:
            template = self.template_class.from_code(self, code, self.make_globals(None), None)
            return jinja2.environment.TemplateExpression(template, undefined_to_none)
        self._compiling.expression = source
        try:
            return super().compile_expression(source, undefined_to_none)
        finally:
            self._compiling.expression = None

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _whole(left) and _whole(right) and right > 0 and abs(left) > 1 \
                and right * math.log2(abs(left)) > MAX_BITS:
            raise _refuse(f"{left} ** {right}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (size := _sized(seq)) is not None and _whole(times) and size * times > MAX_SIZE:
                    raise _refuse(f"a sequence of {size} times {times}")
            if _whole(left) and _whole(right) and left.bit_length() + right.bit_length() > MAX_BITS + 1:
                raise _refuse("a product")
        if operator == "%" and isinstance(left, str):
            for arg in right if isinstance(right, tuple) else (right,):
                if _whole(arg) and abs(arg) > MAX_SIZE:
                    raise _refuse(f"a format width of {arg}")
        return _bounded(super().call_binop(context, operator, left, right))


def _code_key(text: str, *, expression: bool) -> str:
    return f"{jinja2.__version__}:{'e' if expression else 't'}:{text}"


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range(*args: int) -> range:
    """`range`, drawing on the evaluation's budget of MAX_STEPS items."""
    made = range(*args)
    _steps[0] -= len(made)
    if _steps[0] < 0:
        raise jinja2.exceptions.SecurityError(
            f"range{args}: the ranges of one template may yield at most {MAX_STEPS} items in all")
    return made


def _sizing(name: str, function: Callable) -> Callable:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args[1:], *kwargs.values()):
            if _whole(arg) and abs(arg) > MAX_SIZE:
                raise _refuse(f"{name}({arg})")
        return _bounded(function(*args, **kwargs))
    for attribute in ("jinja_pass_arg",):       # keep what Jinja reads off the filter
        if hasattr(function, attribute):
            setattr(bounded, attribute, getattr(function, attribute))
    return bounded


ENV = _Bounded(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
ENV.globals["range"] = _range
ENV.filters.update({name: _sizing(name, ENV.filters[name]) for name in _SIZING_FILTERS})


def _to_local(value: Any, zone: str) -> str | None:
    """`{{ since | to_local(config.time_zone) }}`: an instant as the zone's zone-less wall clock
    ('2026-03-01T19:00:00'), for APIs that take local times; a zone-less value is UTC."""
    if value is None:
        return None
    text = zones.to_local(value, zone)
    if text is None:
        raise ValueError(f"to_local: {value!r} is not a time")
    return text


def _to_iso8601(value: Any, zone: str = zones.UTC) -> str | None:
    """`{{ t | to_iso8601(config.time_zone) }}`: ISO-8601 UTC ('...Z'), a zone-less `t` read in `zone`."""
    if value is None:
        return None
    moment = zones.to_utc(value, zone)
    if moment is None:
        raise ValueError(f"to_iso8601: {value!r} is not a time")
    return zones.iso_utc(moment)


#: syncengine's own filters (docs/spec-language.md, "Template contexts"); `ZONE_FILTERS` take
#: an IANA zone name as their first argument, which lint checks when it is a literal.
ZONE_FILTERS = {"to_local": _to_local, "to_iso8601": _to_iso8601}
ENV.filters.update(ZONE_FILTERS)

_SINGLE_EXPRESSION = re.compile(r"^\{\{(?P<expr>(?:(?!\}\}|\{\{|\{%).)*)\}\}$", re.DOTALL)
_MARKERS = ("{{", "{%", "{#")


class Template:
    """One compiled string template: `render(context) -> str`."""

    __slots__ = ("source", "_render")

    def __init__(self, source: str) -> None:
        self.source = source
        if not any(marker in source for marker in _MARKERS):
            self._render: Callable[[Mapping], Any] = lambda context: source
            return
        match = _SINGLE_EXPRESSION.match(source.strip())
        if match and source == source.strip():
            self._render = _expression(match["expr"], source)
        else:
            template = _compile(source)
            self._render = lambda context: _guard(template.render, context)

    def render(self, context: Mapping[str, Any]) -> str:
        """Render to a string."""
        value = self._render(context)
        return value if isinstance(value, str) else _text(value)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Render, keeping the native type when the template is exactly one expression."""
        return self._render(context)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _compile(source: str) -> jinja2.Template:
    try:
        return ENV.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, source) from None


def _syntax_error(exc: jinja2.TemplateSyntaxError, source: str) -> TemplateError:
    error = TemplateError(f"template syntax error: {exc.message} in {source!r}")
    error.lineno = exc.lineno
    return error


def _expression(expr: str, source: str) -> Callable[[Mapping], Any]:
    try:
        compiled = ENV.compile_expression(expr, undefined_to_none=False)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, source) from None

    def evaluate(context: Mapping[str, Any]) -> Any:
        value = _guard(compiled, context)
        if isinstance(value, jinja2.Undefined):
            _guard(value._fail_with_undefined_error)
        return value

    return evaluate


def _guard(function: Callable, *args: Any) -> Any:
    _steps[0] = MAX_STEPS        # evaluations never interleave: rendering does not await
    try:
        return _bounded(function(*args))
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template variable is undefined: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template blocked by the sandbox: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, jinja2.TemplateError) as exc:
        raise TemplateError(f"template failed: {exc}") from None


def compile_template(source: str) -> Template:
    """Compile one string template."""
    return Template(source)


class Structure:
    """A JSON-like value whose string leaves are templates: `render(context) -> value`.

    Rendering is one pass: every leaf that is exactly one expression is evaluated by ONE Jinja
    expression, `[(leaf1), (leaf2), ...]` (one per loop item for a `for_each` item), instead of
    one Jinja call per leaf; the structure is then assembled from that list. Should anything
    go wrong on that path (an undefined value, a failing filter), the structure is rendered
    again leaf by leaf, so the error raised is exactly the one the leaf-by-leaf render gives.
    """

    __slots__ = ("_render", "_fast")

    def __init__(self, value: Any) -> None:
        self._render = _structure(value)
        try:
            scope = _Scope()
            self._fast: Callable[[Mapping], Any] | None = scope.bind(_plan(value, scope))
        except TemplateError:
            self._fast = None

    def render(self, context: Mapping[str, Any]) -> Any:
        if self._fast is not None:
            try:
                return self._fast(context)
            except _Again:
                pass
        return self._render(context)


LOOP_KEYS = frozenset({"for_each", "as", "item"})


def is_loop(value: Any) -> bool:
    """True for a `{for_each, as, item}` object (see the module docstring)."""
    return isinstance(value, Mapping) and "for_each" in value and set(value) <= LOOP_KEYS


def _structure(value: Any) -> Callable[[Mapping], Any]:
    if isinstance(value, str):
        return compile_template(value).evaluate
    if is_loop(value):
        return _loop(value)
    if isinstance(value, Mapping):
        items = [(key, _structure(item)) for key, item in value.items()]
        return lambda context: {key: render(context) for key, render in items}
    if isinstance(value, list):
        renders = [_structure(item) for item in value]
        return lambda context: [render(context) for render in renders]
    return lambda context: value


def _loop(value: Mapping[str, Any]) -> Callable[[Mapping], Any]:
    items = compile_template(str(value["for_each"])).evaluate
    name = str(value.get("as", "item"))
    render = _structure(value.get("item"))

    def each(context: Mapping[str, Any]) -> list:
        found = items(context)
        if found is None:
            return []
        if not isinstance(found, (list, tuple)):
            raise TemplateError(f"for_each {value['for_each']!r} gave {type(found).__name__}, expected a list")
        return [render({**context, name: element}) for element in found]

    return each


class _Again(Exception):
    """The one-pass render met an error; render leaf by leaf to raise the exact one."""


Build = Callable[[list, Mapping], Any]


class _Scope:
    """The single-expression leaves rendered together (the structure, or one loop item)."""

    def __init__(self) -> None:
        self.sources: list[str] = []

    def add(self, expression: str) -> int:
        self.sources.append(expression)
        return len(self.sources) - 1

    def bind(self, build: Build) -> Callable[[Mapping], Any]:
        """`render(context)`: evaluate every leaf in one Jinja call, then `build` the value."""
        if not self.sources:
            return lambda context: build([], context)
        compiled = ENV.compile_expression("[" + ", ".join(f"({s})" for s in self.sources) + "]",
                                          undefined_to_none=False)

        def render(context: Mapping[str, Any]) -> Any:
            try:
                values = compiled(context)
            except Exception:
                raise _Again from None
            return build(values, context)

        return render


def _plan(value: Any, scope: _Scope) -> Build:
    if isinstance(value, str):
        return _plan_leaf(value, scope)
    if is_loop(value):
        return _plan_loop(value, scope)
    if isinstance(value, Mapping):
        items = [(key, _plan(item, scope)) for key, item in value.items()]
        return lambda values, context: {key: build(values, context) for key, build in items}
    if isinstance(value, list):
        builds = [_plan(item, scope) for item in value]
        return lambda values, context: [build(values, context) for build in builds]
    return lambda values, context: value


def _plan_leaf(source: str, scope: _Scope) -> Build:
    expression = _single_expression(source)
    if expression is None:
        evaluate = compile_template(source).evaluate

        def text(values: list, context: Mapping[str, Any]) -> Any:
            try:
                return evaluate(context)
            except TemplateError:
                raise _Again from None

        return text
    compile_template(source)                       # a syntax error surfaces as it always did
    index = scope.add(expression)

    def leaf(values: list, context: Mapping[str, Any]) -> Any:
        found = values[index]
        if isinstance(found, jinja2.Undefined):
            raise _Again
        return found

    return leaf


def _plan_loop(value: Mapping[str, Any], scope: _Scope) -> Build:
    items = _plan_leaf(str(value["for_each"]), scope)
    name = str(value.get("as", "item"))
    inner = _Scope()
    render = inner.bind(_plan(value.get("item"), inner))

    def each(values: list, context: Mapping[str, Any]) -> list:
        found = items(values, context)
        if found is None:
            return []
        if not isinstance(found, (list, tuple)):
            raise _Again
        return [render({**context, name: element}) for element in found]

    return each


def _single_expression(source: str) -> str | None:
    """The expression of a leaf that is exactly `{{ expression }}`, else None."""
    match = _SINGLE_EXPRESSION.match(source)
    return match["expr"] if match and source == source.strip() else None


def compile_structure(value: Any) -> Structure:
    """Compile a structural template (a JSON body, params, headers)."""
    return Structure(value)


def variables(source: str) -> set[str]:
    """The top-level variables a template uses that it does not define itself."""
    if not any(marker in source for marker in _MARKERS):
        return set()
    try:
        return set(meta.find_undeclared_variables(ENV.parse(source)))
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, source) from None


def structure_variables(value: Any) -> set[str]:
    """`variables()` over every string leaf of a structure."""
    if isinstance(value, str):
        return variables(value)
    if is_loop(value):
        inner = structure_variables(value.get("item")) - {str(value.get("as", "item"))}
        return variables(str(value["for_each"])) | inner
    if isinstance(value, Mapping):
        return set().union(*(structure_variables(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(structure_variables(item) for item in value))
    return set()


def zone_literals(source: str) -> list[str]:
    """The literal zone names a template hands to a zone filter (`to_local('Asia/Tokyo')`)."""
    if "{{" not in source and "{%" not in source:
        return []
    try:
        tree = ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return []
    return [node.args[0].value for node in tree.find_all(jinja2.nodes.Filter)
            if node.name in ZONE_FILTERS and node.args and isinstance(node.args[0], jinja2.nodes.Const)]

