"""Tests for engine.ledger: atomic claims, compare-and-set, watermarks, re-pull, durability."""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.errors import LedgerError
from engine.ledger import RUNS_KEPT, STATUSES, DiskLedger, Ledger, open_store
from engine.ledger.stores import is_url

ROOT = Path(__file__).resolve().parent.parent
KEYS = [f"order-{n}" for n in range(400)]


def _open(location: str, name: str = "shop") -> Ledger:
    """The ledger `name` at `location` (a state directory, without fsync, or a PostgreSQL URL)."""
    return open_store(location).open(name) if is_url(location) else DiskLedger(location, name, fsync=False)


@pytest.fixture
def ledger(ledger_state: str):
    """The ledger under test: the embedded one, then the PostgreSQL one (`ledger_state`)."""
    with open_store(ledger_state).open("shop") as opened:
        yield opened


def _claim_all(directory: str, keys: list[str], start: threading.Barrier | None) -> list[str]:
    with _open(directory) as own:
        if start is not None:
            start.wait()
        return [key for key in keys if own.claim(key)]


def _claim_in_process(directory: str, keys: list[str], start, out: str) -> None:
    start.wait()
    Path(out).write_text(json.dumps(_claim_all(directory, keys, None)))


def _claim_pages_in_process(directory: str, keys: list[str], start, out: str) -> None:
    start.wait()
    with _open(directory) as own:
        pages = [keys[n:n + 25] for n in range(0, len(keys), 25)]
        won = [key for page in pages
               for key, new in zip(page, own.claim_many([(k, {"raw": {"k": k}}) for k in page]))
               if new]
    Path(out).write_text(json.dumps(won))


def test_every_ledger_satisfies_the_protocol(ledger: Ledger) -> None:
    """DiskLedger and PostgresLedger offer every operation of the Ledger protocol."""
    wanted = [name for name in dir(Ledger) if not name.startswith("_")] + ["__enter__"]
    assert [name for name in wanted if not hasattr(ledger, name)] == []


