"""Canonical records: which operation yields which record type, and their compiled validators.

The JSON Schemas live in `schemas/<type>.schema.json`; each is loaded and compiled once, on
first use. `validate` is on the per-record hot path. jsonschema's `is_valid` costs ~0.5 ms for
an order (a validator object per keyword per value, `$ref` lookups), so each schema is also
compiled into one plain Python function (`fast_check`, generated source) for the keywords the
canonical schemas use; a record it accepts is valid, anything else goes to jsonschema, which
gives the messages (and the final word). A schema with a keyword the predicate does not know
gets no predicate.

The generated code (`_Predicates.lines`) merges `allOf` and `$ref` first, so each value is read
once (`v[k]` for a required key, where a KeyError means absent; `.get` otherwise) and its type
tested once (`type(x) is str`), the keywords of that type then checked in the branch;
`additionalProperties: false` is a count of keys, and each `pattern` remembers up to 1,024
strings (of 64 characters at most) it matched. A value of no plain JSON type (a str or dict
subclass, a Decimal) is handed to jsonschema with its subschema, so every decision is
jsonschema's. Cost of a canonical order mapped from a `bench/server.py` cart page: ~2.7 µs checked again and
again, ~4 µs freshly parsed with a new timestamp (the isinstance test of each keyword this
replaced: ~6 and ~7.7 µs).

The orders flow's generated map function checks the order as it builds it instead
(`FusedCheck`: the same statements on the names holding the values, none read back): the map
with its check costs ~80,000 instructions a bench order, the map and `fast_check` ~103,000.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator

from engine import SCHEMAS

#: The canonical record type each read operation produces.
RECORD_TYPES: dict[str, str] = {
    "list_orders": "order",
    "list_shipments": "shipment",
    "list_inventory": "inventory_level",
    "list_cancellations": "cancellation",
}


@functools.cache
def validator(record_type: str) -> Draft202012Validator:
    """The compiled validator of one canonical record type."""
    schema = json.loads((SCHEMAS / f"{record_type}.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def validate(record_type: str, record: Mapping[str, Any]) -> list[str]:
    """Error messages for a record, each prefixed by the path inside it; [] when it is valid."""
    fast = fast_check(record_type)
    if fast is not None and fast(record):
        return []
    errors = validator(record_type).iter_errors(record)
    return [_message(error) for error in sorted(errors, key=lambda e: list(e.absolute_path))]


@functools.cache
def fast_check(record_type: str) -> Callable[[Any], bool] | None:
    """The schema of `record_type` as one predicate, or None when it uses an unknown keyword."""
    try:
        return _Predicates(validator(record_type)).compile()
    except (_Unsupported, AttributeError, LookupError, TypeError, ValueError):
        return None


def _message(error: Any) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message


# -- schema -> predicate ------------------------------------------------------------------------
# Each keyword below is decided exactly as jsonschema's Draft 2020-12 keyword functions decide it
# (`jsonschema/_keywords.py`), with the draft's type checker; `format` is an annotation there too.

Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description", "examples",
                          "default", "format", "deprecated", "readOnly", "writeOnly"})
_APPLICATORS = frozenset({"type", "allOf", "$ref"})
#: The keywords checked, each with the one type it constrains (jsonschema ignores it on any other).
_KEYWORDS = {"properties": "object", "required": "object", "additionalProperties": "object",
             "items": "array", "minItems": "array", "minLength": "string", "pattern": "string",
             "minimum": "number"}
#: Exact-type tests, in the order the generated code tries them. For a value whose type is one of
#: _PLAIN each says what the draft's type checker says; any other value goes to jsonschema.
_TYPES = {
    "object": "type({0}) is dict",
    "array": "type({0}) is list",
    "string": "type({0}) is str",
    "number": "type({0}) is float or type({0}) is int",
    "integer": "type({0}) is int or type({0}) is float and {0}.is_integer()",
    "boolean": "type({0}) is bool",
    "null": "{0} is None",
}
_PLAIN = frozenset({dict, list, str, float, int, bool, type(None)})
_MISSING = object()   # what `.get` gives for an absent optional key that must not be read as null
_MEMO_SIZE = 1024     # strings remembered per pattern (see `_string`)


def _remember(seen: set[str], text: str) -> None:
    """Add a string that matched to its pattern's memo, which holds _MEMO_SIZE short strings at most."""
    if len(text) <= 64:
        if len(seen) >= _MEMO_SIZE:
            seen.clear()
        seen.add(text)


