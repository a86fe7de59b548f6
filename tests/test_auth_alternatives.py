"""`http.auth` as a list of alternatives chosen by config, and `uuid` in an idempotency key."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from engine import ROOT
from engine.http.auth import ApiKeyAuth, OAuth2ClientCredentials
from engine.specs.lint import lint_paths
from engine.specs.model import Connector

SHOPIFY = yaml.safe_load((ROOT / "connectors" / "carts" / "shopify.yaml").read_text(encoding="utf-8"))
BASE = {"shop_url": "https://acme.myshopify.com", "location_id": "gid://shopify/Location/1", "api_version": "2026-10"}


def test_the_first_alternative_whose_when_holds_is_used():
    connector = Connector.from_data(SHOPIFY)
    static = connector.client({**BASE, "access_token": "shpat_x"})
    granted = connector.client({**BASE, "client_id": "cid", "client_secret": "shpss_y"})
    assert isinstance(static._auth, ApiKeyAuth)
    assert isinstance(granted._auth, OAuth2ClientCredentials)
    none = copy.deepcopy(SHOPIFY)
    none["http"]["auth"] = [{"when": "{{ config.client_id is defined }}", "auth": SHOPIFY["http"]["auth"][0]["auth"]}]
    assert Connector.from_data(none).client({**BASE})._auth is None


def test_lint_checks_when_and_each_alternative(tmp_path: Path):
    spec = copy.deepcopy(SHOPIFY)
    spec["examples"] = []
    spec["http"]["auth"][0]["when"] = "{{ order.key }}"                       # not a config template
    spec["http"]["auth"][0]["auth"]["token_url"] = "http://evil.example/token"  # not https, other host
    path = tmp_path / "carts" / "shopify.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    messages = " ".join(str(f) for f in lint_paths([path]))
    assert "order" in messages and "not https" in messages


def test_an_idempotency_key_may_use_uuid_but_not_now(tmp_path: Path):
    path = tmp_path / "carts" / "shopify.yaml"
    path.parent.mkdir()
    spec = copy.deepcopy(SHOPIFY)
    spec["examples"] = []
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    assert [f for f in lint_paths([path]) if f.severity == "error"] == []     # a warning: it shadows the bundled shopify
    spec["operations"]["update_inventory"]["idempotency_key"] = "{{ uuid }}-{{ now }}"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    assert "now" in " ".join(str(f) for f in lint_paths([path]))
