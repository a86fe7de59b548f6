"""The one thing lint produces: a `Finding`, with file, line, column and the path inside the spec.

Rules are generators of findings (jsonschema's `_keywords.py` habit): a rule yields a
`Problem` — a message relative to the node it looks at — and the walker that called it adds
where that node is (`Problem.at`), which `Document.finding` turns into file, line and column.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

SpecPath = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem in one file, at a line and column (1-based), at a path inside the spec;
    `severity` is "error" (lint fails, run refuses) or "warning" (reported only)."""

    file: str
    line: int
    column: int
    path: str
    message: str
    expected: str | None = None
    hint: str | None = None
    severity: str = "error"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.file, self.line, self.column, self.message)


@dataclass(frozen=True, slots=True)
class Problem:
    """A finding before it knows its file: `path` is absolute inside the document.

    It is reported at the key of `path` (or its item, in a list); with `offset` set, at that
    many lines into the value instead (a template's own line number - 1).
    """

    path: SpecPath
    message: str
    expected: str | None = None
    hint: str | None = None
    offset: int | None = None
    severity: str = "error"

    def at(self, prefix: SpecPath) -> Problem:
        """The same problem, seen from `prefix` up: the walker adds the path."""
        return Problem(prefix + self.path, self.message, self.expected, self.hint, self.offset, self.severity)


def dotted(path: Sequence[str | int]) -> str:
    """`("operations", "list_orders", "lines", 0)` -> `operations.list_orders.lines[0]`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(word: Any, choices: Iterable[Any]) -> str | None:
    """`did you mean 'param'?` for the closest choice, or None when nothing is close."""
    strings = [str(choice) for choice in choices]
    close = difflib.get_close_matches(str(word), strings, n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def one_of(choices: Iterable[Any]) -> str:
    """A human list of valid values: `one of: 'a', 'b', 'c'`."""
    listed = ", ".join(repr(choice) if isinstance(choice, str) else str(choice)
                       for choice in choices)
    return f"one of: {listed}"
