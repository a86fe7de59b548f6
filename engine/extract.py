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

import functools
import json
import operator
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath import functions

from engine import jmespath_compile, jmespath_source, zones
from engine.errors import ExtractError


class SyncFunctions(functions.Functions):
    """Functions beyond JMESPath's built-ins that real cart data keeps needing. `zone` is what
    `time_zone()` answers: the operation's `time_zone` for this run (see `options`)."""

    def __init__(self, zone: str = zones.UTC) -> None:
        super().__init__()
        self.zone = zone

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


    @functions.signature({"types": ["string", "number", "null"], "variadic": True})
    def _func_to_iso8601(self, value: Any, *zone: Any) -> str | None:
        """to_iso8601(t) / to_iso8601(t, zone): ISO-8601 UTC ('2026-01-05T08:07:00Z') from ISO-8601
        with or without zone, RFC 2822 ('Mon, 05 Jan 2026 08:07:00 +0000') or Unix seconds; a
        zone-less time is read in the IANA `zone` (default UTC; DST rules in `engine.zones`);
        null when `t` is none of these."""
        name = _zone_argument("to_iso8601", zone, optional=True)
        moment = zones.to_utc(value, name)
        return None if moment is None else zones.iso_utc(moment)

    @functions.signature({"types": ["string", "number", "null"]}, {"types": ["string"]})
    def _func_to_local(self, value: Any, zone: str) -> str | None:
        """to_local(t, zone): the wall clock of IANA `zone` at instant `t`, zone-less
        ('2026-01-05T17:07:00'); a zone-less `t` is UTC; null when `t` is not a time."""
        return zones.to_local(value, _zone_argument("to_local", (zone,)))

    @functions.signature()
    def _func_time_zone(self) -> str:
        """time_zone(): the operation's `time_zone` (rendered from config for this run), or 'UTC'."""
        return self.zone

    @functions.signature({"types": ["number", "null"]}, {"types": ["number", "null"]})
    def _func_add(self, a: Any, b: Any) -> Any:
        """add(a, b): a + b; null when either is null (exact decimal arithmetic, see `_arithmetic`)."""
        return _arithmetic(a, b, operator.add)

    @functions.signature({"types": ["number", "null"]}, {"types": ["number", "null"]})
    def _func_subtract(self, a: Any, b: Any) -> Any:
        """subtract(a, b): a - b; null when either is null."""
        return _arithmetic(a, b, operator.sub)

    @functions.signature({"types": ["number", "null"]}, {"types": ["number", "null"]})
    def _func_multiply(self, a: Any, b: Any) -> Any:
        """multiply(a, b): a * b; null when either is null."""
        return _arithmetic(a, b, operator.mul)

    @functions.signature({"types": ["number", "null"]}, {"types": ["number", "null"]})
    def _func_divide(self, a: Any, b: Any) -> Any:
        """divide(a, b): a / b; null when either is null or b is 0."""
        return None if b == 0 else _arithmetic(a, b, operator.truediv)

    @functions.signature({"types": ["number", "null"]}, {"types": ["number"]})
    def _func_round(self, value: Any, digits: Any) -> Any:
        """round(n, digits): n rounded half away from zero to `digits` decimals (an integer when
        digits <= 0); null stays null."""
        if value is None:
            return None
        if digits != int(digits):
            raise jmespath_errors.JMESPathTypeError("round", digits, "number (not a whole one)", ["integer"])
        rounded = _decimal(value).quantize(Decimal(1).scaleb(-int(digits)), rounding=ROUND_HALF_UP)
        return int(rounded) if digits <= 0 else float(rounded)


def _zone_argument(function: str, given: tuple, optional: bool = False) -> str:
    """The zone argument of a time function: one IANA name; UTC when optional and absent."""
    if len(given) > 1:
        raise jmespath_errors.ArityError(2, len(given) + 1, function)
    if not given and optional:
        return zones.UTC
    name = given[0]
    if not isinstance(name, str):
        raise jmespath_errors.JMESPathTypeError(function, name, _TYPE_NAMES.get(type(name), "object"), ["string"])
    try:
        zones.zone(name)
    except zones.UnknownZone as exc:
        raise jmespath_errors.JMESPathError(f"{function}(): {exc}") from None
    return name


