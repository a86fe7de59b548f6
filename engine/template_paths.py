"""What a template reads of its variables, from Jinja's AST, for lint: the attribute paths
(`order.ship_to.city`) it is certain to read (`attribute_paths`), and the list a `for_each` loops
over when it is exactly one path (`loop_path`). Nothing here renders; both are cached by source
text, as lint meets the same templates in spec after spec."""

from __future__ import annotations

import functools
from typing import Any

import jinja2
import jinja2.nodes

from engine.template import ENV


#: A step into a list in an `attribute_paths` path: an index (`lines[0]`) or a loop over it.
ITEM = -1
_GUARDS = frozenset({"default", "d"})                 # filters that catch an undefined value
_GUARD_TESTS = frozenset({"defined", "undefined"})
AttributePath = tuple[str, tuple[str | int, ...], int]


@functools.lru_cache(maxsize=4096)
def attribute_paths(source: str) -> tuple[AttributePath, ...]:
    """The fields a template reads outright: `(variable, ("ship_to", "city"), line)` for
    `order.ship_to.city` (or `order["ship_to"]["city"]`); `ITEM` steps into a list, through an
    index or a `{% for line in order.lines %}` loop variable.

    Left out, so that what is reported is certain to fail: a path under `default` or an
    `is defined` test, a method call's name (`order.get`), and any variable the template assigns itself other than a loop variable bound
    exactly once."""
    if "{{" not in source and "{%" not in source:
        return ()
    try:
        tree = ENV.parse(source)
    except jinja2.TemplateSyntaxError:
        return ()
    nodes = jinja2.nodes
    stores: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.ctx in ("store", "param"):
            stores[node.name] = stores.get(node.name, 0) + 1
    loops = {node.target.name: _chain(node.iter) for node in tree.find_all(nodes.For)
             if isinstance(node.target, nodes.Name) and stores.get(node.target.name) == 1}
    inner = {id(node.node) for node in tree.find_all((nodes.Getattr, nodes.Getitem))}
    called = {id(node.node) for node in tree.find_all(nodes.Call)}
    guarded = {id(node.node) for node in tree.find_all(nodes.Filter) if node.name in _GUARDS}
    guarded |= {id(node.node) for node in tree.find_all(nodes.Test) if node.name in _GUARD_TESTS}
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if id(node) in inner or id(node) in guarded:
            continue
        chain = _chain(node)
        if chain is None:
            continue
        root, parts = _bound(chain, loops, stores)
        if root is not None:
            parts = parts[:-1] if id(node) in called else parts
            found.append((root, parts, node.lineno))
    return tuple(found)


def _chain(node: Any) -> tuple[str, tuple[str | int, ...]] | None:
    """`order.lines[0].sku` -> ("order", ("lines", ITEM, "sku")); None unless it starts at a name."""
    parts: list[str | int] = []
    while isinstance(node, (jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        if isinstance(node, jinja2.nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, (str, int)):
            value = node.arg.value
            parts.append(ITEM if isinstance(value, int) else value)
        else:
            parts.append(ITEM)              # `x[i]`: an item when x is a list; else unknown
        node = node.node
    if not isinstance(node, jinja2.nodes.Name):
        return None
    return node.name, tuple(reversed(parts))


def _bound(chain: tuple[str, tuple], loops: dict, stores: dict,
           depth: int = 0) -> tuple[str | None, tuple]:
    """The chain seen from a context variable: a loop variable is replaced by what it loops over."""
    root, parts = chain
    if root in loops and loops[root] is not None and depth < 10:
        outer, through = _bound(loops[root], loops, stores, depth + 1)
        return outer, through + (ITEM,) + parts
    return (None, ()) if root in stores else (root, parts)


@functools.lru_cache(maxsize=4096)
def loop_path(source: str) -> tuple[str, tuple[str | int, ...]] | None:
    """The path a template reads when it is exactly that path (`{{ order.lines }}`), else None."""
    if not source.startswith("{{"):
        return None
    try:
        expression = ENV.parse(source).body
    except jinja2.TemplateSyntaxError:
        return None
    if len(expression) != 1 or not isinstance(expression[0], jinja2.nodes.Output) \
            or len(expression[0].nodes) != 1:
        return None
    return _chain(expression[0].nodes[0])
