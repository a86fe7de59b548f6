"""`lint`: every problem of every spec, each with file, line, column and path inside the spec.

The order of checks for one document:

1. what loading found (duplicate keys; YAML syntax errors never get this far);
2. the schema of its kind, with JMESPath compiled on the way (`schema_rules`);
3. connectors: templates and their variables (`rules`; the fields they, `match` and
   `skip_when` read of canonical records, `references`), `map` keys against the canonical
   schemas (`canonical`), every write resolvable after a lost
   answer (`guarantees`); integrations: connector references,
   flows, config and secrets (`integrations`);
4. connectors that are otherwise clean: their golden examples (`examples`).

`example_refreshes` is `lint --update-examples`: the golden `expect` files to rewrite.
`load_clean` is what `run` uses: the documents, or a SpecError carrying the findings. Both find
the connectors an integration names with `find_connectors`: the user's, then the bundled ones; a
user's connector hiding a bundled one of the same name is a warning, not an error.
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

from engine import ROOT, startcache
from engine.errors import SpecError
from engine.specs.canonical import map_problems
from engine.specs.examples import Refresh, example_problems, refreshes
from engine.specs.findings import Finding, Problem
from engine.specs.guarantees import guarantees, write_problems
from engine.specs.integrations import integration_problems
from engine.specs.load import Document, data_file, load_paths
from engine.specs.references import predicate_problems
from engine.specs.rules import connector_template_problems
from engine.specs.schema_rules import lint_validator, schema_problems

#: The connectors shipped with syncengine; integrations may name them without copying them.
BUNDLED_CONNECTORS = ROOT / "connectors"


def lint_paths(paths: Iterable[str | Path], *, documents: list[Document] | None = None) -> list[Finding]:
    """Lint every spec file under `paths` (directories walked recursively); the loaded
    documents are appended to `documents` when given."""
    loaded, findings = load_paths(paths)
    if documents is not None:
        documents.extend(loaded)
    return sorted(findings + lint_documents(loaded), key=Finding.sort_key)


def write_guarantees(documents: Iterable[Document], findings: Iterable[Finding]) -> list[str]:
    """One line per write of each clean connector: what a lost answer leaves (`guarantees`)."""
    bad = {finding.file for finding in errors(findings)}
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
    connectors = find_connectors(documents if among is None else among)
    workers = min(os.cpu_count() or 1, len(documents) // PARALLEL_FROM)
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        findings = _in_workers(documents, connectors, workers)
    else:
        findings = _lint_some(documents, connectors)
    shadows = shadow_warnings(connectors) if among is None else []     # `among`: the caller warns
    return sorted(findings + shadows, key=Finding.sort_key)


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
    found = _spec_problems(document, connectors)
    if document.kind == "alerts":
        yield from found
        return
    yield from found
    if document.kind == "connector" and not found and not document.problems:
        yield from example_problems(document)


def _spec_problems(document: Document, connectors: Mapping[str, Any]) -> list[Problem]:
    """Steps 2 and 3 of the module docstring: the problems of the spec itself."""
    found = list(schema_problems(document.kind, document.data))
    if document.kind == "alerts":
        return found
    if document.kind == "connector":
        found.extend(connector_template_problems(document.data))
        found.extend(map_problems(document.data))
        found.extend(predicate_problems(document.data))
        found.extend(write_problems(document.data))
    else:
        found.extend(integration_problems(document.data, connectors))
    return found


def example_refreshes(documents: list[Document]) -> Iterator[Refresh]:
    """The golden `expect` files to write (`lint --update-examples`), of the connectors that lint
    clean but for their examples (a spec with other problems is left alone)."""
    connectors = find_connectors(documents)
    for document in documents:
        if document.kind == "connector" and not document.problems and not _spec_problems(document, connectors):
            yield from refreshes(document)


class Connectors(Mapping[str, Any]):
    """Connector specs by name, as integrations find them (lint and run alike): those among the
    documents given (the user's), then the bundled ones in the project's `connectors/` dir. A
    user's connector named like a bundled one is the one used (`shadowed` says which)."""

    def __init__(self, documents: Iterable[Document]) -> None:
        self._linted = {doc.name: doc for doc in documents if doc.kind == "connector" and doc.name}

    def document(self, name: str) -> Document:
        """The spec integrations get for `name`; KeyError when there is none."""
        if name in self._linted:
            return self._linted[name]
        return bundled_connectors()[name]

    def __getitem__(self, name: str) -> Any:
        return self.document(name).data

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._linted) | set(bundled_connectors())))

    def __len__(self) -> int:
        return len(set(self._linted) | set(bundled_connectors()))

    def shadowed(self) -> Iterator[tuple[Document, Document]]:
        """(the user's connector, the bundled one of the same name it hides), by name."""
        bundled = bundled_connectors()
        for name, doc in sorted(self._linted.items()):
            if name in bundled and doc.path.resolve() != bundled[name].path.resolve():
                yield doc, bundled[name]


