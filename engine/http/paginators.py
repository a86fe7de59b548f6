"""Paginators: small classes found by `type` in `PAGINATORS` (dlt `paginators.py`, extended).

A paginator is configuration plus the state of one paging run; `HttpClient.pages` works on
`paginator.fresh()`, so one built paginator can serve any number of runs. The protocol:

    request = pager.init_request(request)          # first page's request
    pager.update_state(answer, records)            # after each page: advance, check stops
    pager.has_next_page                            # False once `stop_reason` is set
    request = pager.update_request(request)        # the next page's request
    pager.token                                    # what identifies that next page (repeat check)
    pager.plan(request)                            # page_number: the remaining pages, when known

Stop conditions (`stops.py`) are combinable; the first that holds ends paging. A paginator
that finds no next page (no cursor, no link) ends paging too.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any
from urllib.parse import urljoin

from .models import Answer, Request
from .stops import EmptyPage, Progress, ShortPage, StopCondition, build_stop

Path = Callable[[Any], Any]


class Paginator:
    """Base: no next page after the first (`type: none`)."""

    #: constructor arguments that are JMESPath expressions, compiled by `build_paginator`
    paths: tuple[str, ...] = ()
    page_size: int | None = None
    concurrency: int = 1

    def __init__(self, stop: Iterable[StopCondition] = ()) -> None:
        self.stops = tuple(stop)
        self.progress = Progress(page_size=self.page_size)
        self.stop_reason: str | None = None

    def fresh(self) -> Paginator:
        """A copy with the state of a new paging run (configuration shared)."""
        run = copy.copy(self)
        run.progress, run.stop_reason = Progress(page_size=self.page_size), None
        run.reset()
        return run

    def reset(self) -> None:
        """Clear the run state kept by a subclass."""

    def init_request(self, request: Request) -> Request:
        return request

    def update_state(self, answer: Answer, records: list) -> None:
        """Count the page, advance to the next reference, then check the stop conditions."""
        self.progress.pages += 1
        self.progress.records += len(records)
        own = self.advance(answer, records)
        self.stop_reason = self.first_stop(answer, records) or own

    def first_stop(self, answer: Answer, records: list) -> str | None:
        """The reason given by the first stop condition that holds, or None."""
        for stop in self.stops:
            reason = stop.check(answer, records, self.progress)
            if reason:
                return reason
        return None

    def advance(self, answer: Answer, records: list) -> str | None:
        """Take the next page's reference from `answer`; return why there is none, if so."""
        return "single request"

    @property
    def has_next_page(self) -> bool:
        return self.stop_reason is None

    @property
    def token(self) -> Hashable:
        return None

    def update_request(self, request: Request) -> Request:
        return request

    def plan(self, request: Request) -> list[Request]:
        """Requests for all remaining pages when they are known in advance; else []."""
        return []


class PageNumberPaginator(Paginator):
    """`?page=1&per_page=100`, then `page=2`, ... (stops default to `[empty_page]`).

    With `concurrency > 1`, once a `total_pages` stop has read the total, the remaining
    pages (capped by `max_pages`) are planned and fetched that many at a time.
    """

    def __init__(self, param: str = "page", start: int = 1, size_param: str | None = None,
                 size: int | None = None, concurrency: int = 1,
                 stop: Iterable[StopCondition] = ()) -> None:
        self.param, self.start, self.size_param = param, start, size_param
        self.page_size, self.concurrency, self.page = size, max(1, concurrency), start
        super().__init__(stop or [EmptyPage()])

    def reset(self) -> None:
        self.page = self.start

    def init_request(self, request: Request) -> Request:
        params: dict[str, Any] = {self.param: self.page}
        if self.size_param and self.page_size:
            params[self.size_param] = self.page_size
        return request.with_params(params)

    def advance(self, answer: Answer, records: list) -> str | None:
        self.page += 1
        return None

    @property
    def token(self) -> Hashable:
        return self.page

    def update_request(self, request: Request) -> Request:
        return request.with_params({self.param: self.page})

    def plan(self, request: Request) -> list[Request]:
        if self.concurrency < 2 or self.progress.total_pages is None:
            return []
        limits = [n for s in self.stops if (n := s.page_limit(self.progress)) is not None]
        last = self.start + min(limits) - 1
        return [request.with_params({self.param: n}) for n in range(self.page, last + 1)]


class OffsetPaginator(Paginator):
    """`?offset=0&limit=100`, then `offset=100`, ... (stops default to `[empty_page]`).

    The offset advances by the records actually received, so a server that caps the limit
    below ours does not make us skip records.
    """

    def __init__(self, offset_param: str = "offset", limit_param: str = "limit",
                 limit: int = 100, start: int = 0, stop: Iterable[StopCondition] = ()) -> None:
        self.offset_param, self.limit_param, self.start = offset_param, limit_param, start
        self.page_size, self.offset = limit, start
        super().__init__(stop or [EmptyPage()])

    def reset(self) -> None:
        self.offset = self.start

    def init_request(self, request: Request) -> Request:
        return request.with_params({self.offset_param: self.offset,
                                    self.limit_param: self.page_size})

    def advance(self, answer: Answer, records: list) -> str | None:
        self.offset += len(records)
        return None

    @property
    def token(self) -> Hashable:
        return self.offset

    def update_request(self, request: Request) -> Request:
        return request.with_params({self.offset_param: self.offset})


