"""Leak routes: each row is one way a secret can reach an output (an echo in an answer, a
template error, an httpx error message, a raw record, a cut excerpt); the command line is run
against real servers on 127.0.0.1 and the secret must appear in no spelling in stdout, stderr,
the ledger's files or what `status` prints."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from http_server import Call, LoopbackServer, Reply

from engine.cli import run
from engine.http import Redactor, forget_secrets, remember_secrets
from tests.lint_cases import CART, WMS

pytestmark = pytest.mark.usefixtures("http_testing")

#: The cart's API key (a header value: ASCII, with characters every escaping changes).
CART_KEY = 'sk_live"\\/91xQ+c4rt&z=Lw'
#: The WMS password, a two-line `${file:}` secret (as a PEM key would be).
WMS_PASSWORD = "line-one-wms-Pw9x/Hd\nline-two-wms-Qz4k+Rb"
ACCOUNT = "acme"

ORDER = {"id": 7, "number": 1007, "status": "paid", "created": "2026-01-02T03:04:05Z",
         "to": {"name": "Ann", "street": "1 Main St", "city": "Oslo", "country": "NO"},
         "items": [{"sku": "A-1", "qty": 2}]}


@dataclass
class Project:
    root: Path
    cart: LoopbackServer
    wms: LoopbackServer

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.root / "connectors" / f"{name}.yaml"
        text = path.read_text()
        assert text.count(old) == 1, old
        path.write_text(text.replace(old, new))

    def cli(self, *args: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        code = run([*args], out, err)
        text = out.getvalue() + err.getvalue()
        assert "Traceback" not in text and "internal error" not in text, text
        return code, text


def _orders(answer: Reply) -> Callable[[Call], Reply]:
    """Page 1 of /api/orders answers `answer`; later pages are empty."""
    return lambda call: answer if call.query.get("page", "1") == "1" else Reply(body={"data": [], "meta": {"more": False}})


def _ok_orders(cart: LoopbackServer, *orders: dict) -> None:
    cart.route("/api/orders", _orders(Reply(body={"data": list(orders or [ORDER]), "meta": {"more": False}})))


def json_echo(p: Project) -> None:
    """The cart refuses the key and echoes it JSON-escaped."""
    p.cart.route("/api/orders", Reply(401, {"error": "invalid key", "key": CART_KEY}))


def percent_echo(p: Project) -> None:
    """The cart echoes the request line with the key percent-encoded in lower-case hex."""
    echoed = re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(CART_KEY, safe=""))
    p.cart.route("/api/orders", Reply(400, f"bad request: GET /api/orders?key={echoed}"))


def straddling(p: Project) -> None:
    """The key straddles the 200-character excerpt of an error answer."""
    p.cart.route("/api/orders", Reply(500, "x" * 190 + CART_KEY + " was rejected"))


def template_error(p: Project) -> None:
    """A template looks a key up by the secret's value: Jinja's error names the value."""
    p.edit("shop", "params: {updated_after:", "params: {probe: \"{{ config[config.api_key] }}\", updated_after:")
    _ok_orders(p.cart)


def first_line_echo(p: Project) -> None:
    """The WMS echoes only the first line of the multi-line password when refusing an order."""
    _ok_orders(p.cart)
    p.wms.route("/orders", Reply(400, {"message": f"user {ACCOUNT} password {WMS_PASSWORD.splitlines()[0]} locked"}))


def header_newline(p: Project) -> None:
    """The multi-line file secret is the cart's bearer token: httpx/h11 refuse the header and
    render its value escaped (`\\n`) in their error."""
    path = p.root / "integrations" / "i.yaml"
    path.write_text(path.read_text().replace("${env:LEAK_CART_KEY}", "${file:../wms.txt}"))
    _ok_orders(p.cart)


def oauth_basic_echo(p: Project) -> None:
    """The token endpoint refuses the client and echoes its `Basic base64(id:secret)` header."""
    p.edit("warehouse", 'auth: {type: basic, username: "{{ config.account }}", password: "{{ config.password }}"}',
           'auth: {type: oauth2_client_credentials, token_url: "{{ config.base_url }}/token", '
           'client_id: "{{ config.account }}", client_secret: "{{ config.password }}"}')
    _ok_orders(p.cart)
    p.wms.route("/token", lambda call: Reply(401, {"error": "invalid_client", "sent": call.headers.get("authorization")}))


def raw_record(p: Project) -> None:
    """A hostile cart puts the key in an order that is quarantined: its raw record is kept."""
    bad = {**ORDER, "note": f"key={CART_KEY}", "to": {"name": "Ann"}}
    _ok_orders(p.cart, bad)


#: route -> how the secret reaches an output
ROUTES: list[Callable[[Project], None]] = [json_echo, percent_echo, straddling, template_error,
                                           first_line_echo, header_newline, oauth_basic_echo, raw_record]


def spellings(secret: str) -> set[str]:
    """Every derived form a leak could take, written out independently of the engine."""
    forms: set[str] = set()
    for text in {secret, *secret.splitlines()}:
        escaped = {json.dumps(text)[1:-1], repr(text)[1:-1], repr(text.encode())[2:-1]}
        encoded = {quote(text, safe=""), quote_plus(text), quote(text)}
        forms |= {text} | escaped | {repr(e)[1:-1] for e in escaped} | encoded
        forms |= {re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), e) for e in encoded}
        forms |= {base64.b64encode(f"{user}{text}".encode()).decode().rstrip("=")[:-4]
                  for user in ("", f"{ACCOUNT}:")}
        forms |= {text[i:i + 10] for i in range(len(text) - 9)}        # any half of a cut secret
    return {form for form in forms if len(form) >= 8}


def _outputs(root: Path, *texts: str) -> str:
    files = [p.read_bytes().decode("utf-8", "replace") for p in (root / "state").rglob("*") if p.is_file()]
    return "\n".join([*texts, *files])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("LEAK_CART_KEY", CART_KEY)
    with LoopbackServer() as cart, LoopbackServer() as wms:
        (tmp_path / "connectors").mkdir()
        (tmp_path / "connectors" / "shop.yaml").write_text(CART[:CART.index("examples:")])
        (tmp_path / "connectors" / "warehouse.yaml").write_text(
            WMS.replace("base_url: https://wms.test", 'base_url: "{{ config.base_url }}"')
               .replace("    account: {type: string}", "    account: {type: string}\n    base_url: {type: string}"))
        (tmp_path / "wms.txt").write_text(WMS_PASSWORD + "\n")
        (tmp_path / "integrations").mkdir()
        (tmp_path / "integrations" / "i.yaml").write_text(f"""\
