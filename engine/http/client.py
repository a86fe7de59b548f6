"""`HttpClient`: sending with retries, rate limit, host guard and redaction; streaming pages.

    async with HttpClient("https://shop.test/api", auth=build_auth(spec["auth"]),
                          retry=build_retry(spec.get("retry"), compile_path)) as client:
        answer = await client.send(Request("POST", "/orders", json=order), accept={409})
        async for page in client.pages(Request(url="/orders"), paginator, records):
            ...

Credentials never leave the base URL's origin: any request, paging link or redirect to another
scheme, host or port raises ForeignHostError before anything is sent (it is refused, not followed
without credentials). Only the OAuth2 token request goes to the token URL (https, on the base
URL's host and port or a host the auth lists; checked when the client is made), sent by the
client for the auth (`bind`) with the same retries as any request. Every message this layer produces has its secrets masked and its
URLs sanitized.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import ssl
import time
from collections import deque
from collections.abc import (AsyncIterator, Awaitable, Callable, Collection, Hashable, Iterable,
                             Mapping)
from typing import Any
from urllib.parse import urljoin

import httpx

from engine.errors import (ForeignHostError, HTTPError, PagingError, StatusError,
                           SyncEngineError, TransportError)

from . import observe
from .auth import endpoint
from .breaker import DEFAULT_THRESHOLD, Breaker
from .limits import Limits
from .models import NOTHING, Answer, Page, Request
from .pacer import Pacer, explains
from .pacing import NOTHING_READ, Pacing, Reading
from .paginators import Paginator
from .ratelimit import RateLimit, bucket_for
from .redact import Redactor
from .retry import RetryPolicy
from .waits import sleep

logger = logging.getLogger("syncengine.http")

MAX_REDIRECTS = 5
EXCERPT = 200


class HttpClient:
    """One base URL's client: `send` one request, or stream `pages` of records.

    `retry=None` means `RetryPolicy()` (3 attempts on 429/502/503/504 and transport errors).
    `rate_limit` is a token bucket shared with every client of the same host and port on this
    machine (every process); `pacing` reads the rate-limit feedback of each answer into the
    same shared bucket, which then paces every request and says how long a throttled answer
    waits (`pacing.py`). `concurrency` caps this client's requests in flight and sizes its
    connection pool. `down_after` failed requests in a row (refused, timed out, dropped, 5xx
    after every retry) open the client's `breaker`: from then on it sends nothing and raises
    HostDownError (`breaker.py`).
    `secrets` (plus the auth object's own `secrets`) are masked in every message and log line.
    """

    def __init__(self, base_url: str, *, auth: httpx.Auth | None = None,
                 headers: Mapping[str, str] | None = None, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, rate_limit: RateLimit | None = None,
                 pacing: Pacing | None = None, concurrency: int = 4,
                 transport: httpx.AsyncBaseTransport | None = None,
                 secrets: Iterable[str] = (), log: logging.Logger = logger,
                 limits: Limits | None = None, down_after: int = DEFAULT_THRESHOLD) -> None:
        self.base_url = httpx.URL(base_url)
        if not self.base_url.host:
            raise ValueError(f"base_url must be an absolute URL, got {base_url!r}")
        self.retry = retry or RetryPolicy()
        self.limits = limits or Limits(deadline=timeout * 4)
        self._auth, self._secrets, self._log = auth, tuple(secrets), log
        self.breaker = Breaker(_origin(self.base_url), down_after)
        self._endpoint = endpoint(self.base_url)     # (host, port) every request must go to
        self._host = "{}:{}".format(*self._endpoint)                    # metrics label (`observe`)
        self._pacer = Pacer(bucket_for(_origin(self.base_url), rate_limit), pacing,
                            self.retry.max_throttle_wait) if rate_limit or pacing else None
        self._concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._withheld, self._withholder = 0, None      # slots `share_limits` keeps from use
        self._redactors: tuple[tuple[str, ...], Redactor] = ((), Redactor())
        if (bind := getattr(auth, "bind", None)) is not None:   # token requests: `_send_token`
            bind(self._send_token, self.base_url)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, timeout=timeout, limits=limits, verify=_tls(),
            transport=transport, http2=False, follow_redirects=False)

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def send(self, request: Request, *, accept: Collection[int] = (), replay_safe: bool = True) -> Answer:
        """The answer to `request`, after retries and same-host redirects.

        2xx and statuses in `accept` return an Answer (e.g. 409 "already exists", 404 on a
        find); anything else raises StatusError once retries are exhausted; transport
        failures raise TransportError; a foreign host raises ForeignHostError.

        `replay_safe=False` (a write that must not happen twice) retries only failures after
        which the server certainly did not act: a connection never made, a request not fully
        written (reset while sending), 429, 503, a 2xx that
        `retry.when` calls throttled (GraphQL's THROTTLED: the query was not run). A timeout
        or 500/502/504 may have come after the server acted, so it is raised at once for the
        caller to reconcile (find the record) before anything is sent again.

        Once the host's `breaker` is open, a request is not sent (nor retried, when no earlier
        try can have reached the server): HostDownError, a TransportError with `unsent`.
        """
        try:
            for _ in range(MAX_REDIRECTS + 1):
                answer = await self._retrying(request, accept, replay_safe)
                if not 300 <= answer.status < 400 or answer.status in accept:
                    self.breaker.record(None)
                    return answer
                request = self._redirect(request, answer)
            raise HTTPError(f"{self._where(request)}: more than {MAX_REDIRECTS} redirects")
        except SyncEngineError as exc:
            self.breaker.record(exc)
            raise self._masked(exc) from exc.__cause__

    async def pages(self, request: Request, paginator: Paginator, records: Callable[[Any], Any],
                    *, split: Split | None = None) -> AsyncIterator[Page]:
        """Stream the pages of `request` as `paginator` walks them; `records` picks each
        page's record list out of its parsed body (a 204 is an empty page).

        When the paginator plans the remaining pages (their requests are known in advance),
        `split(planned, window)` may hand some of them elsewhere: it returns None (no split)
        or the requests this stream still fetches, in order, and how many at a time; after
        those, the stream ends.

        Raises PagingError when the next cursor, URL or page repeats, ForeignHostError when
        a paging link leaves the host. Logs (INFO) why paging stopped.
        """
        pager = paginator.fresh()
        request = pager.init_request(request)
        batch, window, seen, number = [request], pager.concurrency, {_hashable(pager.token)}, 0
        shared = False
        while batch:
            async with contextlib.aclosing(self._fetch(batch, window)) as answers:
                async for answer in answers:
                    number += 1
                    found = self._records(answer, records)
                    pager.update_state(answer, found)
                    page = Page(number, found, answer, pager.progress.expected())
                    self._check_read_limits(request, pager)
                    yield page
                    if not pager.has_next_page:
                        self._stopped(request, pager)
                        return
            if shared:
                self._info("paging %s: this process fetched its share of the planned pages",
                           self._redact().url(request.url))
                return
            request = pager.update_request(request)
            self._check_repeat(seen, pager.token, request)
            self._check_host(request.url, "paging link")
            batch = pager.plan(request) or [request]
            if len(batch) > 1 and split is not None and (share := split(batch, pager.concurrency)):
                (batch, window), shared = share, True

    async def planned_pages(self, requests: list[Request], records: Callable[[Any], Any],
                            window: int) -> AsyncIterator[Page]:
        """Pages for requests planned elsewhere (a share handed out by `pages(split=...)`),
        in order, `window` at a time; the same host guard, retries and record checks."""
        for request in requests:
            self._check_host(request.url, "planned page")
        async with contextlib.aclosing(self._fetch(requests, window)) as answers:
            number = 0
            async for answer in answers:
                number += 1
                yield Page(number, self._records(answer, records), answer)

    def share_limits(self, fraction: float) -> None:
        """Keep `fraction` of this client's concurrency, as when one read is split over several
        processes; `share_limits(1)` restores it. (The host's rate limit needs no share: its
        bucket is already one for every process of the machine.)

        The slots given up are taken out of use as the requests in flight free them (never more
        in flight than before, and no more than the share once those are done); call it from
        the event loop that uses this client."""
        if self._withholder is not None:
            self._withholder.cancel()
            self._withholder = None
        for _ in range(self._withheld):
            self._slots.release()
        self._withheld = 0
        spare = self._concurrency - max(1, int(self._concurrency * fraction))
        if spare > 0:
            self._withholder = asyncio.ensure_future(self._withhold(spare))

    async def _withhold(self, slots: int) -> None:
        for _ in range(slots):
            await self._slots.acquire()
            self._withheld += 1

    async def _fetch(self, requests: list[Request], window: int) -> AsyncIterator[Answer]:
        """Answers to `requests` in order, with up to `window` of them in flight."""
        if len(requests) == 1:
            yield await self.send(requests[0])
            return
        pending: deque[asyncio.Future[Answer]] = deque()
        waiting = iter(requests)
        try:
            for request in itertools.islice(waiting, window):
                pending.append(asyncio.ensure_future(self.send(request)))
            while pending:
                answer = await pending.popleft()
                for request in itertools.islice(waiting, 1):   # keep `window` in flight while
                    pending.append(asyncio.ensure_future(self.send(request)))  # the caller works
                yield answer
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _send_token(self, token_request: httpx.Request) -> Answer:
        """The token endpoint's answer to `token_request` (from the bound auth), retried like
        any request (5xx, 429 with Retry-After, transport errors, per `retry`); a refusal
        (400, 401) raises StatusError at once. It skips the host guard (`bind` checked the
        token URL), the rate limit and the concurrency slots (the request that needs the token
        holds one already)."""
        async def once() -> Answer:
            return Answer.from_response(await self._client.send(token_request))
        shown = Request(token_request.method, str(token_request.url))
        try:
            return await self._retrying(shown, (), True, once)
        except SyncEngineError as exc:
            exc.message = f"OAuth2 token request: {exc.message}"
            exc.args = (exc.message, *exc.args[1:])
            raise

    async def _retrying(self, request: Request, accept: Collection[int], replay_safe: bool = True,
                        once: Callable[[], Awaitable[Answer]] | None = None) -> Answer:
        """Try up to `retry.attempts` times (each try is `once()`, default `_once(request)`);
        the answer to keep, or the error to raise. A throttle the API explains (Retry-After,
        or rate-limit feedback) is waited for without using an attempt, within
        `retry.max_throttle_wait` seconds in total."""
        policy, attempt, budget = self.retry, 1, [float(self.retry.max_throttle_wait)]
        reached = False                  # may a try have reached the server (and been acted on)?
        while True:
            try:
                if once is None:
                    answer, reading = await self._once(request, budget, gate=not reached)
                else:
                    answer, reading = await once(), NOTHING_READ
            except httpx.HTTPError as exc:
                unsent = isinstance(exc, UNSENT_ERRORS)
                reached = reached or not unsent
                if not policy.on_error(exc) or attempt >= policy.attempts or not (replay_safe or unsent):
                    raise self._transport_error(request, exc, attempt, unsent=not reached) from exc
                verdict: bool | float = True
            else:
                reached = reached or answer.status not in UNACTED_STATUSES
                verdict = False if answer.status in accept else policy.on_answer(answer)
                if verdict is False:
                    return self._checked(request, answer, accept, attempt)
                if await self._throttled(request, answer, verdict, reading, budget, once is None):
                    continue
                # a 2xx is retried only when `retry.when` says throttled: the server did not run it
                if attempt >= policy.attempts or not (replay_safe or answer.ok or answer.status in UNACTED_STATUSES):
                    raise self._status_error(request, answer, attempt)
            await self._wait(request, verdict, attempt)
            attempt += 1

    async def _once(self, request: Request, budget: list[float], gate: bool = True) -> tuple[Answer, Reading]:
        """One try: host guard, concurrency slot, the breaker (when `gate`: no earlier try can
        have reached the server), pacing, send, parse, feedback."""
        sent = self._client.build_request(
            request.method, request.url, params=request.params, headers=request.headers,
            json=None if request.json is NOTHING else request.json, data=request.form)
        self._check_host(sent.url, "request")
        pacer = self._pacer
        if pacer is None:
            async with self._slots:
                if gate:
                    self.breaker.check()         # checked in the slot: it may have opened meanwhile
                return await self._receive(request, sent), NOTHING_READ
        cost = pacer.cost(request)
        async with self._slots:                  # the turn is taken just before sending
            if gate:
                self.breaker.check()
            ticket = await pacer.acquire(cost, budget, lambda: self._where(request))
            try:
                answer = await self._receive(request, sent)
            except BaseException:
                pacer.release(cost)
                raise
        return answer, pacer.settle(request, answer, cost, ticket)

    async def _receive(self, request: Request, sent: httpx.Request) -> Answer:
        """Send and read the whole answer within `limits.deadline` seconds (httpx's timeout is
        per read: a server dripping a byte a second never times out) and at most
        `limits.max_body` bytes (after decompression). A late answer is a read timeout
        (retried as one); a body too large, a charset unknown or JSON too deep is HTTPError."""
        limits, began, status = self.limits, time.monotonic(), None
        try:
            async with asyncio.timeout(limits.deadline):
                response = await self._client.send(sent, auth=self._auth, stream=True)
                try:
                    declared = response.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limits.max_body:
                        raise self._too_large(request, f" (Content-Length: {int(declared)})")
                    chunks, size = [], 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > limits.max_body:
                            raise self._too_large(request, "")
                        chunks.append(chunk)
                    response._content = b"".join(chunks)   # what httpx's own `aread` sets
                    status = response.status_code
                finally:
                    await response.aclose()
        except TimeoutError:
            raise httpx.ReadTimeout(f"no complete answer within the {limits.deadline:g} s deadline "
                                    "(http.limits.deadline)", request=sent) from None
        finally:
            observe.answered(self._host, status, time.monotonic() - began)
        try:
            return Answer.from_response(response)
        except HTTPError as exc:
            raise HTTPError(self._mask(f"{self._where(request)}: {exc.message}")) from None

    def _too_large(self, request: Request, declared: str) -> HTTPError:
        return HTTPError(self._mask(
            f"{self._where(request)}: the answer is larger than the {self.limits.max_body} bytes "
            f"allowed (http.limits.max_body){declared}"))

    def _check_read_limits(self, request: Request, pager: Paginator) -> None:
        """PagingError once a read has fetched more pages or records than `limits` allow (a
        server handing out fresh cursors forever)."""
        progress, limits = pager.progress, self.limits
        if progress.pages > limits.max_pages or progress.records > limits.max_records:
            raise PagingError(self._mask(
                f"paging {self._where(request)} stopped: {progress.pages} pages, {progress.records} "
                f"records fetched, more than this read may (http.limits.max_pages "
                f"{limits.max_pages}, max_records {limits.max_records}); the server keeps "
                "handing out next pages"))

    async def _throttled(self, request: Request, answer: Answer, verdict: bool | float,
                         reading: Reading, budget: list[float], own_host: bool = True) -> bool:
        """True when `answer` is a throttle (429, or a 2xx `retry.when` calls throttled) whose
        wait the API said: a Retry-After (held on the host's shared bucket when the answer is
        from the client's own host, so every request waits it) or a feedback reading (the
        bucket computes the wait). False: retry as an error."""
        if not (answer.status == 429 or answer.ok):
            return False
        if verdict is not True:
            seconds = float(verdict)
            if seconds > budget[0]:
                return False
            if self._pacer is not None and own_host:
                self._pacer.hold(seconds)           # every request to the host waits it too
            budget[0] -= seconds
            self._info("throttled: %s waits %.2fs as Retry-After asks", self._where(request), seconds)
            await sleep(seconds, "retry_after")
            return True
        if not explains(reading):
            return False                     # nothing said, or nothing that explains the throttle
        assert self._pacer is not None
        self._pacer.hold(THROTTLE_FLOOR)     # "0 left, reset in 0 s" (rounded down) is no wait
        self._info("throttled: %s waits for the budget the answer reported", self._where(request))
        return True

    async def _wait(self, request: Request, verdict: bool | float, attempt: int) -> None:
        seconds = self.retry.wait(verdict, attempt)
        reason = "backoff" if verdict is True else "retry_after"
        self._info("retrying %s in %.2fs (%s, attempt %d of %d)", self._where(request),
                   seconds, reason, attempt + 1, self.retry.attempts)
        await sleep(seconds, reason)

    def _checked(self, request: Request, answer: Answer, accept: Collection[int],
                 attempt: int) -> Answer:
        """`answer` if it is a success, accepted, or a redirect to follow; else StatusError."""
        if answer.ok or answer.status in accept or _is_redirect(answer):
            return answer
        raise self._status_error(request, answer, attempt)

    def _redirect(self, request: Request, answer: Answer) -> Request:
        """The request a 3xx asks for (303, and 301/302 after POST, become a bodiless GET)."""
        url = urljoin(answer.url, answer.headers["location"])
        self._check_host(url, "redirect")
        if answer.status == 303 or (answer.status in (301, 302) and request.method == "POST"):
            return request.replace(method="GET", url=url, params=None, json=NOTHING, form=None)
        return request.replace(url=url, params=None)

    def _records(self, answer: Answer, records: Callable[[Any], Any]) -> list:
        """The page's record list; a 204 or an empty body is no records."""
        if answer.body is None:
            if answer.status == 204 or not answer.text.strip():
                return []
            raise HTTPError(self._mask(f"page from {self._redact().url(answer.url)} is not JSON: "
                                       f"{self._redact().excerpt(answer.text, EXCERPT)!r}"))
        found = records(answer.body)
        if found is None or isinstance(found, list):
            return found or []
        raise HTTPError(f"the records expression selected a {type(found).__name__}, not a list")

    def _check_host(self, url: str | httpx.URL, what: str) -> None:
        """Refuse a URL whose origin (scheme, host and port) is not the base URL's: the same
        host on another port, or over another scheme, is another server. (A request's URL,
        already an httpx.URL, is not copied: this runs for every request.)"""
        if not isinstance(url, httpx.URL):
            url = httpx.URL(url)
        if not url.is_absolute_url:
            return
        base = self.base_url
        if url.scheme != base.scheme or endpoint(url) != self._endpoint:
            raise ForeignHostError(self._mask(
                f"refused {what} to {self._redact().url(str(url))}: only {base.scheme}://"
                f"{base.host}:{endpoint(base)[1]} may receive this client's credentials"))

    def excerpt(self, text: str, limit: int = EXCERPT) -> str:
        """The first `limit` characters of `text` (an answer), its secrets masked before the cut."""
        return self._redact().excerpt(text, limit)

    def _check_repeat(self, seen: set, token: Any, request: Request) -> None:
        key = _hashable(token)
        if key in seen:
            is_url = isinstance(token, str) and "://" in token
            shown = self._redact().url(token) if is_url else token
            raise PagingError(self._mask(
                f"paging {self._where(request)} repeated {shown!r}; stopping to avoid a loop"))
        seen.add(key)

    def _stopped(self, request: Request, pager: Paginator) -> None:
        progress = pager.progress
        self._info("paging %s stopped after %d pages, %d records: %s", self._where(request),
                   progress.pages, progress.records, pager.stop_reason)

    def _status_error(self, request: Request, answer: Answer, attempts: int) -> StatusError:
        excerpt = self._redact().excerpt(answer.text, EXCERPT)     # masked, then cut
        hint = answer.headers.get("retry-after")
        message = (f"{self._where(request)} answered {answer.status} after {attempts} "
                   f"attempt(s){f' (Retry-After: {hint})' if hint else ''}: {excerpt!r}")
        return StatusError(self._mask(message), status=answer.status, body=excerpt)

    def _transport_error(self, request: Request, exc: Exception, attempts: int, *,
                         unsent: bool = False) -> TransportError:
        detail = str(exc) or type(exc).__name__
        return TransportError(self._mask(f"{self._where(request)} failed after {attempts} "
                                         f"attempt(s): {type(exc).__name__}: {detail}"), unsent=unsent)

    def _where(self, request: Request) -> str:
        """`METHOD url` with the URL absolute and sanitized."""
        url = self._client.build_request(request.method, request.url, params=request.params).url
        return f"{request.method} {self._redact().url(str(url))}"

    def _info(self, message: str, *args: Any) -> None:
        if self._log.isEnabledFor(logging.INFO):
            self._log.info("%s", self._mask(message % args))

    def _masked(self, exc: SyncEngineError) -> SyncEngineError:
        """`exc` with its message (and StatusError body) masked."""
        exc.message = self._mask(exc.message)
        exc.args = (exc.message, *exc.args[1:])
        if isinstance(exc, StatusError):
            exc.body = self._mask(exc.body)
        return exc

    def _mask(self, text: str) -> str:
        return self._redact().mask(text)

    def _redact(self) -> Redactor:
        """A Redactor for the current secrets (an OAuth2 token may have arrived since)."""
        secrets = (*self._secrets, *getattr(self._auth, "secrets", ()))
        if secrets != self._redactors[0]:
            params = getattr(self._auth, "secret_params", ())
            self._redactors = (secrets, Redactor(secrets, params))
        return self._redactors[1]


#: Transport errors after which the request certainly never reached the server.
UNSENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                 httpx.WriteError)   # the request was never written whole: no server acts on half a request
#: Seconds a throttled answer waits at least, whatever its feedback says.
THROTTLE_FLOOR = 0.1
#: Statuses by which a server says it did not act on the request.
UNACTED_STATUSES = frozenset({429, 503})


#: `split(planned requests, window) -> None | (requests kept, window for them)`; see `pages`
Split = Callable[[list[Request], int], "tuple[list[Request], int] | None"]


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings every client uses (httpx's defaults: certifi's CAs, verification on),
    built once per process: building them costs ~25 ms, more than a whole page of orders, and a
    run opens two clients (two more in each worker of a split read)."""
    return httpx.create_ssl_context()


def _origin(url: httpx.URL) -> str:
    return f"{url.host}:{url.port or {'https': 443, 'http': 80}.get(url.scheme, 0)}"


def _is_redirect(answer: Answer) -> bool:
    return 300 <= answer.status < 400 and "location" in answer.headers


def _hashable(token: Any) -> Hashable:
    return token if isinstance(token, (str, int, float, type(None))) else repr(token)
