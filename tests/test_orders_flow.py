"""The orders flow end to end: the real runner and CLI, the real connectors, and the sample cart
and WMS servers on 127.0.0.1 — paging, throttling, server errors, timeouts, bad records, orders
arriving mid-run, foreign paging links, dedupe, dry runs and specs that do not lint.

The WMS accepts a duplicate referenceNum unless a test says otherwise, so a duplicate send shows
up in its state: "every eligible order exactly once" is checked on what the WMS holds.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest
from flow_support import LIST_PATHS, NAME, WMS_ORDERS, FlowRig, wait_for
from http_server import Reply
from sync_rig import rig

from engine.http import recorded_waits
from engine.ledger import DiskLedger

pytestmark = pytest.mark.usefixtures("http_testing")


def assert_delivered_once(rig: FlowRig) -> None:
    held = rig.wms_refs()
    assert sorted(held) == sorted(rig.eligible_refs())
    assert [ref for ref, n in held.items() if n > 1] == []


def delivered(result) -> int:
    return int(re.search(r"delivered (\d+)", result.out).group(1))


# -- 1. paging ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "orders", "list_calls"), [
    ("woocommerce", 230, 3),      # page=1..3 of 100; stops at X-WP-TotalPages
    ("shopify", 120, 6),          # first: 20 (1,000-point query limit), after: endCursor until hasNextPage is false
    ("bigcommerce", 250, 2),      # page 1 is a full 250; page 2 is 204 No Content
])
def test_each_paging_style_delivers_every_order_exactly_once(flow_rigs, kind, orders, list_calls) -> None:
    """Every cart's paging style walks all pages and each order reaches the WMS exactly once."""
    rig = flow_rigs(kind, orders=orders)
    result = rig.cli("run")
    assert result.code == 0, result.text
    assert rig.list_calls() == list_calls
    assert len(rig.eligible_refs()) == orders
    assert_delivered_once(rig)
    assert f"pulled {orders}, new {orders}, delivered {orders}" in result.out


# -- 2. throttling, server errors, timeouts -------------------------------------------------


def side_path(rig: FlowRig, side: str) -> dict:
    if side == "cart":
        return {"path_prefix": LIST_PATHS[rig.kind]}
    return {"path_prefix": WMS_ORDERS, "method": "POST"}


@pytest.mark.parametrize("side", ["cart", "wms"])
def test_429_waits_the_retry_after_seconds_then_succeeds(flow_rigs, side) -> None:
    """A 429 with Retry-After (cart or WMS) waits the seconds asked for, then every order arrives once."""
    rig = flow_rigs(orders=30)
    server = rig.cart if side == "cart" else rig.wms
    server.faults.add(**side_path(rig, side), status=429, retry_after=7, times=2)
    result = rig.cli("run")
    assert result.code == 0, result.text
    assert recorded_waits().count(("retry_after", 7.0)) == 2
    assert_delivered_once(rig)


def test_a_burst_of_500_502_503_from_the_cart_is_retried_until_success(flow_rigs) -> None:
    """500, 502 and 503 in a row from the cart are retried with backoff and the run delivers every order."""
    rig = flow_rigs(orders=30)
    for status in (500, 502, 503):
        rig.cart.faults.add(path_prefix=LIST_PATHS["woocommerce"], status=status)
    result = rig.cli("run")
    assert result.code == 0, result.text
    assert len(rig.cart.faults.fired) == 3
    assert [reason for reason, _ in recorded_waits() if reason == "backoff"] == ["backoff"] * 3
    assert_delivered_once(rig)


def test_a_burst_of_500_502_503_on_creates_ends_with_every_order_delivered_once(flow_rigs) -> None:
    """500, 502 and 503 answers to creates end (retried, or reconciled by the next run) with every order at the WMS once."""
    rig = flow_rigs(orders=30)
    for status in (500, 502, 503):
        rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", status=status)
    runs = [rig.cli("run")]
    if runs[0].code:                       # a create that may have been acted on is left to reconcile
        runs.append(rig.cli("run"))
    assert runs[-1].code == 0, runs[-1].text
    assert len(rig.wms.faults.fired) == 3
    assert ("backoff" in [reason for reason, _ in recorded_waits()])      # the 503 is retried at once
    assert_delivered_once(rig)
    with DiskLedger(rig.state, NAME) as ledger:
        assert ledger.counts() == {"delivered": 30}


def short_timeout(spec: dict) -> None:
    spec["http"]["timeout"] = 0.3


