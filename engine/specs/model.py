"""Linted spec data -> runtime objects: every JMESPath and template compiled once, here.

`Connector.from_data` turns a connector spec into `Operation`s; `Connector.client(config)`
renders the `http:` block with a resolved config and gives an `HttpClient`. Nothing in this
module runs per record except the small `render`/`extract` methods the flows call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from engine import extract, http, template, zones
from engine.errors import ConfigError, TemplateError
from engine.records import RECORD_TYPES
from engine.specs.enrich import Enricher
from engine.specs.enrich import Step as EnrichStep

Path = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class RequestTemplate:
    """A compiled `request:` block; `render(context)` gives an `http.Request`."""

    method: str
    path: template.Template
    params: template.Structure | None
    headers: template.Structure | None
    json: template.Structure | None
    form: template.Structure | None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RequestTemplate:
        body = data.get("json")
        graphql = data.get("graphql")
        if graphql is not None:
            body = {"query": graphql.get("query", ""), "variables": graphql.get("variables") or {}}
        return cls(
            method=str(data.get("method", "POST" if graphql is not None else "GET")).upper(),
            path=template.compile_template(data.get("path", "")),
            params=_structure(data.get("params")),
            headers=_structure(data.get("headers")),
            json=_structure(body),
            form=_structure(data.get("form")),
        )

    def render(self, context: Mapping[str, Any]) -> http.Request:
        fields: dict[str, Any] = {"method": self.method, "url": self.path.render(context)}
        if self.params is not None:
            fields["params"] = {k: v for k, v in self.params.render(context).items() if v is not None}
        if self.headers is not None:
            fields["headers"] = {k: str(v) for k, v in self.headers.render(context).items()}
        if self.json is not None:
            fields["json"] = _json_value(self.json.render(context), "json")
        if self.form is not None:
            fields["form"] = _json_value(self.form.render(context), "form")
        if "params" in fields:
            _json_value(fields["params"], "params")
        return http.Request(**fields)


JSON_SCALARS = (str, int, float, bool, type(None))


def _json_value(value: Any, where: str) -> Any:
    """`value` when it is JSON (tuples count as lists); else a TemplateError naming the field
    whose template gave something else (a range, a function, a Jinja object...)."""
    if isinstance(value, JSON_SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise TemplateError(f"{where}: the template gives {value!r}, which JSON cannot carry")
        return value
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"{where}: a key is a {type(key).__name__} ({key!r}), not a string")
            _json_value(item, f"{where}.{key}")
        return value
    if isinstance(value, (list, tuple)):
        for n, item in enumerate(value):
            _json_value(item, f"{where}[{n}]")
        return value
    raise TemplateError(f"{where}: the template gives a {type(value).__name__}, not a JSON value "
                        "(a string, number, boolean, null, list or object)")


def _replay_safe(name: str, data: Mapping[str, Any]) -> bool:
    """Reads always are; a write is when it says `idempotent: true`, has an `idempotency_key`,
    or its method is not POST/PATCH."""
    if name.startswith(("list_", "find_", "lookup_")):
        return True
    if "idempotent" in data:
        return bool(data["idempotent"])
    if data.get("idempotency_key"):
        return True
    method = (data.get("request") or {}).get("method", "POST" if (data.get("request") or {}).get("graphql") else "GET")
    return str(method).upper() not in ("POST", "PATCH")


def _structure(value: Any) -> template.Structure | None:
    return None if value is None else template.compile_structure(value)


def _path(expr: str | None, zone: str = zones.UTC) -> Path | None:
    return None if expr is None else extract.compile_path(expr, zone)


def _predicate(expr: str | None, zone: str = zones.UTC) -> Callable[[Any], bool] | None:
    return None if expr is None else extract.compile_predicate(expr, zone)


def _watermark(expr: str | None, zone: str) -> Path | None:
    """The `watermark:` path; in a zone other than UTC, a zone-less local time it gives is stored
    as the UTC instant it means there (`zones.normalise`), so watermarks compare as instants."""
    path = _path(expr, zone)
    if path is None or zone == zones.UTC:
        return path
    return lambda record: zones.normalise(path(record), zone)


@dataclass(frozen=True, slots=True)
class AlreadyExists:
    """An answer that means "it is already there": any of `statuses`, and/or `when` holds."""

    statuses: frozenset[int]
    when: Callable[[Any], bool] | None
    id: Path | None

    def matches(self, status: int, body: Any) -> bool:
        if self.statuses and status not in self.statuses:
            return False
        if self.when is not None:
            return self.when(body)
        return bool(self.statuses)


@dataclass(frozen=True, slots=True)
class Capture:
    """One precondition capture: a response header or a JMESPath on the body."""

    header: str | None
    path: Path | None

    def take(self, answer: http.Answer) -> Any:
        if self.header is not None:
            return answer.headers.get(self.header)
        return self.path(answer.body) if self.path else None


def _captures(data: Mapping[str, Any] | None) -> dict[str, Capture]:
    return {key: Capture(c.get("header"), _path(c.get("path"))) for key, c in (data or {}).items()}


@dataclass(frozen=True, slots=True)
class Verify:
    """A reconcile read: did an earlier send whose answer was lost take effect?

    `request` is rendered with the write's own context; `records` picks the candidates out of
    the answer; `match` sees `{record: <candidate>, <the write's context>...}` and says whether
    the candidate is this write's effect; `id` (on the matching record) is the remote id.
    """

    request: RequestTemplate
    records: Path | None
    match: Callable[[Any], bool]
    id: Path | None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Verify:
        return cls(RequestTemplate.from_data(data.get("request") or {}), _path(data.get("records")),
                   extract.compile_predicate(data.get("match") or "`true`"), _path(data.get("id")))

    def candidates(self, body: Any) -> list:
        found = self.records(body) if self.records is not None else body
        return found if isinstance(found, list) else [] if found is None else [found]

    def find(self, body: Any, context: Mapping[str, Any]) -> Any:
        """The first candidate that `match` accepts for `context`, or None."""
        for record in self.candidates(body):
            if self.match({**context, "record": record}):
                return record
        return None


@dataclass(frozen=True, slots=True)
class Step:
    """One request of a write, with everything that decides its outcome.

    A write operation is one step (its top-level `request`) or an ordered list (`steps`).
    A step's answer may be captured (`capture`) for later steps (`steps.<name>.<capture>`).
    """

    name: str
    request: RequestTemplate
    id: Path | None = None
    already_exists: AlreadyExists | None = None
    error_when: Callable[[Any], bool] | None = None
    precondition: RequestTemplate | None = None
    captures: Mapping[str, Capture] = field(default_factory=dict)      # the precondition's (`pre`)
    answer_captures: Mapping[str, Capture] = field(default_factory=dict)
    replay_safe: bool = True
    idempotency_key: template.Template | None = None
    verify: Verify | None = None
    skip_when: Callable[[Any], bool] | None = None

    @classmethod
    def from_data(cls, operation: str, name: str, data: Mapping[str, Any]) -> Step:
        exists = data.get("already_exists")
        pre = data.get("precondition") or {}
        key = data.get("idempotency_key")
        return cls(
            name=name,
            request=RequestTemplate.from_data(data.get("request") or {}),
            id=_path(data.get("id")),
            already_exists=None if exists is None else AlreadyExists(
                frozenset(exists.get("status") or ()), _predicate(exists.get("when")), _path(exists.get("id"))),
            error_when=_predicate(data.get("error_when")),
            precondition=RequestTemplate.from_data(pre["request"]) if pre.get("request") else None,
            captures=_captures(pre.get("capture")),
            answer_captures=_captures(data.get("capture")),
            replay_safe=_replay_safe(operation, data),
            idempotency_key=template.compile_template(key) if key else None,
            verify=Verify.from_data(data["verify"]) if data.get("verify") else None,
            skip_when=_predicate(data.get("skip_when")),
        )

    @property
    def resolution(self) -> str | None:
        """How an unknown outcome of this step is resolved: `idempotent`, `verify`,
        `skip_when`, or None (it cannot be). Only `idempotent` lets the HTTP client resend blindly:
        a step with a reconcile read is resolved by it before any resend."""
        if self.verify is not None:
            return "verify"
        if self.skip_when is not None and self.precondition is not None:
            return "skip_when"
        return "idempotent" if self.replay_safe else None


@dataclass(frozen=True, slots=True)
class Operation:
    """One named operation of a connector, compiled; a write's request(s) are its `steps`."""

    name: str
    request: RequestTemplate
    paginate: Mapping[str, Any] | None = None
    records: Path | None = None
    key: Path | None = None
    watermark: Path | None = None
    filter: Callable[[Any], bool] | None = None
    filter_source: str | None = None
    map: Callable[[Any], dict] | None = None
    record_type: str | None = None
    id: Path | None = None
    error_when: Callable[[Any], bool] | None = None
    steps: tuple[Step, ...] = ()    # a write's requests, in order (one unless `steps:` lists more)
    match: Callable[[Any], bool] | None = None     # find_order: is a candidate this order?
    reference: Any = None           # create_order: template of the order's reference at the destination
    zone: str = zones.UTC           # the rendered `time_zone`: what `time_zone()` answers
    enricher: Enricher = Enricher()  # reads: `enrich` sub-requests and `truncated_when`
    source: Mapping[str, Any] | None = None   # the spec's data of this operation (`engine.flows.fused`)

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any], zone: str = zones.UTC) -> Operation:
        """Compile one operation; its JMESPath sees `zone` as `time_zone()` (see `Connector.configured`)."""
        return cls(
            name=name,
            request=RequestTemplate.from_data(data.get("request") or {}),
            paginate=data.get("paginate"),
            records=_path(data.get("records"), zone),
            key=_path(data.get("key"), zone),
            watermark=_watermark(data.get("watermark"), zone),
            filter=_predicate(data.get("filter"), zone),
            filter_source=data.get("filter"),
            map=extract.compile_mapping(data["map"], zone) if "map" in data else None,
            record_type=RECORD_TYPES.get(name),
            id=_path(data.get("id")),
            error_when=_predicate(data.get("error_when")),
            steps=_steps(name, data),
            match=_predicate(data.get("match"), zone),
            reference=template.compile_template(data["reference"]) if data.get("reference") else None,
            zone=zone,
            enricher=_enricher(data),
            source=data,
        )

    def paginator(self) -> http.Paginator:
        """A fresh paginator for one read (paginators carry per-read state)."""
        return http.build_paginator(self.paginate, extract.compile_path)

    def extract_records(self, body: Any) -> list:
        if self.records is None:
            return body if isinstance(body, list) else []
        found = self.records(body)
        return found if isinstance(found, list) else []


