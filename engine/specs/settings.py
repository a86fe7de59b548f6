"""An integration's settings at run time: durations parsed, filters compiled, maps loaded."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from engine import extract
from engine.errors import ConfigError

FLOWS = ("orders", "shipments", "inventory", "cancellations", "wms_cancellations")
DEFAULT_EVERY = {"orders": 300.0, "shipments": 900.0, "inventory": 3600.0, "cancellations": 300.0,
                 "wms_cancellations": 900.0}
_DURATION = re.compile(r"^(?P<n>[0-9]+(?:\.[0-9]+)?)(?P<unit>s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(text: str | int | float) -> float:
    """'90s', '5m', '1h', '2d' -> seconds; a bare number is seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ConfigError(f"bad duration {text!r}: expected a number with s, m, h or d (e.g. 5m)")
    return float(match["n"]) * _UNITS[match["unit"]]


def parse_time(text: str) -> datetime:
    """An ISO-8601 timestamp as an aware UTC datetime (a date alone means midnight UTC)."""
    value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def iso(value: datetime) -> str:
    """A UTC datetime as 'YYYY-MM-DDTHH:MM:SSZ'."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z").fullmatch
#: A match (true) when a text is a canonical UTC timestamp, 'YYYY-MM-DDTHH:MM:SSZ'.
canonical_time = _CANONICAL


def time_before(a: str, b: str) -> bool:
    """Whether timestamp ``a`` lies before ``b``. Two texts in the canonical 'YYYY-MM-DDTHH:MM:SSZ'
    form (what `iso` writes) order as text, so they are compared without parsing (a hot path:
    watermarks and start dates per order); anything else goes through `parse_time`."""
    if _CANONICAL(a) is not None and _CANONICAL(b) is not None:
        return a < b
    return parse_time(a) < parse_time(b)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of an integration: a connector name and its (unresolved) config."""

    connector: str
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class OrderFilter:
    name: str
    holds: Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class Integration:
    """One merchant's binding of a source cart to a destination WMS."""

    name: str
    path: Path
    source: Endpoint
    destination: Endpoint
    start_date: datetime
    overlap: float
    flows: Mapping[str, float]                 # enabled flow -> seconds between runs
    order_filters: tuple[OrderFilter, ...] = ()
    hold_minutes: float = 0
    sku_map: Mapping[str, str] = field(default_factory=dict)
    kits: Mapping[str, list] = field(default_factory=dict)
    item_filters: Mapping[str, Any] | None = None
    ship_method_map: Mapping[str, Any] | None = None
    carrier_map: Mapping[str, str] = field(default_factory=dict)
    split_shipments: str = "immediate"
    inventory: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, Any], path: Path) -> Integration:
        flows = {}
        for name, setting in (data.get("flows") or {}).items():
            if setting.get("enabled", True):
                flows[name] = seconds(setting.get("every", DEFAULT_EVERY[name]))
        return cls(
            name=data["name"], path=path,
            source=Endpoint(data["source"]["connector"], data["source"].get("config") or {}),
            destination=Endpoint(data["destination"]["connector"], data["destination"].get("config") or {}),
            start_date=parse_time(data.get("start_date", "1970-01-01T00:00:00Z")),
            overlap=seconds(data.get("overlap", "10m")),
            flows=flows,
            order_filters=tuple(OrderFilter(f["name"], extract.compile_predicate(f["when"]))
                                for f in data.get("order_filters") or ()),
            hold_minutes=float(data.get("hold_minutes", 0)),
            sku_map=_sku_map(data.get("sku_map"), path.parent),
            kits=data.get("kits") or {},
            item_filters=data.get("item_filters"),
            ship_method_map=data.get("ship_method_map"),
            carrier_map=data.get("carrier_map") or {},
            split_shipments=data.get("split_shipments", "immediate"),
            inventory=data.get("inventory") or {},
        )


def _sku_map(value: Any, base: Path) -> dict[str, str]:
    if not value:
        return {}
    if "file" not in value:
        return {str(k): str(v) for k, v in value.items()}
    path = base / value["file"]
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
    except OSError as exc:
        raise ConfigError(f"cannot read sku_map file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"sku_map file {path} is not UTF-8 text (byte {exc.start}): "
                          "expected a CSV of cart_sku,wms_sku lines") from None
    except csv.Error as exc:
        raise ConfigError(f"sku_map file {path} is not a CSV of cart_sku,wms_sku lines: {exc}") from None
    if rows and rows[0][:2] == ["cart_sku", "wms_sku"]:
        rows = rows[1:]
    return {row[0].strip(): row[1].strip() for row in rows if len(row) >= 2}
