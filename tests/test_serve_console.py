"""The console over real HTTP on 127.0.0.1: every page, every action, the access rules."""

from __future__ import annotations

import re

from console_support import PASSWORDS, TOKEN, console_rig
from engine import control
from sync_rig import NAME


def test_every_page_needs_a_login(tmp_path, monkeypatch):
    """Pages redirect to the login, JSON, /metrics and actions answer 401; health checks need none."""
    with console_rig(tmp_path, monkeypatch) as c:
        for path in ("/", f"/i/{NAME}", f"/i/{NAME}/orders/1003", f"/i/{NAME}/confirm/pause"):
            answer = c.client.get(path, follow_redirects=False)
            assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
        for path in ("/index.json", f"/i/{NAME}.json", f"/i/{NAME}/orders/1003.json", "/metrics"):
            assert c.client.get(path).status_code == 401
        assert c.client.post(f"/i/{NAME}/actions/pause", data={"confirm": "yes"}).status_code == 401
        assert c.client.get("/healthz").text == "ok\n"
        assert c.client.get("/readyz").text == "ready\n"
        assert c.entry("1003").status == "held"


def test_login_checks_password_and_form_token_and_sets_a_strict_cookie(tmp_path, monkeypatch):
    """A wrong password or a login form without its token is refused; a good login sets an
    HttpOnly SameSite=Strict session cookie (not Secure over plain http) and goes to `next`
    only when it is a path on the console."""
    with console_rig(tmp_path, monkeypatch) as c:
        assert c.login("op", "wrong-password").status_code == 401
        assert c.login("nobody", "whatever-pass").status_code == 401
        refused = c.client.post("/login", data={"user": "op", "password": PASSWORDS["op"], "csrf": "forged"})
        assert refused.status_code == 400
        page = c.client.get("/login?next=//evil.example/x")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)[1]
        assert 'name="next" value="/"' in page.text
        answer = c.client.post("/login", data={"user": "op", "password": PASSWORDS["op"], "csrf": token,
                                               "next": "https://evil.example/"}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "syncengine_session" in v)
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
        assert c.client.get("/").status_code == 200
        logout = c.client.post("/logout", data={"csrf": c.csrf()}, follow_redirects=False)
        assert logout.status_code == 303
        assert c.client.get("/", follow_redirects=False).status_code == 303


def test_secure_cookies_when_asked(tmp_path, monkeypatch):
    """With --secure-cookies the session cookie is marked Secure."""
    with console_rig(tmp_path, monkeypatch, secure_cookies=True) as c:
        answer = c.login("op")
        assert "Secure" in answer.headers["set-cookie"]