name: leaky
spec_version: 1
source: {{connector: shop, config: {{site_url: "{cart.url().rstrip('/')}", api_key: "${{env:LEAK_CART_KEY}}"}}}}
destination: {{connector: warehouse, config: {{base_url: "{wms.url().rstrip('/')}", account: {ACCOUNT}, password: "${{file:../wms.txt}}"}}}}
start_date: "2026-01-01T00:00:00Z"
flows: {{orders: {{enabled: true}}}}
""")
        yield Project(tmp_path, cart, wms)


@pytest.mark.parametrize("route", ROUTES, ids=[r.__name__ for r in ROUTES])
def test_no_secret_leaks_by_any_route(route: Callable[[Project], None], project: Project) -> None:
    """Whatever way the secret takes, no spelling of it is printed, stored or shown by status."""
    route(project)
    root = project.root
    code, ran = project.cli("run", "--connectors", str(root / "connectors"), "--integrations",
                            str(root / "integrations"), "--state-dir", str(root / "state"))
    assert code == 1, ran                               # every route ends in a failure somewhere
    _, status = project.cli("status", "--state-dir", str(root / "state"))
    seen = _outputs(root, ran, status)
    for secret in (CART_KEY, WMS_PASSWORD):
        leaked = sorted(form for form in spellings(secret) if form in seen)
        assert not leaked, (leaked, ran, status)
    assert "***" in seen, seen                          # the route did reach an output, masked


# --- the Redactor itself: each derived form, and masking before the cut ---------------------

SECRET = 'pa"ss\\/wörd+1&x=9'
FORMS = {
    "raw": SECRET,
    "JSON-escaped": json.dumps(SECRET, ensure_ascii=False)[1:-1],
    "JSON-escaped ASCII-only": json.dumps(SECRET, ensure_ascii=True)[1:-1],
    "repr of the text": repr(SECRET)[1:-1],
    "repr of the UTF-8 bytes": repr(SECRET.encode())[2:-1],
    "repr of the JSON form": repr(json.dumps(SECRET)[1:-1])[1:-1],
    "quote": quote(SECRET, safe=""),
    "quote_plus": quote_plus(SECRET),
    "lower-case hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(SECRET, safe="")),
    "base64 alone": base64.b64encode(SECRET.encode()).decode(),
    "base64 of user:secret": base64.b64encode(f"{ACCOUNT}:{SECRET}".encode()).decode(),
}


@pytest.mark.parametrize("form", list(FORMS.values()), ids=list(FORMS))
def test_every_spelling_is_masked(form: str) -> None:
    """A secret is masked in each form it takes in a message (base64: all but <= 2 edge bytes)."""
    masked = Redactor([SECRET]).mask(f"echo <{form}> end")
    assert "***" in masked
    assert not any(SECRET[i:i + 6] in masked for i in range(len(SECRET) - 5)), masked
    left = masked[len("echo <"):-len("> end")].split("***")
    assert all(len(part) <= 8 for part in left), masked      # base64: the user, 2 edge bytes


def test_a_secret_straddling_the_cut_is_masked_before_it() -> None:
    """`excerpt` masks first: no half of a secret that crosses the limit is shown."""
    text = "x" * 195 + "s3cr3t-value-77" + "y" * 50
    cut = Redactor(["s3cr3t-value-77"]).excerpt(text, 200)
    assert cut.startswith("x" * 195 + "***") and len(cut) == 200 and "s3cr" not in cut


def test_each_line_of_a_multi_line_secret_is_masked() -> None:
    """Each line of a multi-line secret (a PEM key) is masked on its own."""
    redact = Redactor([WMS_PASSWORD])
    for line in WMS_PASSWORD.splitlines():
        assert redact.mask(f"got {line}!") == "got ***!"


def test_a_warning_without_v_is_masked_too(capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A log line that reaches Python's last-resort handler (no -v) has remembered secrets masked."""
    run(["status", "--state-dir", "/nonexistent-state-dir"], io.StringIO(), io.StringIO())
    remember_secrets([CART_KEY])
    logger = logging.getLogger("syncengine.flows")
    monkeypatch.setattr(logger, "propagate", False)      # as outside pytest: no handler but the last resort
    logger.warning("cannot reconcile: %s", json.dumps({"k": CART_KEY}))
    err = capsys.readouterr().err
    forget_secrets()
    assert "cannot reconcile" in err and "***" in err
    assert not [form for form in spellings(CART_KEY) if form in err], err


def test_the_ledger_stores_nothing_secret(tmp_path: Path) -> None:
    """A ledger opened with a run's mask stores errors, raw records and notes masked, and keeps
    them valid JSON (a secret with quotes and backslashes included)."""
    from engine.ledger import DiskLedger
    with DiskLedger(tmp_path / "state", "masked", mask=Redactor([CART_KEY]).mask) as ledger:
        ledger.claim("1", status="quarantined", reason=f"bad {CART_KEY}", raw={"note": CART_KEY, CART_KEY: 1})
        ledger.set_status("1", "error", last_error=json.dumps({"echo": CART_KEY}))
        ledger.kv_set("notes", "n", {"why": CART_KEY})
        entry = ledger.get("1")
        assert entry.last_error == '{"echo": "***"}' and ledger.kv_get("notes", "n") == {"why": "***"}
        assert entry.raw == {"note": "***", "***": 1}
    assert not [form for form in spellings(CART_KEY) if form in _outputs(tmp_path)]
