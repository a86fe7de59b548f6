"""Deterministic sample data: the same seed gives the same orders, in any server.

Orders are generic here (:class:`SampleOrder`); each server renders them in its
own API's shape. Timestamps advance from a fixed epoch so runs are repeatable.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

EPOCH = datetime(2026, 1, 5, 8, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=7)

FIRST = ["Zoë", "José", "Łukasz", "Søren", "Ana María", "Jürgen", "Renée", "Chloé",
         "Mia", "Oliver", "Priya", "Kenji", "Amara", "Liam", "Fatima", "Noah"]
LAST = ["Müller", "García", "Nguyễn", "Ōtani", "O'Brien", "Kowalski", "Smith",
        "Johansson", "Dubois", "Rossi", "Okafor", "Patel", "Brown", "Ivanova"]
PLACES = [("Portland", "OR", "97201", "US"), ("Austin", "TX", "78701", "US"),
          ("Toronto", "ON", "M5V 2T6", "CA"), ("München", "BY", "80331", "DE"),
          ("Lyon", "ARA", "69002", "FR"), ("Leeds", "ENG", "LS1 4AP", "GB"),
          ("Denver", "CO", "80202", "US"), ("Kraków", "MA", "31-042", "PL")]
STREETS = ["Main St", "Oak Avenue", "Königstraße", "Rue de la République", "High Street",
           "Cedar Lane", "ulica Floriańska", "Elm Road"]
COMPANIES = ["", "", "", "Acme GmbH", "Globex Ltd", "Initech", ""]
PRODUCTS = [("TSHIRT-BLK-M", "T-shirt — black, M", 19.5), ("TSHIRT-WHT-L", "T-shirt — white, L", 19.5),
            ("MUG-CERAMIC", "Ceramic mug 350 ml", 12.0), ("CAP-NAVY", "Baseball cap, navy", 15.0),
            ("SOCKS-3PK", "Socks (3 pack)", 9.99), ("HOODIE-GRY-XL", "Hoodie — grey, XL", 49.0),
            ("POSTER-A2", "Poster A2 “Mountains”", 8.5), ("BOTTLE-750", "Steel bottle 750 ml", 24.0)]
SHIP_METHODS = [("flat_rate", "Flat rate"), ("free_shipping", "Free shipping"),
                ("ups_ground", "UPS Ground"), ("fedex_2day", "FedEx 2Day")]
NOTES = ["", "", "Leave at the back door.", "Gift — please no invoice in the box.", ""]


@dataclass
class SampleLine:
    line_id: int
    sku: str
    name: str
    quantity: int
    price: float


@dataclass
class SampleOrder:
    """One order, API-neutral. ``number`` is what the shopper sees."""

    id: int
    number: int
    created: datetime
    modified: datetime
    first_name: str
    last_name: str
    company: str
    email: str
    phone: str
    address1: str
    address2: str
    city: str
    region: str
    postcode: str
    country: str
    ship_method: tuple[str, str]
    note: str
    lines: list[SampleLine] = field(default_factory=list)
    status: str = "open"  # open | cancelled

    @property
    def subtotal(self) -> float:
        return round(sum(line.price * line.quantity for line in self.lines), 2)

    @property
    def shipping(self) -> float:
        return 0.0 if self.ship_method[0] == "free_shipping" else 6.5

    @property
    def tax(self) -> float:
        return round(self.subtotal * 0.08, 2)

    @property
    def total(self) -> float:
        return round(self.subtotal + self.shipping + self.tax, 2)


class OrderFactory:
    """Makes :class:`SampleOrder` values in sequence from a seed."""

    def __init__(self, seed: int = 1, first_id: int = 1001, start: datetime = EPOCH) -> None:
        self._rng = random.Random(seed)
        self._next_id = first_id
        self._next_time = start
        self._next_line = first_id * 10

    def make(self, n: int) -> list[SampleOrder]:
        return [self._one() for _ in range(n)]

    def tick(self) -> datetime:
        """The next timestamp in the sequence (also used for updates)."""
        self._next_time += STEP
        return self._next_time

    def _one(self) -> SampleOrder:
        rng = self._rng
        first, last = rng.choice(FIRST), rng.choice(LAST)
        city, region, postcode, country = rng.choice(PLACES)
        when = self.tick()
        order = SampleOrder(
            id=self._next_id, number=self._next_id, created=when, modified=when,
            first_name=first, last_name=last, company=rng.choice(COMPANIES),
            email=f"{_ascii(first)}.{_ascii(last)}{self._next_id}@example.com".lower(),
            phone=f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            address1=f"{rng.randint(1, 999)} {rng.choice(STREETS)}",
            address2=rng.choice(["", "", f"Apt {rng.randint(1, 40)}"]),
            city=city, region=region, postcode=postcode, country=country,
            ship_method=rng.choice(SHIP_METHODS), note=rng.choice(NOTES),
        )
        for product in rng.sample(PRODUCTS, rng.randint(1, 3)):
            self._next_line += 1
            order.lines.append(SampleLine(self._next_line, product[0], product[1],
                                          rng.randint(1, 3), product[2]))
        self._next_id += 1
        return order


def _ascii(text: str) -> str:
    return "".join(c for c in text if c.isascii() and c.isalpha())


def iso_z(when: datetime) -> str:
    """``2026-01-05T08:07:00Z``"""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def money(value: float, places: int = 2) -> str:
    return f"{value:.{places}f}"
