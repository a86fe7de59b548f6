"""A BigCommerce-like server: Orders v2 and Inventory v3 under ``/stores/{hash}``.

Sources: connectors/carts/bigcommerce.md (the vendor's OpenAPI files in the public
``bigcommerce/docs`` repository, ``reference/orders.v2.oas2.yml`` and ``reference/inventory.v3.yml``,
and its guides). Like the real API:

- ``X-Auth-Token`` header on every request (401 otherwise, v2 error shape
  ``[{"status": .., "message": ..}]``).
- ``GET /v2/orders``: ``page``/``limit`` (max 250, default 50), ``min_date_modified`` (RFC-2822 or
  ISO-8601), ``min_id``/``max_id``, ``status_id``, ``sort=<field>:asc|desc``; ``include=consignments[.line_items]`` embeds
  the consignments: ``consignment_structure=object`` gives the current object
  (``{pickups, shipping, downloads, email}``), without it the legacy array (its shape here is a
  guess). Dates are RFC-2822, money a decimal string; an empty result is **204 No Content**,
  also a page past the end.
- ``GET /v2/orders/{id}/products`` and ``/shipping_addresses`` (page/limit; 404 for an unknown order).
- ``PUT /v2/orders/{id}``: a new ``status_id`` (``status`` follows; an unknown id is a 400).
- ``POST /v2/orders/{id}/shipments``: ``order_address_id`` and ``items`` required, each item
  ``order_product_id`` + ``quantity`` of that order and that address, never more than is left
  to ship; ``tracking_number`` at most 50 characters; ``shipping_provider`` one of the documented
  values. 201 with the shipment; the products' ``quantity_shipped``, the order's ``items_shipped``
  and status (2 Shipped when nothing is left, else 3 Partially Shipped) follow.
  ``GET /v2/orders/{id}/shipments`` lists them (204 when there are none).
- ``GET /v3/inventory/items`` (``sku:in``, ``location_id:in``, page/limit; ``{data, meta}``) and
  ``PUT /v3/inventory/adjustments/absolute`` (``items`` of ``location_id`` + ``sku``|``variant_id``|
  ``product_id`` + ``quantity``, at most 2000; 422 in the v3 problem shape for an unknown item or
  location, a quantity below 0 or above 2,147,483,647; 200 ``{transaction_id}``).
- Rate limits: ``quota`` requests per ``window`` seconds (default: plenty); every answer carries ``X-Rate-Limit-Requests-Quota``,
  ``-Requests-Left``, ``-Time-Reset-Ms``, ``-Time-Window-Ms``; a request past the quota is a 429
  with them and ``X-Retry-After`` (seconds), and no ``Retry-After``.
"""
from __future__ import annotations

import itertools
import math
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

from .base import Answer, App, Request, apply_page_faults, int_param, page_of, parse_time
from .data import PRODUCTS, OrderFactory, SampleOrder, money
from .quotas import FixedWindow

#: BigCommerce's order statuses (``GET /v2/order_statuses``)
STATUS = {0: "Incomplete", 1: "Pending", 2: "Shipped", 3: "Partially Shipped", 4: "Refunded",
          5: "Cancelled", 6: "Declined", 7: "Awaiting Payment", 8: "Awaiting Pickup",
          9: "Awaiting Shipment", 10: "Completed", 11: "Awaiting Fulfillment",
          12: "Manual Verification Required", 13: "Disputed", 14: "Partially Refunded"}
#: ``shipping_provider_standard`` in orders.v2.oas2.yml (or ``carrier_<id>`` for a third party)
PROVIDERS = {"", "auspost", "canadapost", "endicia", "usps", "fedex", "ups", "upsready", "upsonline",
             "shipperhq", "royalmail"}
MAX_STOCK = 2_147_483_647
LOCATIONS = {1: ("BC-LOCATION-1", "Default location")}


def _date(when: datetime) -> str:
    return format_datetime(when)  # "Mon, 05 Jan 2026 08:07:00 +0000"


