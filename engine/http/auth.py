"""Auth kinds as httpx `Auth` flows, found by `type` in `AUTH_TYPES`.

Each flow yields the request and receives the response (httpx `_auth.py`), so an OAuth2 token
fetch is one more yielded request, and a 401 answered with a fresh token is a second yield.
Every auth object lists its `secrets` (including fetched tokens) so the client can mask them.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from typing import Any

import httpx

from engine.errors import StatusError


class ApiKeyAuth(httpx.Auth):
    """A key in a header (`X-Api-Key: k`) or a query parameter (`?api_key=k`)."""

    def __init__(self, name: str, value: str, location: str = "header") -> None:
        if location not in ("header", "query"):
            raise ValueError(f"api_key 'in' must be header or query, got {location!r}")
        self.name, self.value, self.location = name, value, location

    @property
    def secrets(self) -> list[str]:
        return [self.value]

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


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client-credentials grant; the token is cached until expiry minus `margin` seconds.

    Token request (to `token_url`, which may be on another host; it carries only client
    credentials)::

        POST /oauth/token
        Authorization: Basic base64(client_id:client_secret)        (client_auth: basic)
        grant_type=client_credentials&scope=a b&<extra_fields>      (+ client_id, client_secret
                                                                      in the form for body)
        -> {"access_token": "...", "expires_in": 3600}

    Every other request gets `Authorization: Bearer <token>`; a 401 fetches a new token once.
    """

    requires_response_body = True
    grant_type = "client_credentials"

    def __init__(self, token_url: str, client_id: str, client_secret: str, *,
                 scopes: Iterable[str] | str = (), client_auth: str = "basic",
                 extra_fields: Mapping[str, Any] | None = None,
                 token_path: Callable[[Any], Any] | None = None,
                 expires_in_path: Callable[[Any], Any] | None = None,
                 margin: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if client_auth not in ("basic", "body"):
            raise ValueError(f"client_auth must be basic or body, got {client_auth!r}")
        self.token_url, self.client_id, self.client_secret = token_url, client_id, client_secret
        self.scopes = scopes.split() if isinstance(scopes, str) else list(scopes)
        self.client_auth, self.extra_fields = client_auth, dict(extra_fields or {})
        self.token_path = token_path or _key("access_token")
        self.expires_in_path = expires_in_path or _key("expires_in")
        self.margin, self.clock = margin, clock
        self.token: str | None = None
        self.expires_at = 0.0

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.client_secret, self.token) if s]

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token is None or self.clock() >= self.expires_at:
            self._store((yield self.token_request()))
        request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code == 401:
            self._store((yield self.token_request()))
            request.headers["Authorization"] = f"Bearer {self.token}"
            yield request

    def token_request(self) -> httpx.Request:
        """The POST to `token_url`: grant form, scopes, extra fields, client credentials."""
        form = {"grant_type": self.grant_type, **self._grant_fields(), **self.extra_fields}
        if self.scopes:
            form["scope"] = " ".join(self.scopes)
        headers = {"Accept": "application/json"}
        if self.client_auth == "basic":
            headers["Authorization"] = basic_header(self.client_id, self.client_secret)
        else:
            form |= {"client_id": self.client_id, "client_secret": self.client_secret}
        return httpx.Request("POST", self.token_url, data=form, headers=headers)

    def _grant_fields(self) -> dict[str, str]:
        return {}

    def _store(self, response: httpx.Response) -> None:
        """Keep the token from a token answer, or raise StatusError when there is none."""
        body = _json(response)
        token = self.token_path(body) if response.is_success and body is not None else None
        if not token:
            raise StatusError(f"OAuth2 token request to {self.token_url} failed: "
                              f"{response.status_code} {response.text[:200]!r}",
                              status=response.status_code, body=response.text[:200])
        expires_in = self.expires_in_path(body)
        self.token = str(token)
        lifetime = float(expires_in) - self.margin if expires_in else float("inf")
        self.expires_at = self.clock() + lifetime
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


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
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
    `token_path`/`expires_in_path` are compiled with `compile_path` (default: dotted keys).
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
