"""The inventory flow against the sample WooCommerce cart and Extensiv WMS on 127.0.0.1."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sync_rig import rig

from engine.flows.inventory import ITEMS, PUSHED

PRODUCTS = "/wp-json/wc/v3/products"


def cart_stock(r) -> dict[str, int]:
    with r.cart.state.lock:
        return {p["sku"]: p["stock_quantity"] for p in r.cart.state.products.values()}


def lookups(r) -> int:
    return sum(1 for method, path in r.cart_app.requests if (method, path) == ("GET", PRODUCTS))


def test_first_run_pushes_every_sku_then_only_the_changed_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cart gets every WMS level once; after one level changes, only that SKU is pushed, with no new lookups."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        first = r.cli("run", "--flow", "inventory")
        assert first.code == 0 and "pulled 8, quarantined 0, pushed 8, unchanged 0" in first.out
        wms = dict(r.wms.state.stock)
        assert cart_stock(r) == {("POSTER-A2" if sku == "POSTER-A2-TUBE" else sku): n for sku, n in wms.items()}
        assert lookups(r) == 8
        r.wms.state.stock["MUG-CERAMIC"] += 5
        second = r.cli("run", "--flow", "inventory")
        assert "pushed 1, unchanged 7" in second.out
        assert cart_stock(r)["MUG-CERAMIC"] == wms["MUG-CERAMIC"] + 5
        assert lookups(r) == 8                              # items come from the cache
        puts = Counter(path for method, path in r.cart_app.requests if method == "PUT")
        assert sum(puts.values()) == 9
        with r.ledger() as ledger:
            assert ledger.kv_get(PUSHED, "MUG-CERAMIC") == wms["MUG-CERAMIC"] + 5
            assert ledger.kv_get(ITEMS, "MUG-CERAMIC") == {"id": "503", "parent_id": "0"}


def test_only_the_integrations_customer_stock_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stock summaries are read for the integration's 3PL customer only: another tenant's level of a
    shared SKU and its own SKUs never reach the cart."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        run = r.cli("run", "--flow", "inventory")
        assert run.code == 0 and "pulled 8, quarantined 0, pushed 8" in run.out
        assert r.wms.state.tenant_stock["MUG-CERAMIC"] == 999
        assert cart_stock(r)["MUG-CERAMIC"] == r.wms.state.stock["MUG-CERAMIC"]
        assert "TENANT8-LAMP" not in r.status()


def test_kits_sku_map_open_orders_buffer_and_minimum_shape_the_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kit gets min(floor(component / quantity)); held orders are subtracted; the buffer and the minimum apply."""
    with rig(tmp_path, monkeypatch, orders=4) as r:
        with r.cart.state.lock:
            r.cart.state.products[900] = {"id": 900, "parent_id": 0, "sku": "KIT-MUG-CAP", "stock_quantity": 0}
        kit = {"KIT-MUG-CAP": [{"sku": "MUG-CERAMIC", "quantity": 2}, {"sku": "CAP-NAVY", "quantity": 1}]}
        r.write(kits=kit, hold_minutes=10**8, inventory={"warehouses": [1], "buffer": 2, "minimum": 5})
        r.wms.state.stock.update({"MUG-CERAMIC": 41, "CAP-NAVY": 30, "SOCKS-3PK": 6})
        assert "held 4" in r.cli("run", "--flow", "orders").out      # pulled, not at the WMS yet
        held: Counter = Counter()
        with r.cart.state.lock:
            for order in r.cart.state.orders:
                for line in order["line_items"]:
                    held["POSTER-A2-TUBE" if line["sku"] == "POSTER-A2" else line["sku"]] += line["quantity"]
        assert r.cli("run", "--flow", "inventory").code == 0

        def level(wms_sku: str) -> int:
            value = max(r.wms.state.stock[wms_sku] - held[wms_sku] - 2, 0)
            return 0 if value < 5 else value

        stock = cart_stock(r)
        assert stock["MUG-CERAMIC"] == level("MUG-CERAMIC") and stock["POSTER-A2"] == level("POSTER-A2-TUBE")
        assert stock["SOCKS-3PK"] == 0                                # at most 6 - 2 = 4: below the minimum
        mugs, caps = 41 - held["MUG-CERAMIC"], 30 - held["CAP-NAVY"]
        assert stock["KIT-MUG-CAP"] == max(min(mugs // 2, caps) - 2, 0)


def test_a_sku_the_cart_does_not_know_is_skipped_and_listed_in_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A WMS SKU with no cart item is skipped (not failed), shown in status, and not looked up again next run."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        r.wms.state.stock["PALLET-WRAP"] = 12
        run = r.cli("run", "--flow", "inventory")
        assert run.code == 0 and "pushed 8, unchanged 0, skipped 1, failed 0" in run.out
        assert "inventory skipped" in r.status() and "PALLET-WRAP" in r.status()
        before = lookups(r)
        assert "skipped 1" in r.cli("run", "--flow", "inventory").out and lookups(r) == before


def test_only_the_chosen_warehouses_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Levels of warehouses the integration does not choose are not pushed."""
    with rig(tmp_path, monkeypatch) as r:
        r.write(inventory={"warehouses": [2]})
        assert "pulled 8, quarantined 0, pushed 0" in r.cli("run", "--flow", "inventory").out
        assert set(cart_stock(r).values()) == {100}


def test_a_refused_push_is_failed_and_pushed_again_next_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A push the cart refuses counts as failed (exit 1) and is not remembered, so the next run sends it."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        r.cart.faults.add(path_prefix=PRODUCTS + "/", method="PUT", status=400, times=1)
        first = r.cli("run", "--flow", "inventory")
        assert first.code == 1 and "pushed 7" in first.out and "failed 1" in first.out
        assert "inventory failed" in r.status()
        second = r.cli("run", "--flow", "inventory")
        assert second.code == 0 and "pushed 1, unchanged 7" in second.out


def test_dry_run_prints_the_pushes_and_remembers_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--dry-run prints one update_inventory per SKU and leaves the cart and the state untouched."""
    with rig(tmp_path, monkeypatch) as r:
        r.write()
        out = r.cli("run", "--flow", "inventory", "--dry-run").out
        assert out.count("update_inventory: would PUT") == 8
        assert set(cart_stock(r).values()) == {100} and not r.state.exists()


@pytest.mark.parametrize("parent", ["absent", "null"])
def test_a_product_without_a_parent_id_is_updated_as_a_simple_product(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       parent: str) -> None:
    """A looked-up product whose parent_id is absent or null is set with PUT /products/{id}, never under a "null" parent."""
    with rig(tmp_path, monkeypatch) as r:
        with r.cart.state.lock:
            for product in r.cart.state.products.values():
                if parent == "absent":
                    del product["parent_id"]
                else:
                    product["parent_id"] = None
        r.write()
        result = r.cli("run", "--flow", "inventory")
        assert result.code == 0 and "pushed 8" in result.out, result.out
        puts = [path for method, path in r.cart_app.requests if method == "PUT"]
        assert len(puts) == 8 and all("variations" not in path for path in puts), puts


def test_a_variation_is_updated_under_its_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SKU that is a variation (parent_id set) is set with PUT /products/{parent_id}/variations/{id}."""
    with rig(tmp_path, monkeypatch) as r:
        with r.cart.state.lock:
            r.cart.state.products[501].update(type="variation", parent_id=731)
        r.write()
        assert r.cli("run", "--flow", "inventory").code == 0
        assert ("PUT", PRODUCTS + "/731/variations/501") in r.cart_app.requests
        assert cart_stock(r)["TSHIRT-BLK-M"] == r.wms.state.stock["TSHIRT-BLK-M"]