def _when(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        return parsedate_to_datetime(text)


def v2_error(status: int, message: str) -> Answer:
    return Answer(status, [{"status": status, "message": message}])


def v3_error(status: int, title: str, errors: dict[str, Any] | None = None) -> Answer:
    return Answer(status, {"status": status, "title": title, "errors": errors or {},
                           "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"},
                  content_type="application/problem+json")


def render_order(o: SampleOrder, base: str = "https://api.bigcommerce.com/stores/abc123/v2") -> dict[str, Any]:
    """One order as the server keeps it: the v2 order, its one shipping consignment holding the
    order products (``GET /v2/orders/{id}/products`` rows)."""
    address = {"first_name": o.first_name, "last_name": o.last_name, "company": o.company,
               "street_1": o.address1, "street_2": o.address2, "city": o.city, "state": o.region,
               "zip": o.postcode, "country": o.country, "country_iso2": o.country,
               "phone": o.phone, "email": o.email}
    address_id = o.id * 10
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
        "consignments": {"pickups": [], "downloads": [], "email": {"gift_certificates": []}, "shipping": [{
            "id": address_id, **address, "shipping_method": o.ship_method[1],
            "items_total": sum(line.quantity for line in o.lines), "items_shipped": 0,
            "shipping_zone_name": "Default", "line_items": [
                {"id": line.line_id, "order_id": o.id, "product_id": 100 + PRODUCT_INDEX.get(line.sku, 0),
                 "order_address_id": address_id, "name": line.name, "sku": line.sku, "type": "physical",
                 "quantity": line.quantity, "base_price": money(line.price, 4),
                 "price_ex_tax": money(line.price, 4), "price_inc_tax": money(line.price, 4),
                 "quantity_shipped": 0, "quantity_refunded": 0}
                for line in o.lines]}]},
    }


PRODUCT_INDEX = {sku: i for i, (sku, _, _) in enumerate(PRODUCTS)}


