"""Loopback servers that behave like the real cart and WMS APIs, for tests and the demo.

>>> from samples.servers import start
>>> with start("woocommerce", orders=50, seed=1) as srv:   # doctest: +SKIP
...     srv.url, len(srv.state.orders)
"""
from __future__ import annotations

from typing import Any

from .base import App, Fault, FaultPlan, Server
from .bigcommerce import BigCommerceApp
from .extensiv import ExtensivApp
from .extensiv_order_manager import ExtensivOrderManagerApp
from .shipstation import ShipStationApp
from .magento2 import MagentoApp
from .shopify import ShopifyApp
from .woocommerce import WooCommerceApp

KINDS: dict[str, type[App]] = {
    "woocommerce": WooCommerceApp,
    "shopify": ShopifyApp,
    "bigcommerce": BigCommerceApp,
    "extensiv": ExtensivApp,
    "extensiv-order-manager": ExtensivOrderManagerApp,
    "shipstation": ShipStationApp,
    "magento2": MagentoApp,
}

__all__ = ["KINDS", "Fault", "FaultPlan", "Server", "start"]


def start(kind: str, *, port: int = 0, **options: Any) -> Server:
    """Start a loopback server of ``kind`` on 127.0.0.1 (port 0: a free one).

    ``options`` go to the app: ``orders``/``seed`` and credentials for carts
    (``consumer_key``/``consumer_secret``, ``access_token``, ``store_hash``; Shopify also
    ``client_id``/``client_secret`` for its token endpoint, ``today``, ``bucket_size``/``restore_rate``);
    ``client_id``/``client_secret``/``user_login_id`` for Extensiv; ``api_key``/``api_secret``
    (and ``limit``/``window``, the rate limit) for ShipStation.
    """
    try:
        app_class = KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown server kind {kind!r}; expected one of {sorted(KINDS)}") from None
    return Server(app_class(**options), port=port)
