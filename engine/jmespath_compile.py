"""JMESPath -> Python: the parsed AST of an expression as Python functions, with exactly the
results and errors of jmespath's TreeInterpreter.

`compile_ast` turns the AST into nested Python closures; `engine.jmespath_source` writes it as
the source of one function instead and falls back to these closures for node types it does not
know. A chain of field names is a few dict lookups, a function call with the usual argument
types skips jmespath's per-call signature check, and a node type the closure compiler does not
know is handed to the interpreter. Both take the `jmespath.Options` whose functions expressions
call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jmespath
from jmespath import functions
from jmespath import visitor

_BUILTINS = functions.Functions()

# -- the AST compiler ---------------------------------------------------------------------------

Node = Mapping[str, Any]
Evaluate = Callable[[Any], Any]
_equals, _is_comparable, _is_actual_number = (
    visitor._equals, visitor._is_comparable, visitor._is_actual_number)


def compile_ast(node: Node, options: jmespath.Options) -> Evaluate:
    """A Python function computing what `TreeInterpreter(options).visit(node, value)` does."""
    return _Compiler(options).compile(node)


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

    def __init__(self, options: jmespath.Options) -> None:
        self.functions = options.custom_functions or _BUILTINS
        self.interpreter = visitor.TreeInterpreter(options)

    def compile(self, node: Node) -> Evaluate:
        method = getattr(self, "_node_" + node["type"], None)
        if method is None:
            interpreter = self.interpreter
            return lambda value: interpreter.visit(node, value)
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
        make = self.interpreter._dict_cls

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
        spec = self.functions.FUNCTION_TABLE.get(name)
        if fast is not None and spec is not None and len(args) == fast[0]:
            return fast[1](self, node, args, spec)
        call = self.functions.call_function
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
    function = spec["function"].__get__(compiler.functions)
    if len(args) == 1:
        (only,) = args
        return lambda value: function(only(value))
    return lambda value: function(*[evaluate(value) for evaluate in args])


def _to_string(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    (arg,) = args
    function = spec["function"].__get__(compiler.functions)

    def to_string(value: Any) -> Any:
        found = arg(value)
        if type(found) is str:
            return found
        return str(found) if type(found) is int else function(found)     # json.dumps(int) == str(int)

    return to_string


def _join(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    separator, items = args
    name, call = node["value"], compiler.functions.call_function

    def join(value: Any) -> Any:
        sep, found = separator(value), items(value)
        if type(sep) is str and type(found) is list and all(type(item) is str for item in found):
            return sep.join(found)
        return call(name, [sep, found])

    return join


def _sum(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    (items,) = args
    name, call = node["value"], compiler.functions.call_function

    def total(value: Any) -> Any:
        found = items(value)
        if type(found) is list and all(type(item) is int or type(item) is float for item in found):
            return sum(found)
        return call(name, [found])

    return total


def _map(compiler: _Compiler, node: Node, args: list[Evaluate], spec: Mapping) -> Evaluate:
    expref, items = node["children"]
    name, call, argument = node["value"], compiler.functions.call_function, args[0]
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
