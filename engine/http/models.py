"""The values the HTTP layer trades in: a rendered `Request`, an `Answer`, a `Page` of records.

All three are frozen, slotted dataclasses: cheap to build, safe to share between tasks. A
`Request` is changed by making a new one (`replace`, `with_params`, `with_variable`), which is
what lets paginators hand out the next request without aliasing the previous one.
"""

from __future__ import annotations

import dataclasses
import enum
import json as jsonlib
from collections.abc import Mapping
from typing import Any

import httpx
import orjson


class _Nothing(enum.Enum):
    NOTHING = "NOTHING"

    def __repr__(self) -> str:
        return "NOTHING"


#: "No JSON body" — distinct from `None`, which is a JSON body of `null`.
NOTHING = _Nothing.NOTHING


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """A rendered request; `url` is absolute or relative to the client's `base_url`.

    `json` is the JSON body (`NOTHING` for none); `form` an x-www-form-urlencoded body. A GraphQL
    request is `json={"query": ..., "variables": {...}}`, built by the caller.
    """

    method: str = "GET"
    url: str = ""
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    json: Any = NOTHING
    form: Mapping[str, Any] | None = None

    def replace(self, **changes: Any) -> Request:
        """A copy with `changes` applied (`dataclasses.replace`)."""
        return dataclasses.replace(self, **changes)

    def with_params(self, params: Mapping[str, Any]) -> Request:
        """A copy whose query params are this request's, updated with `params`."""
        return dataclasses.replace(self, params={**(self.params or {}), **params})

    def with_variable(self, name: str, value: Any) -> Request:
        """A copy whose GraphQL body has `variables[name] = value`."""
        body = self.json if isinstance(self.json, Mapping) else {}
        variables = {**(body.get("variables") or {}), name: value}
        return dataclasses.replace(self, json={**body, "variables": variables})


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """What callers see of a response.

    `headers` is case-insensitive; `body` is the parsed JSON, or None when the answer is empty,
    `204 No Content` or not JSON; `text` the decoded body; `url` the URL that answered.
    """

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str
    url: str

    @classmethod
    def from_response(cls, response: httpx.Response) -> Answer:
        """Decode once, parse JSON once (none for 204 or an empty body)."""
        content = response.content
        text = content.decode(response.charset_encoding or "utf-8", errors="replace")
        return cls(response.status_code, response.headers, _parse(response.status_code, text),
                   text, str(response.url))

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


def _parse(status: int, text: str) -> Any:
    """orjson (twice as fast as std json on a page of orders); std json for what orjson refuses
    and std json reads (NaN, Infinity, lone surrogates). Note: orjson reads an integer beyond
    64 bits as a float."""
    if status == 204 or not text or text.isspace():
        return None
    try:
        return orjson.loads(text)
    except ValueError:
        pass
    try:
        return jsonlib.loads(text)
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One fetched page: its 1-based `number`, the `records` it held and the `answer` itself."""

    number: int
    records: list
    answer: Answer
