"""Auth kinds as httpx `Auth` flows, found by `type` in `AUTH_TYPES`.

Each flow yields the request and receives the response (httpx `_auth.py`), so a 401 answered
with a fresh OAuth2 token is a second yield. An OAuth2 token is fetched through the client it
is bound to (`bind`: the client's retries, one token request for many concurrent requests).
Every auth object lists its `secrets` (including fetched tokens) so the client can mask them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Mapping
from typing import Any

import httpx

from engine.errors import ForeignHostError, StatusError

from .models import Answer
from .redact import Redactor

#: `send(token_request) -> Answer`: how a bound OAuth2 auth sends its token requests.
TokenSender = Callable[[httpx.Request], Awaitable[Answer]]


class ApiKeyAuth(httpx.Auth):
    """A key in a header (`X-Api-Key: k`) or a query parameter (`?api_key=k`)."""

    def __init__(self, name: str, value: str, location: str = "header") -> None:
        if location not in ("header", "query"):
            raise ValueError(f"api_key 'in' must be header or query, got {location!r}")
        self.name, self.value, self.location = name, value, location

    @property
    def secrets(self) -> list[str]:
        return [self.value]

    @property
    def secret_params(self) -> list[str]:
        """Query parameters whose values are secret (the key's, when it goes in the query)."""
        return [self.name] if self.location == "query" else []

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.location == "header":
            request.headers[self.name] = self.value
        else:
            request.url = request.url.copy_merge_params({self.name: self.value})
        yield request


class BasicAuth(httpx.Auth):
    """`Authorization: Basic base64(username:password)`."""

    def __init__(self, username: str, password: str) -> None:
        self.header = basic_header(username, password)
        self.secrets = [password, self.header.split(" ", 1)[1]]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header
        yield request


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer <token>`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.secrets = [token]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


@dataclasses.dataclass(frozen=True, slots=True)
class Placement:
    """Where an OAuth2 access token goes on each request, and how it is written there::

        Authorization: Bearer <token>       no `place` (the default)
        X-Access-Token: <token>             place: {header: X-Access-Token}
        ?access_token=<token>               place: {query: access_token}

    `value(token)` writes the token (default: the token itself); the spec's `value` template
    (`"Token {{ token }}"`) arrives here compiled into that callable.
    """

    header: str | None = None
    query: str | None = None
    value: Callable[[str], str] = str

    @classmethod
    def from_spec(cls, place: Mapping[str, Any] | None) -> Placement:
        """The placement of an `auth.place` dict; None means `Authorization: Bearer <token>`."""
        if place is None:
            return cls(header="Authorization", value=lambda token: f"Bearer {token}")
        unknown = sorted(set(place) - {"header", "query", "value"})
        if unknown or len({"header", "query"} & set(place)) != 1:
            raise ValueError(f"place takes exactly one of header or query (and value), got "
                             f"{sorted(place)}")
        value = place.get("value", str)
        if not callable(value):
            raise ValueError("place.value must be a callable of the token (a compiled template)")
        return cls(place.get("header"), place.get("query"), value)

    def apply(self, request: httpx.Request, token: str) -> None:
        """Write `token` into `request` (replacing a previous token there)."""
        if self.header is not None:
            request.headers[self.header] = self.value(token)
        else:
            request.url = request.url.copy_merge_params({self.query: self.value(token)})


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client-credentials grant (RFC 6749 §4.4); the token is cached and renewed
    `renewal_delay(expires_in)` after it was fetched, or at once on a 401.

    Token request (to `token_url`: https, on the base URL's host or one of `token_hosts`)::

        POST /oauth/token
        Authorization: Basic base64(client_id:client_secret)        (client_auth: basic)
        grant_type=client_credentials&scope=a b&<extra_fields>      (token_body: form, default;
                                                                      + client_id, client_secret
                                                                      for client_auth: body)
        {"grant_type": "client_credentials", ...}                   (token_body: json)
        -> {"access_token": "...", "expires_in": 3600}

    Every other request carries the token where `place` says (default
    `Authorization: Bearer <token>`); a 401 fetches a new token once.

    Bound to an `HttpClient` (`bind`), token requests go through the client's retries (5xx,
    429 with Retry-After, transport errors) and concurrent requests share ONE token request
    (an asyncio lock). Unbound (a plain httpx client), httpx sends the token request once.
    """

    requires_response_body = True
    grant_type = "client_credentials"

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scopes: Iterable[str] | str = (), client_auth: str = "basic",
                 token_body: str = "form", extra_fields: Mapping[str, Any] | None = None,
                 token_path: Callable[[Any], Any] | None = None,
                 expires_in_path: Callable[[Any], Any] | None = None,
                 place: Mapping[str, Any] | Placement | None = None,
                 token_hosts: Iterable[str] = (), margin: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if client_auth not in ("basic", "body"):
            raise ValueError(f"client_auth must be basic or body, got {client_auth!r}")
        if token_body not in ("form", "json"):
            raise ValueError(f"token_body must be form or json, got {token_body!r}")
        self.token_url, self.client_id, self.client_secret = token_url, client_id, client_secret
        self.scopes = scopes.split() if isinstance(scopes, str) else list(scopes)
        self.client_auth, self.token_body = client_auth, token_body
        self.extra_fields = dict(extra_fields or {})
        self.token_path = token_path or _key("access_token")
        self.expires_in_path = expires_in_path or _key("expires_in")
        self.place = place if isinstance(place, Placement) else Placement.from_spec(place)
        self.token_hosts = tuple(h.lower() for h in token_hosts)
        self.margin, self.clock = margin, clock
        self.token: str | None = None
        self.expires_at = 0.0
        self._send: TokenSender | None = None
        self._lock: tuple[Any, asyncio.Lock] | None = None

    @property
    def secrets(self) -> list[str]:
        """The client secret, its basic header (`client_auth: basic`) and the current token."""
        pair = basic_header(self.client_id, self.client_secret).split(" ", 1)[1]
        return [s for s in (self.client_secret, pair, self.token) if s]

    @property
    def secret_params(self) -> list[str]:
        """Query parameters whose values are secret (the token's, when placed in the query)."""
        return [self.place.query] if self.place.query else []

    def bind(self, send: TokenSender, base_url: str | httpx.URL) -> None:
        """Send token requests with `send` (a client's retrying sender) from now on, after
        checking that `token_url` may receive the client credentials (`check_token_url`)."""
        check_token_url(self.token_url, base_url, self.token_hosts)
        self._send = send

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """The unbound flow: the token request is one more yielded request (no retries)."""
        if self._stale(None):
            self._store(Answer.from_response((yield self.token_request())))
        self.place.apply(request, self.token)
        response = yield request
        if response.status_code == 401:
            self._store(Answer.from_response((yield self.token_request())))
            self.place.apply(request, self.token)
            yield request

    def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._send is None:
            return super().async_auth_flow(request)
        return self._bound_flow(request)

    async def _bound_flow(self, request: httpx.Request
                          ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self._current(None)
        self.place.apply(request, token)
        response = yield request
        if response.status_code == 401:
            self.place.apply(request, await self._current(stale=token))
            yield request

    async def _current(self, stale: str | None) -> str:
        """A valid token: the cached one, or ONE fresh fetch however many tasks ask at once;
        `stale` is a token the API refused (401), replaced unless another task already did."""
        if not self._stale(stale):
            return self.token
        async with self._loop_lock():
            if self._stale(stale):
                self._store(await self._send(self.token_request()))
            return self.token

    def _stale(self, refused: str | None) -> bool:
        return self.token is None or self.token == refused or self.clock() >= self.expires_at

    def _loop_lock(self) -> asyncio.Lock:
        """This event loop's lock (a lock belongs to one loop; a client may outlive a loop)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    def token_request(self) -> httpx.Request:
        """The POST to `token_url`: grant, scopes, extra fields, client credentials; a form
        (`token_body: form`, RFC 6749) or a JSON object (`token_body: json`)."""
        fields = {"grant_type": self.grant_type, **self._grant_fields(), **self.extra_fields}
        if self.scopes:
            fields["scope"] = " ".join(self.scopes)
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            headers["Authorization"] = basic_header(self.client_id, self.client_secret)
        else:
            fields |= {"client_id": self.client_id, "client_secret": self.client_secret}
        body = {"json": fields} if self.token_body == "json" else {"data": fields}
        return httpx.Request("POST", self.token_url, headers=headers, **body)

    def _grant_fields(self) -> dict[str, str]:
        return {}

    def _store(self, answer: Answer) -> None:
        """Keep the token from a token answer, or raise StatusError when there is none."""
        body = answer.body
        token = self.token_path(body) if answer.ok and body is not None else None
        if not token:
            excerpt = Redactor(self.secrets).excerpt(answer.text, 200)   # masked, then cut
            raise StatusError(f"OAuth2 token request to {Redactor().url(self.token_url)} failed: "
                              f"{answer.status} {excerpt!r}", status=answer.status, body=excerpt)
        self.token = str(token)
        self.expires_at = self.clock() + renewal_delay(_seconds(self.expires_in_path(body)),
                                                       self.margin)
        self._rotate(body)

    def _rotate(self, body: Any) -> None:
        return


class OAuth2RefreshToken(OAuth2ClientCredentials):
    """OAuth2 refresh-token grant: `grant_type=refresh_token&refresh_token=...`.

    Otherwise like `OAuth2ClientCredentials`; a new `refresh_token` in the answer replaces
    the old one (rotation).
    """

    grant_type = "refresh_token"

    def __init__(self, token_url: str, client_id: str, client_secret: str, refresh_token: str,
                 **kwargs: Any) -> None:
        super().__init__(token_url, client_id, client_secret, **kwargs)
        self.refresh_token = refresh_token

    @property
    def secrets(self) -> list[str]:
        return [*super().secrets, self.refresh_token]

    def _grant_fields(self) -> dict[str, str]:
        return {"refresh_token": self.refresh_token}

    def _rotate(self, body: Any) -> None:
        if isinstance(body, dict) and body.get("refresh_token"):
            self.refresh_token = str(body["refresh_token"])


def basic_header(username: str, password: str) -> str:
    """The `Authorization` value of HTTP basic auth (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def renewal_delay(lifetime: float | None, margin: float = 60.0) -> float:
    """Seconds after which a token that lives `lifetime` seconds is fetched again::

        lifetime - min(margin, lifetime / 10)

    so a day-long token is renewed `margin` (60 s) early and a 5-second one half a second
    early, instead of before every call as a fixed margin would. No lifetime: never (a 401
    still renews it).
    """
    if lifetime is None:
        return float("inf")
    return max(0.0, lifetime - min(margin, lifetime / 10))


def check_token_url(url: str, base_url: str | httpx.URL, token_hosts: Iterable[str] = ()) -> None:
    """Raise ForeignHostError unless `url` may receive client credentials: https (plain http
    only on a loopback host), and on the base URL's host and port, or on an entry of
    `token_hosts` (`host`: the scheme's default port; `host:port`: that port)."""
    parsed = httpx.URL(url)
    host = (parsed.host or "").lower()
    shown = Redactor().url(url)
    if parsed.scheme != "https" and not (parsed.scheme == "http" and _is_loopback(host)):
        raise ForeignHostError(f"refused token_url {shown}: client credentials go over https "
                               f"only (plain http only to a loopback host)")
    base = httpx.URL(base_url)
    allowed = {endpoint(base), *(token_host(entry, parsed.scheme) for entry in token_hosts)}
    if endpoint(parsed) not in allowed:
        raise ForeignHostError(f"refused token_url {shown}: its host and port are neither the "
                               f"base URL's ({base.host}:{endpoint(base)[1]}) nor listed in "
                               f"auth.token_hosts")


DEFAULT_PORTS = {"https": 443, "http": 80}


def endpoint(url: httpx.URL) -> tuple[str, int]:
    """(host, port) of `url`, the port defaulted by its scheme."""
    return (url.host or "").lower(), url.port or DEFAULT_PORTS.get(url.scheme, 0)


def token_host(entry: str, scheme: str) -> tuple[str, int]:
    """A `token_hosts` entry as (host, port): `host` means the scheme's default port."""
    host, colon, port = entry.lower().rpartition(":")
    if colon and port.isdigit() and "]" not in port:
        return host.strip("[]"), int(port)
    return entry.lower().strip("[]"), DEFAULT_PORTS.get(scheme, 0)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _seconds(value: Any) -> float | None:
    """A lifetime in seconds read from a token answer; None when absent or not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _key(path: str) -> Callable[[Any], Any]:
    """A getter for a dotted path (`a.b`): the fallback when no JMESPath compiler is given."""
    keys = path.split(".")

    def get(body: Any) -> Any:
        for key in keys:
            body = body.get(key) if isinstance(body, dict) else None
        return body
    return get


AUTH_TYPES: dict[str, Callable[..., httpx.Auth] | None] = {
    "none": None,
    "api_key": ApiKeyAuth,
    "basic": BasicAuth,
    "bearer": BearerAuth,
    "oauth2_client_credentials": OAuth2ClientCredentials,
    "oauth2_refresh_token": OAuth2RefreshToken,
}

_PATHS = ("token_path", "expires_in_path")


def build_auth(spec: Mapping[str, Any] | None,
               compile_path: Callable[[str], Callable[[Any], Any]] | None = None
               ) -> httpx.Auth | None:
    """The auth object for the `http.auth` dict (templates already rendered), None for `none`.

    The rest of the dict becomes constructor arguments (`in` is passed as `location`);
    `token_path`/`expires_in_path` are compiled with `compile_path` (default: dotted keys);
    an OAuth2 `place.value`, if given, is already a callable of the token (see `Placement`).
    """
    if not spec:
        return None
    kwargs = dict(spec)
    kind = kwargs.pop("type", None)
    if kind not in AUTH_TYPES:
        raise ValueError(f"unknown auth type {kind!r}; valid: {sorted(AUTH_TYPES)}")
    factory = AUTH_TYPES[kind]
    if factory is None:
        return None
    if "in" in kwargs:
        kwargs["location"] = kwargs.pop("in")
    for name in _PATHS:
        if name in kwargs:
            kwargs[name] = (compile_path or _key)(kwargs[name])
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"auth type {kind!r}: {exc}") from None
