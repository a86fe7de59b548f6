"""A WooCommerce-like server: REST API v3 under ``/wp-json/wc/v3``.

Behaves like the real thing where the connector depends on it: basic auth with
consumer key/secret (401 otherwise), ``page``/``per_page`` (max 100) with
``X-WP-Total``/``X-WP-TotalPages``/``Link`` headers, ``status``,
``modified_after`` + ``dates_are_gmt``, ``orderby``/``order``; ``PUT /orders/{id}``
(a new ``status``, e.g. ``cancelled``); products looked up
by ``?sku=`` and updated with ``PUT``; order notes (``/orders/{id}/notes``); and, only with
``shipment_tracking=True`` (a store with the paid Shipment Tracking extension), the extension at
``/wp-json/wc-shipment-tracking/v3/orders/{id}/shipment-trackings`` (a core store answers
``rest_no_route`` 404 there, as WordPress does for an unregistered route).
"""
from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from .base import (Answer, App, Request, apply_page_faults, int_param, page_of, parse_time,
                   total_pages)
from .data import PRODUCTS, OrderFactory, SampleOrder, money

PREFIX = "/wp-json/wc/v3"
TRACKING = "/wp-json/wc-shipment-tracking/v3"
#: WooCommerce's order statuses (``PUT /orders/{id}`` refuses any other)
STATUSES = ("pending", "processing", "on-hold", "completed", "cancelled", "refunded", "failed", "trash")
PRODUCT_IDS = {sku: i for i, (sku, _, _) in enumerate(PRODUCTS, start=501)}
ORDERBY = {"date": "date_created_gmt", "id": "id", "include": "id",
           "title": "id", "slug": "id", "modified": "date_modified_gmt"}


def _gmt(order_time: Any) -> str:
    return order_time.strftime("%Y-%m-%dT%H:%M:%S")


def render_order(o: SampleOrder, site: str = "http://127.0.0.1") -> dict[str, Any]:
    """One order exactly as ``GET /wc/v3/orders`` lists it (site timezone UTC)."""
    address = {"first_name": o.first_name, "last_name": o.last_name, "company": o.company,
               "address_1": o.address1, "address_2": o.address2, "city": o.city,
               "state": o.region, "postcode": o.postcode, "country": o.country}
    return {
        "id": o.id, "parent_id": 0, "status": "processing" if o.status == "open" else "cancelled",
        "currency": "USD", "version": "9.5.1", "prices_include_tax": False,
        "date_created": _gmt(o.created), "date_created_gmt": _gmt(o.created),
        "date_modified": _gmt(o.modified), "date_modified_gmt": _gmt(o.modified),
        "discount_total": "0.00", "discount_tax": "0.00",
        "shipping_total": money(o.shipping), "shipping_tax": "0.00",
        "cart_tax": money(o.tax), "total": money(o.total), "total_tax": money(o.tax),
        "customer_id": 0, "order_key": "wc_order_" + hashlib.md5(str(o.id).encode()).hexdigest()[:13],
        "billing": {**address, "email": o.email, "phone": o.phone},
        "shipping": {**address, "phone": o.phone},
        "payment_method": "stripe", "payment_method_title": "Credit card",
        "transaction_id": f"pi_{o.id:08d}", "customer_note": o.note,
        "date_paid": _gmt(o.created), "date_paid_gmt": _gmt(o.created),
        "date_completed": None, "date_completed_gmt": None, "number": str(o.number),
        "meta_data": [],
        "line_items": [{"id": line.line_id, "name": line.name, "product_id": PRODUCT_IDS[line.sku], "variation_id": 0,
            "quantity": line.quantity, "tax_class": "", "subtotal": money(line.price * line.quantity),
            "subtotal_tax": "0.00", "total": money(line.price * line.quantity), "total_tax": "0.00",
            "taxes": [], "meta_data": [], "sku": line.sku, "price": line.price} for line in o.lines],
        "shipping_lines": [] if o.ship_method[0] == "free_shipping" else [{
            "id": o.id * 10, "method_title": o.ship_method[1], "method_id": o.ship_method[0],
            "instance_id": "1", "total": money(o.shipping), "total_tax": "0.00", "taxes": []}],
        "fee_lines": [], "coupon_lines": [], "refunds": [],
        "_links": {"self": [{"href": f"{site}{PREFIX}/orders/{o.id}"}],
                   "collection": [{"href": f"{site}{PREFIX}/orders"}]},
    }


