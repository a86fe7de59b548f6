"""A ShipStation-like WMS: ShipStation API V1 (``ssapi.shipstation.com``).

Sources: connectors/wms/shipstation.md (each behaviour below is cited there).

- HTTP Basic auth, API key as user name and API secret as password; 401 otherwise.
- Rate limit per API key: ``limit`` requests per ``window`` seconds (40 per 60 by default; the
  window is configurable so tests are fast). Every answer carries ``X-Rate-Limit-Limit``,
  ``X-Rate-Limit-Remaining`` and ``X-Rate-Limit-Reset`` (whole seconds until the window starts
  again); a request over the limit gets ``429 {"message": "Too Many Requests"}``.
- ``POST /orders/createorder``: creates an order, or, when ``orderKey`` names an existing one,
  replaces it (no partial updates). Only open orders (``awaiting_payment``,
  ``awaiting_shipment``, ``on_hold``) may be updated: updating a ``shipped`` or ``cancelled``
  one is refused with a 400 (the status code and message are a guess; the docs only say they
  "may not be updated"). ``orderNumber`` (max 50), ``orderDate``, ``orderStatus``, ``billTo``
  and ``shipTo`` are required.
- ``GET /orders`` (``orderNumber`` is a *starts with* filter, ``orderStatus``,
  ``modifyDateStart``/``End``, ``createDateStart``, ``sortBy``, ``sortDir``, ``page``,
  ``pageSize`` at most 500) answers ``{orders, total, page, pages}``; ``GET /orders/{id}``.
- ``GET /shipments`` lists labels created in ShipStation only (``orderId``, ``orderNumber``,
  ``createDateStart``, ``shipDateStart``, ``includeShipmentItems``: without ``true``,
  ``shipmentItems`` is null), voided ones included with ``voided: true`` and a ``voidDate``.
- ``POST /orders/markasshipped`` marks an order shipped outside ShipStation: no shipment record,
  a fulfillment in ``GET /fulfillments`` instead (with its ``trackingNumber``).
- ``POST /shipments/voidlabel`` voids a label; the order is awaiting shipment again (guess).

Times are Pacific (PST/PDT) wall clock without a zone: answers as
``2016-02-16T15:16:53.7070000``; filters and an order's dates accept ``yyyy-mm-dd hh:mm:ss``
(also with ``T``, or a date alone) read in Pacific time, or with a zone as that instant (guess).
"""
from __future__ import annotations

import base64
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .base import Answer, App, Request, int_param, page_of, total_pages
from .data import EPOCH

PACIFIC = ZoneInfo("America/Los_Angeles")
STATUSES = ("awaiting_payment", "awaiting_shipment", "pending_fulfillment", "shipped", "on_hold",
            "cancelled", "rejected_fulfillment")
OPEN = ("awaiting_payment", "awaiting_shipment", "on_hold")
SORTS = {"OrderDate": "orderDate", "ModifyDate": "modifyDate", "CreateDate": "createDate",
         "ShipDate": "shipDate"}


@dataclass
class ShipStationState:
    """Orders by id (``created`` keeps creation order), label shipments, fulfillments."""

    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    fulfillments: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: datetime = EPOCH + timedelta(days=1)

    def tick(self) -> str:
        """Three minutes later, as ShipStation's Pacific wall clock with seven decimals."""
        self.clock += timedelta(minutes=3)
        return pacific(self.clock)

    def by_number(self, number: str) -> dict[str, Any]:
        """The latest order with exactly this orderNumber (tests' helper)."""
        found = [o for o in self.created if o["orderNumber"] == number]
        if not found:
            raise KeyError(f"ShipStation has no order {number}")
        return found[-1]


