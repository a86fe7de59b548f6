"""Keep secrets out of every message: mask known values in every spelling, sanitize URLs.

    >>> r = Redactor(["s3cret"])
    >>> r.mask("token s3cret refused")
    'token *** refused'
    >>> r.url("https://user:pw@shop.test/orders?api_key=abc&page=2")
    'https://shop.test/orders?api_key=***&page=2'
    >>> Redactor(['pa"ss\\\\word']).mask('{"echo": "pa\\\\"ss\\\\\\\\word"}')
    '{"echo": "***"}'

A secret is masked in every form it can take on its way into a message (`spellings`): raw;
percent-encoded (`quote`, `quote_plus`, hex digits in any case); JSON-escaped (ASCII or not);
Python-escaped (`repr` of the text or of its UTF-8 bytes, as httpx and h11 render an illegal
header value), and an escaped form escaped once more (`repr` of it, or JSON text holding it);
base64 (any run of whole 3-byte groups of it, so `Basic base64(user:secret)`
is masked whatever the user name); and each line of a multi-line secret (a PEM key from a
`${file:}`) on its own. `excerpt` masks before it cuts, so a secret straddling the cut never
shows half of itself.

`remember_secrets` adds a run's secrets to the process-wide `everywhere()` redactor, which the
command line applies to everything it writes (stdout, stderr, log lines): a last line of
defence for any message a code path forgot to mask.

Query values of parameters whose name looks secret (`SECRET_PARAMS`, plus any the caller adds)
are masked even when the value is not a known secret; userinfo is always stripped.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

MASK = "***"
#: Values shorter than this are not masked: no real credential is that short, and masking
#: "s" or "42" would shred every message while hiding nothing.
MIN_SECRET = 4
#: A base64 run shorter than this is not masked (it is common text, and says little).
MIN_BASE64 = 8

#: Query parameter names whose values never appear in a message.
SECRET_PARAMS = frozenset({
    "access_token", "api_key", "apikey", "api-key", "auth", "client_secret", "code",
    "consumer_key", "consumer_secret", "key", "password", "refresh_token", "secret", "sig",
    "signature", "token",
})

_QUERY_PAIR = re.compile(r"([^&=]+)=([^&]*)")
_HEX = re.compile(r"%[0-9A-F]{2}")


class Redactor:
    """Masks the given secret values and sanitizes URLs in text the HTTP layer produces."""

    def __init__(self, secrets: Iterable[str] = (), params: Iterable[str] = ()) -> None:
        self.params = SECRET_PARAMS | {p.lower() for p in params}
        self.secrets = frozenset(s for s in secrets if s and len(s) >= MIN_SECRET)
        forms = {form for s in self.secrets for form in spellings(s)}
        self.longest = max(map(len, forms), default=0)
        self._pattern = _alternation(forms)
        self._needles = _needles(forms)

    def mask(self, text: str) -> str:
        """`text` with every known secret, in every spelling, replaced by `***`."""
        return self._pattern.sub(MASK, text) if self._pattern else text

    __call__ = mask

    def holds(self, text: str) -> bool:
        """Whether `text` holds a known secret in any spelling: exactly `mask(text) != text`
        (every spelling is at least `MIN_SECRET` long, so a match always changes the text).
        A text without any of the needles (`_needles`) holds none; only one with a needle
        is searched with the regex. Scanning for a few plain substrings costs a quarter of
        the regex's scan, which tries its alternatives at every position."""
        if self._pattern is None:
            return False
        if self._needles is not None and not any(needle in text for needle in self._needles):
            return False
        return self._pattern.search(text) is not None

    def excerpt(self, text: str, limit: int) -> str:
        """The first `limit` characters of `text`, masked before the cut (reading only as far
        as a secret starting before the cut can reach)."""
        return self.mask(text[:limit + self.longest])[:limit]

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


def spellings(secret: str) -> set[str]:
    """Every form of `secret` that may reach a message (see the module docstring)."""
    lines = [line for line in re.split(r"\r\n|\r|\n", secret) if len(line.strip()) >= MIN_SECRET]
    found = {form for text in {secret, *lines} for form in _escapes(text)}
    found |= {form for text in {secret, *lines} for form in _base64_runs(text)}
    return {form for form in found if len(form) >= MIN_SECRET}


def _escapes(text: str) -> set[str]:
    encoded = {quote(text, safe=""), quote_plus(text), quote(text)}   # hex matched in any case
    escaped = {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1],
               repr(text)[1:-1], repr(text.encode("utf-8"))[2:-1]}
    twice = {again for form in escaped                 # an escaped form shown with repr() or
             for again in (repr(form)[1:-1], json.dumps(form)[1:-1])}   # stored in JSON
    return {text} | encoded | escaped | twice


def _base64_runs(text: str) -> set[str]:
    """The base64 of each run of whole 3-byte groups of `text` starting at byte 0, 1 or 2:
    the characters any base64 text containing `text` shows, whatever comes before it."""
    raw = text.encode("utf-8")
    runs = set()
    for start in range(3):
        chunk = raw[start:]
        chunk = chunk[:len(chunk) - len(chunk) % 3]
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            run = encode(chunk).decode("ascii")
            if len(run) >= MIN_BASE64:
                runs.add(run)
    return runs


def _alternation(spellings: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of the spellings, longest first; percent-escapes match with
    their hex digits in any case (`%2F`, `%2f`)."""
    ordered = sorted(set(spellings), key=len, reverse=True)
    if not ordered:
        return None
    return re.compile("|".join(_HEX.sub(_any_case, re.escape(s)) for s in ordered))


#: Above this many needles (many multi-line secrets) one regex scan is cheaper than the needles.
MAX_NEEDLES = 64


def _needles(spellings: Iterable[str]) -> tuple[str, ...] | None:
    """Plain texts at least one of which lies inside any text the alternation matches, or None
    when there is no such short list: a text holding none of them holds no spelling.

    Each spelling contributes its longest part outside percent-escapes (the alternation matches
    those hex digits in any case, the rest exactly), unless a needle already taken lies in one
    of its parts; shortest spellings first, so that a secret's plain form covers its escaped
    forms when escaping leaves it whole."""
    needles: list[str] = []
    for parts in sorted(([p for p in _HEX.split(s) if p] for s in set(spellings)),
                        key=lambda parts: sum(map(len, parts))):
        if any(needle in part for needle in needles for part in parts):
            continue
        if not parts or len(needles) == MAX_NEEDLES:
            return None                 # a spelling of escapes only, or too many needles
        needles.append(max(parts, key=len))
    return tuple(needles)


def _any_case(match: re.Match[str]) -> str:
    return "%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in match.group()[1:])


_remembered: list[Redactor] = [Redactor()]


def remember_secrets(secrets: Iterable[str]) -> None:
    """Mask `secrets` (too) in everything this process prints from now on (`everywhere`)."""
    known = _remembered[0].secrets
    if not set(secrets) <= known:
        _remembered[0] = Redactor(known | set(secrets))


def forget_secrets() -> None:
    """Start over with no remembered secrets (a new command in the same process, as in tests)."""
    _remembered[0] = Redactor()


def everywhere() -> Redactor:
    """The redactor of every secret this process has resolved (`remember_secrets`)."""
    return _remembered[0]
