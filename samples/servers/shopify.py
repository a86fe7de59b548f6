"""A Shopify-like server: the GraphQL Admin API at ``/admin/api/{version}/graphql.json``.

Root fields: ``orders(first, after, query, sortKey, reverse)`` with real opaque
cursors and ``pageInfo``; ``order(id)``; an order's ``lineItems(first, after)`` is a connection
too (at most 250 a page, ``pageInfo``), as in the real API; ``productVariants(first, query: "sku:…")``;
mutations ``fulfillmentCreate(fulfillment)`` and ``inventorySetQuantities(input)``
answering ``userErrors``, and ``orderCancel(orderId, reason, refund | refundMethod, restock,
notifyCustomer, staffNote)`` answering ``job`` and ``orderCancelUserErrors`` (an
unknown or an already cancelled order), like the real API; the cancel job is done at
once. Sources: connectors/carts/shopify.md.

- **Cost**: every query's requested cost is computed as Shopify documents it
  (:func:`gql.cost`); above 1,000 it is refused with ``MAX_COST_EXCEEDED`` before anything runs.
  Admitted queries draw on a leaky bucket (``bucket_size`` points restoring ``restore_rate`` a
  second, the Standard plan by default); a query the bucket cannot hold answers 200 with a
  ``THROTTLED`` error; every answer carries ``extensions.cost`` with ``throttleStatus``, the
  actual cost (what the answer returned) refunded to the bucket.
- **Versions**: quarterly stable versions, each supported 12 months from its release (as of
  ``today``). A request to an unsupported older stable version falls forward to the oldest
  supported one; ``X-Shopify-API-Version`` names the version that answered. A version that was
  never released is 404.
- **2026-04 and later**: ``inventorySetQuantities`` needs ``@idempotent(key:)`` (a repeat with the
  same key and variables answers the first result, unapplied; other variables are refused) and
  ``changeFromQuantity`` on every quantity (``null`` opts out of the compare); ``compareQuantity``
  and ``ignoreCompareQuantity`` are gone.
- **Auth**: the ``X-Shopify-Access-Token`` header (401 otherwise): the static token, or one the
  client-credentials grant issued (``POST /admin/oauth/access_token``, ``expires_in`` 86399 s,
  refused once expired).
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from datetime import date
from dataclasses import dataclass, field
from typing import Any

from . import gql
from .base import Answer, App, Request, apply_page_faults, parse_time
from .quotas import CostBucket

from engine.http.waits import clock as engine_clock
from .data import PRODUCTS, OrderFactory, SampleLine, SampleOrder, iso_z, money

PATH = r"/admin/api/(?P<version>\d{4}-\d{2}|unstable)/graphql\.json"
TOKEN_PATH = r"/admin/oauth/access_token"
MAX_QUERY_COST = 1000
TOKEN_LIFETIME = 86399          # seconds: client-credentials tokens last 24 hours
MANDATORY_IDEMPOTENCY = "2026-04"   # inventorySetQuantities needs @idempotent and changeFromQuantity
LOCATION = "gid://shopify/Location/76543210"
CANCEL_REASONS = ("CUSTOMER", "DECLINED", "FRAUD", "INVENTORY", "OTHER", "STAFF")
SORT_KEYS = {"ID": "legacyResourceId", "UPDATED_AT": "updatedAt", "CREATED_AT": "createdAt",
             "PROCESSED_AT": "createdAt"}
THROTTLED = {"errors": [{"message": "Throttled", "extensions": {
    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
    "extensions": {"cost": {"requestedQueryCost": 252, "actualQueryCost": None, "throttleStatus": {
        "maximumAvailable": 2000.0, "currentlyAvailable": 40, "restoreRate": 100.0}}}}


def _money(amount: float) -> dict[str, Any]:
    value = {"amount": money(amount), "currencyCode": "USD"}
    return {"shopMoney": value, "presentmentMoney": value}


def _address(o: SampleOrder) -> dict[str, Any]:
    return {"name": f"{o.first_name} {o.last_name}", "firstName": o.first_name, "lastName": o.last_name,
            "company": o.company or None, "address1": o.address1, "address2": o.address2 or None,
            "city": o.city, "province": o.region, "provinceCode": o.region, "zip": o.postcode,
            "country": o.country, "countryCodeV2": o.country, "phone": o.phone}


def render_order(o: SampleOrder) -> dict[str, Any]:
    """One ``Order`` node with every field this server can answer."""
    legacy = 6100000000 + o.id
    return {
        "__typename": "Order", "id": f"gid://shopify/Order/{legacy}", "legacyResourceId": str(legacy),
        "name": f"#{o.number}", "createdAt": iso_z(o.created), "updatedAt": iso_z(o.modified),
        "processedAt": iso_z(o.created), "cancelledAt": None, "cancelReason": None, "closed": False,
        "email": o.email, "phone": o.phone, "note": o.note or None,
        "tags": ["wholesale"] if o.company else [], "currencyCode": "USD",
        "displayFinancialStatus": "PAID", "displayFulfillmentStatus": "UNFULFILLED",
        "shippingAddress": _address(o), "billingAddress": _address(o),
        "shippingLine": None if o.ship_method[0] == "free_shipping" else {
            "code": o.ship_method[0], "title": o.ship_method[1], "source": "shopify",
            "originalPriceSet": _money(o.shipping)},
        "lineItems": Connection([{"id": f"gid://shopify/LineItem/{line.line_id}", "sku": line.sku,
                                  "name": line.name, "title": line.name, "quantity": line.quantity,
                                  "originalUnitPriceSet": _money(line.price)} for line in o.lines]),
        "subtotalPriceSet": _money(o.subtotal), "currentSubtotalPriceSet": _money(o.subtotal),
        "totalShippingPriceSet": _money(o.shipping), "totalTaxSet": _money(o.tax),
        "totalDiscountsSet": _money(0), "totalPriceSet": _money(o.total),
        "fulfillmentOrders": {"nodes": [{"id": f"gid://shopify/FulfillmentOrder/{legacy + 900000000}",
                                         "status": "OPEN"}]},
        "fulfillments": [],        # Order.fulfillments: [Fulfillment!]! (a list, not a connection)
    }


class Connection:
    """A nested connection such as ``Order.lineItems(first, after)``: ``first`` (1..250) is
    required, ``after`` an opaque cursor; answers ``nodes``, ``edges`` and ``pageInfo``."""

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = nodes

    def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        first = args.get("first")
        if not isinstance(first, int) or not 1 <= first <= 250:
            raise gql.GraphQLError("you must provide one of first or last (at most 250)", "BAD_REQUEST")
        start = _uncursor(args["after"])[0] + 1 if args.get("after") else 0
        page = self.nodes[start:start + first]
        cursors = [_cursor([start + i]) for i in range(len(page))]
        return {"nodes": page, "edges": [{"cursor": c, "node": n} for c, n in zip(cursors, page)],
                "pageInfo": {"hasNextPage": start + first < len(self.nodes), "endCursor": cursors[-1] if page else None,
                             "hasPreviousPage": start > 0, "startCursor": cursors[0] if page else None}}


@dataclass
class ShopifyState:
    """The shop: orders (nodes), variants by SKU, levels per inventory item, fulfillments,
    and the arguments of every ``orderCancel`` it carried out."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    levels: dict[str, int] = field(default_factory=dict)
    fulfillments: list[dict[str, Any]] = field(default_factory=list)
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    adjustments: int = 0
    applied: dict[str, int] = field(default_factory=dict)     # inventory item -> sets applied
    lock: threading.Lock = field(default_factory=threading.Lock)


