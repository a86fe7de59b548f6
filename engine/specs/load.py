"""Read spec files into plain data plus a table of where every key and value is.

The only module in syncengine that imports `yaml`. A file is composed once (libyaml when
available) and turned into plain dicts and lists by `_Builder`, which on the way records the
(line, column) of every mapping key, sequence item and value under its path, such as
`("operations", "list_orders", "paginate", "type")`, and notes duplicate keys. Lint looks each
error's path up in that table (cfn-lint's `decode/cfn_yaml.py` does the same with marked nodes).

Deliberate departures from YAML 1.1 defaults, to keep data JSON-shaped:
- mapping keys are always strings (the key's source text), never ints or booleans;
- timestamps stay strings (`start_date: 2026-01-01` is the string "2026-01-01").
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.errors import SpecError
from engine.specs.findings import Finding, Problem, SpecPath, dotted

_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_STR = "tag:yaml.org,2002:str"
SPEC_SUFFIXES = (".yaml", ".yml")
#: Values one file may expand to, aliases counted each time they are used (the largest bundled
#: connector has ~500; "billion laughs" aliases expand to billions).
MAX_VALUES = 100_000
#: How deeply a spec may nest (a real one nests < 20 levels).
MAX_NESTING = 200
CONNECTOR_KINDS = ("cart", "wms")
#: The folders of the connectors layout (`<dir>/carts/x.yaml`, examples in `<dir>/examples/`).
KIND_FOLDERS = ("carts", "wms")
#: The largest golden-example file read, in bytes (the bundled ones are a few kB).
MAX_DATA_FILE = 4 * 1024 * 1024


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader that leaves timestamps as strings."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


Position = tuple[int, int]


@dataclass(slots=True)
class Document:
    """One spec file: its kind, its plain data and where each piece of it was written.

    `positions` maps a path to the (line, column) of its key (mapping members) or of its item
    (sequence items); `values` maps it to where the value itself starts (for a block scalar,
    the first line of its text). `problems` are the problems found while loading. `root` is
    the directory the spec was found under (see `data_root`).
    """

    path: Path
    kind: str
    data: Any
    positions: dict[SpecPath, Position] = field(default_factory=dict)
    values: dict[SpecPath, Position] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    root: Path | None = None

    @property
    def data_root(self) -> Path:
        """The tree `{file: ...}` references must stay inside: the directory the spec was found
        under (`root`), else the spec's own folder or, in the connectors layout
        (`<dir>/carts/x.yaml`, `<dir>/wms/x.yaml`), `<dir>`."""
        if self.root is not None:
            return self.root
        folder = self.path.parent
        return folder.parent if folder.name in KIND_FOLDERS else folder

    @property
    def name(self) -> str | None:
        name = self.data.get("name") if isinstance(self.data, dict) else None
        return name if isinstance(name, str) else None

    def locate(self, path: SpecPath, *, value: bool = False) -> Position:
        """The position of `path`, or of its nearest ancestor written in the file."""
        table = self.values if value else self.positions
        for end in range(len(path), 0, -1):
            found = table.get(path[:end]) or self.positions.get(path[:end])
            if found:
                return found
        return (1, 1)

    def finding(self, problem: Problem) -> Finding:
        """Turn a problem found in this document into a finding with file, line and column."""
        inside = problem.offset is not None
        line, column = self.locate(problem.path, value=inside)
        return Finding(str(self.path), line + (problem.offset or 0), column, dotted(problem.path),
                       problem.message, problem.expected, problem.hint, problem.severity)


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _TooBig(Exception):
    """The document expands beyond MAX_VALUES, nests beyond MAX_NESTING, or an alias contains
    itself: `message` at `node`."""

    def __init__(self, message: str, node: yaml.Node) -> None:
        super().__init__(message)
        self.message, self.node = message, node


class _Builder:
    """Turns a composed node tree into plain data, filling a document's position tables.

    Aliases are expanded (a node used twice is built twice) within MAX_VALUES values in all;
    an alias inside its own anchor, or nesting beyond MAX_NESTING, is refused (`_TooBig`)."""

    def __init__(self, loader: _Loader, document: Document) -> None:
        self.loader = loader
        self.document = document
        self.left = MAX_VALUES
        self.open: set[int] = set()      # the collections being built, by id: a recursive alias

    def build(self, node: yaml.Node, path: SpecPath) -> Any:
        self.left -= 1
        if self.left < 0:
            raise _TooBig(f"the file expands to more than {MAX_VALUES} values "
                          "(aliases used over and over?)", node)
        self.document.values[path] = self._value_mark(node)
        if isinstance(node, yaml.ScalarNode):
            if node.tag == _STR:
                return node.value  # the common case, without the constructor's bookkeeping
            value = self.loader.construct_object(node, deep=True)
            if isinstance(value, float) and not math.isfinite(value):
                self.document.problems.append(Problem(
                    path, f"{node.value} is not a number a spec can use",
                    hint="JSON has no NaN or infinity: write a finite number"))
            return value
        if len(path) > MAX_NESTING:
            raise _TooBig(f"the file nests deeper than {MAX_NESTING} levels", node)
        if id(node) in self.open:
            raise _TooBig("an alias refers to a collection that contains it (a recursive alias)", node)
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return [self._item(item, path + (index,)) for index, item in enumerate(node.value)]
            return self.loader.construct_object(node, deep=True)
        finally:
            self.open.discard(id(node))

    def _item(self, node: yaml.Node, path: SpecPath) -> Any:
        self.document.positions[path] = _mark(node)
        return self.build(node, path)

    def _mapping(self, node: yaml.MappingNode, path: SpecPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            if key in result:
                self._duplicate(key, path)
            self.document.positions[path + (key,)] = _mark(key_node)
            result[key] = self.build(value_node, path + (key,))
        return result

    def _key(self, node: yaml.Node, path: SpecPath) -> str:
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        self.document.problems.append(Problem(path, "a mapping key must be a plain string"))
        return f"<{node.id} key at line {_mark(node)[0]}>"

    def _duplicate(self, key: str, path: SpecPath) -> None:
        first = self.document.positions[path + (key,)][0]
        self.document.problems.append(Problem(
            path + (key,), f"duplicate key '{key}' (first defined at line {first})",
            hint="remove one of them; YAML would silently keep only the last"))

    @staticmethod
    def _value_mark(node: yaml.Node) -> Position:
        line, column = _mark(node)
        if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
            return (line + 1, column)
        return (line, column)


def parse(text: str, path: Path) -> Document:
    """Parse YAML text into a `Document`; raises SpecError (with one finding) on bad syntax."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        document = Document(path, "unknown", None)
        if node is not None:
            document.data = _Builder(loader, document).build(node, ())
    except _TooBig as exc:
        line, column = _mark(exc.node)
        raise SpecError(f"{path}: {exc.message}", findings=[
            Finding(str(path), line, column, "", exc.message)]) from None
    except RecursionError:
        raise SpecError(f"{path}: nests too deeply", findings=[
            Finding(str(path), 1, 1, "", f"the file nests deeper than {MAX_NESTING} levels")]) from None
    except yaml.MarkedYAMLError as exc:
        raise SpecError(f"{path}: invalid YAML", findings=[_syntax_finding(exc, path)]) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML", findings=[
            Finding(str(path), 1, 1, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    document.kind = kind_of(document.data)
    return document


def _syntax_finding(exc: yaml.MarkedYAMLError, path: Path) -> Finding:
    """The finding of a YAML syntax error, at the line a person would fix.

    An unclosed flow collection (`{a: 1` or `[1, 2`) is only noticed where the parser gives up,
    often lines later; it is reported where the collection began.
    """
    problem, context = exc.problem_mark, exc.context_mark
    mark = problem or context
    hint = f"{exc.context} that began at line {context.line + 1}" if exc.context and context \
        else None
    if context and problem and "flow" in (exc.context or "") and context.line != problem.line:
        mark = context
        hint = f"unclosed {exc.context.split()[-1]}? the parser gave up at line {problem.line + 1}"
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    return Finding(str(path), line, column, "", f"invalid YAML: {exc.problem or exc.context}",
                   hint=hint)


def kind_of(data: Any) -> str:
    """`connector` (has `kind:`), `integration` (has `source`/`destination`), `alerts` (has
    `alerts_version:`, the settings of `serve --alerts`) or `unknown`."""
    if not isinstance(data, dict):
        return "unknown"
    if "alerts_version" in data:
        return "alerts"
    if "kind" in data:
        return "connector"
    if "source" in data or "destination" in data:
        return "integration"
    return "unknown"


def load_file(path: str | Path) -> Document:
    """Load one spec file; raises SpecError carrying findings when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read", findings=[
            Finding(str(path), 1, 1, "", f"cannot read file: {exc}")]) from None
    return parse(text, path)


def spec_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Every spec file under `paths`, directories walked recursively; `examples/` is data."""
    return (path for _, path in _found(paths))


def _found(paths: Iterable[str | Path]) -> Iterator[tuple[Path | None, Path]]:
    """(the directory a spec was found under, the spec file); None for a file named directly."""
    for path in map(Path, paths):
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                inside = child.relative_to(path).parts[:-1]
                if child.suffix in SPEC_SUFFIXES and "examples" not in inside and child.is_file():
                    yield path, child
        else:
            yield None, path


def load_paths(paths: Iterable[str | Path]) -> tuple[list[Document], list[Finding]]:
    """Load every spec under `paths`: the documents that parsed and the findings of the rest."""
    documents: list[Document] = []
    findings: list[Finding] = []
    for root, path in _found(paths):
        try:
            document = load_file(path)
        except SpecError as exc:
            findings.extend(exc.findings)
        else:
            document.root = root
            documents.append(document)
    return documents, findings


def data_file(document: Document, reference: Any) -> Path:
    """The file a `{file: ...}` reference names; ValueError unless it is a relative path that,
    symlinks resolved, stays inside the spec's `data_root`, names a regular file and is at most
    `MAX_DATA_FILE` bytes."""
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError("a file reference must be a non-empty relative path")
    root = document.data_root.resolve()
    if Path(reference).is_absolute() or reference.startswith("~"):
        raise ValueError(f"refused file {reference!r}: an absolute path; example files are "
                         f"relative to the spec file, inside {root}")
    target = (document.path.parent / reference).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"refused file {reference!r}: it leads outside {root}, the directory "
                         f"the spec was found under (through '..' or a symlink)")
    _check_regular(os.stat(target), reference)
    return target