@dataclass
class WooState:
    """The shop: orders (API dicts), products by id, tracking items per order id."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    products: dict[int, dict[str, Any]] = field(default_factory=dict)
    trackings: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    notes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WooCommerceApp(App):
    def __init__(self, orders: int = 20, seed: int = 1, consumer_key: str = "ck_test",
                 consumer_secret: str = "cs_test", shipment_tracking: bool = False) -> None:
        super().__init__()
        self._auth = "Basic " + base64.b64encode(f"{consumer_key}:{consumer_secret}".encode()).decode()
        self._factory = OrderFactory(seed)
        self.state = WooState()
        for i, (sku, name, price) in enumerate(PRODUCTS, start=501):
            self.state.products[i] = {"id": i, "parent_id": 0, "type": "simple", "name": name,
                                      "sku": sku, "price": money(price), "manage_stock": True,
                                      "stock_quantity": 100, "stock_status": "instock"}
        self.add_orders(orders)
        self.route("GET", PREFIX + "/orders", self.list_orders)
        self.route("GET", PREFIX + r"/orders/(?P<oid>\d+)", self.get_order)
        self.route("PUT", PREFIX + r"/orders/(?P<oid>\d+)", self.update_order)
        self.route("GET", PREFIX + "/products", self.list_products)
        self.route("PUT", PREFIX + r"/products/(?P<pid>\d+)", self.update_product)
        self.route("PUT", PREFIX + r"/products/(?P<parent>\d+)/variations/(?P<pid>\d+)", self.update_variation)
        if shipment_tracking:
            self.route("POST", TRACKING + r"/orders/(?P<oid>\d+)/shipment-trackings", self.add_tracking)
            self.route("GET", TRACKING + r"/orders/(?P<oid>\d+)/shipment-trackings", self.list_trackings)
        self.route("POST", PREFIX + r"/orders/(?P<oid>\d+)/notes", self.add_note)
        self.route("GET", PREFIX + r"/orders/(?P<oid>\d+)/notes", self.list_notes)

    def add_orders(self, n: int) -> list[dict[str, Any]]:
        new = [render_order(o) for o in self._factory.make(n)]
        with self.state.lock:
            self.state.orders.extend(new)
        return new

    def cancel(self, order_id: int) -> None:
        """The shopper cancels: status ``cancelled``, ``date_modified`` moves on."""
        with self.state.lock:
            order = self._find(order_id)
            order["status"] = "cancelled"
            order["date_modified"] = order["date_modified_gmt"] = _gmt(self._factory.tick())

    def authorize(self, request: Request) -> Answer | None:
        if request.headers.get("authorization") == self._auth:
            return None
        return Answer(401, {"code": "woocommerce_rest_cannot_view",
                            "message": "Sorry, you cannot list resources.", "data": {"status": 401}})

    def list_orders(self, request: Request) -> Answer:
        q = request.query
        per_page, page = int_param(q, "per_page", 10), int_param(q, "page", 1)
        if not 1 <= per_page <= 100:
            return Answer(400, {"code": "rest_invalid_param", "message": "Invalid parameter(s): per_page",
                                "data": {"status": 400, "params": {"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"}}})
        with self.state.lock:
            rows = [o for o in self.state.orders if _admits(o, q)]
        sort_key = ORDERBY.get(q.get("orderby", "date"), "date_created_gmt")
        rows.sort(key=lambda o: (o[sort_key], o["id"]), reverse=q.get("order", "desc") == "desc")
        pages = total_pages(len(rows), per_page)
        records = apply_page_faults(request, page_of(rows, page, per_page), _malformed)
        headers = {"X-WP-Total": str(len(rows)), "X-WP-TotalPages": str(pages)}
        if page < pages:
            headers["Link"] = f'<{PREFIX}/orders?page={page + 1}>; rel="next"'
        return Answer(200, records, headers)

    def get_order(self, request: Request, oid: str) -> Answer:
        with self.state.lock:
            order = self._find(int(oid))
        if order is None:
            return _no_order()
        return Answer(200, order)

    def update_order(self, request: Request, oid: str) -> Answer:
        """``PUT /orders/{id}``: a new ``status`` (e.g. ``cancelled``) and/or ``customer_note``."""
        body = request.json() or {}
        if "status" in body and body["status"] not in STATUSES:
            return Answer(400, {"code": "rest_invalid_param", "message": "Invalid parameter(s): status",
                                "data": {"status": 400, "params": {"status": "status is not one of " + ", ".join(STATUSES)}}})
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return _no_order()
            order.update({k: v for k, v in body.items() if k in ("status", "customer_note")})
            order["date_modified"] = order["date_modified_gmt"] = _gmt(self._factory.tick())
            return Answer(200, dict(order))

    def list_products(self, request: Request) -> Answer:
        sku = request.query.get("sku")
        with self.state.lock:
            rows = [p for p in self.state.products.values() if sku is None or p["sku"] == sku]
        return Answer(200, rows, {"X-WP-Total": str(len(rows)), "X-WP-TotalPages": "1"})

    def update_product(self, request: Request, pid: str) -> Answer:
        body = request.json() or {}
        with self.state.lock:
            product = self.state.products.get(int(pid))
            if product is None:
                return Answer(404, {"code": "woocommerce_rest_product_invalid_id",
                                    "message": "Invalid ID.", "data": {"status": 404}})
            if "stock_quantity" in body and not isinstance(body["stock_quantity"], int):
                return Answer(400, {"code": "rest_invalid_param", "message": "Invalid parameter(s): stock_quantity",
                                    "data": {"status": 400}})
            product.update({k: v for k, v in body.items() if k in ("stock_quantity", "manage_stock")})
            return Answer(200, dict(product))

    def update_variation(self, request: Request, parent: str, pid: str) -> Answer:
        """``PUT /products/{parent_id}/variations/{id}``: only a variation of that parent (404 otherwise)."""
        with self.state.lock:
            product = self.state.products.get(int(pid))
            if product is None or product.get("type") != "variation" or product.get("parent_id") != int(parent):
                return Answer(404, {"code": "woocommerce_rest_product_variation_invalid_id",
                                    "message": "Invalid ID.", "data": {"status": 404}})
        return self.update_product(request, pid)

    def add_tracking(self, request: Request, oid: str) -> Answer:
        body = request.json() or {}
        if not body.get("tracking_number"):
            return Answer(400, {"code": "rest_missing_callback_param",
                                "message": "Missing parameter(s): tracking_number", "data": {"status": 400}})
        with self.state.lock:
            if self._find(int(oid)) is None:
                return _no_order()
            items = self.state.trackings.setdefault(int(oid), [])
            provider = body.get("tracking_provider") or body.get("custom_tracking_provider", "")
            item = {"tracking_id": hashlib.md5(f"{oid}-{len(items)}".encode()).hexdigest(),
                    "tracking_provider": provider, "tracking_link": body.get("custom_tracking_link", ""),
                    "tracking_number": body["tracking_number"],
                    "date_shipped": body.get("date_shipped", "")}
            items.append(item)
        return Answer(201, item, {"Location": f"{TRACKING}/orders/{oid}/shipment-trackings/{item['tracking_id']}"})

    def add_note(self, request: Request, oid: str) -> Answer:
        """``POST /orders/{id}/notes`` (WC_REST_Order_Notes_Controller): ``note`` required,
        ``customer_note`` makes it visible to the shopper; answers the note, 201."""
        body = request.json() or {}
        if not body.get("note"):
            return Answer(400, {"code": "rest_missing_callback_param", "message": "Missing parameter(s): note",
                                "data": {"status": 400, "params": ["note"]}})
        with self.state.lock:
            if self._find(int(oid)) is None:
                return _no_order()
            notes = self.state.notes.setdefault(int(oid), [])
            when = _gmt(self._factory.tick())
            note = {"id": 9000 + sum(len(n) for n in self.state.notes.values()), "author": "api",
                    "date_created": when, "date_created_gmt": when,
                    "note": str(body["note"]), "customer_note": bool(body.get("customer_note"))}
            notes.append(note)
        return Answer(201, note)

    def list_notes(self, request: Request, oid: str) -> Answer:
        """``GET /orders/{id}/notes``: the order's notes, newest first (as WordPress lists comments)."""
        with self.state.lock:
            if self._find(int(oid)) is None:
                return _no_order()
            return Answer(200, list(reversed(self.state.notes.get(int(oid), []))))

    def list_trackings(self, request: Request, oid: str) -> Answer:
        """Every tracking of an order, oldest first (the extension's `collection` link)."""
        with self.state.lock:
            if self._find(int(oid)) is None:
                return _no_order()
            return Answer(200, list(self.state.trackings.get(int(oid), [])))

    def _find(self, order_id: int) -> dict[str, Any] | None:
        return next((o for o in self.state.orders if o["id"] == order_id), None)


def _admits(order: dict[str, Any], q: dict[str, str]) -> bool:
    status = q.get("status", "any")
    if status != "any" and order["status"] not in status.split(","):
        return False
    if "modified_after" in q:
        return parse_time(order["date_modified_gmt"]) > parse_time(q["modified_after"])
    return True


def _malformed(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "shipping": None, "line_items": [{"id": 1, "sku": None, "quantity": "two"}]}


def _no_order() -> Answer:
    return Answer(404, {"code": "woocommerce_rest_shop_order_invalid_id", "message": "Invalid ID.",
                        "data": {"status": 404}})
