"""Canonical records: which operation yields which record type, and their compiled validators.

The JSON Schemas live in `schemas/<type>.schema.json`; each is loaded and compiled once, on
first use. `validate` is on the per-record hot path. jsonschema's `is_valid` costs ~0.5 ms for
an order (a validator object per keyword per value, `$ref` lookups), so each schema is also
compiled into one plain Python function (`fast_check`, generated source) for the keywords the
canonical schemas use; a record it accepts is valid, anything else goes to jsonschema, which gives the messages
(and the final word). A schema with a keyword the predicate does not know gets no predicate.
"""

from __future__ import annotations

import functools
import json
import numbers
import re
from collections.abc import Callable, Mapping
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
    schema = validator(record_type).schema
    try:
        return _Predicates(schema).compile(schema)
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
_TYPES = {
    "null": "{0} is None",
    "boolean": "isinstance({0}, bool)",
    "string": "isinstance({0}, str)",
    "array": "isinstance({0}, list)",
    "object": "isinstance({0}, dict)",
    "number": "(type({0}) is float or type({0}) is int or (isinstance({0}, Number) and not isinstance({0}, bool)))",
    "integer": "(type({0}) is int or (not isinstance({0}, bool) and (isinstance({0}, int) or (isinstance({0}, float) and {0}.is_integer()))))",
}


class _Unsupported(Exception):
    """The schema uses something the predicate compiler does not handle."""


class _Predicates:
    """Writes a schema as the body of one Python function `check(v) -> bool` that returns False
    at the first keyword that fails; local `$ref`s are inlined (a recursive one is unsupported)."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root, self.lines, self.constants, self.names, self.refs = root, [], {"Number": numbers.Number}, 0, []

    def compile(self, schema: Any) -> Check:
        self.emit(schema, "v", 1, top=True)
        source = "def check(v):\n" + "\n".join(self.lines) + "\n    return True\n"
        namespace = dict(self.constants)
        exec(compile(source, "<schema predicate>", "exec"), namespace)
        return namespace["check"]

    def emit(self, schema: Any, var: str, depth: int, top: bool = False) -> None:
        if schema is True:
            return
        if schema is False or not isinstance(schema, Mapping) or (not top and "$id" in schema):
            if schema is False:
                return self.line(depth, "return False")
            raise _Unsupported(schema)
        for name, value in schema.items():
            if name not in _ANNOTATIONS:
                method = getattr(self, "_" + name.lstrip("$"), None)
                if method is None:
                    raise _Unsupported(name)
                method(value, schema, var, depth)

    def line(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def name(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def constant(self, value: Any) -> str:
        name = self.name("c")
        self.constants[name] = value
        return name

    def _type(self, value: Any, schema: Mapping, var: str, depth: int) -> None:
        names = [value] if isinstance(value, str) else list(value)
        if any(name not in _TYPES for name in names):
            raise _Unsupported(value)
        self.line(depth, f"if not ({' or '.join(_TYPES[n].format(var) for n in names)}): return False")

    def _properties(self, value: Mapping[str, Any], schema: Mapping, var: str, depth: int) -> None:
        self.line(depth, f"if isinstance({var}, dict):")
        self.line(depth + 1, "pass")
        for key, sub in value.items():
            item = self.name("x")
            self.line(depth + 1, f"if {key!r} in {var}:")
            self.line(depth + 2, f"{item} = {var}[{key!r}]")
            self.emit(sub, item, depth + 2)

    def _additionalProperties(self, value: Any, schema: Mapping, var: str, depth: int) -> None:
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        known, item = self.constant(frozenset(schema.get("properties") or ())), self.name("x")
        if value is False:                      # no other key: one C-level subset test
            self.line(depth, f"if isinstance({var}, dict) and not {known}.issuperset({var}): return False")
            return
        self.line(depth, f"if isinstance({var}, dict):")
        self.line(depth + 1, f"for {item}k in {var}:")
        self.line(depth + 2, f"if {item}k not in {known}:")
        self.line(depth + 3, f"{item} = {var}[{item}k]")
        self.emit(value, item, depth + 3)

    def _required(self, value: list, schema: Mapping, var: str, depth: int) -> None:
        if value:
            present = " and ".join(f"{name!r} in {var}" for name in value)
            self.line(depth, f"if isinstance({var}, dict) and not ({present}): return False")

    def _items(self, value: Any, schema: Mapping, var: str, depth: int) -> None:
        if "prefixItems" in schema:
            raise _Unsupported("prefixItems")
        item = self.name("x")
        self.line(depth, f"if isinstance({var}, list):")
        self.line(depth + 1, f"for {item} in {var}:")
        self.line(depth + 2, "pass")
        self.emit(value, item, depth + 2)

    def _minItems(self, value: int, schema: Mapping, var: str, depth: int) -> None:
        self.line(depth, f"if isinstance({var}, list) and len({var}) < {int(value)}: return False")

    def _minLength(self, value: int, schema: Mapping, var: str, depth: int) -> None:
        self.line(depth, f"if isinstance({var}, str) and len({var}) < {int(value)}: return False")

    def _pattern(self, value: str, schema: Mapping, var: str, depth: int) -> None:
        search = self.constant(re.compile(value).search)
        self.line(depth, f"if isinstance({var}, str) and {search}({var}) is None: return False")

    def _minimum(self, value: Any, schema: Mapping, var: str, depth: int) -> None:
        bound = self.constant(value)
        self.line(depth, f"if {_TYPES['number'].format(var)} and {var} < {bound}: return False")

    def _allOf(self, value: list, schema: Mapping, var: str, depth: int) -> None:
        for sub in value:
            self.emit(sub, var, depth)

    def _ref(self, value: str, schema: Mapping, var: str, depth: int) -> None:
        if not value.startswith("#/") or value in self.refs:
            raise _Unsupported(value)
        target: Any = self.root
        for part in value[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target.get(part)
        self.refs.append(value)
        self.emit(target, var, depth)
        self.refs.pop()
