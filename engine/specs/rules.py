"""Template rules for connector specs: every Jinja template parses and reads only the variables
of its context (the table "Template contexts" in docs/spec-language.md).

JMESPath positions are checked during schema validation (`schema_rules`); templates need to
know which operation they belong to, so they are walked here. Each walker yields the problems
of the rules it applies, placed under the path it walked to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine.specs.expressions import descend, structure_rule, template_rule
from engine.specs.findings import Problem

BASE = frozenset({"config", "now"})
READ = BASE | {"since"}

#: The variables a template may use, by operation (docs/spec-language.md, "Template contexts").
CONTEXTS: dict[str, frozenset[str]] = {
    "list_orders": READ,
    "list_cancellations": READ,
    "list_shipments": READ,
    "list_inventory": READ,
    "find_order": READ | {"order"},
    "lookup_item": BASE | {"inventory"},
    "create_order": BASE | {"order"},
    "create_shipment": BASE | {"order", "shipment", "package"},
    "update_inventory": BASE | {"inventory", "item"},
    "cancel_order": BASE | {"order", "cancellation", "pre"},
}

#: The variables of an `enrich` step's request: the raw record being enriched.
ENRICH = BASE | {"record"}

#: Keys of `http.auth` that are not templates.
_AUTH_NOT_TEMPLATES = frozenset({"type", "in", "client_auth", "token_path", "expires_in_path"})


def connector_template_problems(data: Any) -> Iterator[Problem]:
    """Every template problem of a connector spec."""
    if not isinstance(data, Mapping):
        return
    http = data.get("http")
    if isinstance(http, Mapping):
        yield from descend(http_rule(http), ("http",))
    operations = data.get("operations")
    if isinstance(operations, Mapping):
        for name, operation in operations.items():
            allowed = CONTEXTS.get(name, BASE)
            yield from descend(operation_rule(operation, allowed), ("operations", name))


def http_rule(http: Mapping[str, Any]) -> Iterator[Problem]:
    """`base_url`, `headers` and the auth fields are templates over `config` and `now`."""
    yield from descend(template_rule(http.get("base_url"), BASE), ("base_url",))
    yield from descend(structure_rule(http.get("headers"), BASE), ("headers",))
    auth = http.get("auth")
    if isinstance(auth, Mapping):
        for key, value in auth.items():
            if key not in _AUTH_NOT_TEMPLATES:
                yield from descend(structure_rule(value, BASE), ("auth", key))


def operation_rule(operation: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """An operation's request and its precondition's request are templates over its context;
    each `enrich` step's request is a template over `record`, `config` and `now`."""
    if not isinstance(operation, Mapping):
        return
    precondition = operation.get("precondition")
    if isinstance(precondition, Mapping):
        allowed = allowed | {"pre"}  # any write with a precondition sees its captures
    yield from descend(request_rule(operation.get("request"), allowed), ("request",))
    if isinstance(precondition, Mapping):
        request = precondition.get("request")
        yield from descend(request_rule(request, allowed), ("precondition", "request"))
    steps = operation.get("enrich")
    for index, step in enumerate(steps if isinstance(steps, list) else ()):
        if isinstance(step, Mapping):
            yield from descend(request_rule(step.get("request"), ENRICH), ("enrich", index, "request"))


def request_rule(request: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """Every string leaf of a request but its method is a template."""
    if not isinstance(request, Mapping):
        return
    for key, value in request.items():
        if key != "method":
            yield from descend(structure_rule(value, allowed), (key,))
