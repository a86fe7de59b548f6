"""Golden cases read as a run reads: a read's `filter` sees what `enrich` merged."""

from __future__ import annotations

from engine.specs.examples import read_records

OPERATION = {"records": "@", "key": "to_string(id)", "filter": "length(labels) > `0`",
             "map": {"shipment_id": "to_string(id)", "order_ref": "to_string(id)",
                     "packages": {"each": "labels", "map": {"tracking_number": "@"}}}}


def test_a_filter_on_an_enriched_field_keeps_the_records_enrich_fills() -> None:
    """The filter runs after enrich (as the flows do), so a record whose labels come from a
    sub-request is kept, and one whose sub-request found none is skipped."""
    def enrich(records: list) -> list:
        return [{**r, "labels": ["1Z1"] if r["id"] == 1 else []} for r in records]

    produced = read_records("list_shipments", OPERATION, [{"id": 1}, {"id": 2}], enrich=enrich)
    assert produced == [{"key": "1", "shipment_id": "1", "order_ref": "1", "packages": [{"tracking_number": "1Z1"}]}]
