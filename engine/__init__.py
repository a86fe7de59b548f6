"""syncengine: a declarative, two-way order-sync engine between carts and warehouse systems."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

#: The project root: schemas/, connectors/ and samples/ live here (install from a checkout).
ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