class _Unsupported(Exception):
    """The schema uses something the predicate compiler does not handle."""


@dataclass(frozen=True, slots=True)
class _Node:
    """The schemas that apply to one value, flattened through `allOf` and `$ref` into `parts`."""

    schemas: tuple[Any, ...]
    parts: tuple[Mapping[str, Any], ...]
    refs: tuple[str, ...]               # the `$ref`s followed to get here; one seen again is recursion
    kinds: frozenset[str] | None        # the types allowed (`type` of every part); None: any

    @property
    def nullable(self) -> bool:
        """Whether null passes: no keyword but `type` constrains null."""
        return self.kinds is None or "null" in self.kinds

    @property
    def trivial(self) -> bool:
        return self.kinds is None and not any(name in _KEYWORDS for part in self.parts for name in part)

    def has(self, family: str) -> bool:
        return any(_KEYWORDS.get(name) == family for part in self.parts for name in part)

    def values(self, keyword: str) -> list[Any]:
        return [part[keyword] for part in self.parts if keyword in part]


def _meet(a: str, b: str) -> str | None:
    """The type of the values that are both `a` and `b` (they are disjoint but integer < number)."""
    if a == b or {a, b} == {"integer", "number"}:
        return "integer" if "integer" in (a, b) else a
    return None


