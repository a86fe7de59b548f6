"""Golden cases: each connector example runs offline and must give what it expects.

A read case feeds its canned answer through `records` -> `filter` -> `key` -> `map`, adds the
key to each mapped record, validates it against its canonical schema and compares the list
with `expect`. A write case renders the operation's request (or one `step`'s) from `input`
(plus `config`) and compares the keys `expect.request` gives, or its `idempotency_key`, or what
resolving a lost answer finds in a canned `response` (`expect.resolved`). A mismatch is shown as a unified diff of pretty JSON.

Rendering uses a fixed `now` (`EXAMPLE_NOW`, or `input.now`) so cases are reproducible.
`refreshes` gives the read cases whose `expect` file differs from what they give now
(`lint --update-examples` shows each diff, then writes the file).
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import zones
from engine.errors import SyncEngineError
from engine.http import canned_client
from engine.extract import compile_mapping, compile_path, compile_predicate
from engine.records import RECORD_TYPES, validate
from engine.specs.expressions import descend
from engine.specs.findings import Problem
from engine.specs.enrich import Unenriched
from engine.specs.findings import SpecPath
from engine.specs.load import Document, data_file, load_json_file, writable_data_file
from engine.specs.model import Operation, Verify
from engine.specs.rules import CONTEXTS
from engine.template import Structure, compile_structure, compile_template

EXAMPLE_NOW = "2026-01-01T00:00:00Z"
#: The context variable a write case's `input` is bound to, unless `input` names them itself.
PRIMARY = {"create_order": "order", "create_shipment": "shipment",
           "update_inventory": "inventory", "cancel_order": "cancellation",
           "find_order": "order", "lookup_item": "inventory"}


class CaseFailed(Exception):
    """One golden case failed; the message says how."""


def example_problems(document: Document) -> Iterator[Problem]:
    """Run every example of a connector; one problem per failing case."""
    examples = document.data.get("examples") if isinstance(document.data, Mapping) else None
    operations = document.data.get("operations")
    if not isinstance(examples, list) or not isinstance(operations, Mapping):
        return
    for index, example in enumerate(examples):
        if isinstance(example, Mapping) and isinstance(example.get("operation"), str):
            yield from descend(_case(document, example, operations), ("examples", index))


def _case(document: Document, example: Mapping[str, Any], operations: Mapping) -> Iterator[Problem]:
    name = example["operation"]
    label = f"example {example.get('name') or name!r}"
    operation = operations.get(name)
    if not isinstance(operation, Mapping):
        yield Problem(("operation",), f"{label} tests '{name}', which this spec does not define")
        return
    refused = [Problem(path, f"{label}: {exc}") for path, reference in _file_references(example)
               for exc in _refusal(document, reference)]
    if refused:
        yield from refused
        return
    try:
        if "input" in example:
            run_write_case(document, example, operation)
        else:
            run_read_case(document, example, operation)
    except CaseFailed as exc:
        yield Problem((), f"{label} failed: {exc}")
    except (SyncEngineError, OSError, ValueError) as exc:
        yield Problem((), f"{label} could not run: {exc}")


def _file_references(example: Mapping) -> Iterator[tuple[SpecPath, Any]]:
    """Every `{file: ...}` of a case, with its path inside the example."""
    for key in ("response", "expect"):
        if isinstance(example.get(key), Mapping) and "file" in example[key]:
            yield (key, "file"), example[key]["file"]
    subresponses = example.get("subresponses")
    for path, answers in (subresponses.items() if isinstance(subresponses, Mapping) else ()):
        listed = answers if isinstance(answers, list) else [answers]
        for index, answer in enumerate(listed):
            if isinstance(answer, Mapping) and "file" in answer:
                where = (index,) if isinstance(answers, list) else ()
                yield ("subresponses", path, *where, "file"), answer["file"]


def _refusal(document: Document, reference: Any) -> list[Exception]:
    """[why `reference` may not be read], or [] (a missing file is left to the case to say)."""
    try:
        data_file(document, reference)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        return [exc]
    return []


def run_read_case(document: Document, example: Mapping, operation: Mapping) -> None:
    """records -> filter -> key -> map -> validate, compared with the expected records."""
    produced = case_records(document, example, operation)
    expect = example.get("expect") or {}
    wanted = load_json_file(document, expect["file"]) if "file" in expect else expect.get("records")
    if isinstance(wanted, Mapping) and "records" in wanted:
        wanted = wanted["records"]
    if produced != wanted:
        raise CaseFailed("records differ from expect\n" + json_diff(wanted, produced))


def case_records(document: Document, example: Mapping, operation: Mapping) -> list[Any]:
    """The records a read case's canned answer gives (enriched, mapped and validated)."""
    body = _response_body(document, example.get("response") or {})
    return read_records(example["operation"], operation, body, case_zone(document, example, operation),
                        _enricher(document, example, operation))


@dataclass(frozen=True, slots=True)
class Refresh:
    """A golden `expect` file to write because its read case now gives other records: `diff`
    is from what the file holds (null when it does not exist yet) to what `text` holds."""

    label: str
    path: Path
    diff: str
    text: str

    def write(self) -> None:
        self.path.write_text(self.text, encoding="utf-8")


