"""An Extensiv-like WMS: the 3PL Warehouse Manager REST API (``secure-wms.com``).

- ``POST /AuthServer/api/Token``: OAuth2 client credentials with HTTP Basic client
  auth and a ``user_login_id`` (or ``user_login``) field, JSON or form body.
- Every other call needs ``Authorization: Bearer`` (401 otherwise).
- ``POST /orders`` (400 when ``referenceNum`` duplicates an open order of the same
  customer), ``GET /orders`` (``rql``, ``pgsiz``/``pgnum``, ``totalResults``),
  ``GET /orders/{id}`` with an ``ETag``; ``POST /orders/{id}/canceler`` needs a
  matching ``If-Match`` (412 when stale, 428 when missing). ``cancel()`` is the warehouse
  canceling an order itself (listed by ``GET /orders?rql=readOnly.status==2;...``).
- ``GET /inventory/stocksummaries`` (``rql`` on ``customerIdentifier.id`` and ``facilityId``; rows
  carry no customer). It holds stock for several 3PL customers: the merchants (``customers``,
  default 7 and 9, all holding ``state.stock``) and another tenant (customer 8,
  ``state.tenant_stock``), so a read not scoped to one customer returns other tenants' SKUs.
  Media type ``application/hal+json``.

Orders as the vendor answers them (https://3w.extensiv.com/rels/orders/order): packages under
``readOnly.packages`` and only with ``detail=Packages`` or ``detail=All``; order items only as the
HAL relation ``_embedded["http://api.3plCentral.com/rels/orders/item"]`` and only with
``detail=OrderItems`` or ``detail=All`` (a create's 201 answer carries them).

Times (``creationDate``, ``processDate``, ``lastModifiedDate``) are the facility's wall clock
without a zone, in ``time_zone`` (default UTC): the issue's account of Extensiv, a guess not
confirmed by a vendor page. An RQL time without a zone is read in that zone too; one with a
zone (``Z``, ``+05:00``) is an instant.

Simplifications: ``itemdetail`` is ignored; an order's status is 0 open, 1 closed (confirmed,
shipped), 2 canceled.
"""
from __future__ import annotations

import base64
import fnmatch
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .base import Answer, App, Request, int_param, page_of, parse_time
from .data import EPOCH, PRODUCTS

HAL = "application/hal+json; charset=utf-8"
ORDER_REL = "http://api.3plCentral.com/rels/orders/order"
ITEM_REL = "http://api.3plCentral.com/rels/orders/item"
OTHER_TENANT = 8                            # another 3PL customer of the same warehouse
WMS_SKUS = {"POSTER-A2": "POSTER-A2-TUBE"}  # the 3PL stocks this one under its own code
RQL = re.compile(r"^([\w.]+)(==|!=|=ge=|=gt=|=le=|=lt=)(.*)$")


@dataclass
class WmsState:
    """Orders by id (``created`` keeps creation order), stock per SKU, issued tokens."""

    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)
    stock: dict[str, int] = field(default_factory=dict)       # each merchant customer's stock
    tenant_stock: dict[str, int] = field(default_factory=dict)  # customer OTHER_TENANT's stock
    tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Any = EPOCH + timedelta(days=1)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def tick(self) -> str:
        """Three minutes later, as the facility's zone-less wall clock."""
        self.clock += timedelta(minutes=3)
        return self.clock.astimezone(self.zone).strftime("%Y-%m-%dT%H:%M:%S")

    def instant(self, text: str) -> datetime:
        """A time as an instant: zone-less means the facility's wall clock."""
        value = datetime.fromisoformat(text.strip().replace(" ", "+").replace("Z", "+00:00"))
        return value if value.tzinfo else value.replace(tzinfo=self.zone)


def _hal(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, body, headers or {}, content_type=HAL)


def _problem(status: int, code: str, hint: str) -> Answer:
    return _hal(status, {"ErrorCode": code, "Hint": hint, "Properties": [], "ErrorLevel": "Error"})


def _etag(order: dict[str, Any]) -> str:
    return f'W/"{order["readOnly"]["orderId"]}-{order["readOnly"]["version"]}"'


