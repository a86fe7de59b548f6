"""A Magento 2 / Adobe Commerce-like server: the REST web API under ``/rest/<store>/V1``.

Like the real thing where the connector depends on it (sources: connectors/carts/magento2.md):

- ``Authorization: Bearer <integration access token>``; anything else is a 401
  ``{"message": "The consumer isn't authorized to access %resources.", "parameters": {...}}``.
- ``GET /V1/orders`` takes ``searchCriteria[filter_groups][i][filters][j][field|value|condition_type]``
  (filters in a group OR, groups AND), ``searchCriteria[sortOrders][i][field|direction]``,
  ``searchCriteria[pageSize]`` and ``searchCriteria[currentPage]``; it answers
  ``{items, search_criteria, total_count}``. A ``currentPage`` past the end answers the **last
  page again** (Magento's collections clamp the page), so a client must stop by ``total_count``.
  Without any ``searchCriteria`` it is a 400 (the parameter is required). Dates are
  ``YYYY-MM-DD HH:MM:SS`` in UTC, without a zone; a date filter value is converted to a date
  first, as MySQL converts a string compared with a DATETIME column (an ISO-8601 value with a
  zone is taken as that instant: a simplification of MySQL's session time zone).
- Orders hold configurable products as two items: the configurable parent (it carries the price
  and the selected child's SKU) and the simple child (price 0, ``parent_item_id``,
  ``parent_item``). ``POST /V1/order/{id}/ship`` ships by the **parent's** ``order_item_id``: the
  child is a "dummy" item shipped with its parent; a child id alone ships nothing. A quantity
  above what is left to ship is cut to what is left; nothing left to ship is a 400
  ``Shipment Document Validation Error(s):\\n...You can't create a shipment without products.``
  (after ``The order does not allow a shipment to be created.`` when the whole order is shipped,
  or ``A shipment cannot be created when an order has a status of canceled``). Answers the new
  shipment's id.
- ``GET /V1/shipments`` (searchCriteria, e.g. by ``order_id``) lists shipments with their tracks.
- ``POST /V1/orders/{id}/cancel`` answers ``true``, or ``false`` when the order cannot be
  canceled (already canceled, complete, closed, on hold, or wholly invoiced).
- ``POST /V1/inventory/source-items`` (MSI) sets ``{sku, source_code, quantity, status}`` per
  item, absolutely, and answers ``[]``; an unknown source, or no ``sku``/``source_code``, is a
  400 ``Validation Failed``.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .base import Answer, App, Request, apply_page_faults, page_of, parse_time
from .data import OrderFactory, SampleOrder

API = r"/rest/(?P<store>[A-Za-z0-9_]+)/V1"
#: SKUs sold as a configurable product's variant: variant SKU -> (parent SKU, parent name)
CONFIGURABLE = {"TSHIRT-BLK-M": ("TSHIRT", "T-shirt"), "TSHIRT-WHT-L": ("TSHIRT", "T-shirt"),
                "HOODIE-GRY-XL": ("HOODIE", "Hoodie")}
SHIP_METHODS = {"flat_rate": ("flatrate_flatrate", "Flat Rate - Fixed"),
                "free_shipping": ("freeshipping_freeshipping", "Free Shipping - Free"),
                "ups_ground": ("ups_GND", "United Parcel Service - Ground"),
                "fedex_2day": ("fedex_FEDEX_2_DAY", "Federal Express - 2 Day")}
#: order states in which Magento cannot cancel (Order::canCancel)
FINAL = ("canceled", "complete", "closed", "holded")
MAX_PAGE_SIZE = 300
CRITERIA = re.compile(r"searchCriteria\[(\w+)\](?:\[(\d+)\])?(?:\[(\w+)\])?(?:\[(\d+)\])?(?:\[(\w+)\])?$")


def stamp(when: datetime) -> str:
    """``2026-01-05 08:07:00``: how Magento writes every date (UTC, no zone)."""
    return when.strftime("%Y-%m-%d %H:%M:%S")


def error(status: int, message: str, parameters: Any = None) -> Answer:
    body: dict[str, Any] = {"message": message}
    if parameters is not None:
        body["parameters"] = parameters
    return Answer(status, body)


@dataclass
class MagentoState:
    """The store: orders (API dicts), shipments, MSI source items by (sku, source_code)."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    source_items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    searches: list[dict[str, Any]] = field(default_factory=list)    # each orders search's criteria, for tests
    sources: tuple[str, ...] = ("default",)
    lock: threading.Lock = field(default_factory=threading.Lock)


