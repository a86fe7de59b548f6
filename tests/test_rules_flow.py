"""An integration's order rules end to end (kits, item filters, ship-method map, hold window,
SKU map from CSV) through the orders flow against the sample WooCommerce cart and Extensiv WMS."""

from __future__ import annotations

from pathlib import Path

import pytest
from sync_rig import rig

from samples.servers.extensiv import order_items


def wms_items(r, ref: str) -> dict[str, int]:
    return {i["itemIdentifier"]["sku"]: i["qty"] for i in order_items(r.wms_order(ref))}


def cart_lines(r, order_id: int) -> dict[str, int]:
    order = next(o for o in r.cart.state.orders if o["id"] == order_id)
    return {line["sku"]: line["quantity"] for line in order["line_items"]}


def test_a_kit_is_exploded_into_its_components(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kit SKU reaches the WMS as its component SKUs, quantities multiplied."""
    with rig(tmp_path, monkeypatch, orders=1) as r:
        [sku, qty] = next(iter(cart_lines(r, 1001).items()))
        others = {s: q for s, q in cart_lines(r, 1001).items() if s != sku}
        r.write(kits={sku: [{"sku": "MUG-CERAMIC", "quantity": 2}, {"sku": "CAP-NAVY", "quantity": 1}]})
        assert "delivered 1" in r.cli("run", "--flow", "orders").out
        items = wms_items(r, "1001")
        assert items.get("MUG-CERAMIC", 0) - others.get("MUG-CERAMIC", 0) == 2 * qty
        assert items.get("CAP-NAVY", 0) - others.get("CAP-NAVY", 0) == qty and sku not in items
        with r.ledger() as ledger:
            assert ["MUG-CERAMIC", 2 * qty] in ledger.get("1001").data["lines"]


def test_item_filter_drops_a_denied_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deny-listed SKU is dropped from the order; the rest is delivered."""
    with rig(tmp_path, monkeypatch, orders=6) as r:
        ref, lines = next((str(o), cart_lines(r, o)) for o in range(1001, 1007) if len(cart_lines(r, o)) > 1)
        denied = next(iter(lines))
        r.write(item_filters={"mode": "deny", "skus": [denied], "action": "drop_line"})
        r.cli("run", "--flow", "orders")
        assert denied not in wms_items(r, ref) and len(wms_items(r, ref)) == len(lines) - 1


def test_item_filter_can_hold_the_order_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With action: hold, an order with an allow-list miss is held with the SKU named in status."""
    with rig(tmp_path, monkeypatch, orders=3) as r:
        allowed = sorted(cart_lines(r, 1001))
        r.write(item_filters={"mode": "allow", "skus": allowed, "action": "hold"})
        r.cli("run", "--flow", "orders")
        with r.ledger() as ledger:
            assert ledger.get("1001").status == "delivered"
            held = list(ledger.iter_status("held"))
        assert held and all("item filter holds SKU" in e.reason for e in held)
        assert "item filter holds SKU" in r.status()


def test_unmapped_ship_method_is_held_then_released_by_retry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An order whose ship method is not mapped is held with the reason; `retry` after the map is fixed delivers it."""
    with rig(tmp_path, monkeypatch, orders=6) as r:
        r.write(ship_method_map={"map": {"flat_rate": "UPS Ground"}, "on_unmapped": "hold"})
        r.cli("run", "--flow", "orders")
        with r.ledger() as ledger:
            held = [e.key for e in ledger.iter_status("held")]
        assert held and "is not in ship_method_map" in r.status()
        assert not any(r.wms_app.state.orders[i]["referenceNum"] in held for i in r.wms_app.state.orders)
        r.write(ship_method_map={"map": {"flat_rate": "UPS Ground"}, "on_unmapped": "default", "default": "UPS Ground"})
        retry = r.cli("retry")
        assert retry.code == 0 and f"released {len(held)}" in retry.out
        refs = {o["referenceNum"] for o in r.wms_app.state.created}
        assert set(held) <= refs and len(refs) == 6


def test_hold_window_holds_young_orders_until_they_are_old_enough(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Orders younger than hold_minutes are held with their release time; once it has passed a run delivers them."""
    with rig(tmp_path, monkeypatch, orders=2) as r:
        r.write(hold_minutes=10**8)
        assert "held 2" in r.cli("run", "--flow", "orders").out and "hold window" in r.status()
        with r.ledger() as ledger:
            for key in ("1001", "1002"):      # as if the window had passed
                ledger.set_status(key, "held", data={"hold_until": "2026-01-01T00:00:00Z"})
        r.write(hold_minutes=1)
        assert "delivered 2" in r.cli("run", "--flow", "orders").out


def test_sku_map_from_a_csv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`sku_map: {file: skus.csv}` maps cart SKUs to WMS SKUs from a two-column CSV next to the integration."""
    with rig(tmp_path, monkeypatch, orders=1) as r:
        sku = next(iter(cart_lines(r, 1001)))
        path = r.write(sku_map={"file": "skus.csv"})
        path.with_name("skus.csv").write_text(f"cart_sku,wms_sku\n# comment\n{sku},BOTTLE-750\n", encoding="utf-8")
        r.cli("run", "--flow", "orders")
        assert "BOTTLE-750" in wms_items(r, "1001") and sku not in wms_items(r, "1001")


def test_the_rules_leave_the_mapped_order_as_it_was() -> None:
    """Kits, the SKU map, an item filter and the ship-method map change the verdict's order only,
    never the order handed in (the rules copy what they change, unless told the order is theirs)."""
    import copy
    from datetime import datetime, timezone

    from engine.flows import rules
    from engine.specs.settings import Endpoint, Integration

    integration = Integration(
        name="t", path=Path("t.yaml"), source=Endpoint("cart", {}), destination=Endpoint("wms", {}),
        start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), overlap=0, flows={},
        sku_map={"A": "A-WMS"}, kits={"KIT": [{"sku": "B", "quantity": 2}]},
        item_filters={"mode": "deny", "skus": ["GONE"]},
        ship_method_map={"map": {"flat_rate": "GROUND"}})
    order = {"order_id": "1", "created_at": "2026-01-02T00:00:00Z", "ship_method": "flat_rate",
             "ship_to": {"name": "Ann"},
             "lines": [{"sku": "A", "quantity": 1, "unit_price": 2.0}, {"sku": "KIT", "quantity": 3},
                       {"sku": "GONE", "quantity": 1}]}
    before = copy.deepcopy(order)
    verdict = rules.Rules(integration)(order, lambda: datetime(2026, 2, 1, tzinfo=timezone.utc))
    assert verdict.status == "pending" and order == before
    assert verdict.order["ship_method"] == "GROUND"
    assert [(line["sku"], line["quantity"]) for line in verdict.order["lines"]] == [("A-WMS", 1), ("B", 6)]


@pytest.mark.parametrize("created, start, skipped", [
    ("2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z", True),          # canonical: compared as text
    ("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", False),
    ("2026-01-01T00:59:59+01:00", "2026-01-01T00:00:00Z", True),     # other forms are parsed
    ("2026-01-01T00:00:00.2Z", "2026-01-01T00:00:00.5Z", True),      # a start with a fraction
    ("2026-01-01T00:00:01Z", "2026-01-01T00:00:00.5Z", False),
])
def test_start_date_compares_instants_whatever_the_text_form(created: str, start: str,
                                                             skipped: bool) -> None:
    """An order created before start_date is skipped, however either timestamp is written."""
    from datetime import datetime, timezone

    from engine.flows import rules
    from engine.specs.settings import Endpoint, Integration, parse_time, time_before

    integration = Integration(
        name="t", path=Path("t.yaml"), source=Endpoint("cart", {}), destination=Endpoint("wms", {}),
        start_date=parse_time(start), overlap=0, flows={})
    order = {"order_id": "1", "created_at": created, "lines": []}
    verdict = rules.Rules(integration)(order, lambda: datetime(2026, 2, 1, tzinfo=timezone.utc))
    assert (verdict.status == "skipped") is skipped
    assert time_before(created, start) is (parse_time(created) < parse_time(start))
