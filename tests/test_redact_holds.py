"""`Redactor.holds`, the ledger's cheap test for a secret, must say exactly what masking says:
never "no secret" where `mask(text) != text` (soundness), nor "secret" where masking changes
nothing. Its needles skip the regex only on text holding none of them."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from engine.http import Redactor
from engine.http.redact import spellings
from engine.ledger import DiskLedger
from engine.ledger.base import _holds

SECRETS = {
    "plain": "ck_3f9a0c1d2e4b5a6978",
    "quotes and slashes": 'pa"ss\\/wörd+1&x=9',
    "percent-escape inside": "ab%2Fcd%2fef-77",        # its raw form matches %2f and %2F alike
    "escapes only": "&&&&/+",                           # quote(): nothing but %XX escapes
    "multi-line": "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf\n-----END KEY-----",
    "short": "abcd",
}


def _flip_hex(text: str, rng: random.Random) -> str:
    """`text` with the hex letters of its percent-escapes in a random case."""
    return re.sub("%[0-9A-Fa-f]{2}", lambda m: "%" + "".join(
        c.upper() if rng.random() < 0.5 else c.lower() for c in m.group()[1:]), text)


def _carriers(secret: str) -> dict[str, str]:
    """Texts carrying `secret` the ways an order, raw record or error can."""
    user = "shop-user"
    doc = {"v": 3, "created": 1.0, "data": {"order_id": "1001", "note": secret, secret: 1}}
    return {
        "raw": f"echo <{secret}> end",
        "JSON document (key and value)": json.dumps(doc),
        "JSON document, not ASCII-only": json.dumps(doc, ensure_ascii=False),
        "JSON of JSON": json.dumps({"body": json.dumps({"k": secret})}),
        "repr of bytes": repr(secret.encode()),
        "quote": "q=" + quote(secret, safe=""),
        "quote_plus": "q=" + quote_plus(secret),
        "lower-case hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(secret, safe="")),
        "mixed-case hex": _flip_hex(quote(secret, safe=""), random.Random(7)),
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64 of user:secret": "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode(),
        "url-safe base64 of a prefix": base64.urlsafe_b64encode(f"x{secret}".encode()).decode(),
    }


@pytest.mark.parametrize("name", list(SECRETS))
def test_holds_agrees_with_mask_on_every_carrier(name: str) -> None:
    secret = SECRETS[name]
    redact = Redactor([secret, "an-other-token-123"])
    for how, text in _carriers(secret).items():
        changed = redact.mask(text) != text
        assert redact.holds(text) == changed, (how, text)
        if "base64" not in how:
            assert changed, (how, text)                  # the carriers do carry the secret
    clean = json.dumps({"v": 3, "created": 1.0, "data": {"order_id": "1001", "note": "nothing"}})
    assert not redact.holds(clean) and redact.mask(clean) == clean


def test_every_spelling_in_any_hex_case_is_found() -> None:
    """Each spelling on its own, with its escapes' hex in any case (what a shortcut that looks
    for the spellings verbatim would miss): `holds` says what masking says, and a spelling
    found as it is, or with only its upper-case escapes in lower case, is always found."""
    rng = random.Random(3)
    for secret in SECRETS.values():
        redact = Redactor([secret])
        for form in spellings(secret):
            lower = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), form)
            assert redact.holds(form) and redact.holds(f"[{lower}]"), (secret, form)
            for text in (_flip_hex(form, rng), f"[{_flip_hex(form, rng)}]"):
                assert redact.holds(text) == (redact.mask(text) != text), (secret, text)


def test_holds_agrees_with_mask_on_random_text() -> None:
    """Random text stitched from pieces of spellings (cut anywhere, hex case flipped) and
    filler: `holds` and masking agree on every one, found or not."""
    rng = random.Random(11)
    redact = Redactor(list(SECRETS.values()))
    pieces = [form for secret in SECRETS.values() for form in spellings(secret)]
    filler = ['{"data":', '"order_id":"1001"', "%2", "%2f", "\\", '"', "a", "Q", "==", "\0", "ö"]
    found = 0
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(1, 6)):
            if rng.random() < 0.5:
                piece = rng.choice(pieces)
                start = rng.randint(0, len(piece) // 2) if rng.random() < 0.5 else 0
                end = len(piece) - (rng.randint(0, len(piece) // 2) if rng.random() < 0.5 else 0)
                parts.append(_flip_hex(piece[start:end], rng))
            else:
                parts.append(rng.choice(filler))
        text = "".join(parts)
        changed = redact.mask(text) != text
        found += changed
        assert redact.holds(text) == changed, text
    assert 300 < found < 2700                            # both answers were put to the test


def test_needles_are_used_for_ordinary_secrets() -> None:
    """The pre-check is in force for usual secrets (else it would only cost), and gives up
    (None: the regex alone) for a secret whose spellings hold nothing but escapes."""
    assert Redactor([SECRETS["plain"], SECRETS["quotes and slashes"]])._needles
    assert Redactor(["%2F%2F%3A"])._needles is None
    assert not Redactor().holds("anything") and not Redactor(["abc"]).holds("abc")   # too short


def test_the_ledger_uses_the_redactors_own_test() -> None:
    """`_holds` takes a redactor's exact test from the redactor or its bound `mask`, and falls
    back to masking for any other callable (which may change text without a redactor)."""
    redact = Redactor([SECRETS["plain"]])
    assert _holds(redact.mask) == redact.holds and _holds(redact) == redact.holds
    assert _holds(redact.url) != redact.holds
    assert _holds(str.upper)("lower") and not _holds(str.upper)("UPPER")
    assert not _holds(None)("anything")


@pytest.mark.parametrize("how", ["lower-case hex", "JSON document (key and value)", "base64 of user:secret"])
def test_a_claimed_page_is_stored_masked(tmp_path: Path, how: str) -> None:
    """A page whose one order carries the secret (in a data key or value, lower-case hex,
    base64) is stored with it masked; the other orders' documents are stored as they were."""
    secret = SECRETS["quotes and slashes"]
    carrier = _carriers(secret)[how]
    page = [(str(n), {"status": "pending", "data": {"order_id": str(n)}}) for n in range(200)]
    page[137] = ("137", {"status": "quarantined", "reason": "bad", "data": {"note": carrier},
                         "raw": {"id": 137, carrier: carrier}})
    with DiskLedger(tmp_path / "state", "masked", mask=Redactor([secret]).mask) as ledger:
        assert all(ledger.claim_many(page))
        entry = ledger.get("137")
        assert "***" in entry.data["note"] and "***" in json.dumps(entry.raw)
        assert carrier not in json.dumps([entry.data, entry.raw])
        assert not Redactor([secret]).holds(json.dumps([entry.data, entry.raw], ensure_ascii=False))
        assert ledger.get("3").data == {"order_id": "3"}