def test_a_cart_answer_slower_than_the_timeout_is_retried(flow_rigs) -> None:
    """A cart page slower than the spec's http.timeout is abandoned, retried, and delivered."""
    rig = flow_rigs(orders=30)
    rig.patch_connector("woocommerce", short_timeout)
    rig.cart.faults.add(path_prefix=LIST_PATHS["woocommerce"], delay=1.0)
    result = rig.cli("run")
    assert result.code == 0, result.text
    assert rig.list_calls() == 2
    assert ("backoff", pytest.approx(0.5, abs=0.5)) in recorded_waits()
    assert_delivered_once(rig)


def test_a_wms_create_slower_than_the_timeout_is_retried_without_a_duplicate(flow_rigs) -> None:
    """A create that times out after the WMS took it ends delivered once (duplicate answer or reconciliation)."""
    rig = flow_rigs(orders=30, accept_duplicates=False)     # Extensiv refuses a duplicate referenceNum
    rig.patch_connector("extensiv", short_timeout)
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", delay=1.0)
    result = rig.cli("run")
    wait_for(lambda: rig.wms_app.in_flight == 0, what="the slow create to finish")
    if result.code:                        # left `sending` for the next run to reconcile
        result = rig.cli("run")
    assert result.code == 0, result.text
    assert_delivered_once(rig)
    with DiskLedger(rig.state, NAME) as ledger:
        assert ledger.counts() == {"delivered": 30}


def test_a_timed_out_create_is_not_resent_before_it_is_reconciled(flow_rigs) -> None:
    """A create that timed out after the WMS took it is not sent again unreconciled, even to a WMS that accepts duplicates."""
    rig = flow_rigs(orders=30, accept_duplicates=True)
    rig.patch_connector("extensiv", short_timeout)
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", delay=1.0)
    rig.cli("run")
    wait_for(lambda: rig.wms_app.in_flight == 0, what="the slow create to finish")
    rig.cli("run")
    assert_delivered_once(rig)


# -- 3. bad records --------------------------------------------------------------------------


def test_a_malformed_record_is_quarantined_and_the_rest_delivered(flow_rigs) -> None:
    """A record that cannot be mapped is quarantined with its reason (shown by status); the others are delivered."""
    rig = flow_rigs(orders=30)
    rig.cart.faults.add(path_prefix=LIST_PATHS["woocommerce"], malformed=True)
    result = rig.cli("run")
    assert result.code == 1, result.text            # a quarantined order makes the run report failure
    assert "quarantined 1" in result.out
    bad = rig.eligible_refs()[0]                     # the fault breaks the first record of the page
    assert sorted(rig.wms_refs()) == sorted(rig.eligible_refs()[1:])
    assert set(rig.wms_refs().values()) == {1}
    status = rig.cli("status")
    assert status.code == 8                          # the quarantined alert (docs/operations.md)
    line = next(line for line in status.out.splitlines() if line.strip().startswith("quarantined"))
    assert bad in line and ("mapping failed" in line or "invalid order" in line)


def quantity_as_number(spec: dict) -> None:
    spec["operations"]["list_orders"]["map"]["lines"]["map"]["quantity"] = "to_number(quantity)"


def test_fixing_the_spec_and_retry_delivers_a_quarantined_order(flow_rigs) -> None:
    """An order quarantined by the spec (quantity sent as text) is delivered by `retry` once the spec is fixed."""
    rig = flow_rigs(orders=30)
    odd = rig.cart.state.orders[4]
    odd["line_items"][0]["quantity"] = str(odd["line_items"][0]["quantity"])
    ref = str(odd["number"])
    first = rig.cli("run")
    assert first.code == 1
    assert ref not in rig.wms_refs()
    status = rig.cli("status")
    assert re.search(rf"quarantined\s+{odd['id']}\s.*invalid order:.*quantity", status.out), status.out

    rig.patch_connector("woocommerce", quantity_as_number)
    retry = rig.cli("retry")
    assert retry.code == 0, retry.text
    assert f"{NAME}: released 1;" in retry.out and "delivered 1" in retry.out
    assert_delivered_once(rig)
    assert "quarantined" not in rig.cli("status").out
    again = rig.cli("run")
    assert (again.code, delivered(again)) == (0, 0)
    assert_delivered_once(rig)


# -- 4. orders arriving while the run pages ------------------------------------------------

