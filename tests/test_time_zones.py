"""Time zones: local times read as instants, instants written as local times, watermarks in UTC."""

from __future__ import annotations

from pathlib import Path

import pytest
from sync_rig import integration, rig

from engine import template, zones
from engine.errors import ConfigError, TemplateError
from engine.flows.writes import later
from engine.ledger.base import _before
from engine.specs.model import Connector
from engine.specs.settings import time_before

#: (local time, zone, the UTC instant it means): DST gaps shift forward, overlaps take the earlier
TO_UTC = [
    ("2026-01-06T17:12:00", "Asia/Tokyo", "2026-01-06T08:12:00Z"),
    ("2026-07-01T12:00:00", "America/New_York", "2026-07-01T16:00:00Z"),           # summer: UTC-4
    ("2026-01-01T12:00:00", "America/New_York", "2026-01-01T17:00:00Z"),           # winter: UTC-5
    ("2026-03-08T02:30:00", "America/New_York", "2026-03-08T07:30:00Z"),           # nonexistent: 03:30 EDT
    ("2026-11-01T01:30:00", "America/New_York", "2026-11-01T05:30:00Z"),           # ambiguous: the first one
    ("2026-03-29T02:30:00", "Europe/Paris", "2026-03-29T01:30:00Z"),               # nonexistent: 03:30 CEST
    ("2026-10-25T02:30:00", "Europe/Paris", "2026-10-25T00:30:00Z"),               # ambiguous: the first one
    ("2026-03-01T10:00:00+05:00", "Asia/Tokyo", "2026-03-01T05:00:00Z"),           # an offset wins over the zone
    ("Mon, 05 Jan 2026 08:07:00 +0000", "Asia/Tokyo", "2026-01-05T08:07:00Z"),
]


@pytest.mark.parametrize(("local", "zone", "instant"), TO_UTC)
def test_local_time_to_utc(local, zone, instant):
    """A zone-less time is read in its zone (DST gap shifted forward, overlap the earlier); a zoned one is kept."""
    assert zones.iso_utc(zones.to_utc(local, zone)) == instant


@pytest.mark.parametrize(("instant", "zone", "local"), [
    ("2026-03-01T10:00:00Z", "Asia/Tokyo", "2026-03-01T19:00:00"),
    ("2026-11-01T06:30:00Z", "America/New_York", "2026-11-01T01:30:00"),       # the second 01:30
    ("2026-03-01T10:00:00+05:00", "UTC", "2026-03-01T05:00:00"),
])
def test_instant_to_local(instant, zone, local):
    """An instant becomes the zone's zone-less wall clock."""
    assert zones.to_local(instant, zone) == local


def test_unknown_zone_names_the_closest():
    """An unknown zone name is refused with the closest valid one."""
    assert "did you mean 'America/New_York'?" in zones.problem("america/newyork")
    with pytest.raises(zones.UnknownZone, match="did you mean 'Asia/Tokyo'"):
        zones.zone("Asia/Tokio")


@pytest.mark.parametrize("compare", [later, lambda a, b: _before(b, a), lambda a, b: time_before(b, a)],
                         ids=["flows.later", "ledger._before", "settings.time_before"])
def test_watermarks_compare_as_instants(compare):
    """10:00+05:00 is 05:00Z, before 06:00Z, whatever the text says; zone-less is UTC."""
    assert not compare("2026-03-01T10:00:00+05:00", "2026-03-01T06:00:00Z")
    assert compare("2026-03-01T06:00:00Z", "2026-03-01T10:00:00+05:00")
    assert compare("2026-03-01T06:00:01", "2026-03-01T10:00:00+04:00")


def test_zone_less_watermark_is_stored_as_utc():
    """A zone-less local watermark is normalised to the UTC instant it means; others are untouched."""
    assert zones.normalise("2026-01-06T17:12:00", "Asia/Tokyo") == "2026-01-06T08:12:00Z"
    assert zones.normalise("2026-01-06T17:12:00+09:00", "Asia/Tokyo") == "2026-01-06T17:12:00+09:00"
    assert zones.normalise("1042", "Asia/Tokyo") == "1042"


