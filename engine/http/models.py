"""The values the HTTP layer trades in: a rendered `Request`, an `Answer`, a `Page` of records.

All three are frozen, slotted dataclasses: cheap to build, safe to share between tasks. A
`Request` is changed by making a new one (`replace`, `with_params`, `with_variable`), which is
what lets paginators hand out the next request without aliasing the previous one.
"""

from __future__ import annotations

import codecs
import dataclasses
import email.message
import enum
import functools
import json as jsonlib
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from engine.errors import HTTPError


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
    `204 No Content` or not JSON; `text` the decoded body (`content` as received, or already
    decoded); `url` the URL that answered.
    """

    status: int
    headers: Mapping[str, str]
    body: Any
    content: str | bytes         # the decoded text, or the raw bytes, decoded when `text` is read
    url: str
    encoding: str = "utf-8"      # of `content` when it is bytes

    @classmethod
    def from_response(cls, response: httpx.Response) -> Answer:
        """Parse JSON once, from the bytes when they are UTF-8 (none for 204 or an empty body);
        the text is decoded only if someone reads it (an error message, a non-JSON page)."""
        content, status = response.content, response.status_code
        encoding = _charset(response.headers.get("content-type")) or "utf-8"
        if encoding.lower() not in _UTF8:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise HTTPError(f"the answer declares charset {encoding!r}, which is unknown") from None
        body = _parse_bytes(status, content, encoding) if content and not content.isspace() else None
        return cls(status, response.headers, body, content, str(response.url), encoding)

    @property
    def text(self) -> str:
        """The decoded body (undecodable bytes replaced)."""
        content = self.content
        return content if isinstance(content, str) else content.decode(self.encoding, errors="replace")

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status < 300


@functools.lru_cache(maxsize=64)
def _charset(content_type: str | None) -> str | None:
    """The charset a Content-Type names, read as httpx's `charset_encoding` reads it (with an
    `email.message.Message`: ~40,000 instructions), once per value: a server sends the same few."""
    if content_type is None:
        return None
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_charset(failobj=None)


_UTF8 = frozenset({"utf-8", "utf8", "utf_8"})
#: JSON nested deeper than this is refused. It is orjson's own limit (it raises JSONDecodeError
#: past 1,024 levels since 3.9.15, CVE-2024-27454; before, it recursed on the C stack and a
#: million levels crashed the process), so the common path needs no depth pass of ours; the std
#: json fallback is held to the same limit (`_within_depth`), and refuses what its scanner finds
#: too deep with a RecursionError. Real answers nest < 20 levels.
MAX_DEPTH = 1024


def _parse_bytes(status: int, content: bytes, encoding: str) -> Any:
    """`_parse` of the decoded text; orjson reads UTF-8 bytes directly (no decoding a page into
    a str first), so only what it refuses (bad UTF-8, too deep, NaN) is decoded and read again."""
    if status != 204 and encoding.lower() in _UTF8:
        try:
            return orjson.loads(content)
        except ValueError:
            pass
    return _parse(status, content.decode(encoding, errors="replace"))


def _parse(status: int, text: str) -> Any:
    """orjson (twice as fast as std json on a page of orders); std json for what orjson refuses
    and std json reads (NaN, Infinity, lone surrogates), held to MAX_DEPTH levels: HTTPError when
    deeper (orjson refuses that itself). Note: orjson reads an integer beyond 64 bits as a float."""
    if status == 204 or not text or text.isspace():
        return None
    try:
        return orjson.loads(text)
    except ValueError:
        pass
    try:
        return _within_depth(jsonlib.loads(text))
    except RecursionError:
        raise HTTPError(f"the answer's JSON nests too deeply (more than {MAX_DEPTH} levels, "
                        "or more than the interpreter's recursion limit)") from None
    except ValueError:
        return None


def _within_depth(value: Any) -> Any:
    """`value` if it nests at most MAX_DEPTH levels, else RecursionError (std json stops only at
    the interpreter's recursion limit, ~1000 levels, which is not a limit of ours)."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise RecursionError
        level = [child for item in level if isinstance(item, (list, dict))
                 for child in (item.values() if isinstance(item, dict) else item)]
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """One fetched page: its 1-based `number`, the `records` it held and the `answer` itself;
    `expected`, the records the whole read holds, when a total in the answers says so."""

    number: int
    records: list
    answer: Answer
    expected: int | None = None