class _Predicates:
    """Writes a schema as the body of one Python function `check(v) -> bool` that returns False
    at the first keyword that fails; local `$ref`s are inlined (a recursive one is unsupported).

    Each value is dispatched once on its exact type (`type(x) is str`, ...), and the keywords of
    that type are checked in the branch without testing the type again; `allOf` and `$ref` are
    merged first, so an object's properties are walked once however many schemas name them."""

    def __init__(self, validator: Draft202012Validator, tag: str = "", fail: str = "return False") -> None:
        self.validator, self.root = validator, validator.schema
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {"_PLAIN": _PLAIN, "_MISSING": _MISSING, "_remember": _remember}
        self.names, self.patterns = 0, {}
        self.tag, self.fail = tag, fail       # names' prefix; the statement a failed keyword runs

    def compile(self) -> Check:
        self.emit(self.analyse([self.root], ()), "v", 2)
        body = self.lines or ["        pass"]
        source = "\n".join(["def check(v):", "    try:", *body,
                            "    except KeyError:  # a required key is absent",
                            "        return False", "    return True", ""])
        namespace = dict(self.constants)
        exec(compile(source, "<schema predicate>", "exec"), namespace)
        return namespace["check"]

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{self.tag}{prefix}{self.names}"

    def constant(self, value: Any, prefix: str = "c") -> str:
        name = self.name(prefix)
        self.constants[name] = value
        return name

    def literal(self, value: Any) -> str:
        return repr(value) if type(value) is int else self.constant(value)

    # -- analysis --------------------------------------------------------------------------------

    def analyse(self, schemas: list[Any], refs: tuple[str, ...]) -> _Node:
        """All of `schemas`, applied to one value."""
        parts: list[Mapping[str, Any]] = []
        for schema in schemas:
            refs = self.flatten(schema, refs, parts)
        kinds: frozenset[str] | None = None
        for part in parts:
            if "type" in part:
                kinds = self.intersect(kinds, part["type"])
        return _Node(tuple(schemas), tuple(parts), refs, kinds)

    def flatten(self, schema: Any, refs: tuple[str, ...], parts: list) -> tuple[str, ...]:
        """Append `schema` and every schema its `allOf` and `$ref` apply to the same value."""
        if schema is True:
            return refs
        if schema is False:
            schema = {"type": []}               # allows no type: the same decisions
        if not isinstance(schema, Mapping) or ("$id" in schema and schema is not self.root):
            raise _Unsupported(schema)
        unknown = set(schema) - _ANNOTATIONS - _APPLICATORS - set(_KEYWORDS)
        if unknown:
            raise _Unsupported(unknown)
        parts.append(schema)
        for sub in schema.get("allOf", ()):
            refs = self.flatten(sub, refs, parts)
        if "$ref" in schema:
            refs = self.flatten(self.resolve(schema["$ref"], refs), refs + (schema["$ref"],), parts)
        return refs

    def resolve(self, ref: str, refs: tuple[str, ...]) -> Any:
        """The schema a local `$ref` points at; one already followed on the way here is recursion."""
        if not ref.startswith("#/") or ref in refs:
            raise _Unsupported(ref)
        target: Any = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target[part]
        return target

    @staticmethod
    def intersect(kinds: frozenset[str] | None, value: Any) -> frozenset[str]:
        """The types a value may have when it is of one of `kinds` and of `type: value` too."""
        names = [value] if isinstance(value, str) else list(value)
        if any(name not in _TYPES for name in names):
            raise _Unsupported(value)
        met = frozenset(names) if kinds is None else frozenset(
            _meet(a, b) for a in kinds for b in names) - {None}
        return met - {"integer"} if "number" in met else met

    # -- emission --------------------------------------------------------------------------------

    def emit(self, node: _Node, var: str, depth: int, absent: str | None = None) -> None:
        """Check the value in `var`: one branch per type with keywords, then reject what is left.
        `absent`: `var` may hold _MISSING (a key not there), on which this statement runs."""
        if node.trivial:
            return
        keyword, done = "if", set()
        for family in ("object", "array", "string", "number"):
            kind = self.branch(node, family)
            if kind is not None:
                self.line(depth, f"{keyword} {_TYPES[kind].format(var)}:")
                size = len(self.lines)
                getattr(self, "_" + family)(node, var, depth + 1)
                if len(self.lines) > size:
                    keyword, done = "elif", done | {kind}
                else:                           # every keyword of the family was a no-op
                    self.lines.pop()
        allowed = [kind for kind in _TYPES if kind in (node.kinds or ()) and kind not in done]
        if absent is not None:                  # tested after the types allowed, which are likelier
            if allowed:
                tests = " or ".join(_TYPES[kind].format(var) for kind in allowed)
                self.line(depth, f"{keyword} {tests}: pass")
                keyword, allowed = "elif", []
            self.line(depth, f"{keyword} {var} is _MISSING: {absent}")
            keyword = "elif"
        self.reject(node, var, depth, keyword, allowed)

    @staticmethod
    def branch(node: _Node, family: str) -> str | None:
        """The type whose branch checks the keywords of `family`, or None when there are none."""
        if not node.has(family):
            return None
        if node.kinds is None or family in node.kinds:
            return family
        return "integer" if family == "number" and "integer" in node.kinds else None

    def reject(self, node: _Node, var: str, depth: int, keyword: str, allowed: list[str]) -> None:
        """Return False for a value that took no branch, unless its type is in `allowed`: it is of
        a plain type not allowed, or it is of another type (a str or dict subclass, a Decimal) and
        jsonschema says so."""
        if node.kinds is not None and not node.kinds:
            self.line(depth, self.fail if keyword == "if" else f"else: {self.fail}")
            return
        jsonschema = f"{self.fallback(node)}({var})"
        if node.kinds is None:
            self.line(depth, f"{keyword} type({var}) not in _PLAIN and not {jsonschema}: {self.fail}")
            return
        failing = f"type({var}) in _PLAIN or not {jsonschema}"
        if allowed == ["null"]:
            failing = f"{var} is not None and ({failing})"
        elif allowed:
            failing = f"not ({' or '.join(_TYPES[kind].format(var) for kind in allowed)}) and ({failing})"
        self.line(depth, f"{keyword} {failing}: {self.fail}")

    def fallback(self, node: _Node) -> str:
        """jsonschema's `is_valid` for the node's schemas (their `$ref`s resolve against the root)."""
        schema = node.schemas[0] if len(node.schemas) == 1 else {"allOf": list(node.schemas)}
        return self.constant(self.validator.evolve(schema=schema).is_valid, "jsonschema")

    def _object(self, node: _Node, var: str, depth: int) -> None:
        """Read each property once. `additionalProperties: false` is a count, not a test of each
        key: the object has no other key when len(v) + (allowed keys absent) == (keys allowed)."""
        required = dict.fromkeys(name for part in node.parts for name in part.get("required", ()))
        properties: dict[str, list[Any]] = {}
        for part in node.parts:
            for key, sub in part.get("properties", {}).items():
                properties.setdefault(key, []).append(sub)
        children = {key: self.analyse(schemas, node.refs) for key, schemas in properties.items()}
        closed = [set(part.get("properties", ())) for part in node.parts
                  if part.get("additionalProperties", True) is False]
        allowed = set.intersection(*closed) if closed else set()
        absent = self.name("absent") if allowed - set(required) else ""
        if absent:
            self.line(depth, f"{absent} = 0")
        unread = [key for key in required if key not in children or children[key].trivial]
        if unread:
            present = " and ".join(f"{key!r} in {var}" for key in unread)
            self.line(depth, f"if not ({present}): {self.fail}")
        for key, child in children.items():
            count = f"{absent} += 1" if key in allowed else None
            self._property(key, child, var, depth, key in required, count)
        if closed:
            size = f"len({var}) + {absent}" if absent else f"len({var})"
            self.line(depth, f"if {size} != {len(allowed)}: {self.fail}")
        for part in node.parts:
            self._additional(part, node.refs, var, depth)

    def _property(self, key: str, child: _Node, var: str, depth: int, required: bool,
                  count: str | None) -> None:
        """Read one property; `count` is the statement to run when it is absent, if one is needed."""
        if child.trivial:
            if count and not required:
                self.line(depth, f"if {key!r} not in {var}: {count}")
            return
        item = self.name("x")
        if required:                            # absent: a KeyError, on which `check` returns False
            self.line(depth, f"{item} = {var}[{key!r}]")
            self.emit(child, item, depth)
        elif child.nullable and not count:      # absent passes as null does: no keyword applies
            self.line(depth, f"{item} = {var}.get({key!r})")
            self.emit(child, item, depth)
        else:
            self.line(depth, f"{item} = {var}.get({key!r}, _MISSING)")
            self.emit(child, item, depth, count or "pass")

    def _additional(self, part: Mapping[str, Any], refs: tuple[str, ...], var: str, depth: int) -> None:
        """An `additionalProperties` schema, on each key its part's `properties` do not name."""
        extra = part.get("additionalProperties", True)
        child = self.analyse([] if extra is False else [extra], refs)   # False: the count in _object
        if child.trivial:
            return
        known = self.constant(frozenset(part.get("properties", ())), "keys")
        key, item = self.name("k"), self.name("x")
        self.line(depth, f"for {key}, {item} in {var}.items():")
        self.line(depth + 1, f"if {key} not in {known}:")
        self.emit(child, item, depth + 2)

    def _array(self, node: _Node, var: str, depth: int) -> None:
        """minItems, then the `items` schemas on each item (prefixItems is unsupported)."""
        least = max(node.values("minItems"), default=0)
        if least > 0:
            self.line(depth, f"if len({var}) < {self.literal(least)}: {self.fail}")
        child = self.analyse(node.values("items"), node.refs)
        if not child.trivial:
            item = self.name("x")
            self.line(depth, f"for {item} in {var}:")
            self.emit(child, item, depth + 1)

    def _string(self, node: _Node, var: str, depth: int) -> None:
        """minLength, then each pattern, skipped for a string it matched before (`_remember`)."""
        least = max(node.values("minLength"), default=0)
        if least > 0:
            self.line(depth, f"if len({var}) < {self.literal(least)}: {self.fail}")
        for pattern in dict.fromkeys(node.values("pattern")):
            if pattern not in self.patterns:    # one memo per pattern, shared by the values it checks
                search = re.compile(pattern).search
                self.patterns[pattern] = self.constant(set(), "seen"), self.constant(search, "search")
            seen, search = self.patterns[pattern]
            self.line(depth, f"if {var} not in {seen}:")
            self.line(depth + 1, f"if {search}({var}) is None: {self.fail}")
            self.line(depth + 1, f"_remember({seen}, {var})")

    def _number(self, node: _Node, var: str, depth: int) -> None:
        self.line(depth, f"if {var} < {self.literal(max(node.values('minimum')))}: {self.fail}")


