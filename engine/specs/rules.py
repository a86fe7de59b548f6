"""Template rules for connector specs: every Jinja template parses and reads only the variables
of its context (the table "Template contexts" in docs/spec-language.md).

JMESPath positions are checked during schema validation (`schema_rules`); templates need to
know which operation they belong to, so they are walked here. Each walker yields the problems
of the rules it applies, placed under the path it walked to.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from engine import zones
from engine.specs.canonical import context_shapes
from engine.specs.expressions import descend, structure_rule, template_rule
from engine.http.auth import DEFAULT_PORTS, token_host
from engine.specs.findings import Problem
from engine.specs.references import Scope

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

#: The variables of an `enrich` step's request: the raw record being enriched.
ENRICH = BASE | {"record"}

#: Keys of `http.auth` that are not templates (`place` is walked by `auth_rule`).
_AUTH_NOT_TEMPLATES = frozenset({"type", "in", "client_auth", "token_path", "expires_in_path",
                                 "token_body", "token_hosts", "place"})
#: What `http.auth.place.value` may read: the access token, and the config.
TOKEN = frozenset({"config", "token"})


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
            allowed = Scope(CONTEXTS.get(name, BASE), context_shapes(name))
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
        yield from descend(auth_rule(auth, http.get("base_url")), ("auth",))
    for i, choice in enumerate(auth if isinstance(auth, list) else ()):
        if not isinstance(choice, Mapping):
            continue
        yield from descend(template_rule(choice.get("when"), BASE), ("auth", i, "when"))
        if isinstance(choice.get("auth"), Mapping):
            yield from descend(auth_rule(choice["auth"], http.get("base_url")), ("auth", i, "auth"))


def auth_rule(auth: Mapping[str, Any], base_url: Any) -> Iterator[Problem]:
    """Auth fields are templates over `config` and `now`; `place.value` over `config` and
    `token`; a literal `token_url` is https (http only on loopback) on a declared host."""
    for key, value in auth.items():
        if key not in _AUTH_NOT_TEMPLATES:
            yield from descend(structure_rule(value, BASE), (key,))
    place = auth.get("place")
    if isinstance(place, Mapping):
        yield from descend(template_rule(place.get("value"), TOKEN), ("place", "value"))
    token_url = auth.get("token_url")
    if isinstance(token_url, str) and "{" not in token_url:
        hosts = auth.get("token_hosts")
        yield from descend(token_url_rule(token_url, base_url, hosts if isinstance(hosts, list) else []),
                           ("token_url",))


def token_url_rule(token_url: str, base_url: Any, token_hosts: list) -> Iterator[Problem]:
    """The literal token URL may receive client credentials (what the client checks at run time)."""
    parts = urlsplit(token_url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(host)):
        yield Problem((), f"token_url {token_url!r} is not https",
                      "an https URL (plain http only to 127.0.0.1, ::1 or localhost)")
        return
    base = base_url if isinstance(base_url, str) and "{" not in base_url else None
    if base is None:
        return
    try:
        allowed = {_endpoint(base), *(token_host(str(h), parts.scheme) for h in token_hosts)}
        where = _endpoint(token_url)
    except ValueError:                    # a malformed port: the schema says so
        return
    if where not in allowed:
        yield Problem((), f"token_url {where[0]}:{where[1]} is neither the base_url host and port "
                      f"nor in token_hosts",
                      "a token_url on the base_url host and port, or its host (host:port for "
                      "another port) listed in auth.token_hosts")


def _endpoint(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return (parts.hostname or "").lower(), parts.port or DEFAULT_PORTS.get(parts.scheme, 0)


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def operation_rule(operation: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """An operation's requests (its own, its precondition's, its verify read's, each step's)
    and its idempotency key (and create_order's `reference`) are templates over its context; each `enrich` step's request is a
    template over `record`, `config` and `now`."""
    if not isinstance(operation, Mapping):
        return
    steps = operation.get("steps")
    if isinstance(steps, list):
        for index, step in enumerate(steps):
            yield from descend(step_rule(step, allowed | WRITE_EXTRAS), ("steps", index))
    yield from step_rule(operation, allowed | (WRITE_EXTRAS if "idempotency_key" in operation else frozenset()))
    yield from descend(template_rule(operation.get("reference"), allowed), ("reference",))
    enrich = operation.get("enrich")
    for index, step in enumerate(enrich if isinstance(enrich, list) else ()):
        if isinstance(step, Mapping):
            yield from descend(request_rule(step.get("request"), ENRICH), ("enrich", index, "request"))


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
    yield from descend(template_rule(key, (allowed | {"uuid"}) - {"now", "idempotency_key"}), ("idempotency_key",))


def request_rule(request: Any, allowed: frozenset[str]) -> Iterator[Problem]:
    """Every string leaf of a request but its method is a template."""
    if not isinstance(request, Mapping):
        return
    for key, value in request.items():
        if key != "method":
            yield from descend(structure_rule(value, allowed), (key,))