class CursorPaginator(Paginator):
    """A cursor from the body (`{"next_cursor": "abc"}`) or a header (`X-Next-Cursor: abc`),
    sent back as the query parameter `param` (`?cursor=abc`). No cursor: no next page."""

    paths = ("path",)

    def __init__(self, param: str, source: str = "body", path: Path | None = None,
                 header: str | None = None, stop: Iterable[StopCondition] = ()) -> None:
        if source not in ("body", "header") or (path if source == "body" else header) is None:
            raise ValueError("cursor needs source: body with path, or source: header with header")
        self.param, self.source, self.path, self.header = param, source, path, header
        self.cursor: Any = None
        super().__init__(stop)

    def reset(self) -> None:
        self.cursor = None

    def advance(self, answer: Answer, records: list) -> str | None:
        if self.source == "header":
            self.cursor = answer.headers.get(self.header)
        else:
            self.cursor = self.path(answer.body) if answer.body is not None else None
        return None if self.cursor not in (None, "") else "no next cursor"

    @property
    def token(self) -> Hashable:
        return self.cursor

    def update_request(self, request: Request) -> Request:
        return request.with_params({self.param: self.cursor})


class _NextUrlBase(Paginator):
    """A next-page URL taken from the answer, resolved against the URL that answered."""

    next_url: str | None = None

    def reset(self) -> None:
        self.next_url = None

    def advance(self, answer: Answer, records: list) -> str | None:
        found = self.find(answer)
        self.next_url = urljoin(answer.url, found) if found else None
        return None if self.next_url else f"no next link ({self.describe()})"

    def find(self, answer: Answer) -> str | None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    @property
    def token(self) -> Hashable:
        return self.next_url

    def update_request(self, request: Request) -> Request:
        return request.replace(url=self.next_url, params=None)


class LinkHeaderPaginator(_NextUrlBase):
    """RFC 8288: `Link: <https://shop.test/orders?page=2>; rel="next", <...>; rel="last"`."""

    def __init__(self, rel: str = "next", stop: Iterable[StopCondition] = ()) -> None:
        self.rel = rel.lower()
        super().__init__(stop)

    def find(self, answer: Answer) -> str | None:
        return parse_link_header(answer.headers.get("link", "")).get(self.rel)

    def describe(self) -> str:
        return f'Link rel="{self.rel}"'


class NextUrlPaginator(_NextUrlBase):
    """The next URL in the body: `{"data": [...], "next": "https://shop.test/orders?page=2"}`."""

    paths = ("path",)

    def __init__(self, path: Path, stop: Iterable[StopCondition] = ()) -> None:
        self.path = path
        super().__init__(stop)

    def find(self, answer: Answer) -> str | None:
        found = self.path(answer.body) if answer.body is not None else None
        return str(found) if found else None

    def describe(self) -> str:
        return "next URL in body"


class GraphQLCursorPaginator(Paginator):
    """Relay connections: `{"data": {"orders": {"pageInfo": {"hasNextPage": true,
    "endCursor": "abc"}}}}`; the next request's JSON body gets `variables[variable] = "abc"`."""

    paths = ("cursor", "has_next")

    def __init__(self, variable: str, cursor: Path, has_next: Path,
                 stop: Iterable[StopCondition] = ()) -> None:
        self.variable, self.cursor_path, self.has_next = variable, cursor, has_next
        self.cursor: Any = None
        super().__init__(stop)

    def reset(self) -> None:
        self.cursor = None

    def advance(self, answer: Answer, records: list) -> str | None:
        body = answer.body
        more = self.has_next(body) if body is not None else None
        if not more:
            return f"hasNextPage is {more!r}"
        self.cursor = self.cursor_path(body)
        return None if self.cursor not in (None, "") else "no end cursor"

    @property
    def token(self) -> Hashable:
        return self.cursor

    def update_request(self, request: Request) -> Request:
        return request.with_variable(self.variable, self.cursor)


_LINK = re.compile(r"<([^>]*)>([^<]*)")     # a target and its parameters, up to the next target
_REL = re.compile(r';\s*rel\s*=\s*(?:"([^"]*)"|([^;,\s]+))', re.IGNORECASE)


def parse_link_header(value: str) -> dict[str, str]:
    """`{rel: url}` from an RFC 8288 Link header; one link may have several rels
    (`rel="next last"`); the first link of a rel wins."""
    links: dict[str, str] = {}
    for match in _LINK.finditer(value):
        rel = _REL.search(match.group(2))
        for name in (rel.group(1) or rel.group(2)).split() if rel else ():
            links.setdefault(name.lower(), match.group(1).strip())
    return links


PAGINATORS: dict[str, type[Paginator]] = {
    "none": Paginator,
    "page_number": PageNumberPaginator,
    "offset": OffsetPaginator,
    "cursor": CursorPaginator,
    "link_header": LinkHeaderPaginator,
    "next_url": NextUrlPaginator,
    "graphql_cursor": GraphQLCursorPaginator,
}


def build_paginator(spec: Mapping[str, Any] | None,
                    compile_path: Callable[[str], Path]) -> Paginator:
    """The paginator for a `paginate` dict (None: `type: none`); `stop` entries become
    stop conditions, JMESPath arguments are compiled with `compile_path`."""
    kwargs = dict(spec or {})
    kind = kwargs.pop("type", "none")
    if kind not in PAGINATORS:
        raise ValueError(f"unknown paginator type {kind!r}; valid: {sorted(PAGINATORS)}")
    cls = PAGINATORS[kind]
    kwargs["stop"] = [build_stop(s, compile_path) for s in kwargs.get("stop") or ()]
    for name in cls.paths:
        if kwargs.get(name) is not None:
            kwargs[name] = compile_path(kwargs[name])
    try:
        pager = cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"paginator type {kind!r}: {exc}") from None
    _check_sizes(kind, pager)
    return pager


def _check_sizes(kind: str, pager: Paginator) -> None:
    for stop in pager.stops:
        if isinstance(stop, ShortPage) and not (stop.size or pager.page_size):
            raise ValueError(f"short_page on paginator {kind!r} needs a size")
