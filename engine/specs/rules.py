"""Template rules for connector specs: every Jinja template parses and reads only the variables
of its context (the table "Template contexts" in docs/spec-language.md).

JMESPath positions are checked during schema validation (`schema_rules`); templates need to
know which operation they belong to, so they are walked here. Each walker yields the problems
of the rules it applies, placed under the path it walked to.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from engine import zones
from engine.specs.expressions import descend, structure_rule, template_rule
from engine.specs.findings import Problem

#: The `format` that marks a config property as an IANA time zone name (checked in integrations).
ZONE_FORMAT = "iana-time-zone"

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
            if isinstance(operation, Mapping) and "time_zone" in operation:
                yield from descend(time_zone_rule(operation["time_zone"]), ("operations", name, "time_zone"))
    config = data.get("config")
    if isinstance(config, Mapping) and isinstance(config.get("properties"), Mapping):
        for name, prop in config["properties"].items():
            if isinstance(prop, Mapping) and prop.get("format") == ZONE_FORMAT and "default" in prop:
                yield from descend(_zone_problems(prop["default"]), ("config", "properties", name, "default"))


def time_zone_rule(value: Any) -> Iterator[Problem]:
    """An operation's `time_zone` is an IANA name, or a template over `config` (rendered per run)."""
    if isinstance(value, str) and "{" in value:
        yield from template_rule(value, frozenset({"config"}))
    else:
        yield from _zone_problems(value)


def _zone_problems(value: Any) -> Iterator[Problem]:
    problem = zones.problem(value)
    if problem is not None:
        yield Problem((), problem, "an IANA time zone name such as 'America/New_York'")


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
    """An operation's requests (its own, its precondition's, its verify read's, each step's)
    and its idempotency key are templates over its context."""
    if not isinstance(operation, Mapping):
        return
    steps = operation.get("steps")
    if isinstance(steps, list):
        for index, step in enumerate(steps):
            yield from descend(step_rule(step, allowed | WRITE_EXTRAS), ("steps", index))
    yield from step_rule(operation, allowed | (WRITE_EXTRAS if "idempotency_key" in operation else frozenset()))


#: What every write's templates see besides its operation's context (see `flows/protocol.py`).
WRITE_EXTRAS = frozenset({"steps", "idempotency_key"})


def step_rule(step: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """The templates of one request with its precondition, verify read and idempotency key."""
    if not isinstance(step, Mapping):
        return
    precondition = step.get("precondition")
    if isinstance(precondition, Mapping):
        yield from descend(request_rule(precondition.get("request"), allowed), ("precondition", "request"))
        allowed = allowed | {"pre"}  # any write with a precondition sees its captures
    yield from descend(request_rule(step.get("request"), allowed), ("request",))
    verify = step.get("verify")
    if isinstance(verify, Mapping):
        yield from descend(request_rule(verify.get("request"), allowed), ("verify", "request"))
    key = step.get("idempotency_key")
    yield from descend(template_rule(key, allowed - {"now", "idempotency_key"}), ("idempotency_key",))


def request_rule(request: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """Every string leaf of a request but its method is a template."""
    if not isinstance(request, Mapping):
        return
    for key, value in request.items():
        if key != "method":
            yield from descend(structure_rule(value, allowed), (key,))