WRITES = frozenset({"create_order", "create_shipment", "update_inventory", "cancel_order"})


def _steps(name: str, data: Mapping[str, Any]) -> tuple[Step, ...]:
    """A write's steps: those of `steps:`, or the operation itself as its one step."""
    if name not in WRITES:
        return ()
    listed = data.get("steps")
    if listed:
        return tuple(Step.from_data(name, step.get("name", f"step{n + 1}"), step) for n, step in enumerate(listed))
    return (Step.from_data(name, name, data),)


def _enricher(data: Mapping[str, Any]) -> Enricher:
    steps = tuple(EnrichStep.from_data(step, RequestTemplate.from_data) for step in data.get("enrich") or ())
    return Enricher(steps, _predicate(data.get("truncated_when")), data.get("truncated_when"))


@dataclass(frozen=True, slots=True)
class Connector:
    """A compiled connector spec."""

    name: str
    kind: str
    data: Mapping[str, Any]
    operations: Mapping[str, Operation]
    zoned: dict[tuple[str, str], Operation] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Connector:
        operations = {name: Operation.from_data(name, op) for name, op in (data.get("operations") or {}).items()}
        return cls(name=data["name"], kind=data["kind"], data=data, operations=operations)

    def configured(self, config: Mapping[str, Any]) -> Connector:
        """This connector for one integration's resolved `config`: each operation that declares
        `time_zone` is compiled (once per zone, then cached) with that zone rendered from config."""
        bound = dict(self.operations)
        for name, data in (self.data.get("operations") or {}).items():
            if isinstance(data, Mapping) and data.get("time_zone") is not None:
                bound[name] = _in_zone(self, name, _render_zone(self.name, name, data["time_zone"], config))
        if bound == dict(self.operations):
            return self
        return Connector(self.name, self.kind, self.data, bound, self.zoned)

    def secret_fields(self) -> set[str]:
        properties = (self.data.get("config") or {}).get("properties") or {}
        return {name for name, prop in properties.items() if isinstance(prop, Mapping) and prop.get("secret")}

    def with_defaults(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config with the connector's declared defaults filled in."""
        properties = (self.data.get("config") or {}).get("properties") or {}
        merged = {name: prop["default"] for name, prop in properties.items()
                  if isinstance(prop, Mapping) and "default" in prop}
        merged.update(config)
        return merged

    def client(self, config: Mapping[str, Any], *, secrets=(), transport=None) -> http.HttpClient:
        """An HTTP client for this connector with `config` (references already resolved)."""
        spec = self.data.get("http") or {}
        context = {"config": config}
        auth = _chosen_auth(spec.get("auth"), context)
        return http.HttpClient(
            _base_url(self.name, spec.get("base_url", ""), context),
            auth=_auth(auth, context) if auth else None,
            headers=template.compile_structure(spec.get("headers") or {}).render(context),
            timeout=float(spec.get("timeout", 30)),
            limits=http.build_limits(spec.get("limits"), float(spec.get("timeout", 30))),
            retry=http.build_retry(spec.get("retry"), extract.compile_path),
            rate_limit=http.build_rate_limit(spec.get("rate_limit")),
            pacing=http.build_pacing(spec.get("pacing"), extract.compile_path),
            concurrency=int(spec.get("concurrency", 4)),
            down_after=int(spec.get("down_after", http.DEFAULT_DOWN_AFTER)),
            transport=transport,
            secrets=secrets,
        )


def _base_url(connector: str, source: str, context: Mapping[str, Any]) -> str:
    """`http.base_url` rendered with the integration's config; a config value that leaves it
    empty or relative (an empty `${env:...}`, a host without `https://`) is a config error that
    names the connector and what it rendered, not a failure inside the HTTP client."""
    url = template.compile_template(source).render(context)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"connector {connector}: http.base_url `{source}` gives {url!r} with this config, "
                          "not an absolute http(s) URL: check the integration's config values (e.g. "
                          "https://shop.example.com)")
    return url


