"""`syncengine demo`: the whole product end to end on a fresh machine.

Starts the sample carts and the sample WMS as real HTTP servers on free 127.0.0.1 ports, points
the sample integrations at them through the environment variables their `${env:..}` references
name, runs them through the bundled connectors, prints what moved, and stops the servers.
Without `--state-dir` the ledger is a fresh temporary directory; with the same `--state-dir` a
second run delivers nothing new and says so. `--serve` then keeps the servers up behind a live
console (`syncengine serve`) until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import Any, TextIO

from engine import ROOT, runner
from engine.commands import report
from engine.ledger import open_store
from samples.servers import start

CONNECTORS = ROOT / "connectors"
INTEGRATIONS = ROOT / "samples" / "integrations"
ORDERS_PER_CART = 30
SHIPSTATION_DEMO = "hooli-woo-to-shipstation"   # the same WooCommerce shop into ShipStation

#: server kind -> (start options, {environment variable: server attribute or literal})
SERVERS: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "woocommerce": ({"orders": ORDERS_PER_CART, "seed": 1, "consumer_key": "ck_demo", "consumer_secret": "cs_demo"},
                    {"ACME_WOO_URL": "@url", "ACME_WOO_KEY": "ck_demo", "ACME_WOO_SECRET": "cs_demo",
                     "HOOLI_WOO_URL": "@url", "HOOLI_WOO_KEY": "ck_demo", "HOOLI_WOO_SECRET": "cs_demo"}),
    "shopify": ({"orders": ORDERS_PER_CART, "seed": 2, "access_token": "shpat_demo"},
                {"GLOBEX_SHOP_URL": "@url", "GLOBEX_SHOPIFY_TOKEN": "shpat_demo"}),
    "bigcommerce": ({"orders": ORDERS_PER_CART, "seed": 3, "access_token": "bc_demo"},
                    {"HOOLI_BC_URL": "@url", "HOOLI_BC_TOKEN": "bc_demo"}),
    "extensiv": ({"client_id": "demo-client", "client_secret": "demo-secret", "user_login_id": "42",
                  "customers": (7, 9, 12, 13)},       # acme, globex, hooli (BigCommerce, Magento)
                 {"ACME_WMS_URL": "@url", "ACME_WMS_CLIENT_ID": "demo-client", "ACME_WMS_CLIENT_SECRET": "demo-secret",
                  "GLOBEX_WMS_URL": "@url", "GLOBEX_WMS_CLIENT_ID": "demo-client",
                  "GLOBEX_WMS_CLIENT_SECRET": "demo-secret", "HOOLI_WMS_URL": "@url",
                  "HOOLI_WMS_CLIENT_ID": "demo-client", "HOOLI_WMS_CLIENT_SECRET": "demo-secret"}),
    # ShipStation's 40 requests a minute, in a 2-second window so the demo does not wait a minute
    "shipstation": ({"api_key": "demo-ss-key", "api_secret": "demo-ss-secret", "window": 2.0},
                    {"HOOLI_SS_URL": "@url", "HOOLI_SS_API_KEY": "demo-ss-key",
                     "HOOLI_SS_API_SECRET": "demo-ss-secret"}),
    "magento2": ({"orders": ORDERS_PER_CART, "seed": 4, "access_token": "mage_demo"},
                 {"HOOLI_MAGENTO_URL": "@url", "HOOLI_MAGENTO_TOKEN": "mage_demo"}),
}


def demo_command(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Run the sample integrations against the sample servers and print what moved."""

    with contextlib.ExitStack() as stack:
        servers = {kind: stack.enter_context(start(kind, **options)) for kind, (options, _) in SERVERS.items()}
        stack.enter_context(_environment(servers))
        state = args.state_dir or stack.enter_context(tempfile.TemporaryDirectory())
        for kind, server in servers.items():
            stdout.write(f"started sample {kind} server at {server.url}\n")
        project = _with_sample_servers(runner.load_project([CONNECTORS, INTEGRATIONS]))
        outcomes = _run(project, state, ["orders"], stdout)
        _show_wms(servers["extensiv"], stdout)
        _show_shipstation(servers["shipstation"], stdout)
        _show_held(state, outcomes, stdout)
        shipped, canceled = _warehouse_and_shoppers_act(servers, stdout)
        merchant_canceled = _shipstation_acts(servers["shipstation"], stdout)
        flows = ["shipments", "inventory", "cancellations", "wms_cancellations"]
        # ShipStation's integration after the others: a cart cancel it makes (the merchant canceled
        # in ShipStation) reaches the Extensiv integrations on their next run, not mid-way through this one
        later = _run(project, state, flows, stdout, exclude=SHIPSTATION_DEMO)
        later += _run(project, state, flows, stdout, only=SHIPSTATION_DEMO)
        _show_back(servers, state, shipped, canceled, stdout)
        _show_shipstation_back(state, canceled[:1] + merchant_canceled, stdout)
        _closing(outcomes, args.state_dir, stdout)
        if getattr(args, "serve", False):
            return _serve(project, state, args.listen, stdout)
    return 1 if any(outcome.error for outcome in outcomes + later) else 0


