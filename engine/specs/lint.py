"""`lint`: every problem of every spec, each with file, line, column and path inside the spec.

The order of checks for one document:

1. what loading found (duplicate keys; YAML syntax errors never get this far);
2. the schema of its kind, with JMESPath compiled on the way (`schema_rules`);
3. connectors: templates and their variables (`rules`), every write resolvable after a lost
   answer (`guarantees`); integrations: connector references,
   flows, config and secrets (`integrations`);
4. connectors that are otherwise clean: their golden examples (`examples`).

`load_clean` is what `run` uses: the documents, or a SpecError carrying the findings.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from engine import ROOT
from engine.errors import SpecError
from engine.specs.examples import example_problems
from engine.specs.findings import Finding, Problem
from engine.specs.guarantees import guarantees, write_problems
from engine.specs.integrations import integration_problems
from engine.specs.load import MAX_DATA_FILE, Document, load_paths
from engine.specs.rules import connector_template_problems
from engine.specs.schema_rules import lint_validator, schema_problems

PROJECT_CONNECTORS = ROOT / "connectors"


def lint_paths(paths: Iterable[str | Path], *, documents: list[Document] | None = None) -> list[Finding]:
    """Lint every spec file under `paths` (directories walked recursively); the loaded
    documents are appended to `documents` when given."""
    loaded, findings = load_paths(paths)
    if documents is not None:
        documents.extend(loaded)
    return sorted(findings + lint_documents(loaded), key=Finding.sort_key)


def write_guarantees(documents: Iterable[Document], findings: Iterable[Finding]) -> list[str]:
    """One line per write of each clean connector: what a lost answer leaves (`guarantees`)."""
    bad = {finding.file for finding in findings}
    return [f"{doc.name}: {op} ({flow}): {guarantee}"
            for doc in documents if doc.kind == "connector" and str(doc.path) not in bad and doc.name
            for op, flow, guarantee in guarantees(doc.data)]


def lint_documents(documents: list[Document], among: list[Document] | None = None) -> list[Finding]:
    """Lint loaded documents together (integrations see the connectors among them, or among
    `among` when given).

    From `PARALLEL_FROM` documents on, the documents are split between forked worker processes,
    one per core: each spec costs a few milliseconds of pure-Python schema walking, and forked
    workers share the parent's loaded schemas and documents without pickling them.
    """
    connectors = Connectors(documents if among is None else among)
    workers = min(os.cpu_count() or 1, len(documents) // PARALLEL_FROM)
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        findings = _in_workers(documents, connectors, workers)
    else:
        findings = _lint_some(documents, connectors)
    return sorted(findings, key=Finding.sort_key)


PARALLEL_FROM = 50
#: Findings of connector specs `load_clean` linted, by `_connector_key`.
_CONNECTOR_FINDINGS: dict[str, list[Finding]] = {}
_SHARED: tuple[list[list[Document]], Mapping[str, Any]] | None = None


def _lint_some(documents: Iterable[Document], connectors: Mapping[str, Any]) -> list[Finding]:
    return [document.finding(problem) for document in documents for problem in problems(document, connectors)]


def _lint_share(index: int) -> list[Finding]:
    chunks, connectors = _SHARED
    return _lint_some(chunks[index], connectors)


def _in_workers(documents: list[Document], connectors: Mapping[str, Any], workers: int) -> list[Finding]:
    global _SHARED
    for kind in {document.kind for document in documents} & {"connector", "integration"}:
        lint_validator(kind)            # compiled once here, inherited by every worker
    _SHARED = ([documents[i::workers] for i in range(workers)], connectors)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return [finding for part in pool.map(_lint_share, range(workers)) for finding in part]
    finally:
        _SHARED = None


def problems(document: Document, connectors: Mapping[str, Any]) -> Iterator[Problem]:
    """Every problem of one document, in the order of the module docstring."""
    yield from document.problems
    if document.kind == "unknown":
        yield Problem((), "not a connector (no 'kind: cart|wms'), an integration "
                      "(no 'source'/'destination') nor alert settings (no 'alerts_version')",
                      "a connector or an integration spec, or alert settings")
        return
    found = list(schema_problems(document.kind, document.data))
    if document.kind == "alerts":
        yield from found
        return
    if document.kind == "connector":
        found.extend(connector_template_problems(document.data))
        found.extend(write_problems(document.data))
    else:
        found.extend(integration_problems(document.data, connectors))
    yield from found
    if document.kind == "connector" and not found and not document.problems:
        yield from example_problems(document)


class Connectors(Mapping[str, Any]):
    """Connector specs by name: those being linted, then the project's `connectors/` dir."""

    def __init__(self, documents: Iterable[Document]) -> None:
        self._linted = {doc.name: doc.data for doc in documents
                        if doc.kind == "connector" and doc.name}

    def __getitem__(self, name: str) -> Any:
        if name in self._linted:
            return self._linted[name]
        return project_connectors()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._linted) | set(project_connectors())))

    def __len__(self) -> int:
        return len(set(self._linted) | set(project_connectors()))