def test_overview_integration_and_order_pages(tmp_path, monkeypatch):
    """The overview shows each integration with its health and counts; the integration page lists
    one status newest first with reasons, searches by number, key and SKU, filters by reason and
    pages; the order page shows its timeline, reason and raw and canonical records; each has JSON."""
    with console_rig(tmp_path, monkeypatch) as c:
        c.login("viewer")
        overview = c.client.get("/")
        assert NAME in overview.text and "warn" in overview.text and "held 5" in overview.text
        [row] = c.client.get("/index.json").json()["integrations"]
        assert row["health"] == "warn" and row["counts"] == {"delivered": 1, "held": 5}
        listing = c.client.get(f"/i/{NAME}").text               # held first: it needs attention
        assert "ship method &#39;ups_ground&#39; is not in ship_method_map" in listing
        data = c.client.get(f"/i/{NAME}.json").json()
        assert data["status"] == "held" and [r["key"] for r in data["rows"]] == ["1006", "1005", "1004", "1003", "1002"]
        by_number = c.client.get(f"/i/{NAME}.json", params={"q": "1004"}).json()
        assert [r["key"] for r in by_number["rows"]] == ["1004"]
        delivered = c.client.get(f"/i/{NAME}.json", params={"status": "delivered"}).json()["rows"][0]
        with c.rig.ledger() as ledger:
            sku = ledger.get(delivered["key"]).data["lines"][0][0]
        by_sku = c.client.get(f"/i/{NAME}.json", params={"status": "delivered", "q": sku}).json()
        assert [r["key"] for r in by_sku["rows"]] == [delivered["key"]]
        reason = "ship method 'ups_ground' is not in ship_method_map"
        filtered = c.client.get(f"/i/{NAME}.json", params={"status": "held", "reason": reason}).json()
        assert [r["key"] for r in filtered["rows"]] == ["1004", "1003"]
        monkeypatch.setattr("engine.serve.views.PER_PAGE", 2)
        second = c.client.get(f"/i/{NAME}.json", params={"status": "held", "page": "2"}).json()
        assert [r["key"] for r in second["rows"]] == ["1004", "1003"] and second["more"]
        assert "older" in c.client.get(f"/i/{NAME}", params={"status": "held", "page": "2"}).text
        order = c.client.get(f"/i/{NAME}/orders/1003").text
        assert "Timeline" in order and "ups_ground" in order and "Raw record" in order
        detail = c.client.get(f"/i/{NAME}/orders/1003.json").json()
        assert detail["canonical"]["order_number"] == "1003" and detail["raw"]["id"] == 1003
        assert [step["step"] for step in detail["timeline"]] == ["pulled", "claimed", "held"]
        done = c.client.get(f"/i/{NAME}/orders/{delivered['key']}.json").json()
        assert [s["step"] for s in done["timeline"]] == ["pulled", "claimed", "sent", "delivered"]
        assert done["timeline"][-1]["at"] and done["destination_id"]
        assert c.client.get(f"/i/{NAME}/orders/nope").status_code == 404
        assert c.client.get("/i/unknown").status_code == 404


def test_release_from_the_console_delivers_and_is_recorded(tmp_path, monkeypatch):
    """Release asks first, needs the CSRF token, then sends the held order through the same code
    as `syncengine release`: it is delivered and the action is recorded with who and when."""
    with console_rig(tmp_path, monkeypatch) as c:
        c.login("op")
        confirm = c.client.get(f"/i/{NAME}/confirm/release", params={"key": "1003"})
        assert "Send held order 1003 of sync-shop on despite its hold?" in confirm.text
        assert c.entry("1003").status == "held"                  # asking changed nothing
        forged = c.client.post(f"/i/{NAME}/actions/release", data={"key": "1003", "confirm": "yes"})
        assert forged.status_code == 403
        unconfirmed = c.client.post(f"/i/{NAME}/actions/release", data={"key": "1003", "csrf": c.csrf()})
        assert unconfirmed.status_code == 400 and c.entry("1003").status == "held"
        done = c.act("release", key="1003")
        assert done.url.path == f"/i/{NAME}/orders/1003" and "release: released 1" in done.text
        entry = c.entry("1003")
        assert entry.status == "delivered" and entry.data["released"]["by"] == "op"
        assert any(o["referenceNum"] == "1003" for o in c.rig.wms.state.created)
        with c.rig.ledger() as ledger:
            [action] = control.actions(ledger, target="1003")
        assert action["by"] == "op" and action["action"] == "release" and action["at"].endswith("Z")
        assert "op" in c.client.get(f"/i/{NAME}/orders/1003").text


def test_every_other_action(tmp_path, monkeypatch):
    """Run now, retry, resend, reset --since, pause and resume each do what their CLI command
    does, and each is recorded; a refused action says why."""
    with console_rig(tmp_path, monkeypatch) as c:
        c.login("op")
        assert "run: orders: pulled" in c.act("run", flow="orders").text
        assert "retry: released 0" in c.act("retry").text
        refused = c.act("resend", key="1003").text
        assert "resend: failed: order 1003 is held: only an order in error is resent" in refused
        assert "reset: orders will be re-read from 2026-01-01T00:00:00Z" in c.act("reset", since="2026-01-01T00:00:00Z").text
        assert "failed: reset needs an ISO 8601 date" in c.act("reset", since="yesterday").text
        assert "paused" in c.act("pause").text and control.is_paused(c.rig.state, NAME)
        assert "paused by op" in c.client.get("/").text
        assert "resumed" in c.act("resume").text and not control.is_paused(c.rig.state, NAME)
        with c.rig.ledger() as ledger:
            done = [a["action"] for a in control.actions(ledger, 20)]
        assert set(done) >= {"run", "retry", "resend", "reset", "pause", "resume"}
        assert "Recent actions" in c.client.get(f"/i/{NAME}").text
        with c.rig.ledger() as ledger:
            ledger.transition("1004", "held", "error", last_error="refused by the WMS: bad address",
                              data={"released": {"by": "op", "at": "2026-12-01T00:00:00Z"}})   # released, refused
        assert "resend: released 1" in c.act("resend", key="1004").text
        assert c.entry("1004").status == "delivered"