#: cart -> orders at the start, {list call number: orders the cart creates right after answering it}
ARRIVALS = {
    "woocommerce": (150, {1: 80, 3: 20}),      # page 2 fills up and a page 3 appears; 20 after the last page
    "shopify": (30, {1: 20, 3: 15}),           # pages of 20: page 3 is the last (10 orders)
    "bigcommerce": (250, {1: 10, 2: 5}),
}


@pytest.mark.parametrize("kind", sorted(ARRIVALS))
def test_orders_created_while_paging_are_all_delivered_once(flow_rigs, kind) -> None:
    """Orders created between page requests are delivered by this run or the next, none missed, none twice."""
    start, arrivals = ARRIVALS[kind]
    rig = flow_rigs(kind, orders=start)
    dispatch, calls = rig.cart.app.dispatch, Counter()

    def dispatch_then_create(request):
        answer = dispatch(request)
        if request.path == LIST_PATHS[kind]:
            calls["list"] += 1
            rig.cart.add_orders(arrivals.get(calls["list"], 0))
        return answer

    rig.cart.app.dispatch = dispatch_then_create
    first = rig.cli("run")
    assert first.code == 0, first.text
    assert delivered(first) == start + sum(arrivals.values()) - arrivals[max(arrivals)]
    second = rig.cli("run")
    assert (second.code, delivered(second)) == (0, arrivals[max(arrivals)])
    assert_delivered_once(rig)
    assert delivered(rig.cli("run")) == 0


# -- 5. a paging link to another host -----------------------------------------------------

LINK_CART = """\
name: linkcart
kind: cart
spec_version: 1
description: A small cart whose API pages with {paging}.
config:
  required: [api_url, token]
  properties:
    api_url: {{type: string, format: uri}}
    token: {{type: string, secret: true}}
http:
  base_url: "{{{{ config.api_url }}}}"
  auth: {{type: api_key, in: header, name: X-Token, value: "{{{{ config.token }}}}"}}
  retry: {{attempts: 2}}
operations:
  list_orders:
    request: {{path: /orders, params: {{since: "{{{{ since }}}}"}}}}
    paginate: {paginate}
    records: orders
    key: id
    map:
      order_id: id
      order_number: id
      created_at: created
      ship_to: {{name: name, address1: street, city: city, country: country}}
      lines: {{each: lines, map: {{sku: sku, quantity: qty}}}}
"""
PAGINATE = {"link_header": "{type: link_header}", "next_url": "{type: next_url, path: next}"}


def link_orders(first: int, n: int) -> list[dict]:
    return [{"id": str(i), "created": "2026-01-05T10:00:00Z", "name": "Ada Lovelace", "street": "1 Main St",
             "city": "Leeds", "country": "GB", "lines": [{"sku": "MUG-CERAMIC", "qty": 1}]}
            for i in range(first, first + n)]


@pytest.mark.parametrize("paging", sorted(PAGINATE))
def test_a_paging_link_to_another_host_is_refused(flow_rigs, tmp_path, monkeypatch, http_server,
                                                  http_foreign_server, paging) -> None:
    """A next-page link to another host fails the run clearly (exit 1, no traceback) and sends it nothing."""
    rig = flow_rigs(orders=1)
    foreign = http_foreign_server.url("/orders?page=2")
    body = {"orders": link_orders(9001, 3)}
    headers = {}
    if paging == "next_url":
        body["next"] = foreign
    else:
        headers["Link"] = f'<{foreign}>; rel="next"'
    http_server.route("/orders", Reply(body=body, headers=headers))
    http_foreign_server.route("/orders", Reply(body={"orders": link_orders(9100, 3)}))
    rig.patch_connector("woocommerce", lambda spec: None)            # a private copy to add linkcart to
    (rig.connectors / "carts" / "linkcart.yaml").write_text(
        LINK_CART.format(paging=paging, paginate=PAGINATE[paging]), encoding="utf-8")
    monkeypatch.setenv("FLOW_LINK_TOKEN", "tok-linkcart-5521")
    rig.write_integration(source={"connector": "linkcart",
                                  "config": {"api_url": http_server.url(), "token": "${env:FLOW_LINK_TOKEN}"}})

    result = rig.cli("run")
    assert result.code == 1
    assert f"{NAME}: FAILED: refused paging link to http://{http_foreign_server.host}" in result.out
    assert "Traceback" not in result.text
    assert "tok-linkcart-5521" not in result.text
    assert http_foreign_server.calls == []
    assert [call.headers.get("x-token") for call in http_server.calls] == ["tok-linkcart-5521"]


# -- 6. dedupe, dry run, lint ---------------------------------------------------------------