@functools.cache
def project_connectors() -> dict[str, Any]:
    """The connector specs shipped in the project's `connectors/` dir, by name."""
    if not PROJECT_CONNECTORS.is_dir():
        return {}
    documents, _ = load_paths([PROJECT_CONNECTORS])
    return {doc.name: doc.data for doc in documents if doc.kind == "connector" and doc.name}


def load_clean(paths: Iterable[str | Path]) -> list[Document]:
    """The documents under `paths`; raises SpecError with the findings unless they lint clean.

    A connector spec already linted by this process with the same data and the same files in
    its tree is not linted again (`run --every`, `serve` and in-process callers load the same
    specs over and over; linting their golden examples is most of a load). `lint` itself always
    lints afresh."""
    documents, findings = load_paths(paths)
    fresh = [doc for doc in documents if doc.kind != "connector"]
    trees: dict[Path, str] = {}
    for document in documents:
        if document.kind != "connector":
            continue
        key = _connector_key(document, trees)
        if key not in _CONNECTOR_FINDINGS:
            _CONNECTOR_FINDINGS[key] = [document.finding(p) for p in problems(document, Connectors(documents))]
            while len(_CONNECTOR_FINDINGS) > 256:
                _CONNECTOR_FINDINGS.pop(next(iter(_CONNECTOR_FINDINGS)))
        findings += [dataclasses.replace(f, file=str(document.path)) for f in _CONNECTOR_FINDINGS[key]]
    findings += lint_documents(fresh, among=documents) if fresh else []
    if findings:
        raise SpecError(f"{len(findings)} problem(s) in the specs; run `syncengine lint`",
                        findings=sorted(findings, key=Finding.sort_key))
    return documents


def _connector_key(document: Document, trees: dict[Path, str]) -> str:
    """What a connector's findings depend on: its data, where it sits in its tree, the problems
    met loading it and every file (name, content, symlink target) of the tree its example files
    must stay inside."""
    root = document.data_root
    if root not in trees:
        trees[root] = tree_fingerprint(root)
    digest = hashlib.blake2b(digest_size=20)
    for part in (json.dumps(document.data, sort_keys=True, default=repr), repr(document.problems),
                 os.path.relpath(document.path, root), trees[root]):
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def tree_fingerprint(root: Path) -> str:
    """A digest of the names, symlink targets and contents of every file under `root`."""
    digest = hashlib.blake2b(digest_size=20)
    for path in sorted(root.rglob("*")) if root.is_dir() else []:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        try:
            if path.is_symlink():
                digest.update(os.readlink(path).encode() + b"\1")
            if path.is_file():
                status = path.stat()
                if status.st_size > MAX_DATA_FILE:          # never read whole: it is refused anyway
                    digest.update(f"{status.st_size}:{status.st_mtime_ns}".encode())
                else:
                    digest.update(hashlib.blake2b(path.read_bytes(), digest_size=20).digest())
        except (OSError, ValueError):
            digest.update(b"unreadable")
    return digest.hexdigest()