class ExtensivApp(App):
    def __init__(self, client_id: str = "client-id", client_secret: str = "client-secret",
                 user_login_id: str = "42", seed: int = 1, time_zone: str = "UTC",
                 customers: tuple[int, ...] = (7, 9), **_: Any) -> None:
        super().__init__()
        self.customers = customers
        self._basic = "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._login = user_login_id
        self.state = WmsState(zone=ZoneInfo(time_zone))
        for i, (sku, _, _) in enumerate(PRODUCTS):
            self.state.stock[WMS_SKUS.get(sku, sku)] = 40 + (seed * 7 + i * 13) % 60
        self.state.tenant_stock.update({"MUG-CERAMIC": 999, "TENANT8-LAMP": 12})
        self.route("POST", "/AuthServer/api/Token", self.token)
        self.route("POST", "/orders", self.create_order)
        self.route("GET", "/orders", self.list_orders)
        self.route("GET", r"/orders/(?P<oid>\d+)", self.get_order)
        self.route("POST", r"/orders/(?P<oid>\d+)/canceler", self.cancel_order)
        self.route("GET", "/inventory/stocksummaries", self.stock_summaries)

    def add_orders(self, n: int) -> list[Any]:
        raise TypeError("a WMS receives orders; it does not make them")

    def authorize(self, request: Request) -> Answer | None:
        if request.path.startswith("/AuthServer/"):
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token in self.state.tokens:
            return None
        return Answer(401, {"ErrorCode": "Unauthorized", "Hint": "Bearer token missing, expired or invalid"},
                      {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def token(self, request: Request) -> Answer:
        if request.headers.get("authorization") != self._basic:
            return Answer(401, {"error": "invalid_client"})
        is_form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        body = request.form() if is_form else (request.json() or {})
        if body.get("grant_type") != "client_credentials":
            return Answer(400, {"error": "unsupported_grant_type"})
        if str(body.get("user_login_id") or body.get("user_login") or "") != self._login:
            return Answer(401, {"error": "invalid_client", "error_description": "unknown user_login_id"})
        token = secrets.token_urlsafe(24)
        with self.state.lock:
            self.state.tokens.add(token)
        return Answer(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600,
                            "refresh_token": None, "scope": None})

    def revoke_tokens(self) -> None:
        """Expire every issued token (the next call answers 401)."""
        with self.state.lock:
            self.state.tokens.clear()

    def create_order(self, request: Request) -> Answer:
        body = request.json() or {}
        ref, customer = body.get("referenceNum"), (body.get("customerIdentifier") or {}).get("id")
        items = body.get("orderItems")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            return _problem(400, "InvalidModel", "orderItems must be a list of items")
        if not ref or customer is None or not items:
            return _problem(400, "MissingRequiredField", "referenceNum, customerIdentifier and orderItems are required")
        unknown = [i["itemIdentifier"]["sku"] for i in items if i.get("itemIdentifier", {}).get("sku") not in self.state.stock]
        if unknown:
            return _problem(400, "ItemNotFound", f"Unknown SKU(s): {', '.join(unknown)}")
        with self.state.lock:
            for other in self.state.created:
                if (other["referenceNum"] == ref and other["readOnly"]["customerIdentifier"]["id"] == customer
                        and other["readOnly"]["status"] != 2):
                    return _problem(400, "DuplicateReferenceNum",
                                    f"Order with ReferenceNum '{ref}' is a duplicate for this customer")
            order = self._new_order(body, customer)
        return _hal(201, order, {"ETag": _etag(order), "Location": f"/orders/{order['readOnly']['orderId']}"})

    def _new_order(self, body: dict[str, Any], customer: int) -> dict[str, Any]:
        oid, now = 1000 + len(self.state.created) + 1, self.state.tick()
        order = {
            "readOnly": {"orderId": oid, "version": 1, "creationDate": now, "lastModifiedDate": now,
                         "processDate": None, "isClosed": False, "status": 0, "fullyAllocated": True,
                         "customerIdentifier": {"id": customer, "name": ""},
                         "facilityIdentifier": body.get("facilityIdentifier") or {"id": 1}},
            "referenceNum": body["referenceNum"], "poNum": body.get("poNum"), "notes": body.get("notes"),
            "shippingNotes": body.get("shippingNotes"), "billingCode": body.get("billingCode", "Prepaid"),
            "routingInfo": {"isCod": False, "isInsurance": False, "carrier": None, "mode": None,
                            "scacCode": None, "account": None, **(body.get("routingInfo") or {}),
                            "trackingNumber": None},
            "shipTo": body.get("shipTo") or {},
            "_links": {"self": {"href": f"/orders/{oid}"}},
            "_embedded": {ITEM_REL: [{"readOnly": {"orderItemId": oid * 100 + n}, "itemIdentifier": i["itemIdentifier"],
                                      "qty": i.get("qty")} for n, i in enumerate(body["orderItems"], start=1)]},
        }
        order["readOnly"]["packages"] = []
        self.state.orders[oid] = order
        self.state.created.append(order)
        return order

    def cancel(self, order_id: int, reason: str = "Out of stock") -> dict[str, Any]:
        """The warehouse cancels an open order itself (status 2, closed, ``lastModifiedDate`` moves on)."""
        with self.state.lock:
            order = self.state.orders[order_id]
            now = self.state.tick()
            order["readOnly"].update(isClosed=True, status=2, lastModifiedDate=now,
                                     version=order["readOnly"]["version"] + 1)
            order["notes"] = f"{order.get('notes') or ''} Canceled: {reason}".strip()
            return order

    def ship(self, order_id: int, packages: int = 1, carrier: str = "UPS") -> dict[str, Any]:
        """The warehouse ships an order: closed, status 1 (Complete), tracking per package."""
        with self.state.lock:
            order = self.state.orders[order_id]
            ro, now = order["readOnly"], self.state.tick()
            numbers = [f"1Z999AA1{order_id:06d}{n:04d}" for n in range(1, packages + 1)]
            ro["packages"] = [{"packageId": order_id * 10 + n, "trackingNumber": number, "weight": 1.2,
                                  "packageContents": []} for n, number in enumerate(numbers)]
            order["routingInfo"].update(trackingNumber=numbers[0], carrier=order["routingInfo"]["carrier"] or carrier)
            ro.update(isClosed=True, status=1, processDate=now, lastModifiedDate=now, version=ro["version"] + 1)
            return order

    def ship_open(self, limit: int | None = None, packages: int = 1) -> list[int]:
        """Ship up to ``limit`` open orders, oldest first; returns their ids."""
        with self.state.lock:
            open_ids = [o["readOnly"]["orderId"] for o in self.state.created if not o["readOnly"]["isClosed"]]
        shipped = open_ids[:limit]
        for oid in shipped:
            self.ship(oid, packages)
        return shipped

    def list_orders(self, request: Request) -> Answer:
        size, page = int_param(request.query, "pgsiz", 100), int_param(request.query, "pgnum", 1)
        try:
            with self.state.lock:
                rows = [o for o in self.state.created if _rql(o, request.query.get("rql", ""), self.state.instant)]
        except ValueError as exc:
            return _problem(400, "InvalidRql", str(exc))
        detail = request.query.get("detail", "")
        return _hal(200, {"totalResults": len(rows), "_links": {},
                          "_embedded": {ORDER_REL: [_view(o, detail) for o in page_of(rows, page, size)]}})

    def get_order(self, request: Request, oid: str) -> Answer:
        with self.state.lock:
            order = self.state.orders.get(int(oid))
        if order is None:
            return _problem(404, "NotFound", f"Order {oid} not found")
        return _hal(200, _view(order, request.query.get("detail", "")), {"ETag": _etag(order)})

    def cancel_order(self, request: Request, oid: str) -> Answer:
        with self.state.lock:
            order = self.state.orders.get(int(oid))
            if order is None:
                return _problem(404, "NotFound", f"Order {oid} not found")
            if "if-match" not in request.headers:
                return _problem(428, "PreconditionRequired", "If-Match header is required")
            if request.headers["if-match"] != _etag(order):
                return _problem(412, "PreconditionFailed", "The order changed; read it again for a fresh ETag")
            ro = order["readOnly"]
            if ro["isClosed"]:
                return _problem(400, "OrderClosed", f"Order {oid} is already closed and cannot be canceled")
            now = self.state.tick()
            ro.update(isClosed=True, status=2, processDate=now, lastModifiedDate=now, version=ro["version"] + 1)
            order["notes"] = ((order.get("notes") or "") + f" Canceled: {(request.json() or {}).get('reason', '')}").strip()
            return Answer(204)                  # the vendor answers the canceler with no content

    def stock_summaries(self, request: Request) -> Answer:
        size, page = int_param(request.query, "pgsiz", 100), int_param(request.query, "pgnum", 1)
        with self.state.lock:
            held = [(customer, self.state.stock) for customer in self.customers]
            rows = [({"customerIdentifier": {"id": customer}, "facilityId": 1}, _summary(n, sku, qty))
                    for n, (customer, stock) in enumerate([*held, (OTHER_TENANT, self.state.tenant_stock)])
                    for sku, qty in stock.items()]
        try:
            rows = [row for scope, row in rows if _rql({**scope, **row}, request.query.get("rql", ""))]
        except ValueError as exc:
            return _problem(400, "InvalidRql", str(exc))
        return _hal(200, {"totalResults": len(rows), "summaries": page_of(rows, page, size)})


def _summary(n: int, sku: str, qty: int) -> dict[str, Any]:
    """One stock summary row as the vendor's sample shows it (no customer on the row)."""
    return {"itemIdentifier": {"id": 9000 + n * 100 + sum(map(ord, sku)) % 100, "sku": sku}, "qualifier": "",
            "totalReceived": qty + 20, "allocated": 0, "available": qty, "onHold": 0, "onHand": qty,
            "facilityId": 1}


def order_items(order: dict[str, Any]) -> list[dict[str, Any]]:
    """An order's items (its ``_embedded`` item relation), as stored."""
    return order["_embedded"][ITEM_REL]


def _view(order: dict[str, Any], detail: str) -> dict[str, Any]:
    """An order as GET answers it for ``detail``: items and packages only when asked for."""
    wanted = {part.strip().lower() for part in detail.split(",")}
    view = {**order, "readOnly": dict(order["readOnly"])}
    if not wanted & {"all", "orderitems"}:
        view.pop("_embedded")
    if not wanted & {"all", "packages"}:
        view["readOnly"].pop("packages")
    return view


def _lookup(record: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(record, dict):
            return None
        record = next((v for k, v in record.items() if k.lower() == part.lower()), None)
    return record


def _coerce(mine: Any, text: str, instant: Any) -> tuple[Any, Any]:
    """Both sides of a comparison as the record's type (bool, number, time, text)."""
    if isinstance(mine, bool):
        return mine, text.lower() == "true"
    if isinstance(mine, (int, float)):
        return mine, float(text)
    if isinstance(mine, str) and re.match(r"\d{4}-\d\d-\d\dT", mine):
        return instant(mine), instant(text)
    return mine, text


def _rql(order: dict[str, Any], rql: str, instant: Any = parse_time) -> bool:
    """A conjunction (``;``) of ``path==value``, ``path=ge=value``… clauses; ``*`` in a ``==``/``!=``
    text value is a wildcard (https://3w.extensiv.com/Rels/rql)."""
    for clause in filter(None, rql.split(";")):
        match = RQL.match(clause)
        if match is None:
            raise ValueError(f"Cannot parse RQL clause {clause!r}")
        path, op, raw = match.groups()
        mine = _lookup(order, path)
        if mine is None:
            if op in ("==", "!="):
                if (raw.lower() == "null") != (op == "!="):
                    continue
            return False
        if op in ("==", "!=") and "*" in raw and isinstance(mine, str):
            if (fnmatch.fnmatchcase(mine.lower(), raw.lower()) != (op == "==")):
                return False
            continue
        mine, other = _coerce(mine, raw, instant)
        ok = {"==": mine == other, "!=": mine != other, "=ge=": mine >= other, "=gt=": mine > other,
              "=le=": mine <= other, "=lt=": mine < other}[op]
        if not ok:
            return False
    return True