def refreshes(document: Document) -> Iterator[Refresh]:
    """Each `expect: {file: ...}` of a read case that differs from what the case gives now, or
    does not exist yet. A case that cannot run, or whose file may not be written (outside the
    spec's tree: `writable_data_file`), is skipped: lint reports it."""
    data = document.data if isinstance(document.data, Mapping) else {}
    operations = data.get("operations") if isinstance(data.get("operations"), Mapping) else {}
    for example in data.get("examples") if isinstance(data.get("examples"), list) else ():
        expect = example.get("expect") if isinstance(example, Mapping) else None
        operation = operations.get(example.get("operation")) if isinstance(expect, Mapping) else None
        if isinstance(operation, Mapping) and "file" in expect and "input" not in example:
            try:
                refresh = _refresh(document, example, operation, expect["file"])
            except (CaseFailed, SyncEngineError, OSError, ValueError):
                continue
            if refresh is not None:
                yield refresh


def _refresh(document: Document, example: Mapping, operation: Mapping, reference: Any) -> Refresh | None:
    target = writable_data_file(document, reference)
    produced = case_records(document, example, operation)
    held = load_json_file(document, reference) if target.exists() else None
    wrapped = isinstance(held, Mapping) and "records" in held
    wanted = held["records"] if wrapped else held
    if produced == wanted:
        return None
    produced = [{"key": record["key"], **record} if isinstance(record, dict) and "key" in record else record
                for record in produced]         # written as the bundled files are: the key first
    value = {**held, "records": produced} if wrapped else produced
    label = f"example {example.get('name') or example['operation']!r} of {document.name or document.path}"
    return Refresh(label, target, json_diff(wanted, produced),
                   json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def _response_body(document: Document, response: Mapping) -> Any:
    if "file" in response:
        return load_json_file(document, response["file"])
    if response.get("status") == 204:
        return None
    return response.get("body")


def case_zone(document: Document, example: Mapping, operation: Mapping) -> str:
    """The operation's `time_zone` rendered from the case's `config` (over the connector's
    defaults), as a run renders it; UTC without one."""
    if operation.get("time_zone") is None:
        return zones.UTC
    properties = ((document.data.get("config") or {}).get("properties") or {})
    config = {name: prop["default"] for name, prop in properties.items() if isinstance(prop, Mapping) and "default" in prop}
    config.update(example.get("config") or {})
    name = compile_template(str(operation["time_zone"])).render({"config": config})
    problem = zones.problem(name)
    if problem is not None:
        raise CaseFailed(f"time_zone: {problem}")
    return name


def read_records(name: str, operation: Mapping, body: Any, zone: str = zones.UTC,
                 enrich: Callable[[list], list] | None = None) -> list[Any]:
    """The records a read operation makes of one answer body (enriched, mapped and validated),
    its JMESPath seeing `zone` as `time_zone()`; a record `enrich`/`truncated_when` would
    quarantine is `{"quarantined": reason}`."""
    found = compile_path(operation.get("records", "@"), zone)(body) if body is not None else []
    if found is None:
        found = []
    if not isinstance(found, list):
        raise CaseFailed(f"`records` gave {type(found).__name__}, not a list")
    keep = compile_predicate(operation["filter"], zone) if operation.get("filter") else None
    mapping = _mapping(json.dumps(operation["map"]), zone) if "map" in operation else None
    key = compile_path(operation["key"], zone) if operation.get("key") else None
    found = enrich(found) if enrich is not None else found        # as a run does: enrich, then filter
    kept = [record for record in found if isinstance(record, Unenriched) or not keep or keep(record)]
    return [{"quarantined": record.reason} if isinstance(record, Unenriched)
            else _one_record(name, mapping, key, record, index) for index, record in enumerate(kept)]


def _enricher(document: Document, example: Mapping, operation: Mapping) -> Callable[[list], list] | None:
    """Runs the operation's `enrich` steps against the case's canned `subresponses` (by path; a
    list is answered in order, one entry per call), then its `truncated_when` check."""
    enricher = Operation.from_data(example["operation"], operation).enricher
    if not enricher.active:
        return None
    canned = {path: list(answers) if isinstance(answers, list) else answers
              for path, answers in (example.get("subresponses") or {}).items()}

    def respond(method: str, path: str, body: Any) -> tuple[int, Any]:
        answers = canned.get(path)
        if answers is None or answers == []:
            raise CaseFailed(f"enrich sent {method} {path}, which `subresponses` does not answer")
        answer = answers.pop(0) if isinstance(answers, list) else answers
        return int(answer.get("status", 200)), _response_body(document, answer)

    async def run(records: list) -> list:
        async with canned_client(respond) as client:
            done = [await enricher.record(client, record, {"config": example.get("config") or {}, "now": EXAMPLE_NOW})
                    for record in records]
        return [item if isinstance(item, Unenriched) or not (cut := enricher.truncated(item))
                else Unenriched(item, cut) for item in done]

    return lambda records: asyncio.run(run(records))


@functools.lru_cache(maxsize=512)
def _mapping(source: str, zone: str) -> Callable[[Any], dict]:
    return compile_mapping(json.loads(source), zone)


@functools.lru_cache(maxsize=512)
def _structure(source: str) -> Structure:
    return compile_structure(json.loads(source))


def _one_record(name: str, mapping: Callable | None, key: Callable | None, record: Any,
                index: int) -> Any:
    if mapping is None:
        return record
    mapped = mapping(record)
    if key is not None:
        mapped["key"] = key(record)
    record_type = RECORD_TYPES.get(name)
    errors = validate(record_type, mapped) if record_type else []
    if errors:
        raise CaseFailed(f"mapped record {index} (key {mapped.get('key')!r}) is not a valid "
                         f"{record_type}:\n" + "\n".join(errors[:10]))
    return mapped


def run_write_case(document: Document, example: Mapping, operation: Mapping) -> None:
    """Render the request (of `step`, in a multi-step write) from `input` and compare the parts
    `expect.request` gives; or the idempotency key; or what resolving a lost answer finds in the
    canned `response` (`expect.resolved`: {done, id})."""
    context = write_context(example["operation"], example)
    step = _step(example, operation)
    expect = example.get("expect") or {}
    if "resolved" in expect:
        wanted, got = dict(expect["resolved"]), resolve_case(document, example, operation, step, context)
    elif "idempotency_key" in expect:
        if not step.get("idempotency_key"):
            raise CaseFailed("the write declares no idempotency_key")
        wanted, got = expect["idempotency_key"], compile_template(step["idempotency_key"]).render(
            {**context, "uuid": EXAMPLE_UUID})
    else:
        rendered = render_request(step.get("request") or {}, context)
        wanted = expect.get("request") or {}
        got = {key: rendered.get(key) for key in wanted}
        wanted = dict(wanted)
    if isinstance(wanted, dict):
        got = {key: got.get(key) for key in wanted}
    if got != wanted:
        raise CaseFailed(f"{next(iter(expect), 'request')} differs from expect\n" + json_diff(wanted, got))


def _step(example: Mapping, operation: Mapping) -> Mapping:
    """The write step a case is about: `step` by name, else the operation (or its first step)."""
    steps = operation.get("steps") if isinstance(operation.get("steps"), list) else None
    if "step" not in example:
        return steps[0] if steps else operation
    found = next((s for s in steps or () if isinstance(s, Mapping) and s.get("name") == example["step"]), None)
    if found is None:
        raise CaseFailed(f"the write has no step named {example['step']!r}")
    return found


def resolve_case(document: Document, example: Mapping, operation: Mapping, step: Mapping,
                 context: Mapping) -> dict[str, Any]:
    """What the lost-answer resolution finds in the canned answer: find_order's or verify's
    first record `match` accepts, or `skip_when` over the precondition's captures."""
    response = example.get("response") or {}
    body = _response_body(document, response)
    if example["operation"] == "find_order" or "verify" in step:
        read = operation if example["operation"] == "find_order" else step["verify"]
        found = Verify.from_data(read).find(body, context)
        ident = compile_path(read["id"])(found) if found is not None and read.get("id") else None
        return {"done": found is not None, "id": None if ident is None else str(ident)}
    if "skip_when" in step and "precondition" in step:
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        pre = {name: headers.get(str(c["header"]).lower()) if "header" in c else compile_path(c["path"])(body)
               for name, c in ((step["precondition"].get("capture")) or {}).items()}
        return {"done": bool(compile_predicate(step["skip_when"])({**context, "pre": pre})), "id": None}
    raise CaseFailed("expect.resolved needs find_order, or a write with verify or skip_when")


#: The `uuid` an idempotency key renders with in a golden case.
EXAMPLE_UUID = "00000000-0000-4000-8000-000000000000"


def write_context(name: str, example: Mapping) -> dict[str, Any]:
    """The template context of a write case: `input` bound to the operation's variables."""
    given = dict(example.get("input") or {})
    allowed = CONTEXTS.get(name, frozenset()) | {"steps", "idempotency_key", "pre"}
    if not (given and set(given) <= allowed):
        given = {PRIMARY.get(name, "input"): given}
    return {"config": example.get("config") or {}, "now": EXAMPLE_NOW, **given}


def render_request(request: Mapping, context: Mapping) -> dict[str, Any]:
    """A request rendered the way the engine renders it: structurally, method defaulted."""
    body = {key: value for key, value in request.items() if key != "method"}
    result = _structure(json.dumps(body)).render(context)
    result["method"] = request.get("method") or ("POST" if "graphql" in request else "GET")
    return result


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def json_diff(expected: Any, actual: Any) -> str:
    """A unified diff of two JSON values, pretty-printed with sorted keys."""
    lines = difflib.unified_diff(pretty(expected).splitlines(), pretty(actual).splitlines(),
                                 "expected", "actual", lineterm="")
    return "\n".join(lines)

