"""The two leaf rules: a JMESPath expression compiles, a Jinja template parses and uses only
variables its context has. Both are cached by source text, so 200 copies of a spec cost one
compile per distinct expression.

Each rule is a generator of `Problem`s relative to the leaf it checks (path `()`); the walkers in
`rules.py` add where the leaf is.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors

from engine import zones
from engine.errors import TemplateError
from engine.extract import OPTIONS
from engine.specs.references import Scope, reference_problems
from engine.specs.findings import Problem, SpecPath, did_you_mean
from engine.template import is_loop, variables, zone_literals

FUNCTIONS = frozenset(OPTIONS.custom_functions.FUNCTION_TABLE)
#: functions whose signature is variadic but that take at most this many arguments
MOST_ARGUMENTS = {"to_iso8601": 2}
#: functions taking an IANA zone name: the index of that argument
ZONE_ARGUMENT = {"to_iso8601": 1, "to_local": 1}


@functools.lru_cache(maxsize=4096)
def _jmespath_problem(expr: str) -> tuple[str, str | None] | None:
    """(message, hint) when `expr` is not a JMESPath expression syncengine can run, else None."""
    if not expr.strip():
        return ("empty JMESPath expression", "use '@' for the value itself")
    try:
        parsed = jmespath.compile(expr).parsed
    except jmespath_errors.JMESPathError as exc:
        return (f"invalid JMESPath {expr!r}: {_describe(exc)}", _jmespath_hint(expr))
    for node in _functions(parsed):
        name = node["value"]
        if name not in FUNCTIONS:
            return (f"unknown JMESPath function '{name}()' in {expr!r}",
                    did_you_mean(name, FUNCTIONS))
        problem = _call_problem(name, node["children"])
        if problem is not None:
            return (f"{problem} in {expr!r}", _usage(name))
    return None


def _call_problem(name: str, args: list) -> str | None:
    """Too few or too many arguments, or a literal zone name that is not one."""
    signature = OPTIONS.custom_functions.FUNCTION_TABLE[name]["signature"]
    variadic = bool(signature) and signature[-1].get("variadic")
    least, most = len(signature), MOST_ARGUMENTS.get(name, None if variadic else len(signature))
    if len(args) < least or (most is not None and len(args) > most):
        wanted = f"{least}" if least == most else f"{least} to {most}" if most else f"at least {least}"
        return f"{name}() takes {wanted} argument{'s' if wanted != '1' else ''}, got {len(args)}"
    index = ZONE_ARGUMENT.get(name)
    if index is not None and index < len(args) and args[index].get("type") == "literal":
        return zones.problem(args[index].get("value"))
    return None


def _usage(name: str) -> str | None:
    """The one-line doc of a custom function ('to_iso8601(t) / to_iso8601(t, zone): ...')."""
    function = OPTIONS.custom_functions.FUNCTION_TABLE[name]["function"]
    doc = (function.__doc__ or "").strip().split(":")[0]
    return doc if doc.startswith(name) else None


def _describe(exc: jmespath_errors.JMESPathError) -> str:
    text = getattr(exc, "msg", None) or str(exc).splitlines()[0]
    text = text.removeprefix("Invalid jmespath expression: ").rstrip(":. ")
    position = getattr(exc, "lex_position", None)
    return f"{text} (column {position + 1})" if isinstance(position, int) else text


def _jmespath_hint(expr: str) -> str | None:
    if "{{" in expr:
        return "this key holds JMESPath (reads the answer), not a Jinja template"
    if expr.count("`") % 2:
        return "a JSON literal is written between backticks: `0`"
    return None


def _functions(node: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    if node.get("type") == "function_expression":
        yield node
    for child in node.get("children", ()):
        if isinstance(child, Mapping):
            yield from _functions(child)


def jmespath_rule(value: Any) -> Iterator[Problem]:
    """A JMESPath-bearing key holds a string that compiles and calls only known functions."""
    if not isinstance(value, str):
        return  # the schema reports the wrong type
    problem = _jmespath_problem(value)
    if problem:
        yield Problem((), problem[0], "a JMESPath expression", problem[1])


def mapping_rule(spec: Any) -> Iterator[Problem]:
    """Every leaf of a `map:` block is JMESPath; `each`/`value` hold JMESPath too."""
    if not isinstance(spec, Mapping):
        return
    for name, value in spec.items():
        for problem in _mapping_value(value):
            yield problem.at((name,))


def _mapping_value(value: Any) -> Iterator[Problem]:
    if isinstance(value, str):
        yield from jmespath_rule(value)
    elif not isinstance(value, Mapping):
        yield Problem((), f"a mapping value must be a JMESPath string or an object, got {value!r}",
                      "a JMESPath string, {each, map}, {value, default}, {const} or a nested map")
    elif "each" in value:
        yield from (p.at(("each",)) for p in jmespath_rule(value["each"]))
        yield from (p.at(("map",)) for p in mapping_rule(value.get("map")))
    elif "value" in value:
        yield from (p.at(("value",)) for p in jmespath_rule(value["value"]))
    elif "const" not in value:
        yield from mapping_rule(value)


@functools.lru_cache(maxsize=4096)
def _template_check(source: str) -> tuple[str, int, str | None] | frozenset[str]:
    """(message, line, hint) for a syntax error, else the variables the template uses."""
    try:
        return frozenset(variables(source))
    except TemplateError as exc:
        message = exc.message.split(" in '")[0].split(' in "')[0]
        hint = "close every '{{' with '}}'" if source.count("{{") > source.count("}}") else None
        return (message, getattr(exc, "lineno", 1) or 1, hint)


def template_rule(value: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """A template parses in the sandbox and reads only the variables of its context, and only
    fields its context's canonical records have (when `allowed` is a `Scope` that knows them)."""
    if not isinstance(value, str) or "{" not in value:
        return
    checked = _template_check(value)
    if isinstance(checked, tuple):
        message, line, hint = checked
        yield Problem((), message, "a Jinja template", hint, offset=line - 1)
        return
    for name in sorted(checked - allowed):
        yield Problem((), f"unknown template variable '{name}'",
                      "one of: " + ", ".join(sorted(allowed)), did_you_mean(name, allowed))
    if isinstance(allowed, Scope) and allowed.shapes:
        yield from reference_problems(value, allowed.shapes)
    yield from zone_rule(value)


def zone_rule(value: Any) -> Iterator[Problem]:
    """Literal zone names in a template's zone filters (`to_local('Asia/Tokyo')`) are IANA names."""
    for name in _zone_literals(value):
        problem = zones.problem(name)
        if problem is not None:
            yield Problem((), problem, "an IANA time zone name such as 'America/New_York'")


@functools.lru_cache(maxsize=4096)
def _zone_literals(source: str) -> tuple:
    return tuple(zone_literals(source))


def structure_rule(value: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """`template_rule` on every string leaf of a structure (params, headers, JSON bodies);
    inside a `{for_each, as, item}` loop, the loop variable is allowed too."""
    if is_loop(value):
        yield from descend(template_rule(value["for_each"], allowed), ("for_each",))
        name = str(value.get("as", "item"))
        inner = allowed.bind(name, value["for_each"]) if isinstance(allowed, Scope) else allowed | {name}
        yield from descend(structure_rule(value.get("item"), inner), ("item",))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from descend(structure_rule(item, allowed), (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from descend(structure_rule(item, allowed), (index,))
    else:
        yield from template_rule(value, allowed)


def descend(problems: Iterable[Problem], path: SpecPath) -> Iterator[Problem]:
    """The walker's half of a rule: the same problems, placed under `path`."""
    for problem in problems:
        yield problem.at(path)
