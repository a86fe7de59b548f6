"""JMESPath -> one generated Python function: the source writer behind `extract.compile_mapping`.

`compile_source` writes the parsed AST of an expression as the source of one Python function (a
whole `map:` becomes straight-line code building one dict, as `records.py` does for a schema),
with exactly the results and errors of jmespath's TreeInterpreter. A node type it does not know
becomes a closure from `engine.jmespath_compile` that the generated code calls. What a scope has
certainly computed (a field looked up, an identical pure subtree of the same value) is not
computed again there; what a branch that may not have run computed is forgotten after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
import jmespath

from engine.jmespath_compile import Evaluate, Node, _Compiler, _equals, _get

# Measured on the shipped cart maps (bench orders of ~1.25 KB): closures ~27 us an order, one
# generated function ~9 us (no call per node, no dict comprehension per object). A cart's
# list_orders record (key, watermark, filter and map fused): ~6.9 us, from ~8.0 measured the same
# day (min of runs), with an identical pure subtree computed once, fields kept after unconditional
# blocks, sum(a[].b) and map(&e, a) as loops in the function, to_number of a decimal text inline.

#: A function reading at least this many fields gets a second version reading them by subscript
#: (`record["id"]`: no method call per field), tried first (`_subscripted`).
SUBSCRIPT_FIELDS = 8
SUBSCRIPT_MISSES = 16           # records that lacked a key before the subscript version may be given up


def compile_source(node: Node, options: jmespath.Options, check: Any = None, root: Node | None = None) -> Evaluate:
    """What `compile_ast(node, options)` computes, as one generated Python function (plus one per `&expr`
    or projection body); same results, same errors.

    With `check` (a `records.FusedCheck`) and `root` (the `{...}` node of `node` that builds the
    record): the record's schema is checked where each of its objects is built, and a failure
    raises `records.Invalid`; the function then has `checked` set to the record type. Unless the
    root is planned and was built in the function itself (not by a closure), `check` is dropped."""
    plans = check.plan(root) if check is not None and root is not None else None
    safe, source = _generated(node, options, check if plans else None, plans or {}, subscript=False)
    if plans and id(root) not in source.built:
        return compile_source(node, options)
    function = safe
    if source.reads >= SUBSCRIPT_FIELDS:
        function = _subscripted(
            lambda: _generated(node, options, check if plans else None, plans or {}, subscript=True)[0], safe)
    if plans:
        function.checked = check.record_type
    return function


def _generated(node: Node, options: jmespath.Options, check: Any, plans: dict[int, Any],
               subscript: bool) -> tuple[Evaluate, _Source]:
    source = _Source(_Compiler(options), check, plans, subscript)
    name = source.define(node)
    namespace = {**(check.constants if check is not None else {}), **source.constants}
    exec(compile("\n\n".join(source.functions), "<jmespath>", "exec"), namespace)
    return namespace[name], source


def _subscripted(make_fast: Callable[[], Evaluate], safe: Evaluate) -> Evaluate:
    """`safe` (the generated function), tried first as `fast` (made by `make_fast` at the first
    call: a map that is loaded but never run costs no second compile): the same code reading a field of a
    dict by subscript (`record["id"]`, where `safe` calls `record.get("id")`), which answers what
    `safe` answers when every dict it reads holds every key it reads, and raises KeyError
    otherwise: then `safe` answers. Any other error `fast` raises, `safe` would raise too.

    Where records often lack a key the map reads (a cart that leaves a missing field out: a
    guest's company, a simple item's parent item), trying `fast` first would make each cost
    twice: once more than SUBSCRIPT_MISSES records have missed, and a quarter of those tried,
    only `safe` runs."""
    tries = misses = 0
    fast: Evaluate | None = None

    def evaluate(value: Any) -> Any:
        nonlocal tries, misses, fast
        if misses > SUBSCRIPT_MISSES and misses * 4 > tries:
            return safe(value)
        if fast is None:
            fast = make_fast()
        tries += 1
        try:
            return fast(value)
        except KeyError:
            misses += 1
            return safe(value)
    return evaluate


class _Source:
    """`_<type>(node, var, out, depth)` writes statements computing `node` of the value in `var`
    into `out` at `depth` and returns the name (or constant) holding the result."""

    def __init__(self, compiler: _Compiler, check: Any = None, plans: dict[int, Any] | None = None,
                 subscript: bool = False) -> None:
        self.compiler, self.library = compiler, compiler.functions
        self.subscript = subscript                     # fields read as `var[key]` (`_subscripted`)
        self.reads = 0                                 # fields read, in all
        self.check, self.plans = check, plans or {}     # a records.FusedCheck; {id of a `{...}` node: its schema}
        self.built: set[int] = set()                   # planned nodes built (and checked) in the function
        self.checked: set[str] = set()                 # names holding an object checked where it was built
        self.functions: list[str] = []
        self.constants: dict[str, Any] = {"_get": _get, "_call": self.library.call_function}
        self.count = 0
        self.fields: dict[tuple[str, str], str] = {}   # (var, key) -> name holding var.key, in scope
        self.present: set[str] = set()                 # names known not to be None, in scope
        self.known: dict[tuple[str, str], str] = {}    # (var, subtree) -> name holding its value, in scope

    @contextlib.contextmanager
    def block(self, *present: str) -> Iterator[None]:
        """A nested block: what it learns (looked-up fields, non-None names, computed subtrees) is
        forgotten after, since the code after it cannot tell whether the block ran."""
        saved = dict(self.fields), set(self.present), dict(self.known)
        self.present.update(present)
        try:
            yield
        finally:
            self.fields, self.present, self.known = saved

    def branch(self, conditional: bool, var: str) -> contextlib.AbstractContextManager:
        """The block of what is evaluated with `var` not None: a `block` when it is an `else:`
        branch; when `var` was already known present the code runs unconditionally, so what it
        learns (a field it looked up) stays known after."""
        return self.block(var) if conditional else contextlib.nullcontext()

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
        with self.block():                      # a function of its own: nothing of the caller is in scope
            self.fields, self.present, self.known = {}, set(), {}
            result = self.emit(node, var, out, 1)
        self.functions.append(f"def {name}({var}):\n" + "".join(out) + f"    return {result}\n")
        return name

    def emit(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """The name holding `node` of `var`; an identical reusable subtree of the same `var`
        already computed in scope (a key and a field both `to_string(id)`) is not computed again."""
        key = (var, repr(node)) if self.reusable(node) else None
        if key in self.known:
            return self.known[key]
        method = getattr(self, "_" + node["type"], None)
        if method is None or (node["type"] == "multi_select_dict" and self.compiler.interpreter._dict_cls is not dict):
            result = self.assign(out, depth, f"{self.constant(self.compiler.compile(node))}({var})")
        else:
            result = method(node, var, out, depth)
        if key is not None:
            self.known[key] = result
        return result

    def reusable(self, node: Node) -> bool:
        """Whether a second evaluation of `node` may be the first one's value: every JMESPath node is
        pure, so what matters is that the value is immutable (a shared list or dict would let a
        caller that changes one result change the other): a comparison, or a call of one of
        jmespath's own functions (not overridden) that answer a string, number, boolean or null."""
        if node["type"] == "comparator":
            return True
        if node["type"] != "function_expression" or node["value"] not in _SCALAR_FUNCTIONS:
            return False
        method = "_func_" + node["value"]
        return getattr(type(self.library), method, None) is getattr(jmespath.functions.Functions, method)

    def assign(self, out: list[str], depth: int, expression: str) -> str:
        name = self.fresh("x")
        self.line(out, depth, f"{name} = {expression}")
        return name

    def line(self, out: list[str], depth: int, text: str) -> None:
        out.append("    " * depth + text + "\n")

    def _field(self, node: Node, var: str, out: list[str], depth: int) -> str:
        key = repr(node["value"])
        if (var, key) in self.fields:
            return self.fields[var, key]
        self.reads += 1
        if (var, None) not in self.fields:      # is `var` a dict? asked once per block
            self.fields[var, None] = self.assign(out, depth, f"type({var}) is dict")
        is_dict = self.fields[var, None]        # a dict exactly: a subclass's `[]` may differ from `.get`
        read = f"{var}[{key}]" if self.subscript else f"{var}.get({key})"
        self.fields[var, key] = self.assign(out, depth, f"{read} if {is_dict} else _get({var}, {key})")
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
        values: dict[str, str] = {}
        with self.branch(inside > depth, var):
            for child in node["children"]:
                inner = child["children"][0] if child["type"] == "key_val_pair" else child
                value = self.emit(inner, var, out, inside)
                items.append(item(child, value))
                if child["type"] == "key_val_pair":
                    values[child["value"]] = value
            if id(node) in self.plans:          # the record's schema, on the values just computed
                out.extend(line + "\n" for line in self.check.lines(self.plans[id(node)], values, self.checked, inside))
                self.built.add(id(node))
                if inside == depth:             # never None: the object itself needs no check
                    self.checked.add(result)
        self.line(out, inside, f"{result} = {shape % ', '.join(items)}")
        return result

    def _comparator(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """`a == b` / `a != b`: two strings compare inline; anything else through jmespath's
        `_equals` (which tells 1 from true); an ordering comparison is a closure."""
        if node["value"] not in ("eq", "ne"):
            return self.assign(out, depth, f"{self.constant(self.compiler.compile(node))}({var})")
        left, right = [self.emit(child, var, out, depth) for child in node["children"]]
        negate = "not " if node["value"] == "ne" else ""
        strings = " and ".join(f"type({side}) is str" for side in (left, right)
                               if not isinstance(self.constants.get(side), str)) or "True"
        return self.assign(out, depth, f"{negate}({left} == {right} if {strings} "
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
        if spec is not None and name == "sum" and len(children) == 1 and children[0]["type"] == "projection":
            return self._sum_projection(node, var, out, depth)
        args = [self.emit(child, var, out, depth) for child in children]
        function = self.constant(spec["function"].__get__(self.library)) if spec is not None else None
        if function and name == "to_string" and len(args) == 1:
            (a,) = args
            return self.assign(out, depth, f"{a} if type({a}) is str else str({a}) if type({a}) is int else {function}({a})")
        if function and name == "to_number" and len(args) == 1:
            return self._to_number(args[0], function, out, depth)
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

    def _to_number(self, a: str, function: str, out: list[str], depth: int) -> str:
        """to_number(a): jmespath's int(), else float(), else null, with no call for a decimal text
        (the usual price): int() refuses every text containing '.', so such a text is float() or
        null ('1.5', ' 1.5 ', '1_0.5', '1.5e3', '١.٥' alike); any other text, and any other type, is
        jmespath's function."""
        result = self.fresh("x")
        self.line(out, depth, f"if type({a}) is str and '.' in {a}:")
        self.line(out, depth + 1, "try:")
        self.line(out, depth + 2, f"{result} = float({a})")
        self.line(out, depth + 1, "except ValueError:")
        self.line(out, depth + 2, f"{result} = None")
        self.line(out, depth, "else:")
        self.line(out, depth + 1, f"{result} = {a} if type({a}) is int or type({a}) is float else {function}({a})")
        return result

    def _map(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """map(&expr, items): a loop in the function itself (no call per item, no comprehension's
        own frame) appending each item's value, null too; anything but a list goes to jmespath."""
        expref, items = node["children"]
        found, result, element = self.emit(items, var, out, depth), self.fresh("x"), self.fresh("e")
        argument = self.constant(self.compiler.compile(expref))
        self.line(out, depth, f"if type({found}) is list:")
        self.line(out, depth + 1, f"{result} = []")
        self.line(out, depth + 1, f"for {element} in {found}:")
        with self.block():
            self.line(out, depth + 2, f"{result}.append({self.emit(expref['children'][0], element, out, depth + 2)})")
        self.line(out, depth, "else:")
        self.line(out, depth + 1, f"{result} = _call('map', [{argument}({var}), {found}])")
        return result

    def _sum_projection(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """sum(items[].expr), sum(items[*].expr): one loop adding up what each item gives, with no
        flattened copy, no list of projected values checked again, no call per item. An item that is
        a list (which `[]` flattens) or a value that is neither a number nor null stops the loop, and
        the general code computes the whole again (every node is pure): same values, same errors,
        in the same order, as the sum of the projection."""
        projection = node["children"][0]
        base, each = projection["children"]
        flatten = base["type"] == "flatten"
        found = self.emit(base["children"][0] if flatten else base, var, out, depth)
        result, values, element = self.fresh("x"), self.fresh("x"), self.fresh("e")
        self.line(out, depth, f"{result} = None")
        self.line(out, depth, f"if type({found}) is list:")
        self.line(out, depth + 1, f"{values} = []")
        self.line(out, depth + 1, f"for {element} in {found}:")
        if flatten:
            self.line(out, depth + 2, f"if isinstance({element}, list):")
            self.line(out, depth + 3, "break")
        with self.block():
            value = self.emit(each, element, out, depth + 2)
        self.line(out, depth + 2, f"if type({value}) is int or type({value}) is float:")
        self.line(out, depth + 3, f"{values}.append({value})")
        self.line(out, depth + 2, f"elif {value} is not None:")
        self.line(out, depth + 3, "break")
        self.line(out, depth + 1, "else:")
        self.line(out, depth + 2, f"{result} = sum({values})")
        self.line(out, depth, f"if {result} is None:")
        with self.block():
            self.line(out, depth + 1, f"{result} = _call('sum', [{self._projection(projection, var, out, depth + 1)}])")
        return result

    def _join_list(self, node: Node, var: str, out: list[str], depth: int) -> str:
        """join(sep, [a, b, ...]): no list to build when every item is a string."""
        separator, items = node["children"]
        sep, result = self.emit(separator, var, out, depth), self.fresh("x")
        inside = depth if var in self.present else depth + 1
        if inside > depth:
            self.line(out, depth, f"if {var} is None:")
            self.line(out, depth + 1, f"{result} = _call('join', [{sep}, None])")
            self.line(out, depth, "else:")
        with self.branch(inside > depth, var):
            parts = [self.emit(child, var, out, inside) for child in items["children"]]
        checks = [part for part in [sep, *parts] if not isinstance(self.constants.get(part), str)]
        strings = " and ".join(f"type({part}) is str" for part in checks) or "True"
        listed = ", ".join(parts)
        self.line(out, inside, f"{result} = {sep}.join(({listed},)) if {strings} else _call('join', [{sep}, [{listed}]])")
        return result


#: jmespath functions whose value is a string, number, boolean or null, never a list or dict
_SCALAR_FUNCTIONS = frozenset({"abs", "avg", "ceil", "contains", "ends_with", "floor", "join", "length", "max",
                               "min", "starts_with", "sum", "to_number", "to_string", "type"})


def _falsy(name: str) -> str:
    """`_is_false(name)` inline. Every JMESPath-false value is false to Python too, so a true
    value (most of them) is decided by `not name` alone; 0 goes on to the comparisons."""
    return f"not {name} and ({name} == '' or {name} == [] or {name} == {{}} or {name} is None or {name} is False)"
