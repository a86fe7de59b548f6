"""Schema errors as human findings: what is wrong, what was expected, the closest valid word.

The spec schemas (`schemas/connector.schema.json`, `integration.schema.json`) are loaded and
compiled once. Lint validates with one extra keyword, `x-jmespath`, added to the in-memory copy
of the schema's `jmespath` definition and to mapping values: every key the schema says holds
JMESPath is compiled during the same validation pass (a rule as a generator of errors, as in
jsonschema's `_keywords.py`), so lint and schema never disagree about where JMESPath lives.

`explain` turns one `ValidationError` into `Problem`s: an unknown key is reported at that key's
own line with "did you mean"; an unknown enum value lists the valid ones; `anyOf`/`oneOf`
errors descend to their most relevant sub-error (`best_match`).
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from engine import SCHEMAS
from engine.specs.expressions import jmespath_rule
from engine.specs.fastschema import optimise, x_if, x_switch
from engine.specs.findings import Problem, SpecPath, did_you_mean, one_of

_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number",
               "boolean": "true or false", "array": "a list", "object": "a mapping",
               "null": "null"}


def _x_jmespath(validator: Any, enabled: Any, instance: Any, schema: Mapping) -> Iterator[Any]:
    """Keyword: a string here must compile as JMESPath (its problems become errors)."""
    if not enabled or not isinstance(instance, str) or not instance:
        return
    for problem in jmespath_rule(instance):
        error = ValidationError(problem.message, validator="x-jmespath")
        error.hint = problem.hint  # type: ignore[attr-defined]
        yield error


LintValidator = validators.extend(
    Draft202012Validator, {"x-jmespath": _x_jmespath, "x-switch": x_switch, "x-if": x_if})


@functools.cache
def raw_schema(kind: str) -> dict[str, Any]:
    """The published JSON Schema of a spec kind (`connector` or `integration`)."""
    return json.loads((SCHEMAS / f"{kind}.schema.json").read_text(encoding="utf-8"))


@functools.cache
def lint_validator(kind: str) -> Any:
    """The compiled validator lint uses: the schema plus the `x-jmespath` keyword."""
    schema = copy.deepcopy(raw_schema(kind))
    definitions = schema.get("$defs", {})
    for name in ("jmespath", "predicate"):
        if isinstance(definitions.get(name), dict):
            definitions[name]["x-jmespath"] = True
    if isinstance(definitions.get("mapping_value"), dict):
        definitions["mapping_value"]["x-jmespath"] = True
    return LintValidator(optimise(schema), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_problems(kind: str, data: Any) -> Iterator[Problem]:
    """Every schema problem of a document, at most one per (path, message)."""
    seen: set[tuple[SpecPath, str]] = set()
    for error in lint_validator(kind).iter_errors(data):
        for problem in explain(error):
            if (problem.path, problem.message) not in seen:
                seen.add((problem.path, problem.message))
                yield problem


def explain(error: ValidationError) -> Iterator[Problem]:
    """The problems one validation error stands for, in words a spec author can act on."""
    if error.context:
        yield from _explain_alternatives(error)
        return
    path = tuple(error.absolute_path)
    handler = _HANDLERS.get(str(error.validator), _generic)
    yield from handler(error, path)


def _explain_alternatives(error: ValidationError) -> Iterator[Problem]:
    alternatives = [sub for sub in error.context if sub.validator == "type"]
    if len(alternatives) == len(error.context):
        wanted = [_kind(sub.validator_value) for sub in alternatives]
        yield Problem(tuple(error.absolute_path), f"expected {' or '.join(wanted)}, "
                      f"got {_type_of(error.instance)}", _description(error.schema))
        return
    keys = [sub.validator_value for sub in error.context if sub.validator == "required"]
    if len(keys) == len(error.context) and all(len(names) == 1 for names in keys):
        wanted = " or ".join(f"'{names[0]}'" for names in keys)   # anyOf: [{required: [a]}, ...]
        yield Problem(tuple(error.absolute_path), f"missing a required key: {wanted}",
                      _description(error.schema))
        return
    best = best_match([error])
    yield from (explain(best) if best is not error else _generic(error, tuple(error.absolute_path)))


def _additional(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    allowed = list(error.schema.get("properties", {}))
    patterns = list(error.schema.get("patternProperties", {}))
    extras = [key for key in error.instance if key not in allowed] if not patterns else \
        [key for key in _extras_from_message(error) if key in error.instance]
    for key in extras:
        expected = one_of(allowed) if allowed else "no other keys"
        yield Problem(path + (key,), f"unknown key '{key}'", expected, did_you_mean(key, allowed))


def _extras_from_message(error: ValidationError) -> list[str]:
    return [key for key in error.instance if f"'{key}'" in error.message]


def _required(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    for name in error.validator_value:
        if isinstance(error.instance, Mapping) and name not in error.instance:
            described = _description(error.schema.get("properties", {}).get(name, {}))
            yield Problem(path, f"missing required key '{name}'", described,
                          did_you_mean(name, error.instance))


def _enum(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    choices = error.validator_value
    if "propertyNames" in error.relative_schema_path:
        yield Problem(path + (str(error.instance),), f"key '{error.instance}' is not allowed here",
                      one_of(choices), did_you_mean(error.instance, choices))
        return
    yield Problem(path, f"unknown value {error.instance!r}", one_of(choices),
                  did_you_mean(error.instance, choices))


def _const(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    yield Problem(path, f"expected {error.validator_value!r}, got {error.instance!r}",
                  _description(error.schema))


def _type(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    yield Problem(path, f"expected {_kind(error.validator_value)}, got "
                  f"{_type_of(error.instance)}", _description(error.schema))


def _not(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    together = error.validator_value.get("required") if isinstance(error.validator_value, dict) \
        else None
    if together:
        names = " and ".join(f"'{name}'" for name in together)
        yield Problem(path, f"{names} cannot be given together", _description(error.schema))
    else:
        yield from _generic(error, path)


def _jmespath(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    yield Problem(path, error.message, "a JMESPath expression", getattr(error, "hint", None))


def _generic(error: ValidationError, path: SpecPath) -> Iterator[Problem]:
    yield Problem(path, error.message, _description(error.schema))


_HANDLERS = {
    "additionalProperties": _additional, "required": _required, "enum": _enum,
    "const": _const, "type": _type, "not": _not, "x-jmespath": _jmespath,
}


def _kind(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_NAMES.get(name, name) for name in names)


def _type_of(value: Any) -> str:
    if value is None:
        return "null (an empty value)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    name = {str: "a string", int: "an integer", float: "a number"}.get(type(value), "a value")
    return f"{name} ({value!r})"


def _description(schema: Any) -> str | None:
    return schema.get("description") if isinstance(schema, Mapping) else None