_TYPE_NAMES = {type(None): "null", bool: "boolean", int: "number", float: "number", list: "array", dict: "object"}


def _decimal(value: int | float) -> Decimal:
    """A number as the decimal it is written as (0.1 -> Decimal('0.1'), not 0.1000000000000000055...)."""
    return Decimal(value) if type(value) is int else Decimal(repr(value))


def _arithmetic(a: Any, b: Any, apply: Callable[[Decimal, Decimal], Decimal]) -> Any:
    """`apply` on the decimals `a` and `b` as written, so add(0.1, 0.2) is 0.3: an integer when
    both are integers and the result is whole, else a float; null when either is null."""
    if a is None or b is None:
        return None
    result = apply(_decimal(a), _decimal(b))
    if type(a) is int and type(b) is int and result == result.to_integral_value():
        return int(result)
    return float(result)


@functools.lru_cache(maxsize=64)
def options(zone: str = zones.UTC) -> jmespath.Options:
    """The jmespath options whose functions see `zone` as `time_zone()` (one set per zone)."""
    return jmespath.Options(custom_functions=SyncFunctions(zone))


OPTIONS = options()


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


def _searcher(parsed: Any, expr: str, zone: str = zones.UTC) -> Callable[[Any], Any]:
    evaluate = jmespath_source.compile_source(parsed.parsed, options(zone))

    def search(value: Any) -> Any:
        try:
            return evaluate(value)
        except jmespath_errors.JMESPathError as exc:
            raise ExtractError(f"JMESPath {expr!r} failed: {_describe(exc)}") from None

    return search


def compile_path(expr: str, zone: str = zones.UTC) -> Callable[[Any], Any]:
    """Compile a JMESPath expression into a function of a JSON value (`time_zone()` is `zone`)."""
    return _searcher(_parse(expr), expr, zone)


def compile_predicate(expr: str, zone: str = zones.UTC) -> Callable[[Any], bool]:
    """Compile a JMESPath predicate: true unless the result is false, null, '', [] or {}."""
    search = compile_path(expr, zone)

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


def compile_mapping(spec: Mapping[str, Any], zone: str = zones.UTC) -> Callable[[Any], dict]:
    """Compile a `map:` block into one function: record -> mapped dict (`time_zone()` is `zone`)."""
    expression = mapping_expression(spec)
    search = _searcher(_parse(expression), "map", zone)

    def apply(record: Any) -> dict:
        return search(record)

    return apply


def compile_record(parts: Sequence[str | None], spec: Mapping[str, Any], zone: str = zones.UTC,
                   guard: str | None = None, check: Any = None) -> Callable[[Any], list]:
    """Several expressions of one record and a `map:` block as ONE generated function: the
    record -> [each part's value (null for a missing part), the mapped dict]; with `guard` (a
    filter), the map is only evaluated when the guard holds (else its place holds the guard's
    false value). A field the parts and the map both read is read once. Unlike `compile_path`,
    a failure is raised as it comes (a JMESPathError, an ExtractError): callers that get one
    take the step-by-step path. With `check` (a `records.FusedCheck`), the mapped dict is
    checked against its record type as it is built (`records.Invalid` when it fails), and the
    function's `checked` names the record type (absent: the check could not be fused)."""
    mapped = mapping_expression(spec)
    listed = [f"({part})" if part else "`null`" for part in parts] + [f"({guard}) && {mapped}" if guard else mapped]
    node = _parse("[" + ", ".join(listed) + "]").parsed
    root = node["children"][-1]
    if guard:
        root = root["children"][1] if root["type"] == "and_expression" else None
    return jmespath_source.compile_source(node, options(zone), check, root)


def compile_ast(node: Mapping[str, Any]) -> Callable[[Any], Any]:
    """A parsed JMESPath AST as nested closures (with `SyncFunctions`)."""
    return jmespath_compile.compile_ast(node, OPTIONS)


def compile_source(node: Mapping[str, Any]) -> Callable[[Any], Any]:
    """A parsed JMESPath AST as one generated Python function (with `SyncFunctions`)."""
    return jmespath_source.compile_source(node, OPTIONS)