# -- the schema checked inside a generated map ------------------------------------------------


class Invalid(Exception):
    """A value a `FusedCheck` statement refused (the record is then decided step by step)."""


class FusedCheck:
    """A record type's schema checked inside a generated `map:` function, on the values the map
    has just computed, as each `{...}` is built (`jmespath_source` writes `lines` there): no
    value is read back out of the record, and no object's keys are counted, the map knowing them
    (the separate predicate, `fast_check`, spent ~36,000 instructions on a bench order).

    Sound, not complete: a keyword that fails raises `Invalid`, and the caller then decides the
    record step by step (jsonschema's messages); a `{...}` whose keys the schema refuses whatever
    the values (a required key the map lacks, a key `additionalProperties: false` refuses) is not
    planned, and a map whose root is not planned is not fused at all. A value the map does not
    build as a `{...}` of its own (a list, a string) is checked as `fast_check` checks it.
    `given`: keys the caller adds after the map (it checks them: `property_check`)."""

    def __init__(self, record_type: str, given: frozenset[str] = frozenset()) -> None:
        self.record_type, self.given = record_type, given
        self.predicates = _Predicates(validator(record_type), tag="q", fail="raise _Invalid")
        self.predicates.constants["_Invalid"] = Invalid
        self.root = self.predicates.analyse([self.predicates.root], ())

    @property
    def constants(self) -> dict[str, Any]:
        return self.predicates.constants

    def plan(self, node: Mapping[str, Any]) -> dict[int, _Node] | None:
        """The schema of each `{...}` node (by id) of a map's parsed AST whose keys the schema
        admits, from the root `node` down through the objects nested in it; None when the root
        is not admitted."""
        plans: dict[int, _Node] = {}

        def walk(ast: Mapping[str, Any], schema: _Node, given: frozenset[str]) -> bool:
            if ast.get("type") != "multi_select_dict":
                return False
            keys = [pair["value"] for pair in ast["children"]]
            if not self._admits(schema, set(keys), given):
                return False
            plans[id(ast)] = schema
            for pair in ast["children"]:
                walk(pair["children"][0], self._child(schema, pair["value"]), frozenset())
            return True

        try:
            return plans if walk(node, self.root, self.given) else None
        except (_Unsupported, AttributeError, LookupError, TypeError, ValueError):
            return None

    def _admits(self, schema: _Node, keys: set[str], given: frozenset[str]) -> bool:
        """Whether an object with exactly `keys` (and `given`) can pass `schema`, whatever the values."""
        if schema.kinds is not None and "object" not in schema.kinds:
            return False
        if len(keys | given) != len(keys) + len(given):
            return False
        required = {name for part in schema.parts for name in part.get("required", ())}
        if not required <= keys | given:
            return False
        closed = [set(part.get("properties", ())) for part in schema.parts
                  if part.get("additionalProperties", True) is False]
        return all(keys | given <= allowed for allowed in closed)

    def _child(self, schema: _Node, key: str) -> _Node:
        """The schemas that apply to property `key` of an object that passes `schema`: each part's
        `properties[key]`, or the part's `additionalProperties` where it does not name the key."""
        subs = []
        for part in schema.parts:
            if key in part.get("properties", {}):
                subs.append(part["properties"][key])
            elif part.get("additionalProperties", True) is not True:
                subs.append(part["additionalProperties"])
        return self.predicates.analyse(subs, schema.refs)

    def lines(self, schema: _Node, values: Mapping[str, str], skip: set[str], depth: int) -> list[str]:
        """Statements checking the value of each key of a planned `{...}` (key -> the name that
        holds it), at `depth` (4 spaces each); `skip`: names holding an object checked already."""
        predicates = self.predicates
        predicates.lines = []
        for key, name in values.items():
            if name not in skip:
                predicates.emit(self._child(schema, key), name, depth)
        return predicates.lines


@functools.cache
def property_check(record_type: str, key: str) -> Callable[[Any], bool] | None:
    """The schema of one property of `record_type` (present) as a predicate; None when unknown."""
    try:
        fused = FusedCheck(record_type)
        predicates = _Predicates(validator(record_type))
        predicates.emit(fused._child(fused.root, key), "v", 2)
        body = predicates.lines or ["        pass"]
        source = "\n".join(["def check(v):", "    try:", *body, "    except KeyError:", "        return False",
                            "    return True", ""])
        namespace = dict(predicates.constants)
        exec(compile(source, "<schema predicate>", "exec"), namespace)
        return namespace["check"]
    except (_Unsupported, AttributeError, LookupError, TypeError, ValueError):
        return None