def test_read_only_role_may_look_not_act(tmp_path, monkeypatch):
    """A read-only user sees every page but no action button, and is refused any action."""
    with console_rig(tmp_path, monkeypatch) as c:
        c.login("viewer")
        order = c.client.get(f"/i/{NAME}/orders/1003").text
        assert "Timeline" in order and 'id="release"' not in order
        assert c.client.get(f"/i/{NAME}/confirm/release", params={"key": "1003"}).status_code == 403
        answer = c.client.post(f"/i/{NAME}/actions/release", data={"key": "1003", "confirm": "yes", "csrf": c.csrf()})
        assert answer.status_code == 403 and c.entry("1003").status == "held"


def test_a_token_works_without_cookies_or_csrf(tmp_path, monkeypatch):
    """`Authorization: Bearer <token>` reads JSON and acts (nothing ambient to forge); a wrong token is 401."""
    with console_rig(tmp_path, monkeypatch) as c:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert c.client.get("/index.json", headers=headers).status_code == 200
        assert c.client.get("/index.json", headers={"Authorization": "Bearer wrong"}).status_code == 401
        answer = c.client.post(f"/i/{NAME}/actions/release", headers=headers, data={"key": "1004", "confirm": "yes"})
        assert answer.json()["ok"] and c.entry("1004").status == "delivered"
        with c.rig.ledger() as ledger:
            assert control.actions(ledger, target="1004")[0]["by"] == "ci"


def test_pages_escape_and_mask(tmp_path, monkeypatch):
    """What an order holds is escaped (no markup from a cart reaches the page) and every secret
    the process resolved is masked in pages and JSON."""
    with console_rig(tmp_path, monkeypatch) as c:
        secret = "cs_sync_e52a"                       # the cart's consumer secret (sync_rig.SECRETS)
        with c.rig.ledger() as ledger:               # a ledger written without the run's mask
            ledger.transition("1005", "held", "held", reason=f"<script>alert(1)</script> key {secret}")
        c.login("op")
        page = c.client.get(f"/i/{NAME}/orders/1005").text
        assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
        assert secret not in page and "***" in page
        assert secret not in c.client.get(f"/i/{NAME}/orders/1005.json").text


def test_metrics_health_and_readiness(tmp_path, monkeypatch):
    """/metrics counts what runs moved and the requests they made per host and status class,
    reads the ledger's counts at each scrape, and marks the last successful run; /readyz says
    503 until the schedule started."""
    with console_rig(tmp_path, monkeypatch) as c:
        c.login("op")
        c.act("release", key="1003")
        c.act("run", flow="orders")
        text = c.client.get("/metrics").text
        cart = c.rig.cart.url.split("//")[1].rstrip("/")
        assert f'syncengine_http_requests_total{{host="{cart}",status_class="2xx"}}' in text
        assert f'syncengine_http_request_duration_seconds_count{{host="{cart}"}}' in text
        assert 'syncengine_records_total{counted="delivered",flow="orders",integration="sync-shop"} 1.0' in text
        assert 'syncengine_orders{integration="sync-shop",status="held"} 4.0' in text
        assert 'syncengine_writes_unresolved{integration="sync-shop"} 0.0' in text
        assert 'syncengine_last_success_timestamp_seconds{flow="orders",integration="sync-shop"}' in text
        assert 'syncengine_runs_total{flow="orders",integration="sync-shop",outcome="ok"}' in text
        c.console.ready = False
        assert c.client.get("/readyz").status_code == 503
        assert c.client.get("/healthz").status_code == 200