@pytest.mark.parametrize(("source", "context", "rendered"), [
    ("{{ since | to_local(config.time_zone) }}", {"since": "2026-03-01T10:00:00Z"}, "2026-03-01T19:00:00"),
    ("ge={{ since | to_local(config.time_zone) }};x", {"since": "2026-03-01T10:00:00Z"}, "ge=2026-03-01T19:00:00;x"),
    ("{{ t | to_iso8601(config.time_zone) }}", {"t": "2026-03-01T19:00:00"}, "2026-03-01T10:00:00Z"),
    ("{{ t | to_iso8601 }}", {"t": "2026-03-01T19:00:00"}, "2026-03-01T19:00:00Z"),
])
def test_jinja_zone_filters(source, context, rendered):
    """Templates render an instant in a zone from config, and read a local time as UTC."""
    assert template.compile_template(source).render({**context, "config": {"time_zone": "Asia/Tokyo"}}) == rendered


@pytest.mark.parametrize(("value", "message"), [("x", "'x' is not a time"), ("2026-01-01T00:00:00Z", "Mars/Base")])
def test_jinja_zone_filter_errors_are_template_errors(value, message):
    """A bad time or zone in a zone filter is a TemplateError naming it, not a traceback."""
    with pytest.raises(TemplateError, match=message):
        template.compile_template("{{ t | to_local(zone) }}").render({"t": value, "zone": "Mars/Base"})


SPEC = {"name": "w", "kind": "wms", "operations": {"list_shipments": {
    "request": {"path": "/s"}, "records": "@", "key": "id", "time_zone": "{{ config.tz }}",
    "watermark": "at", "map": {"at": "to_iso8601(at, time_zone())"}}}}


def test_connector_configured_compiles_its_operations_in_the_config_zone():
    """An operation's `time_zone` comes from the integration's config: its map and watermark use it."""
    connector = Connector.from_data(SPEC)
    tokyo = connector.configured({"tz": "Asia/Tokyo"}).operations["list_shipments"]
    record = {"id": 1, "at": "2026-01-06T17:12:00"}
    assert tokyo.map(record) == {"at": "2026-01-06T08:12:00Z"}
    assert tokyo.watermark(record) == "2026-01-06T08:12:00Z"
    assert connector.configured({"tz": "UTC"}).operations["list_shipments"].map(record) == {"at": "2026-01-06T17:12:00Z"}
    assert connector.configured({"tz": "Asia/Tokyo"}).operations["list_shipments"] is tokyo


def test_unknown_zone_in_config_is_a_config_error():
    """A config zone that lint could not see (an ${env:} value) fails the run clearly, with the closest name."""
    with pytest.raises(ConfigError, match="did you mean 'Asia/Tokyo'"):
        Connector.from_data(SPEC).configured({"tz": "Asia/Tokio"})


def test_warehouse_east_of_utc_skips_no_shipment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Tokyo facility answering its wall clock (9 h ahead of UTC): every shipment reaches the cart,
    and the watermark stored is the UTC instant of the latest one."""
    with rig(tmp_path, monkeypatch, time_zone="Asia/Tokyo") as r:
        data = integration(r.kind, r.cart.url, r.wms.url)
        data["destination"]["config"]["time_zone"] = "Asia/Tokyo"
        r.write(destination=data["destination"])
        assert r.cli("run", "--flow", "orders").code == 0
        shipped = []
        for ref in ("1001", "1002", "1003"):
            r.wms_app.ship(r.wms_id(ref))
            shipped.append(r.wms_id(ref))
            assert r.cli("run", "--flow", "shipments").code == 0
        assert sorted(len(numbers) for numbers in r.trackings().values()) == [1, 1, 1]
        latest = r.wms.state.orders[shipped[-1]]["readOnly"]["processDate"]
        assert r.ledger().watermark("shipments") == zones.iso_utc(zones.to_utc(latest, "Asia/Tokyo"))
