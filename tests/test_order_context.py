"""The order as delivered, as writes back see it (`order` in create_shipment / cancel_order)."""
from __future__ import annotations

from engine.flows.writes import order_context
from engine.ledger import Entry


def test_each_delivered_line_carries_the_cart_line_id_when_the_cart_gave_one() -> None:
    """Lines keep their WMS SKU and quantity, and the cart's line_id the orders flow kept."""
    entry = Entry("3", "delivered", destination_id="77",
                  data={"order_id": "3", "order_number": "000000003", "lines": [["MH01-S-Gray", 1], ["24-MB01", 2]],
                        "line_ids": ["10", "12"]})
    assert order_context(entry)["lines"] == [{"sku": "MH01-S-Gray", "quantity": 1, "line_id": "10"},
                                             {"sku": "24-MB01", "quantity": 2, "line_id": "12"}]


def test_an_entry_without_line_ids_gives_null_line_ids() -> None:
    """An entry delivered before line ids were kept (or from a cart without them) reads null."""
    entry = Entry("1001", "delivered", data={"order_id": "1001", "lines": [["MUG", 2]]})
    assert order_context(entry)["lines"] == [{"sku": "MUG", "quantity": 2, "line_id": None}]
