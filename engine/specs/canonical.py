"""The canonical record schemas seen from a connector spec: which keys a `map` may write, and
which fields a write's templates may read.

A run validates every mapped record against its canonical schema and quarantines the ones that
fail, so a `map` key the schema does not know (`adress1`) or a required key it never writes
quarantines every order. Lint finds both beforehand: `map_problems` walks each read operation's
`map` (nested mappings, `{each, map}` lists and JMESPath multiselect hashes such as
`line_items[*].{sku: sku, quantity: quantity}`) beside the canonical schema of the operation's
record type. `context_shapes` gives the records each write's templates see (`references`
checks what they read), and `map_definitions` the `map` schemas editors complete keys from.

Only what is certain is reported: an unknown key of a closed object, a required key a mapping
or hash never writes, a list written where the schema has no list (and the reverse). A JMESPath
leaf that is not a hash may give anything, so it is not second-guessed.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors

from engine import SCHEMAS
from engine.records import RECORD_TYPES
from engine.specs.findings import Problem, did_you_mean, dotted, one_of

#: The keys the engine adds to every mapped record itself (from the operation's `key:`).
ENGINE_ADDS = frozenset({"key"})
#: A list step in a label (`lines[]`).
EACH = "[]"
_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "array": "a list", "object": "an object", "null": "null"}


@dataclass(frozen=True, eq=False)
class Shape:
    """The schemas that apply to one value of a record (`allOf` and `$ref` flattened into
    `parts`), with what to call it in a message: `where` inside `title`. What it derives is
    computed once per shape (`record_shape` and `context_shapes` are cached: lint asks the
    same questions of every spec)."""

    parts: tuple[Mapping[str, Any], ...]
    root: Mapping[str, Any]
    title: str
    where: tuple[str, ...] = ()

    @classmethod
    def of(cls, schema: Any, root: Mapping[str, Any], title: str, where: tuple[str, ...] = ()) -> Shape:
        parts: list[Mapping[str, Any]] = []
        _flatten(schema, root, parts, set())
        return cls(tuple(parts), root, title, where)

    @property
    def label(self) -> str:
        """`the canonical order`, or `ship_to of the canonical order`."""
        return f"{dotted(self.where).replace('.[]', '[]')} of {self.title}" if self.where else self.title

    @functools.cached_property
    def kinds(self) -> frozenset[str] | None:
        """The JSON types a value may have; None when no part says."""
        kinds: frozenset[str] | None = None
        for part in self.parts:
            if "type" in part:
                named = part["type"] if isinstance(part["type"], list) else [part["type"]]
                kinds = frozenset(named) if kinds is None else kinds & frozenset(named)
        return kinds

    def allows(self, kind: str) -> bool:
        kinds = self.kinds
        return kinds is None or kind in kinds

    def described(self) -> str:
        kinds = self.kinds
        return " or ".join(_TYPE_NAMES.get(kind, kind) for kind in sorted(kinds)) if kinds else "any value"

    def fields(self) -> dict[str, Shape]:
        """The shape of each named property (a name listed by several parts has them all)."""
        return self._fields

    @functools.cached_property
    def _fields(self) -> dict[str, Shape]:
        schemas: dict[str, list[Any]] = {}
        for part in self.parts:
            for name, sub in (part.get("properties") or {}).items():
                schemas.setdefault(name, []).append(sub)
        return {name: Shape.of({"allOf": subs}, self.root, self.title, self.where + (name,))
                for name, subs in schemas.items()}

    def closed(self) -> frozenset[str] | None:
        """The only keys allowed (every part with `additionalProperties: false` lists them), or
        None for an open object."""
        return self._closed

    @functools.cached_property
    def _closed(self) -> frozenset[str] | None:
        closed = [frozenset(part.get("properties") or ()) for part in self.parts
                  if part.get("additionalProperties", True) is False]
        return frozenset.intersection(*closed) if closed else None

    def required(self) -> list[str]:
        return list(dict.fromkeys(name for part in self.parts for name in part.get("required", ())))

    def items(self) -> Shape | None:
        return self._items

    @functools.cached_property
    def _items(self) -> Shape | None:
        subs = [part["items"] for part in self.parts if isinstance(part.get("items"), Mapping)]
        return Shape.of({"allOf": subs}, self.root, self.title, self.where + (EACH,)) if subs else None


def _flatten(schema: Any, root: Mapping[str, Any], parts: list, seen: set[str]) -> None:
    if not isinstance(schema, Mapping):
        return
    parts.append(schema)
    for sub in schema.get("allOf", ()):
        _flatten(sub, root, parts, seen)
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/") and ref not in seen:
        target: Any = root
        for step in ref[2:].split("/"):
            target = target.get(step) if isinstance(target, Mapping) else None
        _flatten(target, root, parts, seen | {ref})


@functools.cache
def record_schema(record_type: str) -> dict[str, Any]:
    """The canonical JSON Schema of a record type (`schemas/<type>.schema.json`)."""
    return json.loads((SCHEMAS / f"{record_type}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def record_shape(record_type: str) -> Shape:
    schema = record_schema(record_type)
    return Shape.of(schema, schema, f"the canonical {record_type.replace('_', ' ')}")


#: The `order` of create_shipment and cancel_order: the order as delivered, read back from the
#: ledger (`flows.writes.order_context` builds it; a test keeps the two in step).
DELIVERED_ORDER: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "key": {"type": "string"}, "order_id": {"type": "string"},
        "order_number": {"type": ["string", "null"]}, "destination_id": {"type": ["string", "null"]},
        "lines": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"},
                           "line_id": {"type": ["string", "null"]}}}},
    },
}


@functools.cache
def _write_order() -> dict[str, Any]:
    """The canonical order as create_order sees it: a kit's component lines also carry
    `kit_sku` (the integration's rules add it)."""
    schema = copy.deepcopy(record_schema("order"))
    schema["$defs"]["line"]["properties"]["kit_sku"] = {"type": "string"}
    return schema


@functools.cache
def context_shapes(operation: str) -> dict[str, Shape]:
    """The records a write operation's templates see, by variable (docs/spec-language.md,
    "Template contexts"); {} for an operation whose variables are not canonical records."""
    order = Shape.of(_write_order(), _write_order(), "the canonical order")
    delivered = Shape.of(DELIVERED_ORDER, DELIVERED_ORDER, "the order as delivered")
    shipment = record_shape("shipment")
    package = shipment.fields()["packages"].items()
    inventory, cancellation = record_shape("inventory_level"), record_shape("cancellation")
    table = {
        "create_order": {"order": order}, "find_order": {"order": order},
        "create_shipment": {"order": delivered, "shipment": shipment,
                            "package": Shape(package.parts, package.root, "a package of the canonical shipment")},
        "cancel_order": {"order": delivered, "cancellation": cancellation},
        "update_inventory": {"inventory": inventory}, "lookup_item": {"inventory": inventory},
    }
    return table.get(operation, {})


# -- map keys -----------------------------------------------------------------------------------

def map_problems(data: Any) -> Iterator[Problem]:
    """Every read operation's `map` against the canonical schema of its record type."""
    operations = data.get("operations") if isinstance(data, Mapping) else None
    for name, record_type in RECORD_TYPES.items():
        operation = operations.get(name) if isinstance(operations, Mapping) else None
        mapping = operation.get("map") if isinstance(operation, Mapping) else None
        if isinstance(mapping, Mapping):
            for problem in mapping_problems(mapping, record_shape(record_type), ENGINE_ADDS):
                yield problem.at(("operations", name, "map"))


def mapping_problems(mapping: Mapping[str, Any], shape: Shape,
                     added: Iterable[str] = ()) -> Iterator[Problem]:
    """A mapping object against the object `shape` it makes (`added`: keys the engine sets)."""
    allowed, fields = shape.closed(), shape.fields()
    for key, value in mapping.items():
        if allowed is not None and key not in allowed:
            yield Problem((key,), f"unknown key '{key}': not a field of {shape.label}",
                          one_of(sorted(allowed)), did_you_mean(key, allowed))
        elif key in fields:
            yield from (problem.at((key,)) for problem in _value_problems(value, fields[key]))
    for name in shape.required():
        if name not in mapping and name not in added:
            yield Problem((), f"missing required key '{name}' of {shape.label}",
                          _description(fields.get(name)) or f"a key '{name}'")


def _value_problems(value: Any, shape: Shape) -> Iterator[Problem]:
    if isinstance(value, str):
        yield from expression_problems(value, shape)
    elif not isinstance(value, Mapping) or "const" in value or "value" in value or "default" in value:
        return
    elif "each" in value or "map" in value:
        if not shape.allows("array"):
            yield _mismatch(shape, "{each, map} makes a list")
        elif isinstance(value.get("map"), Mapping) and shape.items() is not None:
            yield from (problem.at(("map",)) for problem in _object_problems(value["map"], shape.items()))
    else:
        yield from _object_problems(value, shape)


def _object_problems(mapping: Mapping[str, Any], shape: Shape) -> Iterator[Problem]:
    if not shape.allows("object"):
        yield _mismatch(shape, "a nested mapping makes an object")
    else:
        yield from mapping_problems(mapping, shape)


def _mismatch(shape: Shape, what: str) -> Problem:
    return Problem((), f"{what}, but {shape.label} is {shape.described()}", shape.described())


def _description(shape: Shape | None) -> str | None:
    if shape is None:
        return None
    return next((part["description"] for part in shape.parts if part.get("description")), None)


# -- JMESPath multiselect hashes ----------------------------------------------------------------

def expression_problems(expression: str, shape: Shape) -> Iterator[Problem]:
    """The keys of the multiselect hash a JMESPath leaf ends in (`a.{x: y}`, `items[*].{x: y}`)
    against the `shape` its value must have; nothing for other expressions."""
    parsed = parsed_jmespath(expression)
    if parsed is not None:
        yield from _result_problems(parsed, shape)


@functools.lru_cache(maxsize=4096)
def parsed_jmespath(expression: str) -> Mapping[str, Any] | None:
    """The AST of a JMESPath expression (cached), or None when it does not compile."""
    try:
        return jmespath.compile(expression).parsed
    except jmespath_errors.JMESPathError:
        return None                            # schema_rules reports it


def _result_problems(node: Mapping[str, Any], shape: Shape) -> Iterator[Problem]:
    kind, children = node.get("type"), node.get("children") or []
    if kind in ("subexpression", "pipe") and children:
        yield from _result_problems(children[-1], shape)
    elif kind in ("projection", "value_projection", "filter_projection") and len(children) > 1:
        if not shape.allows("array"):
            yield _mismatch(shape, "this JMESPath projection makes a list")
        elif shape.items() is not None:
            yield from _result_problems(children[1], shape.items())
    elif kind == "multi_select_dict":
        yield from _hash_problems(children, shape)


def _hash_problems(pairs: list[Mapping[str, Any]], shape: Shape) -> Iterator[Problem]:
    if not shape.allows("object"):
        yield _mismatch(shape, "this JMESPath multiselect hash makes an object")
        return
    allowed, fields = shape.closed(), shape.fields()
    keys = [pair.get("value") for pair in pairs]
    for pair in pairs:
        key = pair.get("value")
        if allowed is not None and key not in allowed:
            yield Problem((), f"the JMESPath multiselect hash writes key '{key}', not a field of "
                          f"{shape.label}", one_of(sorted(allowed)), did_you_mean(key, allowed))
        elif key in fields and pair.get("children"):
            yield from _result_problems(pair["children"][0], fields[key])
    for name in shape.required():
        if name not in keys:
            yield Problem((), f"the JMESPath multiselect hash lacks '{name}', which {shape.label} "
                          "requires", _description(fields.get(name)) or f"a key '{name}'")


# -- editor completion --------------------------------------------------------------------------

#: The `$defs` of schemas/connector.schema.json that describe the `map` of each read operation,
#: generated from the canonical schemas by `map_definitions` (`write_map_definitions()` rewrites
#: them; a test keeps the file in step).
MAP_DEFINITIONS = {f"map_{record_type}": record_type for record_type in dict.fromkeys(RECORD_TYPES.values())}


def map_definitions() -> dict[str, dict[str, Any]]:
    """Per record type, the schema of a `map` writing it: the generic `mapping` (which validates),
    plus `properties` naming every canonical field with its description, nested ones included,
    so an editor (yaml-language-server) completes and explains the keys."""
    return {name: {
        "type": "object",
        "description": f"A mapping to {record_shape(kind).title} (schemas/{kind}.schema.json): keys are its "
                       "fields (editors complete them; lint checks them and the required ones); `key` is added "
                       "by the engine from the operation's `key`.",
        "allOf": [{"$ref": "#/$defs/mapping"}],
        "properties": _field_hints(record_shape(kind), ENGINE_ADDS),
    } for name, kind in MAP_DEFINITIONS.items()}


def _field_hints(shape: Shape, skip: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    required = shape.required()
    return {name: _field_hint(field, name in required) for name, field in shape.fields().items()
            if name not in skip}


def _field_hint(shape: Shape, required: bool) -> dict[str, Any]:
    hint: dict[str, Any] = {"description": ("Required. " if required else "") + (_description(shape) or "")}
    items = shape.items()
    if shape.allows("object") and shape.fields():
        hint["properties"] = _field_hints(shape)
    elif shape.allows("array") and items is not None and items.fields():
        hint["properties"] = {
            "each": {"description": "JMESPath to the source list. Example: line_items."},
            "map": {"description": f"Mapping applied to each item: the fields of {items.label}.",
                    "properties": _field_hints(items)},
        }
    return hint


def write_map_definitions(path: Any = SCHEMAS / "connector.schema.json") -> None:
    """Rewrite the `map_*` definitions of the connector schema from the canonical schemas."""
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema["$defs"].update(map_definitions())
    path.write_text(json.dumps(schema, indent=2, ensure_ascii=False), encoding="utf-8")
