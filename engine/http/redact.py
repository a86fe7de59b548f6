"""Keep secrets out of every message: mask known values, sanitize URLs.

    >>> r = Redactor(["s3cret"])
    >>> r.mask("token s3cret refused")
    'token *** refused'
    >>> r.url("https://user:pw@shop.test/orders?api_key=abc&page=2")
    'https://shop.test/orders?api_key=***&page=2'

A secret is masked raw and percent-encoded (it may sit in a query string). Query values of
parameters whose name looks secret (`SECRET_PARAMS`, plus any the caller adds) are masked even
when the value is not a known secret; userinfo is always stripped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

MASK = "***"
#: Values shorter than this are not masked: no real credential is that short, and masking
#: "s" or "42" would shred every message while hiding nothing.
MIN_SECRET = 4

#: Query parameter names whose values never appear in a message.
SECRET_PARAMS = frozenset({
    "access_token", "api_key", "apikey", "api-key", "auth", "client_secret", "code",
    "consumer_key", "consumer_secret", "key", "password", "refresh_token", "secret", "sig",
    "signature", "token",
})

_QUERY_PAIR = re.compile(r"([^&=]+)=([^&]*)")


class Redactor:
    """Masks the given secret values and sanitizes URLs in text the HTTP layer produces."""

    def __init__(self, secrets: Iterable[str] = (), params: Iterable[str] = ()) -> None:
        self.params = SECRET_PARAMS | {p.lower() for p in params}
        self.secrets = frozenset(s for s in secrets if s and len(s) >= MIN_SECRET)
        self._pattern = _alternation(self.secrets)

    def mask(self, text: str) -> str:
        """`text` with every known secret (raw or URL-encoded) replaced by `***`."""
        return self._pattern.sub(MASK, text) if self._pattern else text

    __call__ = mask

    def url(self, url: str) -> str:
        """`url` without userinfo, secret-looking query values masked, known secrets masked."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.mask(url)
        netloc = parts.netloc.rpartition("@")[2]
        query = _QUERY_PAIR.sub(self._mask_pair, parts.query)
        return self.mask(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))

    def _mask_pair(self, match: re.Match[str]) -> str:
        name = match.group(1)
        return f"{name}={MASK}" if name.lower() in self.params else match.group(0)


def _alternation(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any secret in any of its spellings, longest first."""
    spellings = {form for s in secrets if s for form in (s, quote(s, safe=""), quote_plus(s))}
    if not spellings:
        return None
    ordered = sorted(spellings, key=len, reverse=True)
    return re.compile("|".join(re.escape(s) for s in ordered))
