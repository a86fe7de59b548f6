"""JMESPath -> Python: the parsed AST of an expression as Python functions, with exactly the
results and errors of jmespath's TreeInterpreter.

`compile_source` writes the AST as the source of one Python function (a whole `map:` becomes
straight-line code building one dict, as `records.py` does for a schema); `compile_ast` turns it
into nested Python closures. A chain of field names is a few dict lookups, a function call with
the usual argument types skips jmespath's per-call signature check. A node type the source
writer does not know becomes a closure it calls; one the closure compiler does not know is
handed to the interpreter. Both take the `jmespath.Options` whose functions expressions call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
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


# -- the AST as Python source -------------------------------------------------------------------
# Measured on the shipped cart maps (bench orders of ~1.25 KB): closures ~27 us an order, one
# generated function ~9 us (no call per node, no dict comprehension per object).

def compile_source(node: Node, options: jmespath.Options) -> Evaluate:
    """What `compile_ast(node, options)` computes, as one generated Python function (plus one per `&expr`
    or projection body); same results, same errors."""
    source = _Source(_Compiler(options))
    name = source.define(node)
    namespace = dict(source.constants)
    exec(compile("\n\n".join(source.functions), "<jmespath>", "exec"), namespace)
    return namespace[name]


class _Source:
    """`_<type>(node, var, out, depth)` writes statements computing `node` of the value in `var`
    into `out` at `depth` and returns the name (or constant) holding the result."""

    def __init__(self, compiler: _Compiler) -> None:
        self.compiler, self.library = compiler, compiler.functions
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {"_get": _get, "_call": self.library.call_function,
                                          "_text_number": _text_number}
        self.count = 0
        self.fields: dict[tuple[str, str], str] = {}   # (var, key) -> name holding var.key, in scope
        self.present: set[str] = set()                 # names known not to be None, in scope

    @contextlib.contextmanager
    def block(self, *present: str) -> Iterator[None]:
        """A nested block: what it learns (looked-up fields, non-None names) is forgotten after."""
        fields, known = dict(self.fields), set(self.present)
        self.present.update(present)
        try:
            yield
        finally:
            self.fields, self.present = fields, known

    def fresh(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, value: Any) -> str:
        name = self.fresh("c")
        self.constants[name] = value
        return name

    def define(self, node: Node) -> str:
        """A new top-level function `f<n>(value)` evaluating `node`; its name."""
        name, var, out = self.fresh("f"), self.fresh("v"), []
        result = self.emit(node, var, out, 1)
        self.functions.append(f"def {name}({var}):\n" + "".join(out) + f"    return {result}\n")
        return name

    def emit(self, node: Node, var: str, out: list[str], depth: int) -> str:
        method = getattr(self, "_" + node["type"], None)
        if method is None or (node["type"] == "multi_select_dict" and self.compiler.interpreter._dict_cls is not dict):
            return self.assign(out, depth, f"{self.constant(self.compiler.compile(node))}({var})")
        return method(node, var, out, depth)

    def assign(self, out: list[str], depth: int, expression: str) -> str:
        name = self.fresh("x")
        self.line(out, depth, f"{name} = {expression}")
        return name

    def line(self, out: list[str], depth: int, text: str) -> None:
        out.append("    " * depth + text + "\n")

    def _field(self, node: Node, var: str, out: list[str], depth: int) -> str:
        key = repr(node["value"])
        if (var, key) not in self.fields:
            self.fields[var, key] = self.assign(out, depth, f"{var}.get({key}) if type({var}) is dict else _get({var}, {key})")
        return self.fields[var, key]

    def _subexpression(self, node: Node, var: str, out: list[str], depth: int) -> str:
        for child in node["children"]:
            var = self.emit(child, var, out, depth)
        return var

    _index_expression = _pipe = _subexpression

    def _identity(self, node: Node, var: str, out: list[str], depth: int) -> str:
        return var

    _current = _identity

    def _literal(self, node: Node, var: str, out: list[str], depth: int) -> str:
        return self.constant(node["value"])

    def _index(self, node: Node, var: str, out: list[str], depth: int) -> str:
        i = int(node["value"])
        return self.assign(out, depth, f"({var}[{i}] if -len({var}) <= {i} < len({var}) else None) "
                                        f"if isinstance({var}, list) else None")

    def _multi_select_dict(self, node: Node, var: str, out: list[str], depth: int) -> str:
        return self._select(node, var, out, depth, "{%s}", lambda pair, value: f"{pair['value']!r}: {value}")

    def _multi_select_list(self, node: Node, var: str, out: list[str], depth: int) -> str:
        return self._select(node, var, out, depth, "[%s]", lambda child, value: value)

    def _select(self, node: Node, var: str, out: list[str], depth: int, shape: str, item: Callable) -> str:
        result, items = self.fresh("x"), []
        inside = depth if var in self.present else depth + 1
        if inside > depth:
            self.line(out, depth, f"if {var} is None:")
            self.line(out, depth + 1, f"{result} = None")
            self.line(out, depth, "else:")
        with self.block(var):
            for child in node["children"]:
                inner = child["children"][0] if child["type"] == "key_val_pair" else child
                items.append(item(child, self.emit(inner, var, out, inside)))
        self.line(out, inside, f"{result} = {shape % ', '.join(items)}")
        return result

    def _comparator(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """`a == b` / `a != b`: two strings compare inline; anything else through jmespath's
        `_equals` (which tells 1 from true); an ordering comparison is a closure."""
        if node["value"] not in ("eq", "ne"):
            return self.assign(out, depth, f"{self.constant(self.compiler.compile(node))}({var})")
        left, right = [self.emit(child, var, out, depth) for child in node["children"]]
        negate = "not " if node["value"] == "ne" else ""
        return self.assign(out, depth, f"{negate}({left} == {right} if type({left}) is str and type({right}) is str "
                                        f"else {self.constant(_equals)}({left}, {right}))")

    def _or_expression(self, node: Node, var: str, out: list[str], depth: int) -> str:
        return self._logic(node, var, out, depth, "")

    def _and_expression(self, node: Node, var: str, out: list[str], depth: int) -> str:
        return self._logic(node, var, out, depth, "not ")

    def _logic(self, node: Node, var: str, out: list[str], depth: int, negate: str) -> str:
        left, right = node["children"]
        result = self.assign(out, depth, self.emit(left, var, out, depth))
        self.line(out, depth, f"if {negate}({_falsy(result)}):")
        with self.block():
            self.line(out, depth + 1, f"{result} = {self.emit(right, var, out, depth + 1)}")
        return result

    def _projection(self, node: Node, var: str, out: list[str], depth: int) -> str:
        base, each = node["children"]
        found, function = self.emit(base, var, out, depth), self.define(each)
        element, value = self.fresh("e"), self.fresh("r")
        return self.assign(out, depth, f"[{value} for {element} in {found} if ({value} := {function}({element})) "
                                        f"is not None] if isinstance({found}, list) else None")

    def _flatten(self, node: Node, var: str, out: list[str], depth: int) -> str:
        found, result, element = self.emit(node["children"][0], var, out, depth), self.fresh("x"), self.fresh("e")
        self.line(out, depth, f"{result} = None if not isinstance({found}, list) else []")
        self.line(out, depth, f"for {element} in {found} if {result} is not None else ():")
        self.line(out, depth + 1, f"{result}.extend({element}) if isinstance({element}, list) else {result}.append({element})")
        return result

    def _function_expression(self, node: Node, var: str, out: list[str], depth: int) -> str:
        name, children = node["value"], node["children"]
        spec = self.library.FUNCTION_TABLE.get(name)
        if spec is not None and name == "map" and len(children) == 2 and children[0]["type"] == "expref":
            return self._map(node, var, out, depth)
        if spec is not None and name == "join" and len(children) == 2 and children[1]["type"] == "multi_select_list":
            return self._join_list(node, var, out, depth)
        args = [self.emit(child, var, out, depth) for child in children]
        function = self.constant(spec["function"].__get__(self.library)) if spec is not None else None
        if function and name == "to_string" and len(args) == 1:
            (a,) = args
            return self.assign(out, depth, f"{a} if type({a}) is str else str({a}) if type({a}) is int else {function}({a})")
        if function and name == "to_number" and len(args) == 1:
            (a,) = args
            return self.assign(out, depth, f"{a} if type({a}) is int or type({a}) is float else "
                                            f"_text_number({a}, {function}) if type({a}) is str else {function}({a})")
        if function and name == "not_null" and len(args) == 2:
            return self.assign(out, depth, f"{function}({args[0]}, {args[1]})")
        if function and name == "join" and len(args) == 2:
            sep, items = args
            return self.assign(out, depth, f"{sep}.join({items}) if type({sep}) is str and type({items}) is list and "
                                            f"all(type(i) is str for i in {items}) else _call('join', [{sep}, {items}])")
        if function and name == "sum" and len(args) == 1:
            (items,) = args
            return self.assign(out, depth, f"sum({items}) if type({items}) is list and all(type(i) is int or "
                                            f"type(i) is float for i in {items}) else _call('sum', [{items}])")
        return self.assign(out, depth, f"_call({name!r}, [{', '.join(args)}])")

    def _map(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """map(&expr, items): the body is its own function; anything but a list goes to jmespath."""
        expref, items = node["children"]
        each = self.define(expref["children"][0])
        found, element = self.emit(items, var, out, depth), self.fresh("e")
        argument = self.constant(self.compiler.compile(expref))
        return self.assign(out, depth, f"[{each}({element}) for {element} in {found}] if type({found}) is list "
                                        f"else _call('map', [{argument}({var}), {found}])")

    def _join_list(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """join(sep, [a, b, ...]): no list to build when every item is a string."""
        separator, items = node["children"]
        sep, result = self.emit(separator, var, out, depth), self.fresh("x")
        inside = depth if var in self.present else depth + 1
        if inside > depth:
            self.line(out, depth, f"if {var} is None:")
            self.line(out, depth + 1, f"{result} = _call('join', [{sep}, None])")
            self.line(out, depth, "else:")
        with self.block(var):
            parts = [self.emit(child, var, out, inside) for child in items["children"]]
        checks = [part for part in [sep, *parts] if not isinstance(self.constants.get(part), str)]
        strings = " and ".join(f"type({part}) is str" for part in checks) or "True"
        listed = ", ".join(parts)
        self.line(out, inside, f"{result} = {sep}.join(({listed},)) if {strings} else _call('join', [{sep}, [{listed}]])")
        return result


def _text_number(text: str, to_number: Callable[[str], Any]) -> Any:
    """jmespath's to_number of a string (int(), else float(), else null) without paying for
    int()'s ValueError on a decimal: int() refuses every text containing '.'."""
    if "." not in text:
        return to_number(text)
    try:
        return float(text)
    except ValueError:
        return None


def _falsy(name: str) -> str:
    """`_is_false(name)` inline."""
    return f"{name} == '' or {name} == [] or {name} == {{}} or {name} is None or {name} is False"