def _serve(project: runner.Project, state: Path, listen: str, stdout: TextIO) -> int:
    """`demo --serve`: the sample servers stay up behind a live console (and the schedules run on)
    until Ctrl-C; one operator, `demo`, with a fresh password printed here."""
    import secrets

    from engine.serve import service
    from engine.serve.access import User, Users, hash_password

    password = secrets.token_urlsafe(9)
    users = Users({"demo": User("demo", "operator", hash_password(password))})
    sock = service.bind(listen, allow_remote=False)
    try:
        console = service.build(project, state, users)
        stdout.write(f"\nconsole at {service.public_url(sock)}  (log in as demo / {password}); "
                     "the sample servers and schedules keep running; Ctrl-C stops everything\n")
        stdout.flush()
        options = runner.Options(state, emit=lambda line: print(line, file=stdout))
        asyncio.run(service.run(console, sock, list(project.integrations.values()), options, every=None,
                                grace=10.0, stdout=stdout))
    finally:
        sock.close()
    stdout.write("stopped: console closed, sample servers stopping\n")
    return 0


def _with_sample_servers(project: runner.Project) -> runner.Project:
    """Only the sample integrations whose cart has a sample server here (others need real APIs)."""
    kept = {name: i for name, i in project.integrations.items() if i.source.connector in SERVERS}
    return runner.Project(project.connectors, kept)


def _run(project: runner.Project, state: str, flows: list[str], stdout: TextIO,
         only: str | None = None, exclude: str | None = None) -> list[runner.Outcome]:
    options = runner.Options(state, flows, emit=lambda line: print(line, file=stdout))
    chosen = [i for i in project.integrations.values() if i.name != exclude and only in (None, i.name)]
    outcomes = asyncio.run(runner.run_project(project, chosen, options))
    stdout.write(f"\n== {', '.join(flows)}{f' ({only})' if only else ''} ==\n")
    report(outcomes, stdout)
    return outcomes


def _warehouse_and_shoppers_act(servers: dict[str, Any], stdout: TextIO) -> tuple[list[int], list[str]]:
    """Between runs: the WMS ships some orders (two packages each) and cancels one it cannot fill;
    shoppers cancel two."""
    wms = servers["extensiv"]
    first: dict[int, list[dict]] = {}
    for order in wms.state.created:           # each merchant's orders by number (not by arrival)
        first.setdefault(order["readOnly"]["customerIdentifier"]["id"], []).append(order)
    first = {merchant: sorted(orders, key=lambda o: o["referenceNum"]) for merchant, orders in first.items()}
    shipped = [order["readOnly"]["orderId"] for orders in first.values() for order in orders[:2]]
    for oid in shipped:
        wms.app.ship(oid, packages=2)
    woo_ids = {str(order["id"]) for order in servers["woocommerce"].state.orders}
    unfilled = min(((int(order["poNum"]), order["readOnly"]["orderId"]) for order in wms.state.created
                    if order.get("poNum") in woo_ids and order["readOnly"]["orderId"] not in shipped
                    and order["readOnly"]["customerIdentifier"]["id"] == 7),   # Acme's (other carts' ids overlap)
                   default=None)                    # the oldest unshipped WooCommerce order, if any
    out_of_stock = wms.app.cancel(unfilled[1], "Out of stock")["poNum"] if unfilled else None
    woo, shop = servers["woocommerce"].app, servers["shopify"].app
    woo_first = woo.state.orders[0]["id"]         # shipped already: too late
    shop_last = shop.state.orders[-1]["id"]        # at the WMS, not shipped: canceled there
    bc_last = servers["bigcommerce"].state.orders[-1]["id"]   # at the WMS, not shipped: canceled there
    woo.cancel(woo_first)
    shop.cancel(shop_last)
    servers["bigcommerce"].app.cancel(bc_last)
    canceled_there = f" and canceled WooCommerce order {out_of_stock} (out of stock)" if out_of_stock else ""
    stdout.write(f"\nmeanwhile: the WMS shipped {len(shipped)} order(s) in 2 packages each{canceled_there}; "
                 f"shoppers cancelled WooCommerce order {woo_first}, Shopify order {shop_last} "
                 f"and BigCommerce order {bc_last}\n")
    return shipped, [str(woo_first), shop_last, str(bc_last)] + ([str(out_of_stock)] if out_of_stock else [])


