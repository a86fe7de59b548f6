"""JMESPath: reading answers. Every expression is compiled once, at load.

A `map:` block (see docs/spec-language.md, "Mappings") compiles into ONE JMESPath
multiselect-hash expression, so mapping a record costs one evaluation, not one per field:

    {order_id: to_string(id), lines: {each: line_items, map: {sku: sku}}}
    -> {"order_id": (to_string(id)), "lines": map(&{"sku": (sku)}, (line_items) || `[]`)}

Evaluation does not walk the AST with jmespath's TreeInterpreter: `_Compiler` turns the parsed
AST into nested Python closures once (a chain of field names becomes a few dict lookups, a
function call with the usual argument types skips jmespath's per-call signature check), with
exactly the interpreter's results and errors; a node type it does not know is handed to the
interpreter. Besides the JMESPath built-ins, expressions may call the functions of
`SyncFunctions`.
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
from jmespath import visitor

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
    evaluate = compile_ast(parsed.parsed)

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


# -- the AST compiler ---------------------------------------------------------------------------

Node = Mapping[str, Any]
Evaluate = Callable[[Any], Any]
_FUNCTIONS = OPTIONS.custom_functions
_INTERPRETER = visitor.TreeInterpreter(OPTIONS)
_equals, _is_comparable, _is_actual_number = (
    visitor._equals, visitor._is_comparable, visitor._is_actual_number)


def compile_ast(node: Node) -> Evaluate:
    """A Python function computing what `TreeInterpreter(OPTIONS).visit(node, value)` does."""
    return _Compiler().compile(node)


def _is_false(value: Any) -> bool:
    """JMESPath falsiness, spelled as the interpreter spells it."""
    return value == "" or value == [] or value == {} or value is None or value is False


def _get(value: Any, key: str) -> Any:
    try:
        return value.get(key)
    except AttributeError:
        return None


class _Expref:
    """What a function receives for `&expr`: a jmespath `_Expression` whose visit is compiled."""

    def __init__(self, evaluate: Evaluate) -> None:
        self.visit = lambda node, value: evaluate(value)


class _Compiler:
    """One `_node_<type>` method per AST node type; each returns a function of the value."""

    def compile(self, node: Node) -> Evaluate:
        method = getattr(self, "_node_" + node["type"], None)
        if method is None:
            return lambda value: _INTERPRETER.visit(node, value)
        return method(node)

    def _children(self, node: Node) -> list[Evaluate]:
        return [self.compile(child) for child in node["children"]]

    def _node_field(self, node: Node) -> Evaluate:
        key = node["value"]

        def field(value: Any) -> Any:
            return value.get(key) if type(value) is dict else _get(value, key)

        return field

    def _node_subexpression(self, node: Node) -> Evaluate:
        children = node["children"]
        if all(child["type"] == "field" for child in children):
            return _field_chain([child["value"] for child in children])
        return _sequence(self._children(node))

    _node_index_expression = _node_pipe = _node_subexpression

    def _node_identity(self, node: Node) -> Evaluate:
        return lambda value: value

    _node_current = _node_identity

    def _node_literal(self, node: Node) -> Evaluate:
        literal = node["value"]
        return lambda value: literal

    def _node_index(self, node: Node) -> Evaluate:
        index = node["value"]

        def at(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[index]
            except IndexError:
                return None

        return at

    def _node_slice(self, node: Node) -> Evaluate:
        part = slice(*node["children"])
        return lambda value: value[part] if isinstance(value, list) else None

    def _node_key_val_pair(self, node: Node) -> Evaluate:
        return self.compile(node["children"][0])

    def _node_multi_select_dict(self, node: Node) -> Evaluate:
        pairs = tuple((child["value"], self.compile(child)) for child in node["children"])
        make = _INTERPRETER._dict_cls

        def select(value: Any) -> Any:
            if value is None:
                return None
            if make is dict:
                return {key: evaluate(value) for key, evaluate in pairs}
            return make((key, evaluate(value)) for key, evaluate in pairs)

        return select

    def _node_multi_select_list(self, node: Node) -> Evaluate:
        children = tuple(self._children(node))
        return lambda value: None if value is None else [evaluate(value) for evaluate in children]

    def _node_or_expression(self, node: Node) -> Evaluate:
        left, right = self._children(node)

        def either(value: Any) -> Any:
            matched = left(value)
            return right(value) if _is_false(matched) else matched

        return either

    def _node_and_expression(self, node: Node) -> Evaluate:
        left, right = self._children(node)

        def both(value: Any) -> Any:
            matched = left(value)
            return matched if _is_false(matched) else right(value)

        return both

    def _node_not_expression(self, node: Node) -> Evaluate:
        (inner,) = self._children(node)

        def negate(value: Any) -> Any:
            result = inner(value)
            if _is_actual_number(result) and result == 0:
                return False
            return not result

        return negate

    def _node_comparator(self, node: Node) -> Evaluate:
        left, right = self._children(node)
        compare = visitor.TreeInterpreter.COMPARATOR_FUNC[node["value"]]
        if node["value"] in visitor.TreeInterpreter._EQUALITY_OPS:
            return lambda value: compare(left(value), right(value))

        def ordered(value: Any) -> Any:
            a, b = left(value), right(value)
            if not (_is_comparable(a) and _is_comparable(b)):
                return None
            return compare(a, b)

        return ordered

    def _node_projection(self, node: Node) -> Evaluate:
        base, each = self._children(node)

        def project(value: Any) -> Any:
            found = base(value)
            if not isinstance(found, list):
                return None
            return [result for element in found if (result := each(element)) is not None]

        return project

    def _node_value_projection(self, node: Node) -> Evaluate:
        base, each = self._children(node)

        def project(value: Any) -> Any:
            try:
                found = base(value).values()
            except AttributeError:
                return None
            return [result for element in found if (result := each(element)) is not None]

        return project

    def _node_filter_projection(self, node: Node) -> Evaluate:
        base, each, condition = self._children(node)

        def project(value: Any) -> Any:
            found = base(value)
            if not isinstance(found, list):
                return None
            return [result for element in found
                    if not _is_false(condition(element)) and (result := each(element)) is not None]

        return project

    def _node_flatten(self, node: Node) -> Evaluate:
        (base,) = self._children(node)

        def flatten(value: Any) -> Any:
            found = base(value)
            if not isinstance(found, list):
                return None
            merged: list = []
            for element in found:
                if isinstance(element, list):
                    merged.extend(element)
                else:
                    merged.append(element)
            return merged

        return flatten

    def _node_expref(self, node: Node) -> Evaluate:
        expression = visitor._Expression(node["children"][0], _Expref(self.compile(node["children"][0])))
        return lambda value: expression

    def _node_function_expression(self, node: Node) -> Evaluate:
        name, args = node["value"], self._children(node)
        fast = _FAST_FUNCTIONS.get(name)
        spec = _FUNCTIONS.FUNCTION_TABLE.get(name)
        if fast is not None and spec is not None and len(args) == fast[0]:
            return fast[1](self, node, args, spec)
        call = _FUNCTIONS.call_function
        return lambda value: call(name, [evaluate(value) for evaluate in args])


def _sequence(steps: list[Evaluate]) -> Evaluate:
    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def _field_chain(keys: list[str]) -> Evaluate:
    """`a.b.c`: dict lookups while the values are dicts, `_get` (interpreter rules) otherwise."""
    if len(keys) == 2:
        first, second = keys

        def two(value: Any) -> Any:
            value = value.get(first) if type(value) is dict else _get(value, first)
            return value.get(second) if type(value) is dict else _get(value, second)

        return two

    def many(value: Any) -> Any:
        for key in keys:
            value = value.get(key) if type(value) is dict else _get(value, key)
        return value

    return many


# Functions evaluated without jmespath's per-call signature check when their arguments have the
# usual types (checked with `type(x) is ...`, as jmespath checks type names); any other argument
# goes through `call_function`, which type-checks and raises exactly as the interpreter does.
# name -> (arity, builder(compiler, node, args, table entry) -> Evaluate)

def _untyped(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    """A function whose signature checks nothing but arity (to_string, to_number, not_null, ...)."""
    function = spec["function"].__get__(_FUNCTIONS)
    if len(args) == 1:
        (only,) = args
        return lambda value: function(only(value))
    return lambda value: function(*[evaluate(value) for evaluate in args])


def _to_string(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    (arg,) = args
    function = spec["function"].__get__(_FUNCTIONS)

    def to_string(value: Any) -> Any:
        found = arg(value)
        if type(found) is str:
            return found
        return str(found) if type(found) is int else function(found)     # json.dumps(int) == str(int)

    return to_string


def _join(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    separator, items = args
    name, call = node["value"], _FUNCTIONS.call_function

    def join(value: Any) -> Any:
        sep, found = separator(value), items(value)
        if type(sep) is str and type(found) is list and all(type(item) is str for item in found):
            return sep.join(found)
        return call(name, [sep, found])

    return join


def _sum(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    (items,) = args
    name, call = node["value"], _FUNCTIONS.call_function

    def total(value: Any) -> Any:
        found = items(value)
        if type(found) is list and all(type(item) is int or type(item) is float for item in found):
            return sum(found)
        return call(name, [found])

    return total


def _map(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    expref, items = node["children"]
    name, call, argument = node["value"], _FUNCTIONS.call_function, args[0]
    if expref["type"] != "expref":
        items_of = args[1]
        return lambda value: call(name, [argument(value), items_of(value)])
    each, items_of = compiler.compile(expref["children"][0]), args[1]

    def mapped(value: Any) -> Any:
        found = items_of(value)
        if type(found) is list:
            return [each(element) for element in found]
        return call(name, [argument(value), found])

    return mapped


_FAST_FUNCTIONS: dict[str, tuple[int, Callable[..., Evaluate]]] = {
    "to_string": (1, _to_string),
    "to_number": (1, _untyped),
    "not_null": (2, _untyped),
    "join": (2, _join),
    "sum": (1, _sum),
    "map": (2, _map),
}
