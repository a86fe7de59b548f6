"""Specs: load connector and integration YAML with positions, and lint them.

    documents, findings = load_paths(["connectors/", "samples/"])
    findings = lint_paths(["connectors/", "samples/"])   # every problem, sorted by file/line
    documents = load_clean(paths)                         # or SpecError(findings=...)
    for refresh in example_refreshes(documents): ...      # lint --update-examples
"""

from __future__ import annotations

from engine.specs.findings import Finding
from engine.specs.lint import example_refreshes, lint_documents, lint_paths, load_clean, write_guarantees
from engine.specs.load import Document, load_file, load_paths

__all__ = ["Document", "Finding", "example_refreshes", "lint_documents", "lint_paths", "load_clean",
           "load_file", "load_paths", "write_guarantees"]
