"""Canonical records: which operation yields which record type, and their compiled validators.

The JSON Schemas live in `schemas/<type>.schema.json`; each is loaded and compiled once, on
first use. `validate` is on the per-record hot path. jsonschema's `is_valid` costs ~0.5 ms for
an order (a validator object per keyword per value, `$ref` lookups), so each schema is also
compiled into one plain Python predicate (`fast_check`) for the keywords the canonical schemas
use; a record it accepts is valid, anything else goes to jsonschema, which gives the messages
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
    except _Unsupported:
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
_TYPES: dict[str, Check] = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "number": lambda v: isinstance(v, numbers.Number) and not isinstance(v, bool),
    "integer": lambda v: not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and v.is_integer())),
}


class _Unsupported(Exception):
    """The schema uses something the predicate compiler does not handle."""


class _Predicates:
    """Compiles a schema (and the local `$ref`s it reaches) into predicates."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root, self.refs = root, {}

    def compile(self, schema: Any, top: bool = True) -> Check:
        if schema is True or schema is False:
            return lambda value: schema
        if not isinstance(schema, Mapping) or (not top and "$id" in schema):
            raise _Unsupported(schema)
        checks = [self._keyword(name, value, schema) for name, value in schema.items() if name not in _ANNOTATIONS]
        if len(checks) == 1:
            return checks[0]
        return lambda value: all(check(value) for check in checks)

    def _keyword(self, name: str, value: Any, schema: Mapping[str, Any]) -> Check:
        method = getattr(self, "_" + name.lstrip("$"), None)
        if method is None:
            raise _Unsupported(name)
        return method(value, schema)

    def _type(self, value: Any, schema: Mapping) -> Check:
        names = [value] if isinstance(value, str) else list(value)
        if any(name not in _TYPES for name in names):
            raise _Unsupported(value)
        tests = [_TYPES[name] for name in names]
        return tests[0] if len(tests) == 1 else lambda v: any(test(v) for test in tests)

    def _properties(self, value: Mapping[str, Any], schema: Mapping) -> Check:
        checks = [(name, self.compile(sub, False)) for name, sub in value.items()]
        return lambda v: not isinstance(v, dict) or all(check(v[name]) for name, check in checks if name in v)

    def _additionalProperties(self, value: Any, schema: Mapping) -> Check:
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        known, check = frozenset(schema.get("properties") or ()), self.compile(value, False)
        return lambda v: not isinstance(v, dict) or all(check(v[name]) for name in v if name not in known)

    def _required(self, value: list, schema: Mapping) -> Check:
        names = tuple(value)
        return lambda v: not isinstance(v, dict) or all(name in v for name in names)

    def _items(self, value: Any, schema: Mapping) -> Check:
        if "prefixItems" in schema:
            raise _Unsupported("prefixItems")
        check = self.compile(value, False)
        return lambda v: not isinstance(v, list) or all(check(item) for item in v)

    def _minItems(self, value: int, schema: Mapping) -> Check:
        return lambda v: not isinstance(v, list) or len(v) >= value

    def _minLength(self, value: int, schema: Mapping) -> Check:
        return lambda v: not isinstance(v, str) or len(v) >= value

    def _pattern(self, value: str, schema: Mapping) -> Check:
        search = re.compile(value).search
        return lambda v: not isinstance(v, str) or search(v) is not None

    def _minimum(self, value: Any, schema: Mapping) -> Check:
        number = _TYPES["number"]
        return lambda v: not number(v) or v >= value

    def _allOf(self, value: list, schema: Mapping) -> Check:
        checks = [self.compile(sub, False) for sub in value]
        return lambda v: all(check(v) for check in checks)

    def _ref(self, value: str, schema: Mapping) -> Check:
        if not value.startswith("#/"):
            raise _Unsupported(value)
        if value not in self.refs:
            self.refs[value] = None                    # a recursive reference finds it filled in
            target: Any = self.root
            for part in value[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target[int(part)] if isinstance(target, list) else target.get(part)
            self.refs[value] = self.compile(target, False)
        return lambda v: self.refs[value](v)