"""A client whose answers are canned (offline golden cases): the real `HttpClient` (paging,
record checks, host guard) on an in-memory transport, without retries.

    client = canned_client(lambda method, path, json: (200, [{"sku": "A"}]))
    async with client:
        answer = await client.send(Request(url="/orders/1/products"))
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Callable
from typing import Any

import httpx

from .client import HttpClient
from .retry import RetryPolicy

#: `respond(method, path, json body or None) -> (status, body or None)`
Respond = Callable[[str, str, Any], "tuple[int, Any]"]
BASE_URL = "https://example.test"


def canned_client(respond: Respond, base_url: str = BASE_URL) -> HttpClient:
    """An HttpClient on `base_url` answered by `respond` (an exception it raises propagates)."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = jsonlib.loads(request.content) if request.content else None
        status, answer = respond(request.method, request.url.path, body)
        return httpx.Response(status) if answer is None else httpx.Response(status, json=answer)

    return HttpClient(base_url, transport=httpx.MockTransport(handler), retry=RetryPolicy(attempts=1))