def _shipstation_acts(server: Any, stdout: TextIO) -> list[str]:
    """In ShipStation: a label is voided and the order shipped on a new one, an order is marked as
    shipped outside ShipStation (no label), and the merchant cancels one."""
    orders = sorted(server.state.created, key=lambda o: int(o["orderNumber"]))
    if len(orders) < 8:
        return []
    app = server.app
    app.void(app.ship(orders[5]["orderId"], carrier="stamps_com")[0]["shipmentId"])
    app.ship(orders[5]["orderId"], carrier="stamps_com")
    app.mark_shipped(orders[6]["orderId"], f"9400100000000000{orders[6]['orderId']:06d}", "usps")
    app.cancel(orders[7]["orderId"], "Address cannot be verified")
    numbers = [o["orderNumber"] for o in orders[5:8]]
    stdout.write(f"meanwhile in ShipStation: order {numbers[0]} shipped on a new label after its first was voided, "
                 f"{numbers[1]} marked as shipped outside ShipStation, {numbers[2]} canceled by the merchant\n")
    return [orders[7]["advancedOptions"]["customField3"]]


def _show_back(servers: dict[str, Any], state: str, shipped: list[int], canceled: list[str], stdout: TextIO) -> None:
    """What came back to the carts: tracking, stock levels, and what became of the cancellations."""
    woo, shop = servers["woocommerce"].state, servers["shopify"].state
    stdout.write("\ntracking now in the carts:\n")
    statuses = {o["id"]: o["status"] for o in woo.orders}
    for order_id, notes in sorted(woo.notes.items()):          # core tracking: customer notes
        numbers = ", ".join(n["note"] for n in notes if n["customer_note"])
        stdout.write(f"  WooCommerce order {order_id} ({statuses.get(order_id)}): {numbers}\n")
    for fulfillment in shop.fulfillments:
        numbers = ", ".join(f"{t['company']} {t['number']}" for t in fulfillment["trackingInfo"])
        stdout.write(f"  Shopify {fulfillment['orders'][0]}: {numbers}\n")
    bc = servers["bigcommerce"].state
    for order_id, shipments in sorted(bc.shipments.items()):     # BigCommerce order shipments
        status = next(o["status"] for o in bc.orders if o["id"] == order_id)
        numbers = ", ".join(f"{s['shipping_provider'] or s['tracking_carrier']} {s['tracking_number']}" for s in shipments)
        stdout.write(f"  BigCommerce order {order_id} ({status}): {numbers}\n")
    for shipment in servers["magento2"].state.shipments:    # Magento: a shipment with its tracks
        numbers = ", ".join(f"{t['title']} {t['track_number']}" for t in shipment["tracks"])
        stdout.write(f"  Magento order {shipment['order_id']} (shipment {shipment['entity_id']}): {numbers}\n")
    levels = ", ".join(f"{p['sku']} {p['stock_quantity']}" for p in list(woo.products.values())[:4])
    stdout.write(f"stock levels in WooCommerce (WMS available, buffer 2): {levels}, …\n")
    bc_levels = ", ".join(f"{sku} {item['locations'][1]}" for sku, item in list(bc.inventory.items())[:4])
    stdout.write(f"stock levels in BigCommerce (location 1): {bc_levels}, …\n")
    for outcome_name in ("acme-woo-to-extensiv", "globex-shopify-to-extensiv", "hooli-bigcommerce-to-extensiv"):
        with open_store(state).open(outcome_name) as ledger:
            for key in canceled:
                entry = ledger.get(key)
                if entry is not None:
                    why = f" ({entry.reason})" if entry.reason else ""
                    if entry.data.get("canceled_in_cart"):
                        why = f" by the WMS, then in the cart ({entry.data.get('cancel_reason')})"
                    stdout.write(f"cancellation of {key}: {entry.status}{why}\n")


