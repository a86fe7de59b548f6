"""An Extensiv Order Manager-like server (formerly Skubana; ``https://api.skubana.com``).

Follows the sources in connectors/carts/extensiv-order-manager.md ("guess" there = guess here):

- Every call needs ``Authorization: Bearer <access token>`` (the token of the app's OAuth
  authorization-code install); 401 otherwise.
- With ``quota_per_second`` set, more requests than that in one second are refused 429 with
  ``x-skubana-quota-retryAfter`` (milliseconds), as tap-skubana reads it.
- ``GET /v1.1/orders``: ``status``, ``modifiedDateFrom``/``modifiedDateTo`` (``yyyy-MM-ddTHH:mm:ssZ``,
  400 otherwise), ``warehouseId``, ``orderNumber``, ``page`` (1-based) and ``limit`` (1..500,
  guess); a bare JSON list, empty past the last page, sorted by ``orderId`` (guess).
- ``GET /v1.1/orders/{orderId}``: one order (404 otherwise).
- ``POST /v1/orders/cancel`` with query parameters ``orderId``, ``salesChannelId``,
  ``cancelReasonType`` (the documented enum), ``updateSalesChannels``: the order becomes
  ``CANCELLED``; a shipped or already cancelled order is refused 400 (guess).
- ``PUT /v1.1/shipment/external``: ``{notifyCustomer, updateChannel, shipments: [...]}``,
  ``trackingNumber`` and ``shipMethod.shippingCarrier`` required (400); answers one result per
  shipment with ``status`` ``SUCCESS`` or ``FAILED`` (guess) and marks the order ``SHIPPED``.
- ``GET /v1/shipments``: ``orderId[]``, ``trackingNumber``, ``page``/``limit``.
- ``POST /v1.1/inventory/adjust``: a list of ``{masterSku, onHandQuantity, warehouseId,
  stockLocationName}`` sets on-hand quantities; 200 with ``{results, errors}``, ``ERR053`` for an
  unknown product, ``ERR097`` for a product without stock in that warehouse/location.

``cancel()`` is the merchant canceling an order in Order Manager.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .base import Answer, App, Request, apply_page_faults, int_param, page_of
from .data import PRODUCTS, OrderFactory, SampleOrder

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
STATUSES = ("UNRESOLVED", "AWAITING_PAYMENT", "AWAITING_SHIPMENT", "AWAITING_MC_FULFILLMENT",
            "AWAITING_3PL_EXPORT", "AWAITING_DROPSHIP", "PENDING_FULFILLMENT", "SHIPPED", "CANCELLED",
            "ON_HOLD", "SKU_UNPROCESSED", "PROCESSED_OUTSIDE_OF_SKUBANA", "FBA_INBOUND_SHIPMENT_PLAN")
CANCEL_REASONS = ("NO_INVENTORY", "SHIPPING_ADDRESS_UNDELIVERABLE", "CUSTOMER_EXCHANGE", "BUYER_CANCELLED",
                  "BUYER_HAS_NOT_PAID", "GENERAL_ADJUSTMENT", "CARRIER_CREDIT_DECISION",
                  "RISK_ASSESSMENT_INFORMATION_NOT_VALID", "CUSTOMER_RETURN", "MERCHANDISE_NOT_RECEIVED", "OTHER")
ORDER_ID_BASE = 100000      # orderId differs from orderNumber, as in the API
SALES_CHANNEL = 3
MAX_LIMIT = 500             # guess: tap-skubana pages orders by 500


def _time(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _money(amount: float) -> dict[str, Any]:
    return {"amount": round(amount, 2), "currency": "USD"}


def render_order(o: SampleOrder, warehouse_id: int) -> dict[str, Any]:
    """One order as ``GET /v1.1/orders`` lists it (fields per skubana-node's ``Order`` type)."""
    return {
        "orderId": ORDER_ID_BASE + o.id, "orderNumber": str(o.number),
        "orderStatus": "AWAITING_3PL_EXPORT" if o.status == "open" else "CANCELLED",
        "orderDate": _time(o.created), "createdDate": _time(o.created), "modifiedDate": _time(o.modified),
        "paymentDate": _time(o.created), "currency": "USD", "cancelReason": None,
        "customer": {"customerId": 7000 + o.id, "name": f"{o.first_name} {o.last_name}",
                     "companyName": o.company or None, "emailAddresses": [o.email]},
        "salesChannel": {"salesChannelId": SALES_CHANNEL, "name": "Web store", "type": "SHOPIFY"},
        "fulfillmentSource": {"warehouseId": warehouse_id, "name": "3PL East"},
        "shipName": f"{o.first_name} {o.last_name}", "shipCompany": o.company or None,
        "shipAddress1": o.address1, "shipAddress2": o.address2 or None, "shipAddress3": None,
        "shipCity": o.city, "shipState": o.region, "shipZipCode": o.postcode, "shipCountry": o.country,
        "shipPhone": o.phone, "shipEmail": o.email,
        "shipMethod": {"shippingCarrier": None, "shippingProviderId": None, "shippingServiceId": None},
        "requestedShippingService": o.ship_method[0],
        "notesFromBuyer": o.note or None, "internalNotes": None,
        "shippingCost": _money(o.shipping), "discount": _money(0), "orderTotal": _money(o.total),
        "orderItemTotal": _money(o.subtotal), "orderType": "REGULAR", "shipment": None,
        "orderItems": [{"orderItemId": line.line_id, "listingName": line.name, "listingSku": line.sku,
                        "product": {"productId": 800 + i, "masterSku": line.sku, "name": line.name},
                        "quantityOrdered": line.quantity, "unitPrice": _money(line.price),
                        "tax": _money(0), "discount": _money(0)} for i, line in enumerate(o.lines)],
    }


@dataclass
class OmState:
    """Orders (API dicts), shipments, on-hand stock per (SKU, warehouse, location)."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    stock: dict[tuple[str, int, str], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _error(status: int, message: str, code: str = "ERR000") -> Answer:
    """A refusal (shape a guess: the ``errors`` entries of the batch answers)."""
    return Answer(status, {"errors": [{"message": message, "errorCode": code, "identifier": None, "index": 0}]})


class ExtensivOrderManagerApp(App):
    def __init__(self, orders: int = 20, seed: int = 1, access_token: str = "om-test-token",
                 warehouse_id: int = 5, location: str = "GLOBAL", quota_per_second: int | None = None) -> None:
        super().__init__()
        self._auth = f"Bearer {access_token}"
        self._factory = OrderFactory(seed)
        self._quota, self._window = quota_per_second, (0.0, 0)
        self.warehouse_id = warehouse_id
        self.state = OmState()
        self.state.stock = {(sku, warehouse_id, location): 0 for sku, _, _ in PRODUCTS}
        self.add_orders(orders)
        self.route("GET", "/v1.1/orders", self.list_orders)
        self.route("GET", r"/v1.1/orders/(?P<oid>\d+)", self.get_order)
        self.route("POST", "/v1/orders/cancel", self.cancel_order)
        self.route("PUT", "/v1.1/shipment/external", self.external_shipment)
        self.route("GET", "/v1/shipments", self.list_shipments)
        self.route("POST", "/v1.1/inventory/adjust", self.adjust_inventory)

    def add_orders(self, n: int) -> list[dict[str, Any]]:
        new = [render_order(o, self.warehouse_id) for o in self._factory.make(n)]
        with self.state.lock:
            self.state.orders.extend(new)
        return new

    def cancel(self, order_id: int, reason: str = "Buyer cancelled") -> None:
        """The merchant cancels an order in Order Manager."""
        with self.state.lock:
            order = self._find(order_id)
            order.update(orderStatus="CANCELLED", cancelReason=reason, modifiedDate=_time(self._factory.tick()))

    def authorize(self, request: Request) -> Answer | None:
        if request.headers.get("authorization") != self._auth:
            return Answer(401, {"error": "invalid_token", "error_description": "Invalid access token"})
        return self._throttle()

    def _throttle(self) -> Answer | None:
        if self._quota is None:
            return None
        with self.state.lock:
            now = time.monotonic()
            start, used = self._window
            if now - start >= 1:
                start, used = now, 0
            self._window = (start, used + 1)
            if used < self._quota:
                return None
            wait_ms = max(1, int((1 - (now - start)) * 1000))
        return Answer(429, {"message": "API quota exceeded"}, {"x-skubana-quota-retryAfter": str(wait_ms)})

    def list_orders(self, request: Request) -> Answer:
        q = request.query
        page, limit = int_param(q, "page", 1), int_param(q, "limit", 50)
        if not 1 <= limit <= MAX_LIMIT or page < 1:
            return _error(400, f"limit must be between 1 and {MAX_LIMIT}, page at least 1")
        for name in ("modifiedDateFrom", "modifiedDateTo"):
            if name in q and not TIME.match(q[name]):
                return _error(400, f"{name} must be yyyy-MM-ddTHH:mm:ssZ, got {q[name]!r}")
        if "status" in q and q["status"] not in STATUSES:
            return _error(400, f"status must be one of {', '.join(STATUSES)}")
        with self.state.lock:
            rows = sorted((o for o in self.state.orders if _admits(o, q)), key=lambda o: o["orderId"])
        return Answer(200, apply_page_faults(request, page_of(rows, page, limit), _malformed))

    def get_order(self, request: Request, oid: str) -> Answer:
        with self.state.lock:
            order = self._find(int(oid))
        return Answer(200, order) if order else _error(404, f"Order {oid} not found", "ERR004")

    def cancel_order(self, request: Request) -> Answer:
        q = request.query
        if q.get("cancelReasonType") not in CANCEL_REASONS:
            return _error(400, f"cancelReasonType must be one of {', '.join(CANCEL_REASONS)}")
        if "salesChannelId" not in q or "updateSalesChannels" not in q:
            return _error(400, "salesChannelId and updateSalesChannels are required")
        with self.state.lock:
            order = self._find(int_param(q, "orderId", 0))
            if order is None or str(order["salesChannel"]["salesChannelId"]) != q["salesChannelId"]:
                return _error(404, f"Order {q.get('orderId')} not found in sales channel {q['salesChannelId']}", "ERR004")
            if order["orderStatus"] in ("SHIPPED", "CANCELLED"):
                return _error(400, f"Order {order['orderId']} is {order['orderStatus']} and cannot be cancelled")
            order.update(orderStatus="CANCELLED", cancelReason=q.get("cancelReason") or q["cancelReasonType"],
                         modifiedDate=_time(self._factory.tick()))
            return Answer(200, {"orderId": order["orderId"], "orderNumber": order["orderNumber"],
                                "orderStatus": order["orderStatus"]})

    def external_shipment(self, request: Request) -> Answer:
        body = request.json() or {}
        shipments = body.get("shipments")
        if not isinstance(shipments, list) or not shipments:
            return _error(400, "shipments is required")
        for item in shipments:
            if not item.get("trackingNumber") or not (item.get("shipMethod") or {}).get("shippingCarrier"):
                return _error(400, "trackingNumber and shipMethod.shippingCarrier are required")
        with self.state.lock:
            return Answer(200, [self._ship(item, n) for n, item in enumerate(shipments, start=1)])

    def _ship(self, item: dict[str, Any], batch: int) -> dict[str, Any]:
        order = self._find(item.get("orderId") or 0) or next(
            (o for o in self.state.orders if o["orderNumber"] == item.get("orderNumber")), None)
        ref = {"orderId": item.get("orderId"), "orderNumber": item.get("orderNumber")}
        if order is None or order["orderStatus"] == "CANCELLED":
            why = "Order not found" if order is None else "Order is cancelled"
            return {"order": ref, "orderBatchNumber": batch, "processingMessage": why, "shipment": None, "status": "FAILED"}
        shipment = {"shipmentId": 500 + len(self.state.shipments), "orderId": order["orderId"],
                    "orderNumber": order["orderNumber"], "trackingNumber": item["trackingNumber"],
                    "shipMethod": item["shipMethod"], "shipDate": item.get("shipDate"),
                    "created": _time(self._factory.tick()), "type": "FULFILLMENT", "external": True,
                    "warehouseId": order["fulfillmentSource"]["warehouseId"], "deliveryStatus": "IN_TRANSIT"}
        self.state.shipments.append(shipment)
        order.update(orderStatus="SHIPPED", modifiedDate=shipment["created"], shipment=shipment)
        return {"order": {"orderId": order["orderId"], "orderNumber": order["orderNumber"]},
                "orderBatchNumber": batch, "processingMessage": None, "shipment": shipment, "status": "SUCCESS"}

    def list_shipments(self, request: Request) -> Answer:
        q = request.query
        ids = q.get("orderId[]") or q.get("orderId")
        page, limit = int_param(q, "page", 1), int_param(q, "limit", 50)
        with self.state.lock:
            rows = [s for s in self.state.shipments
                    if (ids is None or str(s["orderId"]) in ids.split(","))
                    and q.get("trackingNumber") in (None, s["trackingNumber"])]
        return Answer(200, page_of(rows, page, limit))

    def adjust_inventory(self, request: Request) -> Answer:
        items = request.json()
        if not isinstance(items, list) or not items:
            return _error(400, "a non-empty list of product stocks is required")
        results, errors = [], []
        with self.state.lock:
            known = {sku for sku, _, _ in self.state.stock}
            for index, item in enumerate(items, start=1):
                sku, quantity = item.get("masterSku"), item.get("onHandQuantity")
                where = (sku, item.get("warehouseId"), item.get("stockLocationName"))
                if sku not in known:
                    errors.append({"message": f"Product {sku} does not exist", "errorCode": "ERR053",
                                   "identifier": sku, "index": index})
                elif where not in self.state.stock:
                    errors.append({"message": "Product stock not found", "errorCode": "ERR097",
                                   "identifier": sku, "index": index})
                elif not isinstance(quantity, int) or quantity < 0:
                    errors.append({"message": "onHandQuantity must be a whole number >= 0", "errorCode": "ERR001",
                                   "identifier": sku, "index": index})
                else:
                    self.state.stock[where] = quantity
                    results.append({"masterSku": sku, "availableQuantity": quantity,
                                    "productStockId": 3000 + index, "warehouseId": where[1]})
        return Answer(200, {"results": results, "errors": errors})

    def _find(self, order_id: Any) -> dict[str, Any] | None:
        return next((o for o in self.state.orders if o["orderId"] == order_id), None)


def _admits(order: dict[str, Any], q: dict[str, str]) -> bool:
    if "status" in q and order["orderStatus"] != q["status"]:
        return False
    if "warehouseId" in q and str(order["fulfillmentSource"]["warehouseId"]) != q["warehouseId"]:
        return False
    if "orderNumber" in q and order["orderNumber"] != q["orderNumber"]:
        return False
    if "modifiedDateFrom" in q and order["modifiedDate"] < q["modifiedDateFrom"]:
        return False
    return "modifiedDateTo" not in q or order["modifiedDate"] <= q["modifiedDateTo"]


def _malformed(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "shipAddress1": None, "orderItems": [{"orderItemId": 1, "product": None, "quantityOrdered": "two"}]}


__all__ = ["ExtensivOrderManagerApp", "render_order"]