def test_claim_is_atomic_across_threads(ledger_state: str) -> None:
    """Eight threads claiming the same keys in different orders win each key exactly once."""
    start = threading.Barrier(8)
    results: list[list[str]] = []
    orders = [random.Random(n).sample(KEYS, len(KEYS)) for n in range(8)]
    threads = [threading.Thread(target=lambda o=o: results.append(_claim_all(ledger_state, o, start)))
               for o in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wins = Counter(key for won in results for key in won)
    assert sorted(wins) == sorted(KEYS) and set(wins.values()) == {1}


def _race(tmp_path: Path, location: str, claimer) -> tuple[set, set]:
    """Run `claimer` in two processes released at once, each over KEYS in its own order;
    return the keys each one won."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    outs = [str(tmp_path / f"won-{n}.json") for n in range(2)]
    procs = [spawn.Process(target=claimer,
                           args=(location, random.Random(n).sample(KEYS, len(KEYS)), start, out))
             for n, out in enumerate(outs)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    first, second = (set(json.loads(Path(out).read_text())) for out in outs)
    return first, second


def test_claim_is_atomic_across_processes(tmp_path: Path, ledger_state: str) -> None:
    """Two processes claiming the same keys at once win each key exactly once between them."""
    first, second = _race(tmp_path, ledger_state, _claim_in_process)
    assert first.isdisjoint(second) and first | second == set(KEYS)


def test_claim_never_overwrites(ledger: Ledger) -> None:
    """A second claim of a key returns False and leaves the first entry untouched."""
    assert ledger.claim("a", data={"number": "1001"})
    ledger.set_status("a", "delivered", destination_id="W-1")
    assert not ledger.claim("a", data={"number": "other"})
    entry = ledger.get("a")
    assert (entry.status, entry.destination_id, entry.data) == ("delivered", "W-1",
                                                                 {"number": "1001"})


def test_claim_many_reports_each_key_in_order(ledger: Ledger) -> None:
    """claim_many wins new keys, loses known keys and repeats within the page, in input order."""
    ledger.claim("b")
    won = ledger.claim_many([("a", {}), ("b", {}), ("c", {"data": {"n": 3}}), ("a", {})])
    assert won == [True, False, True, False]
    assert ledger.get("c").data == {"n": 3} and ledger.get("c").status == "pending"


def test_claim_many_stores_no_raw_record_as_null(tmp_path: Path) -> None:
    """A claimed page mixing rows with and without a raw record stores NULL for the missing
    ones (what `release_unsent` looks for), and each raw record as its JSON, empty ones too."""
    with DiskLedger(tmp_path, "shop", fsync=False) as ledger:
        ledger.claim_many([("a", {}), ("b", {"status": "held", "raw": ""}),
                           ("c", {"status": "skipped", "raw": {}}), ("d", {"raw": {"n": 1}})])
        rows = dict(ledger._sql("SELECT key, raw FROM Entries", ()).fetchall())
        assert rows == {"a": None, "b": '""', "c": None, "d": '{"n":1}'}     # skipped keeps none
        assert ledger.get("b").raw == "" and ledger.get("d").raw == {"n": 1}
        assert ledger.release_unsent() == 1 and ledger.get("a") is None and ledger.get("d")


@pytest.mark.parametrize("fields", [
    {}, {"status": "pending", "data": {"order_id": "1"}}, {"data": {}}, {"data": None},
    {"status": "sending", "data": {"n": 1}, "raw": {"id": 1}}, {"status": "skipped", "reason": "old", "raw": [1]},
    {"reason": "why", "data": {"n": 2}, "destination_id": None, "last_error": "boom", "raw": None},
    {"status": "held", "raw": "", "destination_id": "D-1", "data": {"n": [1, 2]}},
], ids=lambda fields: ",".join(fields) or "none")
def test_a_new_row_is_the_merge_of_its_fields_into_a_fresh_document(fields: dict) -> None:
    """`_new_row`'s spelled-out merge stores what `_merge` into a fresh document would."""
    from engine.ledger.base import KEEPS_RAW, _merge, _new_row
    status = fields.get("status", "pending")
    doc = {"v": 3, "created": 5.0, **({"attempts": 1} if status == "sending" else {})}
    _merge(doc, status, {k: v for k, v in fields.items() if k not in ("status", "raw")}, "k")
    raw = fields.get("raw") if status in KEEPS_RAW else None
    key, got_status, now, doc_text, raw_text = _new_row("k", fields, 5.0)
    assert (key, got_status, now, json.loads(doc_text)) == ("k", status, 5.0, doc)
    assert raw_text == (None if raw is None else json.dumps(raw, separators=(",", ":")))


def test_a_new_row_refuses_unknown_fields_statuses_and_keys() -> None:
    from engine.ledger.base import _new_row
    for key, fields in [("k", {"colour": "red"}), ("k", {"status": "lost"}), (7, {}),
                        ("k", {"data": {"bad": object()}}), ("k", {"raw": {1j: 1}})]:
        with pytest.raises(LedgerError):
            _new_row(key, fields, 5.0)


def test_claim_many_is_one_transaction(ledger: Ledger) -> None:
    """A bad item in a page rolls back the whole page's claims."""
    with pytest.raises(LedgerError):
        ledger.claim_many([("a", {}), ("b", {"data": {"bad": object()}})])
    assert ledger.get("a") is None


def test_claim_many_is_atomic_across_processes(tmp_path: Path, ledger_state: str) -> None:
    """Two processes claiming the same keys a page at a time (in different orders, so on
    PostgreSQL their inserts cross) win each key exactly once."""
    first, second = _race(tmp_path, ledger_state, _claim_pages_in_process)
    assert first.isdisjoint(second) and first | second == set(KEYS)
    with _open(ledger_state) as ledger:
        assert ledger.counts() == {"pending": len(KEYS)}
        assert all(ledger.get(key).raw == {"k": key} for key in KEYS)


PAGE = [
    ("a", {"raw": {"id": 1}, "data": {"order_id": "1"}}),
    ("b", {"status": "skipped", "reason": "spec filter", "raw": {"id": 2}}),
    ("big", {"raw": {"text": "x" * 40_000}}),
    ("c", {"status": "quarantined", "reason": "bad", "raw": {"id": 3}}),
    ("a", {"raw": {"id": "again"}}),
    ("known", {"raw": {"id": 4}}),
]
ROWS = "SELECT rowid, key, status, updated, doc, raw FROM Entries ORDER BY rowid"


def _page_and_per_key(tmp_path: Path, monkeypatch) -> tuple[DiskLedger, DiskLedger]:
    """Two ledgers given the same claims: one through the multi-row ``INSERT … RETURNING``,
    one through the per-row fallback for SQLite before 3.35."""
    from engine.ledger import disk as module

    monkeypatch.setattr(module, "_now", lambda: 1700000000.0)
    page, per_key = DiskLedger(tmp_path, "page"), DiskLedger(tmp_path, "per-key")
    for ledger, returning in ((page, True), (per_key, False)):
        monkeypatch.setattr(module, "_RETURNING", returning)
        ledger.claim("known")
        assert ledger.claim_many(PAGE) == [True, True, True, True, False, False]
    monkeypatch.setattr(module, "_RETURNING", True)
    return page, per_key


def test_page_claim_and_per_row_fallback_store_the_same_rows(tmp_path: Path, monkeypatch) -> None:
    """Both claim paths store one row per key, in claim order, with the same contents."""
    page, per_key = _page_and_per_key(tmp_path, monkeypatch)
    with page, per_key:
        rows = page._sql(ROWS, ()).fetchall()
        assert rows == per_key._sql(ROWS, ()).fetchall()
        assert [row[1:3] for row in rows] == [("known", "pending"), ("a", "pending"), ("b", "skipped"),
                                              ("big", "pending"), ("c", "quarantined")]
        assert rows[2][5] is None           # a skipped entry keeps no raw record
        assert json.loads(rows[3][5]) == {"text": "x" * 40_000}


def test_claimed_rows_serve_every_method(tmp_path: Path, monkeypatch) -> None:
    """Rows from a page claim are read, moved, counted and released by every ledger method."""
    page, per_key = _page_and_per_key(tmp_path, monkeypatch)
    per_key.close()
    with page:
        assert page.get("a").raw == {"id": 1} and page.get("big").raw == {"text": "x" * 40_000}
        assert page.counts() == {"pending": 3, "skipped": 1, "quarantined": 1}
        assert [e.key for e in page.iter_status("pending")] == ["known", "a", "big"]
        assert [e.key for e in page.latest("skipped")] == ["b"]
        assert page.transition("a", "pending", "sending")
        assert page.set_status("a", "delivered", destination_id="W-1").raw is None
        assert not page.claim("a") and page.claim_many([("b", {})]) == [False]
        assert page.reset_since("2000-01-01", release=("skipped", "quarantined")) == 2
        assert page.claim("b") and page.get("b").status == "pending"
        assert page.counts() == {"pending": 3, "delivered": 1}


def test_a_claim_page_larger_than_one_statement(tmp_path: Path) -> None:
    """A page with more keys than one statement may bind is claimed in several, in order."""
    ledger = DiskLedger(tmp_path, "shop")
    limit = ledger._cache._con.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 5
    keys = [f"k{n}" for n in range(limit + 7)]
    assert ledger.claim_many([(key, {}) for key in ["k3", *keys]]) == [True] + [key != "k3" for key in keys]
    assert [e.key for e in ledger.iter_status("pending")] == ["k3"] + [key for key in keys if key != "k3"]


FORMAT_2 = [  # (key, document, raw record kept as its own ``r:`` value or None)
    ("a", {"v": 2, "status": "pending", "created": 1.0, "updated": 1.0, "has_raw": True,
           "data": {"order_id": "1"}}, {"id": 1}),
    ("big", {"v": 2, "status": "error", "created": 2.0, "updated": 5.0, "has_raw": True,
             "attempts": 2, "last_error": "400"}, {"text": "x" * 40_000}),   # a file in diskcache
    ("q", {"v": 1, "status": "quarantined", "created": 3.0, "updated": 3.0, "reason": "bad",
           "raw": {"id": 9}}, None),                                          # format 1: inline
    ("d", {"v": 2, "status": "delivered", "created": 4.0, "updated": 4.0,
           "destination_id": "W-4"}, None),
]


def test_a_format_2_ledger_is_moved_into_the_entries_table(tmp_path: Path) -> None:
    """Entries written as diskcache rows by format 1 and 2 are moved into ``Entries`` on open,
    nothing lost; watermarks and key/value items stay where they are."""
    import diskcache

    old = diskcache.Cache(str(tmp_path / "shop"), eviction_policy="none", tag_index=True)
    for key, doc, raw in FORMAT_2:
        old.set("o:" + key, json.dumps(doc), tag=doc["status"])
        if raw is not None:
            old.set("r:" + key, json.dumps(raw))
    old.set("w:orders", "2026-01-01T00:00:00Z")
    old.set("k:inventory\x00SKU-1", "3", tag="kv:inventory")
    old.close()
    with DiskLedger(tmp_path, "shop") as ledger:
        assert ledger.counts() == {"pending": 1, "error": 1, "quarantined": 1, "delivered": 1}
        a, big, q, d = (ledger.get(key) for key in ("a", "big", "q", "d"))
        assert (a.raw, a.data, a.created) == ({"id": 1}, {"order_id": "1"}, 1.0)
        assert (big.raw, big.attempts, big.last_error, big.updated) == ({"text": "x" * 40_000}, 2, "400", 5.0)
        assert (q.raw, q.reason) == ({"id": 9}, "bad")
        assert (d.raw, d.destination_id) == (None, "W-4")
        assert ledger.watermark("orders") == "2026-01-01T00:00:00Z"
        assert dict(ledger.kv_items("inventory")) == {"SKU-1": 3}
        left = "SELECT COUNT(*) FROM Cache WHERE key LIKE 'o:%' OR key LIKE 'r:%'"
        assert ledger._sql(left, ()).fetchone() == (0,)
        assert not ledger.claim("a") and ledger.claim("new")
    with DiskLedger(tmp_path, "shop") as again:           # a second open moves nothing
        assert again.counts() == {"pending": 2, "error": 1, "quarantined": 1, "delivered": 1}


def test_transition_refuses_a_wrong_from_status(ledger: Ledger) -> None:
    """Compare-and-set moves only from the named statuses and leaves other entries unchanged."""
    ledger.claim("a")
    ledger.set_status("a", "delivered", destination_id="W-1")
    assert not ledger.transition("a", "pending", "sending")
    assert not ledger.transition("missing", "pending", "sending")
    assert ledger.get("a").status == "delivered" and ledger.get("a").attempts == 0
    assert ledger.transition("a", ("delivered", "shipped"), "shipped", data={"packages": [1]})
    assert ledger.get("a").status == "shipped" and ledger.get("a").data == {"packages": [1]}


def test_only_one_worker_moves_to_sending(ledger_state: str) -> None:
    """Threads racing pending -> sending on the same key: exactly one wins."""
    with _open(ledger_state) as ledger:
        ledger.claim("a")
    start = threading.Barrier(6)
    wins: list[bool] = []

    def race() -> None:
        with _open(ledger_state) as own:
            start.wait()
            wins.append(own.transition("a", "pending", "sending"))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 5 + [True]


def test_attempts_count_moves_to_sending(ledger: Ledger) -> None:
    """Each move to sending bumps attempts; other moves do not; timestamps advance."""
    ledger.claim("a")
    created = ledger.get("a").created
    ledger.set_status("a", "sending")
    ledger.set_status("a", "error", last_error="503")
    time.sleep(0.01)
    assert ledger.transition("a", "error", "sending")
    entry = ledger.set_status("a", "delivered", destination_id="W-7")
    assert (entry.attempts, entry.last_error, entry.destination_id) == (2, "503", "W-7")
    assert ledger.get("a") == entry and entry.created == created < entry.updated


def test_set_status_of_unknown_key_or_status_raises(ledger: Ledger) -> None:
    """Unknown keys, statuses and fields are errors, not silent creations."""
    with pytest.raises(LedgerError, match="no ledger entry"):
        ledger.set_status("nope", "delivered")
    ledger.claim("a")
    with pytest.raises(LedgerError, match="unknown status 'sent'"):
        ledger.set_status("a", "sent")
    with pytest.raises(LedgerError, match="unknown entry field 'destination'"):
        ledger.set_status("a", "delivered", destination="W-1")


def test_raw_record_kept_while_quarantined(ledger: Ledger) -> None:
    """A quarantined entry keeps its reason and raw record; delivery drops both."""
    raw = {"id": 17, "line_items": [{"sku": None}]}
    ledger.claim("17")
    ledger.set_status("17", "quarantined", reason="lines[0].sku: None is not a string", raw=raw)
    entry = next(ledger.iter_status("quarantined"))
    assert (entry.key, entry.raw, entry.reason) == ("17", raw, "lines[0].sku: None is not a string")
    ledger.transition("17", "quarantined", "sending")
    assert ledger.get("17").raw == raw
    delivered = ledger.set_status("17", "delivered", destination_id="W-1")
    assert delivered.raw is None and delivered.reason is None


def test_watermark_moves_forward_only(ledger: Ledger) -> None:
    """Watermarks refuse to go back (as instants, as numbers) unless forced."""
    assert ledger.watermark("orders") is None
    assert ledger.set_watermark("orders", "2024-05-01T10:00:00Z")
    assert not ledger.set_watermark("orders", "2024-05-01T11:00:00+02:00")
    assert ledger.set_watermark("orders", "2024-05-01T10:30:00")
    assert ledger.watermark("orders") == "2024-05-01T10:30:00"
    assert ledger.set_watermark("orders", "2024-04-01", force=True)
    assert ledger.watermark("orders") == "2024-04-01"
    assert ledger.set_watermark("since_id", "9") and ledger.set_watermark("since_id", "10")
    assert not ledger.set_watermark("since_id", "9") and ledger.watermark("since_id") == "10"


def test_reset_since_keeps_delivered_keys_blocking(ledger: Ledger) -> None:
    """A re-pull releases recent skipped keys only; delivered keys still refuse a second claim."""
    ledger.claim("old-skipped", status="skipped", reason="filtered")
    time.sleep(0.02)
    since = datetime.now(timezone.utc).isoformat()
    for key in ("delivered", "skipped", "quarantined"):
        ledger.claim(key)
    ledger.set_status("delivered", "delivered", destination_id="W-1")
    ledger.set_status("skipped", "skipped", reason="status is on-hold")
    ledger.set_status("quarantined", "quarantined", reason="bad", raw={"id": 1})
    ledger.set_watermark("orders", "2099-01-01T00:00:00")
    assert ledger.reset_since(since) == 1
    assert ledger.watermark("orders") == since
    assert [ledger.claim(key) for key in ("delivered", "skipped", "quarantined", "old-skipped")] \
        == [False, True, False, False]
    with pytest.raises(LedgerError, match="can be released"):
        ledger.reset_since(since, release=["delivered"])


def test_iter_status_and_counts_agree_after_mixed_updates(ledger: Ledger) -> None:
    """After random claims and moves, counts() and iter_status() both match a plain model."""
    rng = random.Random(7)
    model: dict[str, str] = {}
    ledger.claim_many([(key, {}) for key in KEYS])
    model.update(dict.fromkeys(KEYS, "pending"))
    for _ in range(1500):
        key, status = rng.choice(KEYS), rng.choice(STATUSES)
        if rng.random() < 0.5:
            ledger.set_status(key, status)
            model[key] = status
        elif ledger.transition(key, ("pending", "error"), status):
            model[key] = status
    ledger.kv_set("inventory", "SKU-1", 5)
    expected = Counter(model.values())
    assert ledger.counts() == dict(expected)
    for status in STATUSES:
        assert sorted(e.key for e in ledger.iter_status(status)) == sorted(
            k for k, s in model.items() if s == status)
    assert sum(1 for _ in ledger.iter_status(*STATUSES)) == len(KEYS)


def test_latest_lists_recent_updates_first(ledger: Ledger) -> None:
    """latest() returns the most recently updated entries of a status, newest first."""
    for key in ("a", "b", "c"):
        ledger.claim(key)
    for key in ("b", "a", "c"):
        ledger.set_status(key, "error", last_error=f"boom {key}")
        time.sleep(0.01)
    assert [e.key for e in ledger.latest("error", 2)] == ["c", "a"]


def test_kv_area_is_namespaced(ledger: Ledger) -> None:
    """kv values round-trip per namespace and never show up as entries."""
    ledger.kv_set("inventory", "SKU-1", {"qty": 4})
    ledger.kv_set("inventory", "SKU-2", 0)
    ledger.kv_set("lookup", "SKU-1", "id-9")
    assert dict(ledger.kv_items("inventory")) == {"SKU-1": {"qty": 4}, "SKU-2": 0}
    assert ledger.kv_get("lookup", "SKU-1") == "id-9" and ledger.kv_get("lookup", "x", 1) == 1
    assert ledger.kv_delete("inventory", "SKU-1") and not ledger.kv_delete("inventory", "SKU-1")
    assert ledger.counts() == {} and ledger.get("SKU-2") is None


def test_kv_add_stores_only_when_absent_even_across_threads(ledger_state: str) -> None:
    """kv_add is an atomic add-if-absent: of many threads adding one key, exactly one wins."""
    wins: list[int] = []

    def worker(n: int) -> None:
        with _open(ledger_state, "acme") as mine:
            if mine.kv_add("packages", "1001|1Z", {"by": n}):
                wins.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with _open(ledger_state, "acme") as ledger:
        assert len(wins) == 1 and ledger.kv_get("packages", "1001|1Z") == {"by": wins[0]}
        assert not ledger.kv_add("packages", "1001|1Z", {"by": -1})
        assert ledger.kv_delete("packages", "1001|1Z") and ledger.kv_add("packages", "1001|1Z", 1)


def test_reopening_keeps_everything(ledger_state: str) -> None:
    """Entries, watermarks and kv values survive closing and reopening the ledger."""
    with _open(ledger_state) as ledger:
        ledger.claim("a", data={"order_number": "#1001"})
        ledger.set_status("a", "delivered", destination_id="W-1")
        ledger.set_watermark("orders", "2024-05-01T00:00:00Z")
        ledger.kv_set("inventory", "SKU-1", 3)
    with _open(ledger_state) as ledger, _open(ledger_state, "other") as other:
        assert ledger.get("a").destination_id == "W-1"
        assert ledger.get("a").data == {"order_number": "#1001"}
        assert ledger.watermark("orders") == "2024-05-01T00:00:00Z"
        assert ledger.kv_get("inventory", "SKU-1") == 3
        assert other.get("a") is None and other.claim("a")


def test_bad_integration_name_is_refused(tmp_path: Path) -> None:
    """An integration name that could escape the state directory is refused."""
    with pytest.raises(LedgerError):
        DiskLedger(tmp_path, "../elsewhere")


def test_open_retries_a_locked_first_open_but_not_other_errors(tmp_path: Path,
                                                                monkeypatch) -> None:
    """A "database is locked" while diskcache creates its tables is retried; other errors raise."""
    import diskcache

    from engine.ledger import disk as module

    real, calls = diskcache.Cache, []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return real(*args, **kwargs)

    monkeypatch.setattr(module.diskcache, "Cache", flaky)
    with DiskLedger(tmp_path, "shop") as opened:
        assert opened.claim("a") and len(calls) == 3

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(module.diskcache, "Cache", broken)
    with pytest.raises(LedgerError, match="disk I/O error"):
        DiskLedger(tmp_path, "other")


KILLED_WRITER = textwrap.dedent("""
    import sys
    from engine.ledger import open_store
    ledger = open_store(sys.argv[1]).open("shop")
    n = 0
    while True:
        page = [(f"k{n + i}", {"data": {"n": n + i}}) for i in range(50)]
        ledger.claim_many(page)
        for key, _ in page[::5]:
            ledger.transition(key, "pending", "sending")
            ledger.set_status(key, "delivered", destination_id="D" + key)
        n += 50
        if n == 500:
            print("ready", flush=True)
""")


def test_sigkill_mid_write_leaves_a_readable_ledger(ledger_state: str) -> None:
    """A writer killed with SIGKILL leaves a consistent ledger that opens, reads and claims."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, ledger_state], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with open_store(ledger_state).open("shop") as ledger:
        counts = ledger.counts()
        entries = list(ledger.iter_status(*STATUSES))
        assert len(entries) == sum(counts.values()) >= 500
        assert len(entries) % 50 == 0  # pages are all-or-nothing
        assert all(e.data["n"] == int(e.key[1:]) for e in entries)
        assert ledger.claim("after-kill") and not ledger.claim("k0")
    if not is_url(ledger_state):
        with sqlite3.connect(Path(ledger_state) / "shop" / "cache.db") as con:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()


def _raw_column(ledger: Ledger) -> dict[str, tuple[int, str]]:
    """Stored raw records: key -> (row id, raw JSON text), for entries that have one."""
    if isinstance(ledger, DiskLedger):
        sql = "SELECT key, rowid, raw FROM Entries WHERE raw IS NOT NULL ORDER BY key"
        rows = ledger._sql(sql, ()).fetchall()
    else:
        sql = ("SELECT key, seq, raw FROM syncengine_entries WHERE integration = %s AND raw IS NOT NULL"
               " ORDER BY key")
        rows = ledger._conn.execute(sql, (ledger.integration,)).fetchall()
    return {key: (rowid, raw) for key, rowid, raw in rows}


def test_raw_record_is_written_once_and_dropped_on_delivery(ledger: Ledger) -> None:
    """The raw record is readable JSON in its own column: status moves keep it as it is, a
    lost claim never replaces it, and delivery clears it."""
    raw = {"id": 5, "name": "Zoë", "lines": [{"sku": "A", "price": "9.50"}]}
    assert ledger.claim_many([("5", {"raw": raw, "data": {"n": 5}})]) == [True]
    assert not ledger.claim("5", raw={"id": "other"})
    [(rowid, text)] = _raw_column(ledger).values()
    assert json.loads(text) == raw and "Zoë" in text
    assert ledger.transition("5", "pending", "sending", data={"m": 1})
    ledger.set_status("5", "error", last_error="400")
    assert _raw_column(ledger) == {"5": (rowid, text)}
    assert ledger.get("5").raw == raw and next(ledger.iter_status("error")).raw == raw
    assert ledger.transition("5", "error", "sending")
    entry = ledger.set_status("5", "delivered", destination_id="W-5")
    assert entry.raw is None and ledger.get("5").raw is None and _raw_column(ledger) == {}
    assert ledger.get("5").data == {"n": 5, "m": 1}


def test_raw_record_replaced_or_removed_by_the_raw_field(ledger: Ledger) -> None:
    """`raw=` replaces the stored raw record, `raw=None` removes it; a claim into a status that
    keeps none stores none."""
    ledger.claim("a", raw={"v": 1})
    assert ledger.set_status("a", "quarantined", reason="bad", raw={"v": 2}).raw == {"v": 2}
    assert ledger.get("a").raw == {"v": 2}
    assert ledger.set_status("a", "held", raw=None).raw is None and ledger.get("a").raw is None
    assert _raw_column(ledger) == {}
    ledger.claim("b", status="skipped", reason="filtered", raw={"v": 3})
    assert ledger.get("b").raw is None and _raw_column(ledger) == {}


def test_reset_since_releases_the_raw_record_too(ledger: Ledger) -> None:
    """A released entry leaves nothing behind, its raw record included; a new claim starts clean."""
    ledger.claim("q", status="quarantined", reason="bad", raw={"id": 1})
    assert ledger.reset_since("2000-01-01", release=["quarantined"]) == 1
    assert ledger.get("q") is None and _raw_column(ledger) == {}
    assert ledger.claim("q") and ledger.get("q").raw is None


def test_release_unsent_deletes_only_pending_entries_without_a_raw_record(ledger: Ledger) -> None:
    """Claimed-but-never-sent keys go; a pending key with its raw record, and every other
    status (with or without one), stay."""
    ledger.claim_many([("unsent", {}), ("released", {"raw": {"id": 2}}),
                       ("skipped", {"status": "skipped", "reason": "filter"}),
                       ("sending", {"status": "sending", "raw": {"id": 4}})])
    ledger.claim("delivered")
    ledger.set_status("delivered", "delivered", destination_id="W-5")
    assert ledger.release_unsent() == 1
    assert ledger.get("unsent") is None and ledger.claim("unsent")
    assert ledger.counts() == {"pending": 2, "skipped": 1, "sending": 1, "delivered": 1}
    assert ledger.release_unsent() == 1 and ledger.release_unsent() == 0


def test_the_history_keeps_the_newest_runs_of_each_flow_and_masks_secrets(ledger_state: str) -> None:
    """The ledger keeps the newest RUNS_KEPT runs per flow (newest first), others untouched, and
    stores a run with every secret masked (both ledgers)."""
    mask = lambda text: text.replace("s3cret-token", "***")  # noqa: E731
    with open_store(ledger_state).open("shop", mask=mask) as ledger:
        for n in range(RUNS_KEPT + 5):
            ledger.record_run({"flow": "orders", "n": n})
        ledger.record_run({"flow": "inventory", "n": 0, "error": "401 for token s3cret-token"})
        assert [run["n"] for run in ledger.runs("orders", n=1000)] == list(range(RUNS_KEPT + 4, 4, -1))
        assert ledger.last_runs() == {"inventory": {"flow": "inventory", "n": 0, "error": "401 for token ***"},
                                      "orders": {"flow": "orders", "n": RUNS_KEPT + 4}}
        assert [run["flow"] for run in ledger.runs(n=2)] == ["inventory", "orders"]
    if not is_url(ledger_state):
        assert b"s3cret-token" not in (Path(ledger_state) / "shop" / "cache.db").read_bytes()
