"""Canonical records: which operation yields which record type, and their compiled validators.

The JSON Schemas live in `schemas/<type>.schema.json`; each is loaded and compiled once, on
first use. `validate` is on the per-record hot path: a valid record costs one `is_valid` walk.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
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
    check = validator(record_type)
    if check.is_valid(record):
        return []
    return [_message(error) for error in sorted(check.iter_errors(record), key=lambda e: list(e.absolute_path))]


def _message(error: Any) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    return f"{where}: {error.message}" if where else error.message
