"""Shopify flows against the sample server run as Shopify documents it (cost limit, versions,
client-credentials tokens): a big order reaches the WMS whole; a Dev Dashboard app syncs with
the client-credentials grant instead of a static token."""

from __future__ import annotations

from pathlib import Path

import pytest

from samples.servers.extensiv import order_items

from tests.sync_rig import rig


def test_an_order_with_more_lines_than_one_page_reaches_the_wms_whole(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Defects: the first orders query was refused (cost 15,802 > 1,000) and lines past the first
    page of lineItems were dropped. A 300-line order needs the first page of the orders query and
    two more pages of order(id) { lineItems }."""
    with rig(tmp_path, monkeypatch, kind="shopify", orders=3) as r:
        big = r.cart_app.add_orders(1, lines=300)[0]
        with r.wms.state.lock:
            r.wms.state.stock.update({f"BULK-{i:04d}": 5 for i in range(300)})
        r.write(flows={"orders": {"enabled": True}})
        result = r.cli("run", "--flow", "orders")
        assert result.code == 0, result
        assert "delivered 4" in result.out, result.out
        lines = order_items(r.wms_order(big["name"]))
        assert len(lines) == 300
        assert {line["itemIdentifier"]["sku"] for line in lines} == {f"BULK-{i:04d}" for i in range(300)}
        assert all(asked == served == "2026-10" for asked, served in r.cart_app.served)


def test_a_dev_dashboard_app_syncs_with_the_client_credentials_grant(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Defect: custom apps created from 2026 have no static token, only client credentials."""
    monkeypatch.setenv("SYNC_SHOP_CLIENT_SECRET", "shpss_cc_51f0")
    with rig(tmp_path, monkeypatch, kind="shopify", orders=3,
             cart_options={"client_id": "cc-app-7", "client_secret": "shpss_cc_51f0"}) as r:
        path = r.write(flows={"orders": {"enabled": True}})
        text = path.read_text(encoding="utf-8").replace(
            "access_token: ${env:SYNC_CART_TOKEN}",
            "client_id: cc-app-7\n    client_secret: ${env:SYNC_SHOP_CLIENT_SECRET}")
        assert "client_secret" in text
        path.write_text(text, encoding="utf-8")
        result = r.cli("run", "--flow", "orders")
        assert result.code == 0, result
        assert "delivered 3" in result.out, result.out
        tokens = [p for m, p in r.cart_app.requests if p == "/admin/oauth/access_token"]
        assert len(tokens) == 1                                  # one token for the whole run
        assert r.cart_app.issued and "shpss_cc_51f0" not in result.out + result.err


def test_stock_set_back_to_an_earlier_value_is_applied_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2026-04 requires @idempotent(key:); a key is a fresh UUID per write, so 10, 9, then 10 again
    are three operations (a key made of the values would have the third answered, not applied)."""
    with rig(tmp_path, monkeypatch, kind="shopify", orders=0) as r:
        r.write(flows={"inventory": {"enabled": True}})
        with r.wms.state.lock:
            sku = next(s for s in r.wms.state.stock if s in r.cart.state.variants)
        item = r.cart.state.variants[sku]["inventoryItem"]["id"]
        for level in (10, 9, 10):
            with r.wms.state.lock:
                r.wms.state.stock[sku] = level
            result = r.cli("run", "--flow", "inventory")
            assert result.code == 0, result
            assert r.cart.state.levels[item] == level
        assert r.cart.state.applied[item] == 3
        assert len(r.cart_app.idempotency) >= 3


def test_a_refused_stock_write_is_retried_under_a_new_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refusal (wrong location) means the write was not done: the retry after the config is
    fixed is a new operation with a new key (the old key with other variables is refused)."""
    with rig(tmp_path, monkeypatch, kind="shopify", orders=0) as r:
        path = r.write(flows={"inventory": {"enabled": True}})
        good = path.read_text(encoding="utf-8")
        path.write_text(good.replace("gid://shopify/Location/76543210", "gid://shopify/Location/1"), encoding="utf-8")
        with r.wms.state.lock:
            sku = next(s for s in r.wms.state.stock if s in r.cart.state.variants)
            r.wms.state.stock = {sku: 7}
        refused = r.cli("run", "--flow", "inventory")
        assert refused.code == 1 and "failed 1" in refused.out, refused
        path.write_text(good, encoding="utf-8")
        result = r.cli("run", "--flow", "inventory")
        assert result.code == 0, result
        item = r.cart.state.variants[sku]["inventoryItem"]["id"]
        assert r.cart.state.levels[item] == 7