class MagentoApp(App):
    def __init__(self, orders: int = 20, seed: int = 1, access_token: str = "mage_test",
                 sources: tuple[str, ...] = ("default",), invoiced: bool = False) -> None:
        super().__init__()
        self._auth = f"Bearer {access_token}"
        self._factory = OrderFactory(seed)
        self._invoiced = invoiced
        self._next_item = 1
        self.state = MagentoState(sources=tuple(sources))
        self.add_orders(orders)
        self.route("GET", API + "/orders", self.list_orders)
        self.route("GET", API + r"/orders/(?P<oid>\d+)", self.get_order)
        self.route("POST", API + r"/orders/(?P<oid>\d+)/cancel", self.cancel_order)
        self.route("POST", API + r"/order/(?P<oid>\d+)/ship", self.ship_order)
        self.route("GET", API + "/shipments", self.list_shipments)
        self.route("POST", API + "/inventory/source-items", self.save_source_items)
        self.route("GET", API + "/inventory/source-items", self.list_source_items)

    # -- the store's side -------------------------------------------------------------------

    def add_orders(self, n: int) -> list[dict[str, Any]]:
        with self.state.lock:
            new = [self._render(o) for o in self._factory.make(n)]
            self.state.orders.extend(new)
        return new

    def cancel(self, order_id: int) -> None:
        """The merchant cancels in the admin: state and status ``canceled``, ``updated_at`` moves on."""
        with self.state.lock:
            self._cancel(self._find(order_id))

    def _render(self, o: SampleOrder) -> dict[str, Any]:
        """One order as ``GET /V1/orders`` lists it (a configurable variant is parent + child)."""
        method, description = SHIP_METHODS[o.ship_method[0]]
        street = [o.address1] + ([o.address2] if o.address2 else [])
        address = {"firstname": o.first_name, "lastname": o.last_name, "company": o.company or None,
                   "street": street, "city": o.city, "region": o.region, "region_code": o.region,
                   "postcode": o.postcode, "country_id": o.country, "telephone": o.phone, "email": o.email,
                   "parent_id": o.id}
        items = []
        for line in o.lines:
            items.extend(self._items(o.id, line))
        shipping = 0.0 if o.ship_method[0] == "free_shipping" else o.shipping
        return {
            "entity_id": o.id, "increment_id": f"{o.id:09d}", "state": "processing", "status": "processing",
            "created_at": stamp(o.created), "updated_at": stamp(o.modified), "store_id": 1,
            "customer_email": o.email, "customer_firstname": o.first_name, "customer_lastname": o.last_name,
            "customer_is_guest": 1, "customer_note": o.note or None,
            "base_currency_code": "USD", "order_currency_code": "USD",
            "subtotal": o.subtotal, "shipping_amount": shipping, "tax_amount": o.tax, "discount_amount": 0,
            "grand_total": round(o.subtotal + shipping + o.tax, 2), "total_qty_ordered": sum(l.quantity for l in o.lines),
            "total_invoiced": round(o.subtotal + shipping + o.tax, 2) if self._invoiced else None,
            "shipping_description": description,
            "billing_address": {**address, "address_type": "billing", "entity_id": o.id * 2},
            "payment": {"method": "checkmo", "amount_ordered": o.total},
            "items": items,
            "extension_attributes": {"shipping_assignments": [{"shipping": {
                "address": {**address, "address_type": "shipping", "entity_id": o.id * 2 + 1},
                "method": method, "total": {"shipping_amount": shipping}}, "items": items}]},
        }

    def _items(self, order_id: int, line: Any) -> list[dict[str, Any]]:
        def item(**fields: Any) -> dict[str, Any]:
            self._next_item += 1
            return {"item_id": self._next_item, "order_id": order_id, "qty_ordered": line.quantity,
                    "qty_shipped": 0, "qty_canceled": 0, "qty_invoiced": line.quantity if self._invoiced else 0,
                    "is_virtual": 0, "product_id": 1000 + self._next_item, **fields}
        if line.sku not in CONFIGURABLE:
            return [item(sku=line.sku, name=line.name, product_type="simple", price=line.price,
                         row_total=round(line.price * line.quantity, 2))]
        parent_sku, parent_name = CONFIGURABLE[line.sku]
        parent = item(sku=line.sku, name=parent_name, product_type="configurable", price=line.price,
                      row_total=round(line.price * line.quantity, 2),
                      product_options={"info_buyRequest": {"qty": line.quantity}}, parent_sku=parent_sku)
        child = item(sku=line.sku, name=line.name, product_type="simple", price=0, row_total=0,
                     parent_item_id=parent["item_id"], parent_item=dict(parent))
        return [parent, child]

    def _find(self, order_id: int) -> dict[str, Any] | None:
        return next((o for o in self.state.orders if o["entity_id"] == order_id), None)

    def _touch(self, order: dict[str, Any]) -> None:
        order["updated_at"] = stamp(self._factory.tick())

    def _cancel(self, order: dict[str, Any] | None) -> bool:
        """Order::canCancel, then cancel: every item's unshipped rest is canceled."""
        if order is None or order["state"] in FINAL:
            return False
        if all(i["qty_invoiced"] >= i["qty_ordered"] for i in order["items"]):
            return False            # wholly invoiced: only a credit memo undoes it
        for item in order["items"]:
            item["qty_canceled"] = item["qty_ordered"] - item["qty_shipped"]
        order["state"] = order["status"] = "canceled"
        self._touch(order)
        return True

    # -- the API -------------------------------------------------------------------------------

    def authorize(self, request: Request) -> Answer | None:
        if request.headers.get("authorization") == self._auth:
            return None
        return error(401, "The consumer isn't authorized to access %resources.",
                     {"resources": "Magento_Sales::actions_view"})

    def list_orders(self, request: Request, store: str) -> Answer:
        with self.state.lock:
            rows = list(self.state.orders)
            self.state.searches.append(parse_criteria(request.query) or {})
        return self._search(request, rows)

    def list_shipments(self, request: Request, store: str) -> Answer:
        with self.state.lock:
            rows = list(self.state.shipments)
        return self._search(request, rows)

    def list_source_items(self, request: Request, store: str) -> Answer:
        with self.state.lock:
            rows = list(self.state.source_items.values())
        return self._search(request, rows)

    def _search(self, request: Request, rows: list[dict[str, Any]]) -> Answer:
        """``*Repository::getList(SearchCriteria)`` over ``rows``."""
        criteria = parse_criteria(request.query)
        if criteria is None:
            return error(400, '"%fieldName" is required. Enter and try again.', {"fieldName": "searchCriteria"})
        size = criteria.get("page_size")
        if size is not None and size > MAX_PAGE_SIZE:
            return error(400, "Maximum SearchCriteria pageSize is %max", {"max": MAX_PAGE_SIZE})
        for group in criteria["filter_groups"]:
            rows = [r for r in rows if any(_holds(r, f) for f in group["filters"])]
        for order in reversed(criteria["sort_orders"]):
            rows.sort(key=lambda r, f=order["field"]: _sortable(r.get(f)), reverse=order["direction"] == "DESC")
        total = len(rows)
        if size:
            last = max(1, -(-total // size))
            page = min(max(criteria.get("current_page") or 1, 1), last)     # past the end: the last page again
            rows = page_of(rows, page, size)
        rows = apply_page_faults(request, rows, _malformed)
        return Answer(200, {"items": rows, "search_criteria": _echo(criteria), "total_count": total})

    def get_order(self, request: Request, store: str, oid: str) -> Answer:
        with self.state.lock:
            order = self._find(int(oid))
        return Answer(200, order) if order is not None else _no_entity()

    def cancel_order(self, request: Request, store: str, oid: str) -> Answer:
        """``OrderManagementInterface::cancel``: true when canceled now, false when it cannot be."""
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return _no_entity()
            return Answer(200, self._cancel(order))

    def ship_order(self, request: Request, store: str, oid: str) -> Answer:
        """``ShipOrderInterface::execute``: a shipment of the requested order items, with tracks."""
        body = request.json() or {}
        with self.state.lock:
            order = self._find(int(oid))
            if order is None:
                return _no_entity()
            problems = []                                       # CanShip, then QuantityValidator, TrackValidator
            if order["state"] in ("canceled", "holded", "payment_review"):
                problems.append(f"A shipment cannot be created when an order has a status of {order['status']}")
            elif not any(_left(i) > 0 for i in order["items"] if not i["is_virtual"]):
                problems.append("The order does not allow a shipment to be created.")
            lines = _shipment_items(order, body.get("items") or [])
            if not lines:
                problems.append("You can't create a shipment without products.")
            tracks = body.get("tracks") or []
            if any(not t.get("track_number") for t in tracks):
                problems.append("Please enter a tracking number.")
            if problems:
                return error(400, "Shipment Document Validation Error(s):\n" + "\n".join(problems))
            return Answer(200, self._save_shipment(order, lines, tracks, bool(body.get("notify"))))

    def _save_shipment(self, order: dict, lines: list[tuple[dict, float]], tracks: list[dict], notify: bool) -> int:
        shipment_id = len(self.state.shipments) + 1
        when = stamp(self._factory.tick())
        for item, qty in lines:
            item["qty_shipped"] += qty
        self.state.shipments.append({
            "entity_id": shipment_id, "increment_id": f"{shipment_id:09d}", "order_id": order["entity_id"],
            "created_at": when, "updated_at": when, "email_sent": 1 if notify else None,
            "total_qty": sum(qty for item, qty in lines if item["product_type"] != "simple" or not item.get("parent_item_id")),
            "items": [{"order_item_id": item["item_id"], "sku": item["sku"], "name": item["name"], "qty": qty,
                       "parent_id": shipment_id} for item, qty in lines],
            "tracks": [{"entity_id": 100 * shipment_id + n, "parent_id": shipment_id, "order_id": order["entity_id"],
                        "track_number": t["track_number"], "title": t.get("title"), "carrier_code": t.get("carrier_code"),
                        "created_at": when} for n, t in enumerate(tracks)],
            "comments": [], "packages": []})
        if all(i["qty_shipped"] + i["qty_canceled"] >= i["qty_ordered"] for i in order["items"]):
            order["state"] = order["status"] = "complete"
        self._touch(order)
        return shipment_id

    def save_source_items(self, request: Request, store: str) -> Answer:
        """``SourceItemsSaveInterface::execute``: each item set absolutely (no answer body)."""
        items = (request.json() or {}).get("sourceItems")
        if not isinstance(items, list) or not items:
            return error(400, "Input data is empty")
        errors = []
        for item in items:
            for name in ("sku", "source_code"):           # quantity and status are optional
                if item.get(name) in (None, ""):
                    errors.append({"message": '"%field" can not be empty.', "parameters": {"field": name}})
            if item.get("source_code") and item["source_code"] not in self.state.sources:
                errors.append({"message": 'Source with code "%code" does not exist.',
                               "parameters": {"code": item["source_code"]}})
            if item.get("status") not in (None, "", 0, 1):
                errors.append({"message": '"%field" should be numeric.', "parameters": {"field": "status"}})
        if errors:
            return Answer(400, {"message": "Validation Failed", "errors": errors})
        with self.state.lock:
            for item in items:
                self.state.source_items[(item["sku"], item["source_code"])] = {
                    "sku": item["sku"], "source_code": item["source_code"],
                    "quantity": float(item.get("quantity") or 0), "status": int(item.get("status") or 0)}
        return Answer(200, [])


def parse_criteria(query: dict[str, str]) -> dict[str, Any] | None:
    """The ``searchCriteria[...]`` query parameters as one structure (camel or snake case)."""
    found = False
    groups: dict[int, dict[int, dict[str, str]]] = {}
    sorts: dict[int, dict[str, str]] = {}
    criteria: dict[str, Any] = {}
    for name, value in query.items():
        match = CRITERIA.match(name)
        if name == "searchCriteria":
            found = True
        if not match:
            continue
        found = True
        key, i, sub, j, leaf = match.groups()
        key = {"filterGroups": "filter_groups", "sortOrders": "sort_orders", "pageSize": "page_size",
               "currentPage": "current_page"}.get(key, key)
        if key == "filter_groups" and i is not None and sub == "filters" and j is not None and leaf:
            leaf = {"conditionType": "condition_type"}.get(leaf, leaf)
            groups.setdefault(int(i), {}).setdefault(int(j), {})[leaf] = value
        elif key == "sort_orders" and i is not None and sub:
            sorts.setdefault(int(i), {})[sub] = value
        elif key in ("page_size", "current_page"):
            try:
                criteria[key] = int(value)
            except ValueError:
                criteria[key] = None
    if not found:
        return None
    criteria["filter_groups"] = [{"filters": [groups[g][f] for f in sorted(groups[g])]} for g in sorted(groups)]
    criteria["sort_orders"] = [{"field": s.get("field", "entity_id"), "direction": (s.get("direction") or "ASC").upper()}
                               for _, s in sorted(sorts.items())]
    return criteria


def _echo(criteria: dict[str, Any]) -> dict[str, Any]:
    echoed = {"filter_groups": criteria["filter_groups"]}
    if criteria["sort_orders"]:
        echoed["sort_orders"] = criteria["sort_orders"]
    for key in ("page_size", "current_page"):
        if criteria.get(key) is not None:
            echoed[key] = criteria[key]
    return echoed


def _sortable(value: Any) -> tuple:
    return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0.0, str(value))


def _holds(row: dict[str, Any], f: dict[str, str]) -> bool:
    """One filter, compared as MySQL would: numbers as numbers, anything else as a string."""
    have, want, cond = row.get(f.get("field", "")), f.get("value", ""), f.get("condition_type", "eq")
    if cond == "in":
        return str(have) in want.split(",")
    if cond == "nin":
        return str(have) not in want.split(",")
    if cond == "null":
        return have is None
    if cond == "notnull":
        return have is not None
    if have is None:
        return False
    if cond == "like":
        return re.fullmatch(re.escape(want).replace("%", ".*").replace("_", "."), str(have)) is not None
    if f.get("field", "").endswith("_at"):
        want = _as_stamp(want)
    a, b = (have, float(want)) if isinstance(have, (int, float)) and _numeric(want) else (str(have), want)
    return {"eq": a == b, "neq": a != b, "gt": a > b, "gteq": a >= b, "moreq": a >= b, "from": a >= b,
            "lt": a < b, "lteq": a <= b, "to": a <= b}.get(cond, False)


def _as_stamp(text: str) -> str:
    """A date filter's value as the stored text (UTC ``YYYY-MM-DD HH:MM:SS``), when it is a date."""
    try:
        return stamp(parse_time(text).astimezone(timezone.utc))
    except ValueError:
        return text


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _shipment_items(order: dict[str, Any], requested: list[dict[str, Any]]) -> list[tuple[dict, float]]:
    """ShipmentFactory::prepareItems: what a ship request really ships.

    Keyed by ``order_item_id``. A configurable parent (and a simple item without parent) ships
    ``min(requested, left to ship)``; its child is a dummy shipped with it; a child named alone
    ships nothing. No items requested: everything left to ship."""
    wanted: dict[int, float] = {}
    for entry in requested:
        wanted[int(entry.get("order_item_id") or 0)] = wanted.get(int(entry.get("order_item_id") or 0), 0) + float(entry.get("qty") or 0)
    shipped: list[tuple[dict, float]] = []
    by_parent = {i["parent_item_id"]: i for i in order["items"] if i.get("parent_item_id")}
    for item in order["items"]:
        if item.get("parent_item_id") or item["is_virtual"]:
            continue                                  # dummies go with their parent
        left = _left(item)
        qty = min(wanted[item["item_id"]], left) if item["item_id"] in wanted else (left if not wanted else 0)
        if qty <= 0:
            continue
        shipped.append((item, qty))
        child = by_parent.get(item["item_id"])
        if child is not None:
            shipped.append((child, qty))
    return shipped


def _left(item: dict[str, Any]) -> float:
    """Order\\Item::getQtyToShip: ordered, less shipped, canceled."""
    return item["qty_ordered"] - item["qty_shipped"] - item["qty_canceled"]


def _malformed(order: dict[str, Any]) -> dict[str, Any]:
    return {**order, "extension_attributes": {}, "items": [{"item_id": 1, "sku": None, "product_type": "simple",
                                                              "qty_ordered": "two"}]}


def _no_entity() -> Answer:
    return error(404, "The entity that was requested doesn't exist. Verify the entity and try again.")
