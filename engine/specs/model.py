"""Linted spec data -> runtime objects: every JMESPath and template compiled once, here.

`Connector.from_data` turns a connector spec into `Operation`s; `Connector.client(config)`
renders the `http:` block with a resolved config and gives an `HttpClient`. Nothing in this
module runs per record except the small `render`/`extract` methods the flows call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import extract, http, template
from engine.records import RECORD_TYPES

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
            fields["json"] = self.json.render(context)
        if self.form is not None:
            fields["form"] = self.form.render(context)
        return http.Request(**fields)


def _replay_safe(name: str, data: Mapping[str, Any]) -> bool:
    """Reads always are; a write is when it says `idempotent: true` or its method is not POST/PATCH."""
    if name.startswith(("list_", "find_", "lookup_")):
        return True
    if "idempotent" in data:
        return bool(data["idempotent"])
    method = (data.get("request") or {}).get("method", "POST" if (data.get("request") or {}).get("graphql") else "GET")
    return str(method).upper() not in ("POST", "PATCH")


def _structure(value: Any) -> template.Structure | None:
    return None if value is None else template.compile_structure(value)


def _path(expr: str | None) -> Path | None:
    return None if expr is None else extract.compile_path(expr)


def _predicate(expr: str | None) -> Callable[[Any], bool] | None:
    return None if expr is None else extract.compile_predicate(expr)


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


@dataclass(frozen=True, slots=True)
class Operation:
    """One named operation of a connector, compiled."""

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
    already_exists: AlreadyExists | None = None
    error_when: Callable[[Any], bool] | None = None
    precondition: RequestTemplate | None = None
    captures: Mapping[str, Capture] = field(default_factory=dict)
    replay_safe: bool = True        # may a failed send be retried blindly? (see `idempotent`)

    @classmethod
    def from_data(cls, name: str, data: Mapping[str, Any]) -> Operation:
        exists = data.get("already_exists")
        pre = data.get("precondition") or {}
        return cls(
            name=name,
            request=RequestTemplate.from_data(data.get("request") or {}),
            paginate=data.get("paginate"),
            records=_path(data.get("records")),
            key=_path(data.get("key")),
            watermark=_path(data.get("watermark")),
            filter=_predicate(data.get("filter")),
            filter_source=data.get("filter"),
            map=extract.compile_mapping(data["map"]) if "map" in data else None,
            record_type=RECORD_TYPES.get(name),
            id=_path(data.get("id")),
            already_exists=None if exists is None else AlreadyExists(
                frozenset(exists.get("status") or ()), _predicate(exists.get("when")), _path(exists.get("id"))),
            error_when=_predicate(data.get("error_when")),
            precondition=RequestTemplate.from_data(pre["request"]) if pre.get("request") else None,
            captures={key: Capture(c.get("header"), _path(c.get("path"))) for key, c in (pre.get("capture") or {}).items()},
            replay_safe=_replay_safe(name, data),
        )

    def paginator(self) -> http.Paginator:
        """A fresh paginator for one read (paginators carry per-read state)."""
        return http.build_paginator(self.paginate, extract.compile_path)

    def extract_records(self, body: Any) -> list:
        if self.records is None:
            return body if isinstance(body, list) else []
        found = self.records(body)
        return found if isinstance(found, list) else []


@dataclass(frozen=True, slots=True)
class Connector:
    """A compiled connector spec."""

    name: str
    kind: str
    data: Mapping[str, Any]
    operations: Mapping[str, Operation]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Connector:
        operations = {name: Operation.from_data(name, op) for name, op in (data.get("operations") or {}).items()}
        return cls(name=data["name"], kind=data["kind"], data=data, operations=operations)

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
        auth = spec.get("auth")
        return http.HttpClient(
            template.compile_template(spec.get("base_url", "")).render(context),
            auth=http.build_auth(template.compile_structure(auth).render(context)) if auth else None,
            headers=template.compile_structure(spec.get("headers") or {}).render(context),
            timeout=float(spec.get("timeout", 30)),
            retry=http.build_retry(spec.get("retry"), extract.compile_path),
            rate_limit=http.build_rate_limit(spec.get("rate_limit")),
            pacing=http.build_pacing(spec.get("pacing"), extract.compile_path),
            concurrency=int(spec.get("concurrency", 4)),
            transport=transport,
            secrets=secrets,
        )
