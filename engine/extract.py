"""JMESPath: reading answers. Every expression is compiled once, at load.

A `map:` block (see docs/spec-language.md, "Mappings") compiles into ONE JMESPath
multiselect-hash expression, so mapping a record costs one evaluation, not one per field:

    {order_id: to_string(id), lines: {each: line_items, map: {sku: sku}}}
    -> {"order_id": (to_string(id)), "lines": map(&{"sku": (sku)}, (line_items) || `[]`)}

Evaluation does not walk the AST with jmespath's TreeInterpreter: `engine.jmespath_source`
(with `engine.jmespath_compile`'s closures as fallback) writes it as Python (one generated function per expression; a whole `map:` becomes straight-line
code building one dict), with exactly the interpreter's results and errors. Besides the JMESPath
built-ins, expressions may call the functions of `SyncFunctions`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from collections.abc import Callable, Mapping
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions

from engine import jmespath_compile, jmespath_source
from engine.errors import ExtractError


class SyncFunctions(functions.Functions):
    """Functions beyond JMESPath's built-ins that real cart data keeps needing."""

    @functions.signature({"types": ["string"]}, {"types": ["array"]})
    def _func_join_nonempty(self, separator: str, items: list) -> str:
        """join_nonempty(' ', [first, last]): join the non-null, non-empty items as strings."""
        return separator.join(str(item) for item in items if item not in (None, ""))

    @functions.signature({"types": ["string", "null"]})
    def _func_lower(self, value: str | None) -> str | None:
        """lower(s): lower-case a string; null stays null."""
        return None if value is None else value.lower()

    @functions.signature({"types": ["string", "null"]})
    def _func_upper(self, value: str | None) -> str | None:
        """upper(s): upper-case a string; null stays null."""
        return None if value is None else value.upper()

    @functions.signature({"types": ["string", "null"]}, {"types": ["string"]})
    def _func_split(self, value: str | None, separator: str) -> list:
        """split(s, ','): split a string; null gives []."""
        return [] if value is None else value.split(separator)

    @functions.signature({"types": ["string", "number", "null"]})
    def _func_to_int(self, value: Any) -> int | None:
        """to_int(x): an integer from a number or numeric string; null when it is not one."""
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None


    @functions.signature({"types": ["string", "number", "null"]})
    def _func_to_iso8601(self, value: Any) -> str | None:
        """to_iso8601(t): ISO-8601 UTC ('2026-01-05T08:07:00Z') from ISO-8601 with or without zone
        (none means UTC), RFC 2822 ('Mon, 05 Jan 2026 08:07:00 +0000') or Unix seconds; null
        when it is none of these."""
        moment = _moment(value)
        return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


OPTIONS = jmespath.Options(custom_functions=SyncFunctions())


def _parse(expr: str) -> Any:
    if not isinstance(expr, str) or not expr.strip():
        raise ExtractError(f"expected a JMESPath expression, got {expr!r}")
    try:
        return jmespath.compile(expr)
    except jmespath_errors.JMESPathError as exc:
        error = ExtractError(f"invalid JMESPath {expr!r}: {_describe(exc)}")
        error.position = getattr(exc, "lex_position", None)
        raise error from None


def _describe(exc: Exception) -> str:
    """The first line of jmespath's message, without its 'Invalid jmespath expression:' prefix."""
    first = str(exc).splitlines()[0].removeprefix("Invalid jmespath expression: ")
    position = getattr(exc, "lex_position", None)
    at = f" at column {position}" if position is not None and "column" not in first else ""
    return first.rstrip(":. ") + at


def _searcher(parsed: Any, expr: str) -> Callable[[Any], Any]:
    evaluate = compile_source(parsed.parsed)

    def search(value: Any) -> Any:
        try:
            return evaluate(value)
        except jmespath_errors.JMESPathError as exc:
            raise ExtractError(f"JMESPath {expr!r} failed: {_describe(exc)}") from None

    return search


def compile_path(expr: str) -> Callable[[Any], Any]:
    """Compile a JMESPath expression into a function of a JSON value."""
    return _searcher(_parse(expr), expr)


def compile_predicate(expr: str) -> Callable[[Any], bool]:
    """Compile a JMESPath predicate: true unless the result is false, null, '', [] or {}."""
    search = compile_path(expr)

    def holds(value: Any) -> bool:
        result = search(value)
        return result is not None and result is not False and result != "" and result != [] and result != {}

    return holds


def mapping_expression(spec: Mapping[str, Any], path: tuple = ()) -> str:
    """The single JMESPath expression a `map:` block stands for (each leaf checked on the way)."""
    fields = [f"{json.dumps(name)}: {_value_expression(value, path + (name,))}" for name, value in spec.items()]
    return "{" + ", ".join(fields) + "}"


def _value_expression(value: Any, path: tuple) -> str:
    if isinstance(value, str):
        return f"({_checked(value, path)})"
    if not isinstance(value, Mapping):
        raise _mapping_error(f"expected a JMESPath string or an object, got {value!r}", path)
    if "each" in value:
        items = _checked(value["each"], path + ("each",))
        inner = mapping_expression(value.get("map") or {}, path + ("map",))
        return f"map(&{inner}, ({items}) || `[]`)"
    if "const" in value:
        return _literal(value["const"])
    if "value" in value:
        leaf = _checked(value["value"], path + ("value",))
        return f"not_null(({leaf}), {_literal(value.get('default'))})"
    return mapping_expression(value, path)


def _checked(expr: Any, path: tuple) -> str:
    try:
        _parse(expr)
    except ExtractError as exc:
        raise _mapping_error(exc.message, path) from None
    return expr


def _literal(value: Any) -> str:
    return "`" + json.dumps(value).replace("`", "\\`") + "`"


def _mapping_error(message: str, path: tuple) -> ExtractError:
    error = ExtractError(message)
    error.path = list(path)
    return error


def compile_mapping(spec: Mapping[str, Any]) -> Callable[[Any], dict]:
    """Compile a `map:` block into one function: record -> mapped dict."""
    expression = mapping_expression(spec)
    search = _searcher(_parse(expression), "map")

    def apply(record: Any) -> dict:
        return search(record)

    return apply


def compile_ast(node: Mapping[str, Any]) -> Callable[[Any], Any]:
    """A parsed JMESPath AST as nested closures (with `SyncFunctions`)."""
    return jmespath_compile.compile_ast(node, OPTIONS)


def compile_source(node: Mapping[str, Any]) -> Callable[[Any], Any]:
    """A parsed JMESPath AST as one generated Python function (with `SyncFunctions`)."""
    return jmespath_source.compile_source(node, OPTIONS)
