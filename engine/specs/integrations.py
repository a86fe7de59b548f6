"""Rules that read an integration together with the connectors it names.

- each connector reference resolves, to a cart for `source` and a WMS for `destination`;
- each enabled flow finds the operations it needs in both connectors;
- each side's config has the connector's required keys and validates against its `config`
  fragment; a property marked `secret: true` is a `${env:NAME}`/`${file:PATH}` reference, never a
  literal (the literal itself is never repeated in a message);
- a property declared `format: iana-time-zone` is a known IANA zone name (the closest one named);
- every `${...}` reference is well formed; every order filter's `when` compiles as JMESPath.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from jsonschema import Draft202012Validator

from engine import zones
from engine.specs.expressions import descend, jmespath_rule
from engine.specs.findings import Problem, did_you_mean
from engine.specs.rules import ZONE_FORMAT

#: The operations each flow needs, as (side, operation).
FLOW_OPERATIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "orders": (("source", "list_orders"), ("destination", "create_order"),
               ("destination", "find_order")),
    "shipments": (("destination", "list_shipments"), ("source", "create_shipment")),
    "inventory": (("destination", "list_inventory"), ("source", "update_inventory")),
    "cancellations": (("source", "list_cancellations"), ("destination", "cancel_order")),
    "wms_cancellations": (("destination", "list_cancellations"), ("source", "cancel_order")),
}
SIDE_KINDS = {"source": "cart", "destination": "wms"}
REFERENCE = re.compile(r"^\$\{(env:[A-Za-z_][A-Za-z0-9_]*|file:[^}\s][^}]*)\}$")
REFERENCE_FORM = "${env:NAME} or ${file:PATH}"

Connectors = Mapping[str, Any]  # connector name -> its spec data


def integration_problems(data: Any, connectors: Connectors) -> Iterator[Problem]:
    """Every cross-document problem of one integration."""
    if not isinstance(data, Mapping):
        return
    specs = {}
    for side, kind in SIDE_KINDS.items():
        binding = data.get(side)
        if isinstance(binding, Mapping):
            spec, problems = _resolve(binding.get("connector"), kind, connectors)
            yield from descend(problems, (side, "connector"))
            if spec is not None:
                specs[side] = spec
                yield from descend(config_rule(binding.get("config"), spec), (side,))
    yield from flows_rule(data.get("flows"), specs, data)
    yield from order_filters_rule(data.get("order_filters"))


def _resolve(name: Any, kind: str, connectors: Connectors) -> tuple[Any, list[Problem]]:
    if not isinstance(name, str):
        return None, []
    spec = connectors.get(name)
    if spec is None:
        hint = did_you_mean(name, connectors) or "lint the connector's file together with this one"
        return None, [Problem((), f"unknown connector '{name}'",
                              "one of: " + ", ".join(sorted(connectors)) if connectors else None,
                              hint)]
    if spec.get("kind") != kind:
        return None, [Problem((), f"connector '{name}' is a {spec.get('kind')}, not a {kind}")]
    return spec, []


def flows_rule(flows: Any, specs: Mapping[str, Any], data: Mapping) -> Iterator[Problem]:
    """An enabled flow needs its operations on both sides."""
    if not isinstance(flows, Mapping):
        return
    for flow, settings in flows.items():
        if not (isinstance(settings, Mapping) and settings.get("enabled") is True):
            continue
        for side, operation in FLOW_OPERATIONS.get(flow, ()):
            spec = specs.get(side)
            operations = spec.get("operations") if spec else None
            if isinstance(operations, Mapping) and operation not in operations:
                name = data[side]["connector"]
                yield Problem(("flows", flow, "enabled"),
                              f"flow '{flow}' needs operation '{operation}' in {side} "
                              f"connector '{name}', which does not define it",
                              hint=f"disable the flow, or add '{operation}' to '{name}'")


def config_rule(config: Any, spec: Mapping[str, Any]) -> Iterator[Problem]:
    """A side's config against the connector's config fragment."""
    fragment = spec.get("config") if isinstance(spec.get("config"), Mapping) else {}
    properties = fragment.get("properties") or {}
    config = config if isinstance(config, Mapping) else {}
    for name in fragment.get("required") or ():
        if name not in config:
            yield Problem(("config",), f"missing config key '{name}' required by connector "
                          f"'{spec.get('name')}'", _described(properties.get(name)),
                          did_you_mean(name, config))
    for name, value in config.items():
        yield from descend(_config_value(name, value, properties), ("config", name))


def _config_value(name: str, value: Any, properties: Mapping[str, Any]) -> Iterator[Problem]:
    schema = properties.get(name)
    if not isinstance(schema, Mapping):
        yield Problem((), f"unknown config key '{name}'",
                      "one of: " + ", ".join(properties) if properties else "no config",
                      did_you_mean(name, properties))
        return
    if isinstance(value, str) and "${" in value:
        if not REFERENCE.match(value):
            yield Problem((), f"malformed secret reference in '{name}'", REFERENCE_FORM)
        return
    if schema.get("secret"):
        yield Problem((), f"secret '{name}' is written literally", REFERENCE_FORM,
                      "keep secrets out of the file: ${env:NAME} reads an environment "
                      "variable, ${file:PATH} a file")
        return
    yield from _value_schema_rule(value, schema)
    if schema.get("format") == ZONE_FORMAT and isinstance(value, str):
        problem = zones.problem(value)
        if problem is not None:
            yield Problem((), f"config '{name}': {problem}", _described(schema))


def _value_schema_rule(value: Any, schema: Mapping[str, Any]) -> Iterator[Problem]:
    checked = {key: item for key, item in schema.items() if key != "secret"}
    validator = Draft202012Validator(checked, format_checker=Draft202012Validator.FORMAT_CHECKER)
    for error in validator.iter_errors(value):
        yield Problem(tuple(error.absolute_path), error.message, _described(schema))


def _described(schema: Any) -> str | None:
    if not isinstance(schema, Mapping):
        return None
    parts = [str(schema.get("type", "")), schema.get("description", "")]
    return ": ".join(part for part in parts if part) or None


def order_filters_rule(filters: Any) -> Iterator[Problem]:
    """Each order filter's `when` is a JMESPath predicate that compiles."""
    if not isinstance(filters, list):
        return
    for index, item in enumerate(filters):
        if isinstance(item, Mapping) and isinstance(item.get("when"), str):
            yield from descend(jmespath_rule(item["when"]), ("order_filters", index, "when"))