def find_connectors(documents: Iterable[Document]) -> Connectors:
    """The connectors integrations may name, found the one way `lint` and `run` share."""
    return Connectors(documents)


@functools.cache
def bundled_connectors() -> dict[str, Document]:
    """The connector specs shipped in the project's `connectors/` dir, by name."""
    if not BUNDLED_CONNECTORS.is_dir():
        return {}
    documents, _ = load_paths([BUNDLED_CONNECTORS])
    return {doc.name: doc for doc in documents if doc.kind == "connector" and doc.name}


def shadow_warnings(connectors: Connectors) -> list[Finding]:
    """A warning at the `name:` of each user connector that hides a bundled one."""
    return [doc.finding(Problem(
        ("name",), f"connector '{doc.name}' shadows the bundled connector of the same name, "
        f"{bundled.path}: integrations naming '{doc.name}' use this one, {doc.path}",
        "a name no bundled connector has, unless replacing the bundled one is meant",
        "rename it to keep both, or delete it to use the bundled one", severity="warning"))
        for doc, bundled in connectors.shadowed()]


def errors(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that are errors (a warning does not stop `run`)."""
    return [finding for finding in findings if finding.severity == "error"]


def load_clean(paths: Iterable[str | Path], warnings: list[Finding] | None = None) -> list[Document]:
    """The documents under `paths`; raises SpecError with the findings unless they lint without
    an error. Warnings are appended to `warnings` when given.

    A connector spec already linted by this process with the same data and the same example
    files is not linted again (`run --every`, `serve` and in-process callers load the same
    specs over and over; linting their golden examples is most of a load). `lint` itself always
    lints afresh."""
    documents, findings = load_paths(paths)
    connectors = find_connectors(documents)
    fresh = [doc for doc in documents if doc.kind != "connector"]
    for document in documents:
        if document.kind != "connector":
            continue
        key = _connector_key(document)
        if key not in _CONNECTOR_FINDINGS:
            stored = _stored_findings(_placed(key, document))
            _CONNECTOR_FINDINGS[key] = stored if stored is not None else _fresh_findings(key, document, connectors)
            while len(_CONNECTOR_FINDINGS) > 256:
                _CONNECTOR_FINDINGS.pop(next(iter(_CONNECTOR_FINDINGS)))
        findings += [dataclasses.replace(f, file=str(document.path)) for f in _CONNECTOR_FINDINGS[key]]
    findings += lint_documents(fresh, among=documents) if fresh else []
    findings = sorted(findings + shadow_warnings(connectors), key=Finding.sort_key)
    if errors(findings):
        raise SpecError(f"{len(errors(findings))} problem(s) in the specs; run `syncengine lint`",
                        findings=findings)
    if warnings is not None:
        warnings.extend(findings)
    return documents


def _stored_findings(key: str) -> list[Finding] | None:
    """The findings another process stored for this connector key (`engine.startcache`), or
    None when there are none or they do not read back as findings."""
    stored = startcache.get_json("lint", key)
    try:
        return [Finding(**item) for item in stored] if isinstance(stored, list) else None
    except TypeError:
        return None


def _fresh_findings(key: str, document: Document, connectors: Mapping[str, Any]) -> list[Finding]:
    found = [document.finding(problem) for problem in problems(document, connectors)]
    startcache.put_json("lint", _placed(key, document), [finding.to_json() for finding in found])
    return found


def _placed(key: str, document: Document) -> str:
    """`key` and where each piece of the spec is written: a finding kept across processes
    carries the line and column of a file that may have been reformatted since."""
    where = repr((sorted(document.positions.items()), sorted(document.values.items()))).encode()
    return key + hashlib.blake2b(where, digest_size=16).hexdigest()


def _connector_key(document: Document) -> str:
    """What a connector's findings depend on: its data, the problems met loading it and each
    example file it names (`{file: ...}`: where it resolves to, or why it is refused, and its
    content). Only those files: a spec found under a big tree costs nothing more."""
    digest = hashlib.blake2b(digest_size=20)
    for part in (json.dumps(document.data, sort_keys=True, default=repr), repr(document.problems)):
        digest.update(part.encode() + b"\0")
    for reference in sorted(set(_file_references(document.data))):
        digest.update(reference.encode() + b"\0")
        try:
            target = data_file(document, reference)
            digest.update(str(target).encode() + hashlib.blake2b(target.read_bytes(), digest_size=20).digest())
        except (OSError, ValueError) as exc:
            digest.update(repr(exc).encode())
    return digest.hexdigest()


def _file_references(data: Any) -> Iterator[str]:
    """Every `{file: ...}` reference anywhere in a spec's data."""
    if isinstance(data, Mapping):
        if isinstance(data.get("file"), str):
            yield data["file"]
        for value in data.values():
            yield from _file_references(value)
    elif isinstance(data, list):
        for value in data:
            yield from _file_references(value)
