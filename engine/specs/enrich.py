"""Per-record sub-requests of a read (`enrich:`) and the check that a record is whole
(`truncated_when:`), compiled once and run per page.

    enrich:
      - request: {path: "/orders/{{ record.id }}/products"}   # templates over record, config, now
        records: "@"                                          # JMESPath over each sub-answer
        into: products                                        # dotted field set on the record
      - request: {graphql: {query: "...", variables: {id: "{{ record.id }}",
                                                      after: "{{ record.lineItems.pageInfo.endCursor }}"}}}
        when: lineItems.pageInfo.hasNextPage                  # only records this predicate admits
        paginate: {type: graphql_cursor, variable: after, cursor: ..., has_next: ...}
        records: data.order.lineItems.nodes
        into: lineItems.nodes
        merge: append                                         # add to the list already there
        set: {lineItems.pageInfo: data.order.lineItems.pageInfo}   # from the last sub-answer
    truncated_when: lineItems.pageInfo.hasNextPage           # still cut after enrich: quarantined

A record's steps run in order (a later step's templates see what earlier ones merged); the
records of a page are enriched concurrently, at most `limit` at a time, and every sub-request
goes through the client (retries, rate limit, concurrency cap). The original record is never
changed: merging copies the dicts along the `into` path. A record whose sub-request fails, or
that `truncated_when` still calls cut, comes back as `Unenriched` with the reason and the
record as it was read, so it can be enriched again later.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from engine import extract, http
from engine.errors import ExtractError, HTTPError, SyncEngineError, TemplateError

Path = Callable[[Any], Any]


class Pages(Protocol):
    """What enrichment needs of a client: `HttpClient.pages`."""

    def pages(self, request: http.Request, paginator: http.Paginator,
              records: Callable[[Any], Any]) -> AsyncIterator[http.Page]: ...

    def excerpt(self, text: str, limit: int = ...) -> str: ...


@dataclass(frozen=True, slots=True)
class Unenriched:
    """A record that could not be made whole: the record as read, and why."""

    raw: Any
    reason: str


@dataclass(frozen=True, slots=True)
class Step:
    """One compiled `enrich` entry."""

    request: Any                    # specs.model.RequestTemplate (model imports this module)
    paginator: http.Paginator       # configuration only: `pages` works on a fresh copy
    records: Path
    into: tuple[str, ...]
    append: bool
    when: Callable[[Any], bool] | None
    error_when: Callable[[Any], bool] | None
    sets: tuple[tuple[tuple[str, ...], Path], ...]

    @classmethod
    def from_data(cls, data: Mapping[str, Any], request_template: Callable[[Mapping], Any]) -> Step:
        when, error_when = data.get("when"), data.get("error_when")
        return cls(
            request=request_template(data.get("request") or {}),
            paginator=http.build_paginator(data.get("paginate"), extract.compile_path),
            records=extract.compile_path(data.get("records") or "@"),
            into=tuple(str(data["into"]).split(".")),
            append=data.get("merge", "replace") == "append",
            when=extract.compile_predicate(when) if when else None,
            error_when=extract.compile_predicate(error_when) if error_when else None,
            sets=tuple((tuple(k.split(".")), extract.compile_path(v)) for k, v in (data.get("set") or {}).items()),
        )

    def label(self) -> str:
        return ".".join(self.into)

    async def apply(self, client: Pages, record: dict, context: Mapping[str, Any]) -> dict:
        """`record` with this step's sub-answers merged (the same record when `when` says no)."""
        if self.when is not None and not self.when(record):
            return record
        request = self.request.render({**context, "record": record})
        found: list = []
        last: Any = None
        async with contextlib.aclosing(client.pages(request, self.paginator, self._records)) as pages:
            async for page in pages:
                if self.error_when is not None and self.error_when(page.answer.body):
                    raise HTTPError(f"the answer says it failed: {client.excerpt(page.answer.text, 200)}")
                found.extend(page.records)
                last = page.answer.body
        if self.append:
            found = [*(_get(record, self.into) or []), *found]
        record = _put(record, self.into, found)
        for path, value in self.sets:
            record = _put(record, path, value(last) if last is not None else None)
        return record

    def _records(self, body: Any) -> list:
        found = self.records(body)
        if found is None:
            return []
        return found if isinstance(found, list) else [found]


@dataclass(frozen=True, slots=True)
class Enricher:
    """An operation's `enrich` steps and `truncated_when` check."""

    steps: tuple[Step, ...] = ()
    truncated_when: Callable[[Any], bool] | None = None
    truncated_source: str | None = None

    @property
    def active(self) -> bool:
        return bool(self.steps) or self.truncated_when is not None

    def truncated(self, record: Any) -> str | None:
        """The quarantine reason when `truncated_when` holds for `record`, else None."""
        if self.truncated_when is None:
            return None
        try:
            cut = self.truncated_when(record)
        except ExtractError:
            cut = False
        if not cut:
            return None
        return (f"truncated: '{self.truncated_source}' holds: a nested list of the record was cut "
                f"(page it with an `enrich` step), so it is held rather than sent incomplete")

    async def record(self, client: Pages, raw: Any, context: Mapping[str, Any]) -> Any:
        """`raw` enriched by every step, or `Unenriched` with the reason (never raises for it)."""
        record = raw
        step = None
        try:
            for step in self.steps:
                record = await step.apply(client, record, context)
        except (SyncEngineError, TypeError, ValueError) as exc:
            detail = exc.message if isinstance(exc, SyncEngineError) else str(exc)
            kind = "template" if isinstance(exc, TemplateError) else "request"
            return Unenriched(raw, f"enrich {step.label()} failed ({kind}): {detail}")
        reason = self.truncated(record) if self.steps else None
        return Unenriched(raw, reason) if reason else record

    async def page(self, client: Pages, raws: list, context: Mapping[str, Any], limit: int,
                   skip: Callable[[Any], bool] | None = None) -> list:
        """Each record of a page enriched (`skip(raw)` true: passed as is), `limit` at a time."""
        if not self.steps:
            return raws
        slots = asyncio.Semaphore(max(1, limit))

        async def one(raw: Any) -> Any:
            if skip is not None and skip(raw):
                return raw
            async with slots:
                return await self.record(client, raw, context)

        return list(await asyncio.gather(*(one(raw) for raw in raws)))


def _get(record: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        if not isinstance(record, Mapping):
            return None
        record = record.get(name)
    return record


def _put(record: Any, path: tuple[str, ...], value: Any) -> dict:
    """A copy of `record` with `path` set to `value` (dicts along the path copied, made if absent)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"cannot set {'.'.join(path)}: the record is not an object")
    copy = dict(record)
    head, rest = path[0], path[1:]
    copy[head] = _put(copy.get(head) if isinstance(copy.get(head), Mapping) else {}, rest, value) if rest else value
    return copy