def writable_data_file(document: Document, reference: Any) -> Path:
    """The file a `{file: ...}` reference names, to be written (`lint --update-examples`): the
    confinement of `data_file`, but the file may not exist yet (its folder must, inside the
    spec's tree)."""
    try:
        return data_file(document, reference)
    except FileNotFoundError:
        pass
    target = (document.path.parent / reference).resolve()
    if not target.parent.is_dir():
        raise ValueError(f"refused file {reference!r}: its folder {target.parent} does not exist")
    return target


def _check_regular(status: os.stat_result, reference: str) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise ValueError(f"refused file {reference!r}: not a regular file")
    if status.st_size > MAX_DATA_FILE:
        raise ValueError(f"refused file {reference!r}: larger than {MAX_DATA_FILE} bytes")


def load_json_file(document: Document, reference: str) -> Any:
    """The JSON (or YAML) data of a `{file: ...}` reference, relative to the spec file and
    confined as `data_file` says; read without blocking (a FIFO is refused, not waited on) and
    never past `MAX_DATA_FILE` bytes (a file growing meanwhile, or a device, is refused)."""
    target = data_file(document, reference)
    fd = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        _check_regular(os.fstat(handle.fileno()), reference)
        raw = handle.read(MAX_DATA_FILE + 1)
    if len(raw) > MAX_DATA_FILE:
        raise ValueError(f"refused file {reference!r}: larger than {MAX_DATA_FILE} bytes")
    text = raw.decode("utf-8")
    if target.suffix in SPEC_SUFFIXES:
        return parse(text, target).data
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{reference} nests too deeply to be read") from None
