"""Stop conditions: when paging is over, found by `type` in `STOP_CONDITIONS`.

Each condition's `check(answer, records, progress)` returns the reason paging stops (a short
phrase for the log), or None to go on. A paginator holds a list of them; the first that holds
ends paging. Totals read from a header or a body path that is absent never stop paging.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from .models import Answer


@dataclasses.dataclass(slots=True)
class Progress:
    """What a paging run has seen so far; `page_size` is the paginator's size/limit, if any."""

    pages: int = 0
    records: int = 0
    page_size: int | None = None
    total_pages: int | None = None
    total_records: int | None = None

    def expected(self) -> int | None:
        """The records the whole read will hold, once a total says (for a progress display):
        a `total_records`, or the records so far plus `page_size` (else the pages' mean size)
        per page still to come of a `total_pages`, exact once the last page is in; None when
        nothing says."""
        if self.total_records is not None:
            return max(self.total_records, self.records)
        if self.total_pages is not None and self.pages >= self.total_pages:
            return self.records
        size = self.page_size or (-(-self.records // self.pages) if self.pages else None)
        if self.total_pages is not None and size:
            return self.records + (self.total_pages - self.pages) * size
        return None


class StopCondition:
    """Base: `check` returns why paging stops now, or None."""

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        raise NotImplementedError

    def page_limit(self, progress: Progress) -> int | None:
        """The number of pages this condition allows in all, once known (for parallel fetch)."""
        return None


class EmptyPage(StopCondition):
    """The page has no records: `[]`."""

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        return None if records else "empty page"


class ShortPage(StopCondition):
    """Fewer records than `size` (default: the paginator's size or limit)."""

    def __init__(self, size: int | None = None) -> None:
        self.size = size

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        size = self.size or progress.page_size
        return f"short page ({len(records)} < {size} records)" if len(records) < size else None


class _Total(StopCondition):
    """A total read from `header` (`X-WP-Total: 142`) or a body `path` (`{"total": 142}`)."""

    def __init__(self, header: str | None = None, path: Callable[[Any], Any] | None = None):
        if (header is None) == (path is None):
            raise ValueError(f"{type(self).__name__} needs exactly one of header or path")
        self.header, self.path = header, path

    def total(self, answer: Answer) -> int | None:
        raw = answer.headers.get(self.header) if self.header else _read(self.path, answer.body)
        try:
            return int(raw) if raw not in (None, "") else None
        except (TypeError, ValueError):
            return None

    def source(self) -> str:
        return self.header or "body"


class TotalPages(_Total):
    """The count of pages fetched reached the total pages (`X-WP-TotalPages: 5`)."""

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        total = self.total(answer)
        if total is None:
            return None
        progress.total_pages = total
        if progress.pages < total:
            return None
        return f"page {progress.pages} of {total} ({self.source()})"

    def page_limit(self, progress: Progress) -> int | None:
        return progress.total_pages


class TotalRecords(_Total):
    """The records seen reached the total records (`{"total": 142}`)."""

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        total = self.total(answer)
        if total is not None:
            progress.total_records = total
        if total is None or progress.records < total:
            return None
        return f"{progress.records} of {total} records ({self.source()})"


class HasMore(StopCondition):
    """A flag says there is no more: `{"has_more": false}`; with `negate`, a last-page flag
    such as `{"last": true}`."""

    def __init__(self, path: Callable[[Any], Any], negate: bool = False) -> None:
        self.path, self.negate = path, negate

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        flag = _read(self.path, answer.body)
        more = not flag if self.negate else bool(flag)
        return None if more else f"has_more flag is {flag!r}{' (negated)' if self.negate else ''}"


class NoContent(StopCondition):
    """The answer is `204 No Content` (an empty page, not an error)."""

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        return "204 No Content" if answer.status == 204 else None


class MaxPages(StopCondition):
    """That many pages were fetched."""

    def __init__(self, pages: int) -> None:
        self.pages = pages

    def check(self, answer: Answer, records: list, progress: Progress) -> str | None:
        return f"max_pages {self.pages} reached" if progress.pages >= self.pages else None

    def page_limit(self, progress: Progress) -> int | None:
        return self.pages


def _read(path: Callable[[Any], Any] | None, body: Any) -> Any:
    return path(body) if path is not None and body is not None else None


STOP_CONDITIONS: dict[str, type[StopCondition]] = {
    "empty_page": EmptyPage,
    "short_page": ShortPage,
    "total_pages": TotalPages,
    "total_records": TotalRecords,
    "has_more": HasMore,
    "no_content": NoContent,
    "max_pages": MaxPages,
}


def build_stop(spec: Mapping[str, Any], compile_path: Callable[[str], Callable[[Any], Any]]
               ) -> StopCondition:
    """One stop condition from its dict; `path` is compiled with `compile_path`."""
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind not in STOP_CONDITIONS:
        raise ValueError(f"unknown stop type {kind!r}; valid: {sorted(STOP_CONDITIONS)}")
    if "path" in kwargs:
        kwargs["path"] = compile_path(kwargs["path"])
    try:
        return STOP_CONDITIONS[kind](**kwargs)
    except TypeError as exc:
        raise ValueError(f"stop type {kind!r}: {exc}") from None