def test_a_second_run_delivers_nothing(flow_rigs) -> None:
    """Running again delivers 0 orders and sends the WMS no create at all."""
    rig = flow_rigs("shopify", orders=40)
    assert delivered(rig.cli("run")) == 40
    creates = rig.creates()
    second = rig.cli("run")
    assert (second.code, delivered(second)) == (0, 0)
    assert rig.creates() == creates == 40
    assert_delivered_once(rig)


def secret_in_query(spec: dict) -> None:
    spec["operations"]["create_order"]["request"]["params"] = {"api_key": "{{ config.client_secret }}"}


@pytest.mark.parametrize("connector", ["as shipped", "secret in the create request"])
def test_dry_run_prints_redacted_requests_and_writes_nothing(flow_rigs, connector) -> None:
    """--dry-run prints each create it would send with secrets masked, and writes no state and nothing to the WMS."""
    rig = flow_rigs(orders=30)
    if connector != "as shipped":
        rig.patch_connector("extensiv", secret_in_query)
    result = rig.cli("run", "--dry-run")
    assert result.code == 0, result.text
    shown = [line for line in result.out.splitlines() if line.startswith(f"[dry-run] {NAME} create_order: would POST")]
    assert len(shown) == 30
    for secret in rig.environ.values():
        assert secret not in result.text
    if connector != "as shipped":
        assert all("params={'api_key': '***'}" in line for line in shown)
    assert not rig.state.exists()
    assert rig.wms_app.requests == []
    assert rig.wms_refs() == Counter()


def test_a_dry_run_after_real_runs_leaves_the_ledger_as_it_was(flow_rigs) -> None:
    """A dry run with a ledger in place shows the new orders but changes no entry, no watermark and no WMS order."""
    rig = flow_rigs(orders=30)
    assert rig.cli("run").code == 0
    rig.cart.add_orders(5)
    with DiskLedger(rig.state, NAME) as ledger:
        before = (ledger.counts(), ledger.watermark("orders"))
    refs, requests = rig.wms_refs(), len(rig.wms_app.requests)
    result = rig.cli("run", "--dry-run")
    assert result.code == 0, result.text
    assert result.out.count("create_order: would POST") == 5
    with DiskLedger(rig.state, NAME) as ledger:
        assert (ledger.counts(), ledger.watermark("orders")) == before
    assert (rig.wms_refs(), len(rig.wms_app.requests)) == (refs, requests)


def bad_jmespath(spec: dict) -> None:
    spec["operations"]["list_orders"]["key"] = "to_string(id"


def unknown_template_variable(spec: dict) -> None:
    spec["operations"]["list_orders"]["request"]["params"]["modified_after"] = "{{ sincee }}"


def literal_secret(rig: FlowRig) -> None:
    rig.write_integration(source={"connector": "woocommerce", "config": {
        "site_url": rig.cart.url, "consumer_key": "ck_flow_7f3a9e", "consumer_secret": "${env:FLOW_CART_SECRET}"}})


BROKEN_SPECS = [
    pytest.param(lambda rig: rig.patch_connector("woocommerce", bad_jmespath), "woocommerce.yaml", id="bad-jmespath"),
    pytest.param(lambda rig: rig.patch_connector("woocommerce", unknown_template_variable), "woocommerce.yaml",
                 id="unknown-template-variable"),
    pytest.param(literal_secret, f"{NAME}.yaml", id="literal-secret"),
]


@pytest.mark.parametrize(("break_it", "file"), BROKEN_SPECS)
def test_a_spec_that_does_not_lint_is_refused_before_any_request(flow_rigs, break_it, file) -> None:
    """`run` with a spec that does not lint clean prints the findings, exits 2 and sends no request."""
    rig = flow_rigs(orders=30)
    break_it(rig)
    result = rig.cli("run")
    assert result.code == 2
    assert re.search(rf"{re.escape(file)}:\d+:\d+: error: ", result.out), result.out
    assert "nothing was run" in result.err
    assert rig.cart.app.requests == [] and rig.wms_app.requests == []
    assert not rig.state.exists()