@contextlib.contextmanager
def _environment(servers: dict[str, Any]) -> Iterator[None]:
    values = {name: server.url if value == "@url" else value
              for kind, server in servers.items() for name, value in SERVERS[kind][1].items()}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _show_wms(server: Any, stdout: TextIO) -> None:
    orders = list(server.state.orders.values())
    stdout.write(f"\nthe sample WMS now holds {len(orders)} order(s)")
    stdout.write(":\n" if orders else "\n")
    for order in orders[:5]:
        items = order.get("orderItems") or []
        ship = order.get("shipTo") or {}
        stdout.write(f"  WMS order {order.get('readOnly', {}).get('orderId')}: ref {order.get('referenceNum')} "
                     f"for {ship.get('name')} ({ship.get('city')}, {ship.get('country')}), "
                     f"{len(items)} line(s), {order.get('routingInfo', {}).get('carrier')} "
                     f"{order.get('routingInfo', {}).get('mode')}\n")
    if len(orders) > 5:
        stdout.write(f"  … and {len(orders) - 5} more\n")


def _show_shipstation_back(state: str, keys: list[str], stdout: TextIO) -> None:
    """What became of the cancellations between the WooCommerce shop and ShipStation."""
    with open_store(state).open(SHIPSTATION_DEMO) as ledger:
        for key in keys:
            entry = ledger.get(key)
            if entry is None:
                continue
            how = " (the shopper asked: canceled in ShipStation)"
            if entry.data.get("canceled_in_cart"):
                how = f" (in ShipStation by the merchant, then in the cart: {entry.data.get('cancel_reason')})"
            stdout.write(f"{SHIPSTATION_DEMO}: cancellation of {key}: {entry.status}{how if entry.status == 'canceled' else ''}\n")


def _show_shipstation(server: Any, stdout: TextIO) -> None:
    orders = server.state.created
    stdout.write(f"the sample ShipStation now holds {len(orders)} order(s)")
    if orders:
        first = orders[0]
        stdout.write(f", e.g. {first['orderId']}: number {first['orderNumber']}, orderKey {first['orderKey']}, "
                     f"{first['orderStatus']}, ordered {first['orderDate']} (Pacific)")
    stdout.write("\n")


def _show_held(state: str, outcomes: list[runner.Outcome], stdout: TextIO) -> None:
    for outcome in outcomes:
        with open_store(state).open(outcome.integration) as ledger:
            reasons: dict[str, int] = {}
            for status in ("held", "skipped", "quarantined"):
                for entry in ledger.iter_status(status):
                    reason = f"{status}: {entry.reason}"
                    reasons[reason] = reasons.get(reason, 0) + 1
        for reason, count in sorted(reasons.items()):
            stdout.write(f"  {outcome.integration}: {count} {reason}\n")


def _closing(outcomes: list[runner.Outcome], state_dir: str | None, stdout: TextIO) -> None:
    delivered = sum(c.delivered for o in outcomes for c in o.counts.values())
    if delivered == 0:
        stdout.write("\nnothing new to deliver: every order was already delivered (the ledger remembers them)\n")
    elif state_dir:
        stdout.write(f"\nrun `syncengine demo --state-dir {state_dir}` again: it delivers 0 orders, "
                     f"because the ledger in {state_dir} remembers these\n")
    else:
        stdout.write("\nthe ledger was temporary; pass --state-dir DIR to keep it between runs\n")