@dataclass
class BigCommerceState:
    orders: list[dict[str, Any]] = field(default_factory=list)
    shipments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: sku -> inventory item: identity and on-hand quantity per location id
    inventory: dict[str, dict[str, Any]] = field(default_factory=dict)
    adjustments: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class BigCommerceApp(App):
    def __init__(self, orders: int = 20, seed: int = 1, store_hash: str = "abc123",
                 access_token: str = "bc_test_token", quota: int = 10_000, window: float = 30.0) -> None:
        super().__init__()
        self._token = access_token
        self._factory = OrderFactory(seed, first_id=100)
        self._ids = itertools.count(1)
        self.quota = FixedWindow(quota, window, style="milliseconds")
        self.state = BigCommerceState()
        for i, (sku, _, _) in enumerate(PRODUCTS):
            self.state.inventory[sku] = {"sku": sku, "product_id": 100 + i, "variant_id": 200 + i,
                                         "locations": {1: 100}}
        self.add_orders(orders)
        v2, v3 = f"/stores/{store_hash}/v2", f"/stores/{store_hash}/v3"
        self.route("GET", f"{v2}/orders", self.list_orders)
        self.route("PUT", rf"{v2}/orders/(?P<oid>\d+)", self.update_order)
        self.route("GET", rf"{v2}/orders/(?P<oid>\d+)/products", self.order_products)
        self.route("GET", rf"{v2}/orders/(?P<oid>\d+)/shipping_addresses", self.order_shipping_addresses)
        self.route("GET", rf"{v2}/orders/(?P<oid>\d+)/shipments", self.list_shipments)
        self.route("POST", rf"{v2}/orders/(?P<oid>\d+)/shipments", self.create_shipment)
        self.route("GET", f"{v3}/inventory/items", self.inventory_items)
        self.route("PUT", f"{v3}/inventory/adjustments/absolute", self.absolute_adjustment)

    # -- test knobs ---------------------------------------------------------------------------

    def add_orders(self, n: int) -> list[dict[str, Any]]:
        new = [render_order(o) for o in self._factory.make(n)]
        with self.state.lock:
            self.state.orders.extend(new)
        return new

    def cancel(self, order_id: int) -> None:
        """The order is cancelled in the store: status 5, ``date_modified`` moves on."""
        with self.state.lock:
            self._set_status(self._find(order_id), 5)

    def stock(self, sku: str, location_id: int = 1) -> int | None:
        with self.state.lock:
            item = self.state.inventory.get(sku)
            return None if item is None else item["locations"].get(location_id)

    # -- plumbing -----------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Answer:
        status, headers, body = self.quota.admit()
        if status == 429:
            wait = math.ceil(int(headers["X-Rate-Limit-Time-Reset-Ms"]) / 1000)
            return Answer(429, body, {**headers, "X-Retry-After": str(wait)})
        answer = super().dispatch(request)
        answer.headers.update(headers)
        return answer

    def authorize(self, request: Request) -> Answer | None:
        if request.headers.get("x-auth-token") == self._token:
            return None
        return v2_error(401, "You are not authorized to access this resource")

    # -- orders -------------------------------------------------------------------------------

    def list_orders(self, request: Request) -> Answer:
        q = request.query
        limit, page = int_param(q, "limit", 50), int_param(q, "page", 1)
        if not 1 <= limit <= 250:
            return v2_error(400, "The field 'limit' is invalid.")
        with self.state.lock:
            rows = [o for o in self.state.orders if _admits(o, q)]
            field_name, _, direction = q.get("sort", "id:asc").partition(":")
            key = (lambda o: _when(o[field_name])) if field_name.startswith("date") else (lambda o: o["id"])
            rows.sort(key=key, reverse=direction == "desc")
            records = [_as_listed(o, q) for o in page_of(rows, page, limit)]
        records = apply_page_faults(request, records, lambda o: {**o, "consignments": {"shipping": []}})
        return Answer(200, records) if records else Answer(204)

    def update_order(self, request: Request, oid: str) -> Answer:
        """``PUT /orders/{id}``: a new ``status_id``; other fields are not modelled."""
        body = request.json() or {}
        if "status_id" in body and body["status_id"] not in STATUS:
            return v2_error(400, "The field 'status_id' is invalid.")
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return v2_error(404, "The requested resource was not found.")
            if "status_id" in body:
                self._set_status(order, body["status_id"])
            return Answer(200, _as_listed(order, {}))

    def order_products(self, request: Request, oid: str) -> Answer:
        """``GET /orders/{id}/products``: the order's lines, each with its ``order_address_id``."""
        return self._sub_resource(request, oid, lambda order: [
            dict(line) for shipping in order["consignments"]["shipping"] for line in shipping["line_items"]])

    def order_shipping_addresses(self, request: Request, oid: str) -> Answer:
        """``GET /orders/{id}/shipping_addresses``: where each consignment goes, and how."""
        return self._sub_resource(request, oid, lambda order: [
            {**{k: v for k, v in shipping.items() if k != "line_items"}, "order_id": order["id"]}
            for shipping in order["consignments"]["shipping"]])

    # -- shipments ----------------------------------------------------------------------------

    def list_shipments(self, request: Request, oid: str) -> Answer:
        return self._sub_resource(request, oid, lambda order: list(self.state.shipments.get(order["id"], [])))

    def create_shipment(self, request: Request, oid: str) -> Answer:
        body = request.json()
        if not isinstance(body, dict):
            return v2_error(400, "The request body is not valid JSON.")
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return v2_error(404, "The requested resource was not found.")
            problem = self._shipment_problem(order, body)
            if problem:
                return v2_error(400, problem)
            return Answer(201, self._ship(order, body))

    def _shipment_problem(self, order: dict[str, Any], body: dict[str, Any]) -> str | None:
        """Why BigCommerce would refuse this shipment (the wording is a guess), or None."""
        for name in ("order_address_id", "items"):
            if body.get(name) in (None, "", []):
                return f"The required field '{name}' was not supplied."
        shipping = {s["id"]: s for s in order["consignments"]["shipping"]}
        address = shipping.get(_int(body["order_address_id"]))
        if address is None:
            return "The field 'order_address_id' is invalid."
        if len(str(body.get("tracking_number") or "")) > 50:
            return "The field 'tracking_number' is invalid."
        provider = body.get("shipping_provider", "")
        if provider not in PROVIDERS and not str(provider).startswith("carrier_"):
            return "The field 'shipping_provider' is invalid."
        lines = {line["id"]: line for line in address["line_items"]}
        asked: dict[int, int] = {}
        for item in body["items"]:
            line = lines.get(_int((item or {}).get("order_product_id")))
            quantity = (item or {}).get("quantity")
            if line is None or not isinstance(quantity, int) or quantity < 1:
                return "The field 'items' is invalid."
            asked[line["id"]] = asked.get(line["id"], 0) + quantity
            if asked[line["id"]] > line["quantity"] - line["quantity_shipped"]:
                return (f"The quantity specified for order product {line['id']} is greater than "
                        f"the quantity of the product that is available to ship.")
        return None

    def _ship(self, order: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        address_id = _int(body["order_address_id"])
        shipping = next(s for s in order["consignments"]["shipping"] if s["id"] == address_id)
        lines = {line["id"]: line for line in shipping["line_items"]}
        items = []
        for item in body["items"]:
            line = lines[_int(item["order_product_id"])]
            line["quantity_shipped"] += item["quantity"]
            items.append({"order_product_id": line["id"], "product_id": line["product_id"], "quantity": item["quantity"]})
        shipped = sum(item["quantity"] for item in items)
        shipping["items_shipped"] += shipped
        order["items_shipped"] += shipped
        now = _date(self._factory.tick())
        address = {k: shipping[k] for k in ("first_name", "last_name", "company", "street_1", "street_2", "city",
                                            "state", "zip", "country", "country_iso2", "phone", "email")}
        shipment = {"id": next(self._ids), "order_id": order["id"], "customer_id": order["customer_id"],
                    "order_address_id": address_id, "date_created": now,
                    "tracking_number": body.get("tracking_number", ""), "merchant_shipping_cost": "0.0000",
                    "shipping_method": body.get("shipping_method", "None"), "comments": body.get("comments", ""),
                    "shipping_provider": body.get("shipping_provider", ""),
                    "tracking_carrier": body.get("tracking_carrier", ""), "tracking_link": body.get("tracking_link", ""),
                    "billing_address": order["billing_address"], "shipping_address": address, "items": items,
                    "shipping_provider_display_name": str(body.get("shipping_provider", "")).upper(),
                    "generated_tracking_link": ""}
        self.state.shipments.setdefault(order["id"], []).append(shipment)
        done = order["items_shipped"] >= order["items_total"]
        self._set_status(order, 2 if done else 3)
        order["date_shipped"] = now
        return shipment

    # -- inventory (v3) -----------------------------------------------------------------------

    def inventory_items(self, request: Request) -> Answer:
        q = request.query
        limit, page = int_param(q, "limit", 50), int_param(q, "page", 1)
        skus = set(q["sku:in"].split(",")) if q.get("sku:in") else None
        wanted = {int(x) for x in q["location_id:in"].split(",")} if q.get("location_id:in") else None
        with self.state.lock:
            rows = [_item(i, wanted) for sku, i in self.state.inventory.items() if skus is None or sku in skus]
        found = page_of(rows, page, limit)
        pages = max(1, -(-len(rows) // limit))
        return Answer(200, {"data": found, "meta": {"pagination": {
            "total": len(rows), "count": len(found), "per_page": limit, "current_page": page,
            "total_pages": pages, "links": {"current": f"?limit={limit}&page={page}"}}}})

    def absolute_adjustment(self, request: Request) -> Answer:
        body = request.json()
        items = body.get("items") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return v3_error(422, "Payload contains invalid fields", {"items": "items is required"})
        if len(items) > 2000:
            return v3_error(422, "Payload contains invalid fields", {"items": "at most 2000 items"})
        with self.state.lock:
            targets = []
            for n, item in enumerate(items):
                problem = self._adjustment_problem(item)
                if problem:
                    return v3_error(422, problem, {f"items.{n}": problem})
                targets.append((self._identify(item), item["location_id"], item["quantity"]))
            for target, location, quantity in targets:   # all or nothing
                target["locations"][location] = quantity
            transaction = str(uuid.uuid4())
            self.state.adjustments.append({"transaction_id": transaction, "reason": body.get("reason"), "items": items})
        return Answer(200, {"transaction_id": transaction})

    def _adjustment_problem(self, item: Any) -> str | None:
        if not isinstance(item, dict) or not isinstance(item.get("quantity"), int):
            return "quantity is required and must be an integer"
        if item.get("location_id") not in LOCATIONS:
            return f"Location with id {item.get('location_id')} not found"
        if not 0 <= item["quantity"] <= MAX_STOCK:
            return f"quantity must be between 0 and {MAX_STOCK}"
        if self._identify(item) is None:
            ident = next((f"{k} {item[k]}" for k in ("sku", "variant_id", "product_id") if k in item), "no identity")
            return f"Items with identity: [{ident}] not found"
        return None

    def _identify(self, item: dict[str, Any]) -> dict[str, Any] | None:
        for key in ("sku", "variant_id", "product_id"):
            if key in item:
                return next((i for i in self.state.inventory.values() if i[key] == item[key]), None)
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _sub_resource(self, request: Request, oid: str, rows_of: Any) -> Answer:
        limit, page = int_param(request.query, "limit", 50), int_param(request.query, "page", 1)
        if not 1 <= limit <= 250:
            return v2_error(400, "The field 'limit' is invalid.")
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return v2_error(404, "The requested resource was not found.")
            rows = rows_of(order)
        found = page_of(rows, page, limit)
        return Answer(200, found) if found else Answer(204)

    def _set_status(self, order: dict[str, Any], status_id: int) -> None:
        order.update(status_id=status_id, status=STATUS[status_id], date_modified=_date(self._factory.tick()))

    def _find(self, order_id: int) -> dict[str, Any] | None:
        return next((o for o in self.state.orders if o["id"] == order_id), None)


def _as_listed(order: dict[str, Any], q: dict[str, str]) -> dict[str, Any]:
    """The order as ``GET /v2/orders`` answers it: consignments only when included, as an object
    with ``consignment_structure=object``, else in the legacy array (guess: ``[{"shipping": [...]}]``)."""
    listed = {k: v for k, v in order.items() if k != "consignments"}
    include = q.get("include", "")
    if "consignments" not in include:
        return listed
    consignments = order["consignments"]
    if "consignments.line_items" not in include:
        link = "https://api.bigcommerce.com/stores/abc123/v2/orders/{}/products/{}"
        consignments = {**consignments, "shipping": [
            {**s, "line_items": [{"url": link.format(order["id"], li["id"]),
                                  "resource": f"/orders/{order['id']}/products/{li['id']}"} for li in s["line_items"]]}
            for s in consignments["shipping"]]}
    if q.get("consignment_structure") == "object":
        listed["consignments"] = consignments
    else:
        listed["consignments"] = [{"shipping": consignments["shipping"]}]
    return listed


def _item(item: dict[str, Any], wanted: set[int] | None) -> dict[str, Any]:
    return {"identity": {"sku": item["sku"], "variant_id": item["variant_id"], "product_id": item["product_id"],
                         "sku_id": None},
            "locations": [{"location_id": lid, "location_code": LOCATIONS[lid][0], "location_name": LOCATIONS[lid][1],
                           "available_to_sell": qty, "total_inventory_onhand": qty, "location_enabled": True,
                           "settings": {"safety_stock": 0, "is_in_stock": qty > 0, "warning_level": 0,
                                        "bin_picking_number": ""}}
                          for lid, qty in item["locations"].items() if wanted is None or lid in wanted]}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _admits(order: dict[str, Any], q: dict[str, str]) -> bool:
    if order["id"] < int(q.get("min_id", 0)) or order["id"] > int(q.get("max_id", order["id"])):
        return False
    if "status_id" in q and order["status_id"] != int(q["status_id"]):
        return False
    if "min_date_modified" in q and _when(order["date_modified"]) < _when(q["min_date_modified"]):
        return False
    return True
