"""`syncengine demo` (the README's first command) end to end, in-process: every flow moves what
the demo says, and a second demo on the same state directory delivers nothing again."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from engine import cli

pytestmark = pytest.mark.usefixtures("http_testing")     # the sample connectors' rate limits: no sleeping


def demo(state: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(["demo", "--state-dir", str(state)], out, err)
    return code, out.getvalue() + err.getvalue()


def test_the_demo_moves_orders_both_ways_and_a_second_run_delivers_nothing(tmp_path: Path) -> None:
    code, out = demo(tmp_path / "state")
    assert code == 0, out
    assert "acme-woo-to-extensiv: orders: pulled 30, new 30, delivered 23, skipped 0, quarantined 0, held 7" in out
    assert "globex-shopify-to-extensiv: orders: pulled 30, new 30, delivered 30" in out
    assert "acme-woo-to-extensiv: shipments: pulled 2" in out and "sent 4, confirmed 2, failed 0" in out
    assert "acme-woo-to-extensiv: inventory: pulled 8, quarantined 0, pushed 8" in out
    assert "acme-woo-to-extensiv: cancellations: pulled 1, skipped 0, quarantined 0, canceled 0, sent 0, too_late 1" in out
    assert "globex-shopify-to-extensiv: cancellations: pulled 1, skipped 0, quarantined 0, canceled 0, sent 1" in out
    assert "acme-woo-to-extensiv: wms_cancellations: pulled 1, skipped 0, quarantined 0, canceled 0, sent 1" in out
    assert "cancellation of 1004: canceled by the WMS, then in the cart (Canceled: Out of stock)" in out
    assert "WooCommerce order 1001 (cancelled): FedEx tracking 1Z" in out      # shipped, then cancelled: not re-opened
    assert "(completed): UPS tracking 1Z" in out
    # the same shop into ShipStation: a re-shipped label (not the voided one), an order marked as
    # shipped, the shopper's cancel sent there, the merchant's cancel brought back to the cart
    assert "hooli-woo-to-shipstation: orders: pulled 30, new 30, delivered 30" in out
    assert "hooli-woo-to-shipstation: shipments: pulled 2, skipped 0, quarantined 0, waiting 0, sent 2, confirmed 2" in out
    assert "hooli-woo-to-shipstation: cancellation of 1001: canceled (the shopper asked" in out
    assert "hooli-woo-to-shipstation: cancellation of 1008: canceled (in ShipStation by the merchant" in out
    assert "hooli-bigcommerce-to-extensiv: orders: pulled 30, new 30, delivered 30" in out
    assert "hooli-bigcommerce-to-extensiv: shipments: pulled 2" in out and "BigCommerce order 100 (Shipped): " in out
    assert "hooli-bigcommerce-to-extensiv: inventory: pulled 8, quarantined 0, pushed 8" in out
    assert "hooli-bigcommerce-to-extensiv: cancellations: pulled 1, skipped 0, quarantined 0, canceled 0, sent 1" in out
    assert "cancellation of 129: canceled" in out
    again_code, again = demo(tmp_path / "state")
    assert again_code == 0, again
    assert "acme-woo-to-extensiv: orders: pulled 2, new 0, delivered 0" in again
    assert "hooli-woo-to-shipstation: orders: pulled 2, new 0, delivered 0" in again
    assert "nothing new to deliver: every order was already delivered" in again
