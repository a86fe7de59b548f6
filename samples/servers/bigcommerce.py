"""A BigCommerce-like server: Orders v2 under ``/stores/{hash}/v2``.

Like the real API: ``X-Auth-Token`` header (401 otherwise); ``page``/``limit``
(max 250); ``min_date_modified`` (ISO-8601 or RFC-2822), ``status_id``,
``sort=id:asc``; ``include=consignments.line_items`` embeds ship-to and lines;
dates are RFC-2822 and money is a decimal string; and an empty result is
**204 No Content** with no body — including a page past the end.
``GET /orders/{id}/products`` and ``GET /orders/{id}/shipping_addresses`` are the sub-resources
the order's ``products``/``shipping_addresses`` ``{url, resource}`` links point to (page/limit,
a 404 for an unknown order). ``PUT /orders/{id}`` sets a new ``status_id`` (``status`` is read-only and follows it;
an unknown status_id is a 400), answers the order, and is a 404 for an unknown order.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from .base import Answer, App, Request, apply_page_faults, int_param, page_of, parse_time
from .data import OrderFactory, SampleOrder, money

#: BigCommerce's order statuses (``GET /v2/order_statuses``)
STATUS = {0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped", 4: "Refunded",
          5: "Cancelled", 6: "Declined", 7: "Awaiting Payment", 8: "Awaiting Pickup",
          9: "Awaiting Shipment", 10: "Completed", 11: "Awaiting Fulfillment",
          12: "Manual Verification Required", 13: "Disputed", 14: "Partially Refunded"}


def _date(when: datetime) -> str:
    return format_datetime(when)  # "Mon, 05 Jan 2026 08:07:00 +0000"


def _when(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        return parsedate_to_datetime(text)


def render_order(o: SampleOrder, base: str = "https://api.bigcommerce.com/stores/abc123/v2") -> dict[str, Any]:
    """One order as ``GET /v2/orders?include=consignments.line_items`` lists it."""
    address = {"first_name": o.first_name, "last_name": o.last_name, "company": o.company,
               "street_1": o.address1, "street_2": o.address2, "city": o.city, "state": o.region,
               "zip": o.postcode, "country": o.country, "country_iso2": o.country,
               "phone": o.phone, "email": o.email}
    return {
        "id": o.id, "customer_id": 0, "date_created": _date(o.created), "date_modified": _date(o.modified),
        "date_shipped": "", "status_id": 11, "status": STATUS[11],
        "subtotal_ex_tax": money(o.subtotal, 4), "subtotal_inc_tax": money(o.subtotal + o.tax, 4),
        "base_shipping_cost": money(o.shipping, 4), "shipping_cost_ex_tax": money(o.shipping, 4),
        "total_ex_tax": money(o.total - o.tax, 4), "total_inc_tax": money(o.total, 4),
        "total_tax": money(o.tax, 4), "items_total": sum(line.quantity for line in o.lines),
        "items_shipped": 0, "payment_method": "Credit Card", "currency_code": "USD",
        "discount_amount": "0.0000", "coupon_discount": "0.0000", "customer_message": o.note,
        "staff_notes": "", "order_source": "www", "billing_address": address,
        "products": {"url": f"{base}/orders/{o.id}/products", "resource": f"/orders/{o.id}/products"},
        "shipping_addresses": {"url": f"{base}/orders/{o.id}/shipping_addresses",
                               "resource": f"/orders/{o.id}/shipping_addresses"},
        "consignments": [{"shipping": [{
            "id": o.id * 10, **address, "shipping_method": o.ship_method[1],
            "shipping_zone_name": "Default", "line_items": [
                {"id": line.line_id, "order_id": o.id, "product_id": 100 + i, "name": line.name,
                 "sku": line.sku, "quantity": line.quantity, "base_price": money(line.price, 4),
                 "price_ex_tax": money(line.price, 4), "quantity_shipped": 0}
                for i, line in enumerate(o.lines)]}]}],
    }


@dataclass
class BigCommerceState:
    orders: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class BigCommerceApp(App):
    def __init__(self, orders: int = 20, seed: int = 1, store_hash: str = "abc123",
                 access_token: str = "bc_test_token") -> None:
        super().__init__()
        self._token = access_token
        self._factory = OrderFactory(seed, first_id=100)
        self.state = BigCommerceState()
        self.add_orders(orders)
        self.route("GET", f"/stores/{store_hash}/v2/orders", self.list_orders)
        self.route("PUT", rf"/stores/{store_hash}/v2/orders/(?P<oid>\d+)", self.update_order)
        self.route("GET", rf"/stores/{store_hash}/v2/orders/(?P<oid>\d+)/products", self.order_products)
        self.route("GET", rf"/stores/{store_hash}/v2/orders/(?P<oid>\d+)/shipping_addresses",
                   self.order_shipping_addresses)

    def add_orders(self, n: int) -> list[dict[str, Any]]:
        new = [render_order(o) for o in self._factory.make(n)]
        with self.state.lock:
            self.state.orders.extend(new)
        return new

    def cancel(self, order_id: int) -> None:
        """The order is cancelled in the store: status 5, ``date_modified`` moves on."""
        with self.state.lock:
            self._set_status(self._find(order_id), 5)

    def authorize(self, request: Request) -> Answer | None:
        if request.headers.get("x-auth-token") == self._token:
            return None
        return Answer(401, [{"status": 401, "message": "You are not authorized to access this resource"}])

    def list_orders(self, request: Request) -> Answer:
        q = request.query
        limit, page = int_param(q, "limit", 50), int_param(q, "page", 1)
        if not 1 <= limit <= 250:
            return Answer(400, [{"status": 400, "message": "The field 'limit' is invalid."}])
        with self.state.lock:
            rows = [o for o in self.state.orders if _admits(o, q)]
        field_name, _, direction = q.get("sort", "id:asc").partition(":")
        key = (lambda o: _when(o[field_name])) if field_name.startswith("date") else (lambda o: o["id"])
        rows.sort(key=key, reverse=direction == "desc")
        records = apply_page_faults(request, page_of(rows, page, limit), lambda o: {**o, "consignments": []})
        if not records:
            return Answer(204)
        if "consignments" not in q.get("include", ""):
            records = [{k: v for k, v in o.items() if k != "consignments"} for o in records]
        return Answer(200, records)

    def update_order(self, request: Request, oid: str) -> Answer:
        """``PUT /orders/{id}``: a new ``status_id``; other fields are not modelled."""
        body = request.json() or {}
        if "status_id" in body and body["status_id"] not in STATUS:
            return Answer(400, [{"status": 400, "message": "The field 'status_id' is invalid."}])
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return Answer(404, [{"status": 404, "message": "The requested resource was not found."}])
            if "status_id" in body:
                self._set_status(order, body["status_id"])
            return Answer(200, {k: v for k, v in order.items() if k != "consignments"})

    def order_products(self, request: Request, oid: str) -> Answer:
        """``GET /orders/{id}/products``: the order's lines, each with its ``order_address_id``."""
        return self._sub_resource(request, oid, lambda shipping: [
            {**line, "order_address_id": shipping["id"], "type": "physical",
             "price_inc_tax": line["base_price"], "quantity_refunded": 0}
            for line in shipping["line_items"]])

    def order_shipping_addresses(self, request: Request, oid: str) -> Answer:
        """``GET /orders/{id}/shipping_addresses``: where each consignment goes, and how."""
        return self._sub_resource(request, oid, lambda shipping: [
            {**{k: v for k, v in shipping.items() if k not in ("line_items", "shipping_zone_name")},
             "order_id": int(oid), "items_total": sum(line["quantity"] for line in shipping["line_items"]),
             "items_shipped": 0, "shipping_zone_name": shipping["shipping_zone_name"]}])

    def _sub_resource(self, request: Request, oid: str, rows_of: Any) -> Answer:
        limit, page = int_param(request.query, "limit", 50), int_param(request.query, "page", 1)
        if not 1 <= limit <= 250:
            return Answer(400, [{"status": 400, "message": "The field 'limit' is invalid."}])
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return Answer(404, [{"status": 404, "message": "The requested resource was not found."}])
            rows = [row for c in order["consignments"] for shipping in c["shipping"] for row in rows_of(shipping)]
        found = page_of(rows, page, limit)
        return Answer(200, found) if found else Answer(204)

    def _set_status(self, order: dict[str, Any], status_id: int) -> None:
        order.update(status_id=status_id, status=STATUS[status_id], date_modified=_date(self._factory.tick()))

    def _find(self, order_id: int) -> dict[str, Any] | None:
        return next((o for o in self.state.orders if o["id"] == order_id), None)


def _admits(order: dict[str, Any], q: dict[str, str]) -> bool:
    if "status_id" in q and order["status_id"] != int(q["status_id"]):
        return False
    if "min_date_modified" in q and _when(order["date_modified"]) < _when(q["min_date_modified"]):
        return False
    return True