def released_versions(today: str) -> list[str]:
    """Stable versions released by ``today`` (quarterly, on the first day of the quarter)."""
    day = date.fromisoformat(today)
    return [f"{year}-{month:02d}" for year in range(2019, day.year + 1) for month in (1, 4, 7, 10)
            if date(year, month, 1) <= day]


def supported_versions(today: str) -> list[str]:
    """Stable versions still supported on ``today``: 12 months from each release."""
    day = date.fromisoformat(today)
    return [v for v in released_versions(today)
            if date(int(v[:4]) + 1, int(v[5:]), 1) > day]


def release_candidate(today: str) -> str:
    """The next quarter's version, served as a release candidate before its release."""
    year, month = (int(x) for x in released_versions(today)[-1].split("-"))
    return f"{year + 1}-01" if month == 10 else f"{year}-{month + 3:02d}"


class ShopifyApp(App):
    def __init__(self, orders: int = 20, seed: int = 1, access_token: str = "shpat_test",
                 client_id: str | None = None, client_secret: str | None = None,
                 token_lifetime: int = TOKEN_LIFETIME, today: str = "2026-12-03",
                 bucket_size: float = 2000.0, restore_rate: float = 100.0,
                 clock: Any = engine_clock) -> None:
        super().__init__()
        self._token = access_token
        self._client = (client_id, client_secret) if client_id else None
        self._lifetime = token_lifetime
        self.issued: dict[str, float] = {}          # client-credentials token -> expiry (monotonic)
        self.today = today
        # the engine's clock: monotonic, plus the waits a test skipped (engine.http.set_testing),
        # so the bucket restores as if the engine had waited what it asked for
        self.bucket = CostBucket(maximum=bucket_size, restore=restore_rate, clock=clock)
        self.served: list[tuple[str, str]] = []     # (version asked, version that answered)
        self.idempotency: dict[str, tuple[str, Any]] = {}   # key -> (variables, first answer)
        self._factory = OrderFactory(seed)
        self.state = ShopifyState()
        for i, (sku, name, _) in enumerate(PRODUCTS, start=1):
            item = f"gid://shopify/InventoryItem/{44000 + i}"
            self.state.variants[sku] = {"__typename": "ProductVariant", "id": f"gid://shopify/ProductVariant/{43000 + i}",
                                        "sku": sku, "title": name, "inventoryItem": {"id": item}}
            self.state.levels[item] = 100
        self.add_orders(orders)
        self.route("POST", PATH, self.graphql)
        self.route("POST", TOKEN_PATH, self.access_token)

    def add_orders(self, n: int, lines: int | None = None) -> list[dict[str, Any]]:
        """``n`` new orders; with ``lines``, each has that many lines (a big wholesale order)."""
        made = self._factory.make(n)
        for o in made if lines else ():
            first = o.lines[0].line_id * 1000
            o.lines = [SampleLine(first + i, f"BULK-{i:04d}", f"Bulk item {i}", 1, 2.5) for i in range(lines)]
        new = [render_order(o) for o in made]
        with self.state.lock:
            self.state.orders.extend(new)
        return new

    def cancel(self, order_gid: str, reason: str = "CUSTOMER") -> None:
        """The merchant cancels an order: ``cancelledAt``, ``updatedAt`` move on."""
        with self.state.lock:
            self._close_cancelled(self._order(order_gid), reason)

    def throttle(self, times: int = 1) -> None:
        """The next ``times`` requests answer 200 with a THROTTLED error, like the real API."""
        self.faults.add(path_prefix="/admin/api/", times=times, status=200, body=THROTTLED)

    def authorize(self, request: Request) -> Answer | None:
        if re.fullmatch(TOKEN_PATH, request.path):
            return None
        token = request.headers.get("x-shopify-access-token")
        if token == self._token or self.issued.get(token or "", 0) > time.monotonic():
            return None
        return Answer(401, {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})

    def access_token(self, request: Request) -> Answer:
        """The client-credentials grant of a Dev Dashboard app installed on this shop."""
        form = request.form()
        if form.get("grant_type") != "client_credentials":
            return Answer(400, {"error": "unsupported_grant_type",
                                "error_description": "The grant type is not supported."})
        if self._client is None or (form.get("client_id"), form.get("client_secret")) != self._client:
            return Answer(400, {"error": "invalid_client",
                                "error_description": "Client authentication failed."})
        token = "shpat_" + secrets.token_hex(16)
        self.issued[token] = time.monotonic() + self._lifetime
        return Answer(200, {"access_token": token, "scope": "read_orders,write_orders,"
                            "write_merchant_managed_fulfillment_orders,read_products,write_inventory",
                            "expires_in": self._lifetime})

    def version(self, asked: str) -> str | None:
        """The version that answers a request for ``asked``: itself when supported (or the
        release candidate, or unstable), the oldest supported one for an older stable version,
        None for one that was never released."""
        supported = supported_versions(self.today)
        if asked in supported or asked in ("unstable", release_candidate(self.today)):
            return asked
        if asked in released_versions(self.today):
            return supported[0]
        return None

    def graphql(self, request: Request, version: str) -> Answer:
        served = self.version(version)
        if served is None:
            return Answer(404, {"errors": "Not Found"})
        self.served.append((version, served))
        headers = {"X-Shopify-API-Version": served}
        try:
            body = request.json()
            kind, fields = gql.parse(body["query"], body.get("variables") or {})
        except gql.GraphQLError as exc:
            return Answer(200, {"errors": [{"message": str(exc), "extensions": {"code": exc.code}}]}, headers)
        except (ValueError, KeyError, TypeError):
            return Answer(400, {"errors": "Bad Request"}, headers)
        requested = gql.cost(kind, fields)
        if requested > MAX_QUERY_COST:
            return Answer(200, {"errors": [{"message": (
                f"Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\n"
                "See https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\n"
                "cost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk "
                "operations should be used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-"
                "with-admin-api for usage details.\n"),
                "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST,
                               "documentation": "https://shopify.dev/api/usage/limits#rate-limits"}}]}, headers)
        _, _, refused = self.bucket.admit(requested, requested)
        if "errors" in refused:                       # the bucket cannot hold it: THROTTLED
            refused["errors"][0]["extensions"]["documentation"] = "https://shopify.dev/api/usage/rate-limits"
            return Answer(200, refused, headers)
        try:
            data = {f.name: self._resolve(kind, f, request, served) for f in fields}
        except gql.GraphQLError as exc:
            return Answer(200, {"errors": [{"message": str(exc), "extensions": {"code": exc.code}}],
                                "extensions": {"cost": self._refund(requested, 0)}}, headers)
        except (ValueError, KeyError, TypeError):
            return Answer(400, {"errors": "Bad Request"}, headers)
        actual = requested if kind == "mutation" else gql.cost(kind, fields, data)
        return Answer(200, {"data": data, "extensions": {"cost": self._refund(requested, actual)}}, headers)

    def _refund(self, requested: int, actual: int) -> dict[str, Any]:
        """Give the bucket back what a query was charged above its actual cost; its cost report."""
        bucket = self.bucket
        with bucket.lock:
            bucket.available = min(bucket.maximum, bucket.available + (requested - actual))
            return {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": {
                "maximumAvailable": bucket.maximum, "currentlyAvailable": int(bucket.available),
                "restoreRate": bucket.restore}}

    def _resolve(self, kind: str, f: gql.Field, request: Request, version: str = "unstable") -> Any:
        resolver = {("query", "orders"): self._orders, ("query", "order"): self._one_order,
                    ("query", "productVariants"): self._variants,
                    ("mutation", "fulfillmentCreate"): self._fulfill,
                    ("mutation", "inventorySetQuantities"): self._set_quantities,
                    ("mutation", "orderCancel"): self._cancel_order}.get((kind, f.name))
        if resolver is None:
            raise gql.GraphQLError(f"Field '{f.name}' doesn't exist on type '{kind.title()}Root'", "undefinedField")
        if f.name == "inventorySetQuantities":
            return gql.project(self._set_quantities(f, version), f.selection)
        return gql.project(resolver(f.args, request), f.selection)

    def _orders(self, args: dict[str, Any], request: Request) -> dict[str, Any]:
        first = args.get("first")
        if not isinstance(first, int) or not 1 <= first <= 250:
            raise gql.GraphQLError("you must provide one of first or last (at most 250)", "BAD_REQUEST")
        sort = SORT_KEYS.get(args.get("sortKey") or "ID", "legacyResourceId")
        with self.state.lock:
            rows = [o for o in self.state.orders if _matches(o, args.get("query") or "")]
        rank = (lambda o: (int(o[sort]), o["id"])) if sort == "legacyResourceId" else (lambda o: (o[sort], o["id"]))
        rows.sort(key=rank, reverse=bool(args.get("reverse")))
        if args.get("after"):
            after = _uncursor(args["after"])
            newer = (lambda o: list(rank(o)) < after) if args.get("reverse") else (lambda o: list(rank(o)) > after)
            rows = [o for o in rows if newer(o)]
        page = apply_page_faults(request, rows[:first], lambda o: {**o, "lineItems": Connection([]),
                                                                     "shippingAddress": None})
        end = _cursor(list(rank(page[-1]))) if page else None
        return {"nodes": page, "edges": [{"cursor": _cursor(list(rank(o))), "node": o} for o in page],
                "pageInfo": {"hasNextPage": len(rows) > first, "endCursor": end,
                             "hasPreviousPage": bool(args.get("after")), "startCursor": None}}

    def _one_order(self, args: dict[str, Any], request: Request) -> dict[str, Any] | None:
        with self.state.lock:
            return self._order(args.get("id"))

    def _variants(self, args: dict[str, Any], request: Request) -> dict[str, Any]:
        match = re.search(r"sku:['\"]?([^'\"\s]+)", args.get("query") or "")
        with self.state.lock:
            found = [v for sku, v in self.state.variants.items() if match is None or sku == match.group(1)]
        return {"nodes": found[: args.get("first") or 50]}

    def _fulfill(self, args: dict[str, Any], request: Request) -> dict[str, Any]:
        spec = args.get("fulfillment") or {}
        groups = spec.get("lineItemsByFulfillmentOrder") or []
        tracking = spec.get("trackingInfo") or {}
        with self.state.lock:
            targets = [self._fulfillment_order(g.get("fulfillmentOrderId")) for g in groups]
            if not groups or None in targets:
                return _user_error(["fulfillment"], "Fulfillment order does not exist.")
            if any(fo["status"] != "OPEN" for _, fo in targets):
                return _user_error(["fulfillment"], "Fulfillment order is not in an open state.")
            numbers = tracking.get("numbers") or [tracking.get("number")]
            fulfillment = {"id": f"gid://shopify/Fulfillment/{7000000 + len(self.state.fulfillments)}",
                           "status": "SUCCESS", "trackingInfo": [
                               {"company": tracking.get("company"), "number": n, "url": tracking.get("url")}
                               for n in numbers if n]}
            for order, fo in targets:
                fo["status"] = "CLOSED"
                order["displayFulfillmentStatus"] = "FULFILLED"
                order["fulfillments"].append({"__typename": "Fulfillment", **fulfillment})
            self.state.fulfillments.append({**fulfillment, "orders": [o["id"] for o, _ in targets]})
        return {"fulfillment": fulfillment, "userErrors": []}

    def _set_quantities(self, f: gql.Field, version: str) -> dict[str, Any]:
        """From 2026-04: ``@idempotent(key:)`` required (a repeat answers the first result and
        changes nothing), ``changeFromQuantity`` required on each quantity (compare-and-set; null
        opts out), ``compareQuantity``/``ignoreCompareQuantity`` removed."""
        spec = f.args.get("input") or {}
        strict = version == "unstable" or version >= MANDATORY_IDEMPOTENCY
        key = (f.directives or {}).get("idempotent", {}).get("key")
        if strict:
            for name in ("ignoreCompareQuantity",):
                if name in spec:
                    raise gql.GraphQLError(f"Variable $input of type InventorySetQuantitiesInput! was provided invalid "
                                           f"value for {name} (Field is not defined on InventorySetQuantitiesInput)",
                                           "INVALID_VARIABLE")
            for i, q in enumerate(spec.get("quantities") or []):
                if "compareQuantity" in q:
                    raise gql.GraphQLError(f"Variable $input of type InventorySetQuantitiesInput! was provided invalid "
                                           f"value for quantities.{i}.compareQuantity (Field is not defined on "
                                           "InventoryQuantityInput)", "INVALID_VARIABLE")
            if not key:
                raise gql.GraphQLError("The @idempotent directive is required for this mutation.", "BAD_REQUEST")
        fingerprint = json.dumps(spec, sort_keys=True)
        with self.state.lock:
            if key and key in self.idempotency:
                earlier, answer = self.idempotency[key]
                if earlier != fingerprint:
                    raise gql.GraphQLError("The idempotency key was already used with different parameters.",
                                           "IDEMPOTENCY_KEY_PARAMETER_MISMATCH")
                return answer
            answer = self._apply_quantities(spec, strict)
            if key:                     # guess: the first answer is kept, a refusal too
                self.idempotency[key] = (fingerprint, answer)
        return answer

    def _apply_quantities(self, spec: dict[str, Any], strict: bool) -> dict[str, Any]:
        """Check then set every quantity (lock held): nothing is set when one is refused."""
        if spec.get("name") not in ("available", "on_hand"):
            return _user_error(["input", "name"], "The quantity name must be either 'available' or 'on_hand'.")
        if not spec.get("reason"):
            return _user_error(["input", "reason"], "The specified reason is invalid.")
        quantities = spec.get("quantities") or []
        for i, q in enumerate(quantities):
            where = ["input", "quantities", str(i)]
            if q.get("inventoryItemId") not in self.state.levels:
                return _user_error([*where, "inventoryItemId"], "The specified inventory item could not be found.")
            if q.get("locationId") != LOCATION:
                return _user_error([*where, "locationId"], "The specified location could not be found.")
            current = self.state.levels[q["inventoryItemId"]]
            if strict and "changeFromQuantity" not in q:
                return _user_error([*where, "changeFromQuantity"],
                                   "changeFromQuantity is required; pass null to skip the check.", "INVALID")
            compare = q.get("changeFromQuantity") if "changeFromQuantity" in q else (
                None if spec.get("ignoreCompareQuantity") else q.get("compareQuantity"))
            if compare is not None and int(compare) != current:
                return _user_error([*where, "changeFromQuantity"],
                                   "The specified compare quantity does not match the current quantity.",
                                   "CHANGE_FROM_QUANTITY_STALE")
        for q in quantities:
            self.state.levels[q["inventoryItemId"]] = int(q["quantity"])
            self.state.applied[q["inventoryItemId"]] = self.state.applied.get(q["inventoryItemId"], 0) + 1
        self.state.adjustments += 1
        return {"inventoryAdjustmentGroup": {"id": f"gid://shopify/InventoryAdjustmentGroup/{self.state.adjustments}",
                                             "reason": spec["reason"]}, "userErrors": []}

    def _cancel_order(self, args: dict[str, Any], request: Request) -> dict[str, Any]:
        """``orderCancel``, its job done at once: the order is cancelled, and marked refunded
        with ``refundMethod: {originalPaymentMethodsRefund: true}`` (or the deprecated
        ``refund: true``, 2025-07); ``restock`` is only recorded (no committed stock is modelled)."""
        if args.get("reason") not in CANCEL_REASONS:
            raise gql.GraphQLError(f"Variable $reason of type OrderCancelReason! was provided invalid value "
                                   f"{args.get('reason')!r}", "INVALID_VARIABLE")
        method = args.get("refundMethod")
        if isinstance(method, dict):
            args = {**args, "refund": bool(method.get("originalPaymentMethodsRefund"))}
        elif method is not None:
            raise gql.GraphQLError("Variable $refundMethod of type OrderCancelRefundMethodInput was provided "
                                   "invalid value", "INVALID_VARIABLE")
        for name in ("refund", "restock"):
            if not isinstance(args.get(name), bool):
                raise gql.GraphQLError(f"Variable ${name} of type Boolean! was provided invalid value",
                                       "INVALID_VARIABLE")
        with self.state.lock:
            order = self._order(args.get("orderId"))
            if order is None:
                return _cancel_error("NOT_FOUND", "Order does not exist.")
            if order["cancelledAt"]:
                return _cancel_error("INVALID", "Cannot cancel an order that has already been cancelled.")
            self._close_cancelled(order, args["reason"])
            if args["refund"]:
                order["displayFinancialStatus"] = "REFUNDED"
            self.state.cancellations.append({k: args.get(k) for k in (
                "orderId", "reason", "refund", "refundMethod", "restock", "notifyCustomer", "staffNote")})
            job = f"gid://shopify/Job/{uuid.uuid5(uuid.NAMESPACE_URL, order['id'])}"
        return {"job": {"id": job, "done": True}, "orderCancelUserErrors": [], "userErrors": []}

    def _close_cancelled(self, order: dict[str, Any], reason: str) -> None:
        """Cancel ``order`` (lock held): ``cancelledAt``, ``updatedAt`` move on, the fulfillment order too."""
        when = iso_z(self._factory.tick())
        order.update(cancelledAt=when, updatedAt=when, cancelReason=reason, closed=True)
        order["fulfillmentOrders"]["nodes"][0]["status"] = "CANCELLED"

    def _order(self, gid: Any) -> dict[str, Any] | None:
        return next((o for o in self.state.orders if o["id"] == gid), None)

    def _fulfillment_order(self, gid: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        for order in self.state.orders:
            for fo in order["fulfillmentOrders"]["nodes"]:
                if fo["id"] == gid:
                    return order, fo
        return None


def _user_error(path: list[str], message: str, code: str = "INVALID") -> dict[str, Any]:
    return {"fulfillment": None, "inventoryAdjustmentGroup": None,
            "userErrors": [{"field": path, "message": message, "code": code}]}


def _cancel_error(code: str, message: str) -> dict[str, Any]:
    error = {"field": ["orderId"], "message": message}
    return {"job": None, "orderCancelUserErrors": [{**error, "code": code}], "userErrors": [error]}


def _cursor(rank: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps({"last": rank}).encode()).decode()


def _uncursor(cursor: str) -> list[Any]:
    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode()))["last"]
    except (ValueError, KeyError) as exc:
        raise gql.GraphQLError("Invalid cursor for current pagination sort.", "BAD_REQUEST") from exc


FILTER = re.compile(r"""(\w+):(>=|<=|>|<)?('[^']*'|"[^"]*"|\S+)""")


def _matches(order: dict[str, Any], query: str) -> bool:
    """Shopify search syntax, the terms a sync uses: dates, status, fulfillment/financial status."""
    for name, op, raw in FILTER.findall(query):
        value = raw.strip("'\"")
        if name in ("updated_at", "created_at"):
            mine = parse_time(order["updatedAt" if name == "updated_at" else "createdAt"])
            other = parse_time(value)
            ok = {">": mine > other, ">=": mine >= other, "<": mine < other, "<=": mine <= other,
                  "": mine == other}[op]
        elif name == "status":
            state = "cancelled" if order["cancelledAt"] else ("closed" if order["closed"] else "open")
            ok = value in ("any", state)
        elif name == "fulfillment_status":
            ok = order["displayFulfillmentStatus"].lower() == value.lower()
        elif name == "financial_status":
            ok = order["displayFinancialStatus"].lower() == value.lower()
        else:
            ok = True
        if not ok:
            return False
    return True