def test_shipped_woocommerce_connector_fetches_pages_four_at_a_time() -> None:
    """With X-WP-TotalPages known after page 1, the shipped woocommerce list_orders asks for the
    remaining pages 4 at a time (paginate.concurrency), and still reads every page once, in order."""
    import asyncio

    import httpx

    from engine import ROOT, runner

    connector = runner.load_project([ROOT / "connectors"]).connectors["woocommerce"]
    operation = connector.operations["list_orders"]
    in_flight, most, asked = 0, 0, []

    async def app(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        page = int(request.url.params["page"])
        asked.append(page)
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(200, json=[{"id": page}], headers={"X-WP-TotalPages": "9"})

    async def main() -> list[int]:
        config = {"site_url": "https://shop.test", "consumer_key": "ck_x", "consumer_secret": "cs_x"}
        request = operation.request.render({"config": config, "since": "2026-01-01T00:00:00Z"})
        async with connector.client(config, transport=httpx.MockTransport(app)) as client:
            return [page.records[0]["id"] async for page in
                    client.pages(request, operation.paginator(), operation.extract_records)]

    assert asyncio.run(main()) == list(range(1, 10))
    assert sorted(asked) == list(range(1, 10)) and most == 4


def test_a_read_that_fails_midway_still_delivers_the_pages_it_fetched(flow_rigs) -> None:
    """The cart refuses page 3: the run fails (exit 1, watermark unmoved), but pages 1 and 2 were
    fetched, so their orders are delivered, none left `sending`; the rerun delivers the rest once."""
    from samples.servers.base import Answer

    rig = flow_rigs(orders=30)
    rig.patch_connector("woocommerce", lambda spec: spec["operations"]["list_orders"]["request"]["params"]
                        .update(per_page=10))
    healthy = rig.cart.app.dispatch

    def refuse_page_3(request):
        if request.path == LIST_PATHS["woocommerce"] and request.query.get("page") == "3":
            return Answer(400, {"code": "rest_invalid_page"})
        return healthy(request)

    rig.cart.app.dispatch = refuse_page_3
    result = rig.cli("run")
    assert result.code == 1 and "400" in result.text
    with DiskLedger(rig.state, NAME) as ledger:
        assert ledger.counts() == {"delivered": 20} and ledger.watermark("orders") is None
    rig.cart.app.dispatch = healthy
    again = rig.cli("run")
    assert again.code == 0 and "new 10, delivered 10" in again.out, again.text
    assert_delivered_once(rig)


@pytest.mark.parametrize(("po_num", "outcome"), [("9001", "error"), ("1001", "delivered")],
                         ids=["another-carts-order", "this-order"])
def test_a_duplicate_reference_counts_as_delivered_only_when_find_order_matches_this_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, po_num: str, outcome: str) -> None:
    """The WMS already holds reference 1001 for this customer: if its poNum is another cart's order
    id, 1001 is an error naming the collision (never silently "delivered"); if it is this order's
    id (a send whose answer was lost), 1001 is delivered with that record's id and not sent again."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        with r.wms.state.lock:
            held = r.wms_app._new_order({"referenceNum": "1001", "poNum": po_num,
                                         "orderItems": [{"itemIdentifier": {"sku": "MUG-CERAMIC"}, "qty": 1}]}, 7)
        r.write(flows={"orders": {"enabled": True}})
        result = r.cli("run", "--flow", "orders")
        assert result.code == (1 if outcome == "error" else 0), result.out
        with r.ledger() as ledger:
            entry = ledger.get("1001")
            assert entry.status == outcome
            if outcome == "error":
                assert "duplicate" in entry.last_error and "'1001'" in entry.last_error
            else:
                assert entry.destination_id == str(held["readOnly"]["orderId"])
        assert sum(o["referenceNum"] == "1001" for o in r.wms.state.created) == 1


@pytest.mark.parametrize("levels", [200, 900])
def test_a_record_nested_deeply_is_delivered(flow_rigs, monkeypatch, levels) -> None:
    """A record holding a value nested far deeper than orjson writes (254 levels), in a field
    the map does not read: the ledger keeps its raw record (std json writes it) and every order
    is delivered once. (900: the sample server's own std json writes ~1,000 levels at most.)"""
    import samples.servers.woocommerce as woocommerce

    def nested(order: dict) -> dict:
        value: list = []
        for _ in range(levels - 2):
            value = [value]
        return {**order, "meta_data": [{"key": "deep", "value": value}]}

    monkeypatch.setattr(woocommerce, "_malformed", nested)
    rig = flow_rigs(orders=30)
    rig.cart.faults.add(path_prefix=LIST_PATHS["woocommerce"], malformed=True)
    result = rig.cli("run")
    assert "Traceback" not in result.text
    deep = rig.eligible_refs()[0]
    held = rig.wms_refs()
    assert sorted(ref for ref in held if ref != deep) == sorted(rig.eligible_refs()[1:])
    assert set(held.values()) == {1}
    assert result.code == 0, result.text
    assert deep in held