def _in_zone(connector: Connector, name: str, zone: str) -> Operation:
    """`name` compiled for `zone`, cached on the connector (shared by its configured copies)."""
    if zone == zones.UTC:
        return connector.operations[name]
    if (name, zone) not in connector.zoned:
        connector.zoned[name, zone] = Operation.from_data(name, connector.data["operations"][name], zone)
    return connector.zoned[name, zone]


def _render_zone(connector: str, operation: str, source: Any, config: Mapping[str, Any]) -> str:
    """An operation's `time_zone` rendered from config; ConfigError (closest name) when unknown."""
    try:
        name = template.compile_template(str(source)).render({"config": config})
    except TemplateError as exc:
        raise ConfigError(f"connector {connector}: {operation}.time_zone: {exc.message}") from None
    message = zones.problem(name)
    if message is not None:
        raise ConfigError(f"connector {connector}: {operation}.time_zone: {message}")
    return name


def _chosen_auth(spec: Any, context: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """`http.auth` itself, or, when it is a list of alternatives, the `auth` of the first whose
    `when` (a template over `config`) is true; None when none is (no auth)."""
    if not isinstance(spec, list):
        return spec
    for choice in spec:
        when = choice.get("when")
        if when is None or template.compile_template(str(when)).evaluate(context) not in (None, False, "", 0):
            return choice.get("auth")
    return None


def _auth(spec: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    """The auth object of `http.auth`: its templates rendered with `context`, except an OAuth2
    `place.value`, which becomes a function of the token fetched later (`{{ token }}`)."""
    spec = dict(spec)
    place = spec.pop("place", None)
    rendered = template.compile_structure(spec).render(context)
    if isinstance(place, Mapping):
        rendered["place"] = dict(place)
        if "value" in place:
            value = template.compile_template(str(place["value"]))
            rendered["place"]["value"] = lambda token: value.render({**context, "token": token})
    return http.build_auth(rendered, extract.compile_path)
