"""What templates and predicates read of the canonical records in their write's context.

`reference_problems` checks each path a Jinja template reads for certain (`order.ship_to.city`,
`template_paths.attribute_paths`) against the record its variable holds (`canonical.context_shapes`);
`Scope` carries those shapes through the template walkers of `rules` (a `for_each` loop variable
gets the shape of an item of the list it loops over). `predicate_problems` does the same for the
`match` and `skip_when` JMESPath predicates, where an unknown field is not an error but null.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from engine.specs.canonical import Shape, context_shapes, parsed_jmespath
from engine.specs.findings import Problem, did_you_mean, one_of
from engine.template_paths import ITEM, attribute_paths, loop_path

_DICT_ATTRIBUTES = frozenset(dir(dict))   # `order.items` is dict.items in Jinja, not a field


def reference_problems(source: str, shapes: Mapping[str, Shape]) -> Iterator[Problem]:
    """Each path a template reads from a record of its context that the record cannot have
    (`order.shiping_method`), at the template's line."""
    for root, parts, line in attribute_paths(source):
        shape = shapes.get(root)
        if shape is not None:
            problem = _path_problem(root, parts, shape)
            if problem is not None:
                yield Problem((), problem[0], problem[1], problem[2], offset=line - 1)


def _path_problem(root: str, parts: tuple, shape: Shape) -> tuple[str, str, str | None] | None:
    read = root
    for part in parts:
        if part == ITEM:
            if shape.kinds is None or shape.allows("object") or shape.items() is None:
                return None
            shape, read = shape.items(), f"{read}[]"
            continue
        if not shape.allows("object") or part in _DICT_ATTRIBUTES:
            return None
        allowed, fields = shape.closed(), shape.fields()
        if allowed is not None and part not in allowed:
            return (f"'{read}.{part}' is not a field: {shape.label} has no '{part}'",
                    one_of(sorted(allowed)), did_you_mean(part, allowed))
        if part not in fields:
            return None
        shape, read = fields[part], f"{read}.{part}"
    return None


# -- JMESPath predicates over a write's context ---------------------------------------------------

def predicate_problems(data: Any) -> Iterator[Problem]:
    """The fields `match` and `skip_when` read of the canonical records of their write's context
    (`match: "record.ref == order.order_numbr"`): in JMESPath an unknown field is null, so such a
    predicate silently compares null and resolves a lost answer wrongly."""
    operations = data.get("operations") if isinstance(data, Mapping) else None
    for name, operation in (operations.items() if isinstance(operations, Mapping) else ()):
        shapes = context_shapes(name)
        if not shapes or not isinstance(operation, Mapping):
            continue
        steps = operation.get("steps") if isinstance(operation.get("steps"), list) else []
        for where, step in [((), operation), *(((("steps", i),) , s) for i, s in enumerate(steps))]:
            yield from (problem.at(("operations", name, *where))
                        for problem in _step_predicates(step, shapes))


def _step_predicates(step: Any, shapes: Mapping[str, Shape]) -> Iterator[Problem]:
    if not isinstance(step, Mapping):
        return
    verify = step.get("verify")
    found = [(("match",), step.get("match")), (("skip_when",), step.get("skip_when")),
             (("verify", "match"), verify.get("match") if isinstance(verify, Mapping) else None)]
    for path, source in found:
        parsed = parsed_jmespath(source) if isinstance(source, str) else None
        for root, parts in _root_chains(parsed) if parsed else ():
            shape = shapes.get(root)
            problem = _path_problem(root, parts, shape) if shape is not None else None
            if problem is not None:
                yield Problem(path, problem[0], problem[1], problem[2] or
                              "JMESPath reads an unknown field as null: the predicate would compare null")


def _root_chains(node: Mapping[str, Any], top: bool = True) -> Iterator[tuple[str, tuple]]:
    """`order.ship_to.city` read from the context itself (not inside a projection, a filter or
    after a pipe, where names are relative to something else): ("order", ("ship_to", "city"))."""
    kind, children = node.get("type"), [c for c in node.get("children") or () if isinstance(c, Mapping)]
    if kind == "subexpression" and top and children and children[0].get("type") == "field":
        parts: list[str | int] = []
        for child in children[1:]:
            if child.get("type") == "field":
                parts.append(child["value"])
            elif child.get("type") == "index_expression" and child["children"][0].get("type") == "field":
                parts += [child["children"][0]["value"], ITEM]
            else:
                break
        if parts:
            yield children[0]["value"], tuple(parts)
        return
    relative = {"subexpression": 1, "projection": 1, "filter_projection": 1, "pipe": 1,
                "value_projection": 1, "index_expression": 1}
    for index, child in enumerate(children):
        yield from _root_chains(child, top and not (kind in relative and index >= relative[kind]))


class Scope(frozenset):
    """The variables a template may read (a frozenset, as `rules.CONTEXTS` has them) and the
    shape of those holding canonical records; set operations keep the shapes of the names kept."""

    shapes: dict[str, Shape]

    def __new__(cls, names: Iterable[str], shapes: Mapping[str, Shape] | None = None) -> Scope:
        scope = super().__new__(cls, names)
        scope.shapes = {name: shape for name, shape in (shapes or {}).items() if name in scope}
        return scope

    def __or__(self, other: Iterable[str]) -> Scope:          # type: ignore[override]
        return Scope(frozenset(self) | frozenset(other), self.shapes)

    def __sub__(self, other: Iterable[str]) -> Scope:         # type: ignore[override]
        return Scope(frozenset(self) - frozenset(other), self.shapes)

    def bind(self, name: str, source: Any) -> Scope:
        """The scope inside a `{for_each: source, as: name}` loop: `name` is an item of the list
        `source` reads when `source` is exactly one path (`{{ order.lines }}`) of a known shape."""
        shapes = {key: shape for key, shape in self.shapes.items() if key != name}
        path = loop_path(source) if isinstance(source, str) else None
        shape = self.shapes.get(path[0]) if path else None
        for part in path[1] if shape is not None else ():
            if shape is None:
                break
            shape = shape.items() if part == ITEM else shape.fields().get(part)
        if shape is not None and shape.items() is not None:
            shapes[name] = shape.items()
        return Scope(frozenset(self) | {name}, shapes)