def pacific(when: datetime) -> str:
    return when.astimezone(PACIFIC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def read_pacific(text: str) -> datetime:
    """A filter's date: ``yyyy-mm-dd hh:mm:ss`` (or ``T``, or a date alone) in Pacific time."""
    value = datetime.fromisoformat(text.strip().replace(" ", "T"))
    return value if value.tzinfo else value.replace(tzinfo=PACIFIC)


def _error(status: int, message: str) -> Answer:
    return Answer(status, {"Message": message})


@dataclass
class _Window:
    """A fixed rate-limit window: ``used`` requests since ``start``."""

    start: float = 0.0
    used: int = 0


class ShipStationApp(App):
    def __init__(self, api_key: str = "api-key", api_secret: str = "api-secret", limit: int = 40,
                 window: float = 60.0, **_: Any) -> None:
        super().__init__()
        self._basic = "Basic " + base64.b64encode(f"{api_key}:{api_secret}".encode()).decode()
        self.limit, self.window = limit, window
        self._windows: dict[str, _Window] = {}
        self._window_lock = threading.Lock()
        self.throttled = 0
        self.state = ShipStationState()
        self.route("POST", "/orders/createorder", self.create_order)
        self.route("POST", "/orders/markasshipped", self.mark_as_shipped_route)
        self.route("GET", "/orders", self.list_orders)
        self.route("GET", r"/orders/(?P<oid>\d+)", self.get_order)
        self.route("GET", "/shipments", self.list_shipments)
        self.route("POST", "/shipments/voidlabel", self.void_label_route)
        self.route("GET", "/fulfillments", self.list_fulfillments)

    def add_orders(self, n: int) -> list[Any]:
        raise TypeError("a WMS receives orders; it does not make them")

    # -- auth and rate limit -------------------------------------------------------------

    def authorize(self, request: Request) -> Answer | None:
        if request.headers.get("authorization") == self._basic:
            return None
        return Answer(401, {"Message": "Authorization has been denied for this request."},
                      {"WWW-Authenticate": 'Basic realm="ShipStation"'})

    def _route(self, request: Request) -> Answer:
        """Count the request in its key's window; over the limit answer 429, else the route's answer."""
        key = request.headers.get("authorization", "")
        now = time.monotonic()
        with self._window_lock:
            win = self._windows.setdefault(key, _Window(start=now))
            if now - win.start >= self.window:
                win.start, win.used = now, 0
            win.used += 1
            over = win.used > self.limit
            headers = {"X-Rate-Limit-Limit": str(self.limit),
                       "X-Rate-Limit-Remaining": str(max(self.limit - win.used, 0)),
                       "X-Rate-Limit-Reset": str(max(math.ceil(win.start + self.window - now), 0))}
            self.throttled += over
        answer = Answer(429, {"message": "Too Many Requests"}) if over else super()._route(request)
        answer.headers = {**answer.headers, **headers}
        return answer

    # -- orders --------------------------------------------------------------------------

    def create_order(self, request: Request) -> Answer:
        body = request.json()
        if not isinstance(body, dict):
            return _error(400, "The request is invalid: the body must be an Order object.")
        missing = [name for name in ("orderNumber", "orderDate", "orderStatus", "billTo", "shipTo") if not body.get(name)]
        if missing:
            return _error(400, f"The request is invalid: {', '.join(missing)} is required.")
        if len(str(body["orderNumber"])) > 50:
            return _error(400, "The request is invalid: orderNumber may be at most 50 characters.")
        if body["orderStatus"] not in STATUSES:
            return _error(400, f"The request is invalid: unknown orderStatus '{body['orderStatus']}'.")
        items = body.get("items") or []
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("sku") for i in items):
            return _error(400, "The request is invalid: items must be OrderItem objects with a sku.")
        try:                                   # stored and answered as Pacific wall clock
            body = {**body, **{name: pacific(read_pacific(str(body[name])))
                               for name in ("orderDate", "paymentDate", "shipByDate") if body.get(name)}}
        except ValueError:
            return _error(400, "The request is invalid: a date is not a valid DateTime.")
        with self.state.lock:
            existing = next((o for o in self.state.created if body.get("orderKey") and o["orderKey"] == body["orderKey"]), None)
            if existing is not None and existing["orderStatus"] not in OPEN:
                return _error(400, f"Order {existing['orderNumber']} is {existing['orderStatus']} and may not be updated.")
            order = self._store(body, existing)
        return Answer(200, order)

    def _store(self, body: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
        now = self.state.tick()
        oid = existing["orderId"] if existing else 100000 + len(self.state.created) + 1
        items = [{"orderItemId": oid * 100 + n, "lineItemKey": i.get("lineItemKey"), "sku": i["sku"],
                  "name": i.get("name"), "quantity": i.get("quantity"), "unitPrice": i.get("unitPrice"),
                  "adjustment": bool(i.get("adjustment", False)), "createDate": now, "modifyDate": now}
                 for n, i in enumerate(body.get("items") or [], start=1)]
        order = {
            **{k: v for k, v in body.items() if k not in ("orderId", "items", "createDate", "modifyDate")},
            "orderId": oid, "orderKey": body.get("orderKey") or uuid.uuid4().hex,
            "createDate": existing["createDate"] if existing else now, "modifyDate": now,
            "items": items, "shipDate": None, "externallyFulfilled": False,
        }
        self.state.orders[oid] = order
        if existing is None:
            self.state.created.append(order)
        else:
            self.state.created[self.state.created.index(existing)] = order
        return order

    def list_orders(self, request: Request) -> Answer:
        query = request.query
        try:
            rows = self._filter(self.state.created, query, ("modifyDate", "modifyDateStart", "modifyDateEnd"),
                                ("createDate", "createDateStart", "createDateEnd"))
        except ValueError as exc:
            return _error(400, f"The request is invalid: {exc}")
        if query.get("orderNumber"):
            prefix = query["orderNumber"].lower()           # a "starts with" search
            rows = [o for o in rows if str(o["orderNumber"]).lower().startswith(prefix)]
        if query.get("orderStatus"):
            rows = [o for o in rows if o["orderStatus"] == query["orderStatus"]]
        return self._page(request, "orders", rows, "OrderDate")

    def get_order(self, request: Request, oid: str) -> Answer:
        with self.state.lock:
            order = self.state.orders.get(int(oid))
        if order is None:
            return _error(404, f"Order {oid} not found.")
        return Answer(200, order)

    # -- shipments and fulfillments ------------------------------------------------------

    def list_shipments(self, request: Request) -> Answer:
        try:
            rows = self._filter(self.state.shipments, request.query, ("createDate", "createDateStart", "createDateEnd"),
                                ("shipDate", "shipDateStart", "shipDateEnd"), ("voidDate", "voidDateStart", "voidDateEnd"))
        except ValueError as exc:
            return _error(400, f"The request is invalid: {exc}")
        rows = _by_order(rows, request.query)
        if request.query.get("includeShipmentItems", "").lower() != "true":
            rows = [{**s, "shipmentItems": None} for s in rows]
        return self._page(request, "shipments", rows, "CreateDate")

    def list_fulfillments(self, request: Request) -> Answer:
        try:
            rows = self._filter(self.state.fulfillments, request.query, ("createDate", "createDateStart", "createDateEnd"),
                                ("shipDate", "shipDateStart", "shipDateEnd"))
        except ValueError as exc:
            return _error(400, f"The request is invalid: {exc}")
        return self._page(request, "fulfillments", _by_order(rows, request.query), "CreateDate")

    def mark_as_shipped_route(self, request: Request) -> Answer:
        body = request.json() or {}
        try:
            order = self.mark_shipped(int(body["orderId"]), body.get("trackingNumber"), str(body["carrierCode"]))
        except (KeyError, ValueError, TypeError):       # orderId unknown too
            return _error(400, "The request is invalid: orderId and carrierCode are required.")
        return Answer(200, {"orderId": order["orderId"], "orderNumber": order["orderNumber"]})

    def void_label_route(self, request: Request) -> Answer:
        shipment_id = (request.json() or {}).get("shipmentId")
        try:
            self.void(int(shipment_id))
        except (KeyError, ValueError, TypeError):
            return Answer(200, {"approved": False, "message": f"Shipment {shipment_id} not found"})
        return Answer(200, {"approved": True, "message": "Label voided successfully"})

    # -- what happens in ShipStation (tests and the demo call these) ---------------------

    def ship(self, order_id: int, packages: int = 1, carrier: str = "ups") -> list[dict[str, Any]]:
        """Labels are created for an order (one shipment per package, items on the first): shipped."""
        with self.state.lock:
            order = self.state.orders[order_id]
            made = []
            for n in range(1, packages + 1):
                now = self.state.tick()
                sid = 500000 + len(self.state.shipments) + 1
                made.append({
                    "shipmentId": sid, "orderId": order_id, "orderKey": order["orderKey"],
                    "userId": "123456AB-ab12-3c4d-5e67-89f1abc1defa", "customerEmail": order.get("customerEmail"),
                    "orderNumber": order["orderNumber"], "createDate": now, "shipDate": now[:10],
                    "shipmentCost": 7.5, "insuranceCost": 0, "trackingNumber": f"1Z{order_id:08d}{sid:06d}",
                    "isReturnLabel": False, "batchNumber": None, "carrierCode": carrier, "serviceCode": f"{carrier}_ground",
                    "packageCode": "package", "confirmation": "none", "warehouseId": 16079, "voided": False,
                    "voidDate": None, "marketplaceNotified": False, "notifyErrorMessage": None,
                    "shipTo": order.get("shipTo"), "weight": {"value": 16, "units": "ounces"},
                    "dimensions": None, "insuranceOptions": None, "advancedOptions": None, "labelData": None,
                    "formData": None,
                    "shipmentItems": [{"orderItemId": i["orderItemId"], "lineItemKey": i["lineItemKey"], "sku": i["sku"],
                                       "name": i["name"], "quantity": i["quantity"], "unitPrice": i["unitPrice"]}
                                      for i in order["items"]] if n == 1 else []})
            self.state.shipments.extend(made)
            order.update(orderStatus="shipped", modifyDate=made[-1]["createDate"], shipDate=made[-1]["shipDate"])
            return made

    def void(self, shipment_id: int) -> dict[str, Any]:
        """A label is voided: kept in /shipments with voided/voidDate; its order awaits shipment again."""
        with self.state.lock:
            shipment = next(s for s in self.state.shipments if s["shipmentId"] == shipment_id)
            now = self.state.tick()
            shipment.update(voided=True, voidDate=now)
            order = self.state.orders[shipment["orderId"]]
            if not any(not s["voided"] for s in self.state.shipments if s["orderId"] == order["orderId"]):
                order.update(orderStatus="awaiting_shipment", modifyDate=now, shipDate=None)
            return shipment

    def mark_shipped(self, order_id: int, tracking_number: str | None = None, carrier: str = "usps") -> dict[str, Any]:
        """The order is marked shipped outside ShipStation: a fulfillment, no shipment record."""
        with self.state.lock:
            order = self.state.orders[order_id]
            now = self.state.tick()
            self.state.fulfillments.append({
                "fulfillmentId": 700000 + len(self.state.fulfillments) + 1, "orderId": order_id,
                "orderNumber": order["orderNumber"], "userId": "c9f06d74-95de-4263-9b04-e87095cababf",
                "customerEmail": order.get("customerEmail"), "trackingNumber": tracking_number,
                "createDate": now, "shipDate": now[:10] + "T00:00:00.0000000", "voidDate": None,
                "deliveryDate": None, "carrierCode": carrier, "fulfillmentProviderCode": None,
                "fulfillmentServiceCode": None, "fulfillmentFee": 0, "voidRequested": False, "voided": False,
                "marketplaceNotified": False, "notifyErrorMessage": None, "shipTo": order.get("shipTo")})
            order.update(orderStatus="shipped", modifyDate=now, shipDate=now[:10])
            return order

    def cancel(self, order_id: int, note: str | None = None) -> dict[str, Any]:
        """The merchant cancels an order in ShipStation itself (``note`` goes to ``internalNotes``)."""
        with self.state.lock:
            order = self.state.orders[order_id]
            order.update(orderStatus="cancelled", modifyDate=self.state.tick())
            if note:
                order["internalNotes"] = note
            return order

    # -- helpers -------------------------------------------------------------------------

    def _filter(self, rows: list[dict[str, Any]], query: dict[str, str], *ranges: tuple[str, str, str]) -> list[dict[str, Any]]:
        """Rows whose date fields fall in the ranges the query gives (Pacific times, inclusive)."""
        bounds = [(name, read_pacific(query[start]) if query.get(start) else None,
                   read_pacific(query[end]) if query.get(end) else None) for name, start, end in ranges]
        with self.state.lock:
            rows = list(rows)
        kept = []
        for row in rows:
            ok = True
            for name, low, high in bounds:
                if low is None and high is None:
                    continue
                value = row.get(name)
                when = read_pacific(value) if value else None
                ok = ok and when is not None and (low is None or when >= low) and (high is None or when <= high)
            if ok:
                kept.append(row)
        return kept

    def _page(self, request: Request, name: str, rows: list[dict[str, Any]], default_sort: str) -> Answer:
        query = request.query
        sort = SORTS.get(query.get("sortBy") or default_sort)
        if sort is None:
            return _error(400, f"The request is invalid: unknown sortBy '{query.get('sortBy')}'.")
        rows = sorted(rows, key=lambda r: read_pacific(r[sort]) if r.get(sort) else EPOCH,
                      reverse=query.get("sortDir", "ASC").upper() == "DESC")
        size, page = int_param(query, "pageSize", 100), int_param(query, "page", 1)
        if not 1 <= size <= 500:
            return _error(400, "The request is invalid: pageSize must be between 1 and 500.")
        return Answer(200, {name: page_of(rows, page, size), "total": len(rows), "page": page,
                            "pages": total_pages(len(rows), size)})


def _by_order(rows: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
    if query.get("orderId"):
        rows = [r for r in rows if str(r["orderId"]) == query["orderId"]]
    if query.get("orderNumber"):
        rows = [r for r in rows if str(r["orderNumber"]) == query["orderNumber"]]
    return rows
