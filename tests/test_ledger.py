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
from engine.ledger import STATUSES, DiskLedger, Ledger

ROOT = Path(__file__).resolve().parent.parent
KEYS = [f"order-{n}" for n in range(400)]


@pytest.fixture
def ledger(tmp_path: Path):
    with DiskLedger(tmp_path, "shop") as opened:
        yield opened


def _claim_all(directory: str, keys: list[str], start: threading.Barrier | None) -> list[str]:
    with DiskLedger(directory, "shop", fsync=False) as own:
        if start is not None:
            start.wait()
        return [key for key in keys if own.claim(key)]


def _claim_in_process(directory: str, keys: list[str], start, out: str) -> None:
    start.wait()
    Path(out).write_text(json.dumps(_claim_all(directory, keys, None)))


def _claim_pages_in_process(directory: str, keys: list[str], start, out: str) -> None:
    start.wait()
    with DiskLedger(directory, "shop", fsync=False) as own:
        pages = [keys[n:n + 25] for n in range(0, len(keys), 25)]
        won = [key for page in pages
               for key, new in zip(page, own.claim_many([(k, {"raw": {"k": k}}) for k in page]))
               if new]
    Path(out).write_text(json.dumps(won))


def test_disk_ledger_satisfies_the_protocol(ledger: DiskLedger) -> None:
    """DiskLedger offers every operation of the Ledger protocol."""
    wanted = [name for name in dir(Ledger) if not name.startswith("_")] + ["__enter__"]
    assert [name for name in wanted if not hasattr(ledger, name)] == []


def test_claim_is_atomic_across_threads(tmp_path: Path) -> None:
    """Eight threads claiming the same keys in different orders win each key exactly once."""
    start = threading.Barrier(8)
    results: list[list[str]] = []
    orders = [random.Random(n).sample(KEYS, len(KEYS)) for n in range(8)]
    threads = [threading.Thread(target=lambda o=o: results.append(_claim_all(str(tmp_path), o,
                                                                             start)))
               for o in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wins = Counter(key for won in results for key in won)
    assert sorted(wins) == sorted(KEYS) and set(wins.values()) == {1}


def _race(tmp_path: Path, claimer) -> tuple[set, set]:
    """Run `claimer` in two processes released at once, each over KEYS in its own order;
    return the keys each one won."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    outs = [str(tmp_path / f"won-{n}.json") for n in range(2)]
    procs = [spawn.Process(target=claimer,
                           args=(str(tmp_path), random.Random(n).sample(KEYS, len(KEYS)), start,
                                 out))
             for n, out in enumerate(outs)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    first, second = (set(json.loads(Path(out).read_text())) for out in outs)
    return first, second


def test_claim_is_atomic_across_processes(tmp_path: Path) -> None:
    """Two processes claiming the same keys at once win each key exactly once between them."""
    first, second = _race(tmp_path, _claim_in_process)
    assert first.isdisjoint(second) and first | second == set(KEYS)


def test_claim_never_overwrites(ledger: DiskLedger) -> None:
    """A second claim of a key returns False and leaves the first entry untouched."""
    assert ledger.claim("a", data={"number": "1001"})
    ledger.set_status("a", "delivered", destination_id="W-1")
    assert not ledger.claim("a", data={"number": "other"})
    entry = ledger.get("a")
    assert (entry.status, entry.destination_id, entry.data) == ("delivered", "W-1",
                                                                 {"number": "1001"})


def test_claim_many_reports_each_key_in_order(ledger: DiskLedger) -> None:
    """claim_many wins new keys, loses known keys and repeats within the page, in input order."""
    ledger.claim("b")
    won = ledger.claim_many([("a", {}), ("b", {}), ("c", {"data": {"n": 3}}), ("a", {})])
    assert won == [True, False, True, False]
    assert ledger.get("c").data == {"n": 3} and ledger.get("c").status == "pending"


def test_claim_many_is_one_transaction(ledger: DiskLedger) -> None:
    """A bad item in a page rolls back the whole page's claims."""
    with pytest.raises(LedgerError):
        ledger.claim_many([("a", {}), ("b", {"data": {"bad": object()}})])
    assert ledger.get("a") is None


def test_claim_many_is_atomic_across_processes(tmp_path: Path) -> None:
    """Two processes claiming the same keys a page at a time win each key exactly once."""
    first, second = _race(tmp_path, _claim_pages_in_process)
    assert first.isdisjoint(second) and first | second == set(KEYS)
    with DiskLedger(tmp_path, "shop") as ledger:
        assert ledger.counts() == {"pending": len(KEYS)}
        assert all(ledger.get(key).raw == {"k": key} for key in KEYS)


BULK_PAGE = [
    ("a", {"raw": {"id": 1}, "data": {"order_id": "1"}}),
    ("b", {"status": "skipped", "reason": "spec filter", "raw": {"id": 2}}),
    ("big", {"raw": {"text": "x" * 40_000}}),                 # diskcache keeps it in a file
    ("c", {"status": "quarantined", "reason": "bad", "raw": {"id": 3}}),
    ("a", {"raw": {"id": "again"}}),
    ("known", {"raw": {"id": 4}}),
]
ROW = ("SELECT key, raw, expire_time, access_count, tag, size, mode, filename IS NULL, value,"
       " store_time = access_time FROM Cache ORDER BY key")
TAGGED = "SELECT key FROM Cache WHERE tag IS NOT NULL ORDER BY rowid"


def _bulk_and_per_key(tmp_path: Path, monkeypatch) -> tuple[DiskLedger, DiskLedger]:
    from engine import ledger as module

    monkeypatch.setattr(module, "_now", lambda: 1700000000.0)
    bulk, per_key = DiskLedger(tmp_path, "bulk"), DiskLedger(tmp_path, "per-key")
    per_key._bulk = False
    assert bulk._bulk
    for ledger in (bulk, per_key):
        ledger.claim("known")
        assert ledger.claim_many(BULK_PAGE) == [True, True, True, True, False, False]
    return bulk, per_key


def test_bulk_claim_writes_the_rows_cache_add_writes(tmp_path: Path, monkeypatch) -> None:
    """The bulk claim stores exactly the rows, tags and counts that per-key Cache.add stores."""
    bulk, per_key = _bulk_and_per_key(tmp_path, monkeypatch)
    with bulk, per_key:
        assert bulk._sql(ROW, ()).fetchall() == per_key._sql(ROW, ()).fetchall()
        assert bulk._sql(TAGGED, ()).fetchall() == per_key._sql(TAGGED, ()).fetchall()
        settings = "SELECT key, value FROM Settings WHERE key IN ('count', 'size')"
        assert bulk._sql(settings, ()).fetchall() == per_key._sql(settings, ()).fetchall()


def test_bulk_claimed_rows_serve_every_method_and_plain_diskcache(tmp_path: Path,
                                                                 monkeypatch) -> None:
    """Rows from the bulk claim are read and changed by every ledger method and by diskcache."""
    import diskcache

    bulk, per_key = _bulk_and_per_key(tmp_path, monkeypatch)
    per_key.close()
    with bulk:
        assert bulk.get("a").raw == {"id": 1} and bulk.get("big").raw == {"text": "x" * 40_000}
        assert bulk.counts() == {"pending": 3, "skipped": 1, "quarantined": 1}
        assert [e.key for e in bulk.iter_status("pending")] == ["known", "a", "big"]
        assert [e.key for e in bulk.latest("skipped")] == ["b"]
        assert bulk.transition("a", "pending", "sending")
        assert bulk.set_status("a", "delivered", destination_id="W-1").raw is None
        assert not bulk.claim("a") and bulk.claim_many([("b", {})]) == [False]
        assert bulk.reset_since("2000-01-01", release=("skipped", "quarantined")) == 2
        assert bulk.claim("b") and bulk.get("b").status == "pending"
        plain = diskcache.Cache(str(bulk.path))
        try:
            assert json.loads(plain.get("o:a"))["destination_id"] == "W-1"
            assert json.loads(plain.get("r:big")) == {"text": "x" * 40_000}
            assert not plain.add("o:big", "{}") and plain.get("o:c") is None
            assert len(plain) == 6         # o:known, o:a, o:big, r:big, o:b, w:orders
        finally:
            plain.close()


def test_bulk_claim_falls_back_when_diskcache_schema_differs(tmp_path: Path) -> None:
    """A Cache table that is not the expected one turns the bulk path off; claims still work."""
    with DiskLedger(tmp_path, "shop") as ledger:
        ledger._sql("ALTER TABLE Cache ADD COLUMN extra TEXT", ())
    with DiskLedger(tmp_path, "shop") as ledger:
        assert not ledger._bulk
        assert ledger.claim_many([("a", {"raw": {"id": 1}}), ("a", {})]) == [True, False]
        assert ledger.get("a").raw == {"id": 1}


def test_transition_refuses_a_wrong_from_status(ledger: DiskLedger) -> None:
    """Compare-and-set moves only from the named statuses and leaves other entries unchanged."""
    ledger.claim("a")
    ledger.set_status("a", "delivered", destination_id="W-1")
    assert not ledger.transition("a", "pending", "sending")
    assert not ledger.transition("missing", "pending", "sending")
    assert ledger.get("a").status == "delivered" and ledger.get("a").attempts == 0
    assert ledger.transition("a", ("delivered", "shipped"), "shipped", data={"packages": [1]})
    assert ledger.get("a").status == "shipped" and ledger.get("a").data == {"packages": [1]}


def test_only_one_worker_moves_to_sending(tmp_path: Path) -> None:
    """Threads racing pending -> sending on the same key: exactly one wins."""
    with DiskLedger(tmp_path, "shop") as ledger:
        ledger.claim("a")
    start = threading.Barrier(6)
    wins: list[bool] = []

    def race() -> None:
        with DiskLedger(tmp_path, "shop", fsync=False) as own:
            start.wait()
            wins.append(own.transition("a", "pending", "sending"))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 5 + [True]


def test_attempts_count_moves_to_sending(ledger: DiskLedger) -> None:
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


def test_set_status_of_unknown_key_or_status_raises(ledger: DiskLedger) -> None:
    """Unknown keys, statuses and fields are errors, not silent creations."""
    with pytest.raises(LedgerError, match="no ledger entry"):
        ledger.set_status("nope", "delivered")
    ledger.claim("a")
    with pytest.raises(LedgerError, match="unknown status 'sent'"):
        ledger.set_status("a", "sent")
    with pytest.raises(LedgerError, match="unknown entry field 'destination'"):
        ledger.set_status("a", "delivered", destination="W-1")


def test_raw_record_kept_while_quarantined(ledger: DiskLedger) -> None:
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


def test_watermark_moves_forward_only(ledger: DiskLedger) -> None:
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


def test_reset_since_keeps_delivered_keys_blocking(ledger: DiskLedger) -> None:
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


def test_iter_status_and_counts_agree_after_mixed_updates(ledger: DiskLedger) -> None:
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


def test_latest_lists_recent_updates_first(ledger: DiskLedger) -> None:
    """latest() returns the most recently updated entries of a status, newest first."""
    for key in ("a", "b", "c"):
        ledger.claim(key)
    for key in ("b", "a", "c"):
        ledger.set_status(key, "error", last_error=f"boom {key}")
        time.sleep(0.01)
    assert [e.key for e in ledger.latest("error", 2)] == ["c", "a"]


def test_kv_area_is_namespaced(ledger: DiskLedger) -> None:
    """kv values round-trip per namespace and never show up as entries."""
    ledger.kv_set("inventory", "SKU-1", {"qty": 4})
    ledger.kv_set("inventory", "SKU-2", 0)
    ledger.kv_set("lookup", "SKU-1", "id-9")
    assert dict(ledger.kv_items("inventory")) == {"SKU-1": {"qty": 4}, "SKU-2": 0}
    assert ledger.kv_get("lookup", "SKU-1") == "id-9" and ledger.kv_get("lookup", "x", 1) == 1
    assert ledger.kv_delete("inventory", "SKU-1") and not ledger.kv_delete("inventory", "SKU-1")
    assert ledger.counts() == {} and ledger.get("SKU-2") is None


def test_kv_add_stores_only_when_absent_even_across_threads(tmp_path: Path) -> None:
    """kv_add is an atomic add-if-absent: of many threads adding one key, exactly one wins."""
    wins: list[int] = []

    def worker(n: int) -> None:
        with DiskLedger(tmp_path, "acme") as mine:
            if mine.kv_add("packages", "1001|1Z", {"by": n}):
                wins.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with DiskLedger(tmp_path, "acme") as ledger:
        assert len(wins) == 1 and ledger.kv_get("packages", "1001|1Z") == {"by": wins[0]}
        assert not ledger.kv_add("packages", "1001|1Z", {"by": -1})
        assert ledger.kv_delete("packages", "1001|1Z") and ledger.kv_add("packages", "1001|1Z", 1)


def test_reopening_keeps_everything(tmp_path: Path) -> None:
    """Entries, watermarks and kv values survive closing and reopening the directory."""
    with DiskLedger(tmp_path, "shop") as ledger:
        ledger.claim("a", data={"order_number": "#1001"})
        ledger.set_status("a", "delivered", destination_id="W-1")
        ledger.set_watermark("orders", "2024-05-01T00:00:00Z")
        ledger.kv_set("inventory", "SKU-1", 3)
    with DiskLedger(tmp_path, "shop") as ledger, DiskLedger(tmp_path, "other") as other:
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

    from engine import ledger as module

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
    from engine.ledger import DiskLedger
    ledger = DiskLedger(sys.argv[1], "shop")
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


def test_sigkill_mid_write_leaves_a_readable_ledger(tmp_path: Path) -> None:
    """A writer killed with SIGKILL leaves a consistent ledger that opens, reads and claims."""
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with DiskLedger(tmp_path, "shop") as ledger:
        counts = ledger.counts()
        entries = list(ledger.iter_status(*STATUSES))
        assert len(entries) == sum(counts.values()) >= 500
        assert len(entries) % 50 == 0  # pages are all-or-nothing
        assert all(e.data["n"] == int(e.key[1:]) for e in entries)
        assert ledger.claim("after-kill") and not ledger.claim("k0")
    with sqlite3.connect(tmp_path / "shop" / "cache.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


def _stored(ledger: DiskLedger, prefix: str) -> dict[str, tuple[int, str]]:
    """Stored diskcache rows whose key starts with `prefix`: key -> (rowid, value text)."""
    sql = "SELECT key, rowid, value FROM Cache WHERE key LIKE ? ORDER BY key"
    return {key: (rowid, value) for key, rowid, value in ledger._sql(sql, (prefix + "%",)).fetchall()}


def test_raw_record_is_written_once_and_dropped_on_delivery(ledger: DiskLedger) -> None:
    """The raw record is its own readable JSON value: status moves neither read nor rewrite it,
    a lost claim never replaces it, and delivery deletes it."""
    raw = {"id": 5, "name": "Zoë", "lines": [{"sku": "A", "price": "9.50"}]}
    assert ledger.claim_many([("5", {"raw": raw, "data": {"n": 5}})]) == [True]
    assert not ledger.claim("5", raw={"id": "other"})
    [(rowid, text)] = _stored(ledger, "r:").values()
    assert json.loads(text) == raw and "Zoë" in text
    assert ledger.transition("5", "pending", "sending", data={"m": 1})
    ledger.set_status("5", "error", last_error="400")
    assert _stored(ledger, "r:") == {"r:5": (rowid, text)}
    assert ledger.get("5").raw == raw and next(ledger.iter_status("error")).raw == raw
    assert ledger.transition("5", "error", "sending")
    entry = ledger.set_status("5", "delivered", destination_id="W-5")
    assert entry.raw is None and ledger.get("5").raw is None and _stored(ledger, "r:") == {}
    assert ledger.get("5").data == {"n": 5, "m": 1}


def test_raw_record_replaced_or_removed_by_the_raw_field(ledger: DiskLedger) -> None:
    """`raw=` replaces the stored raw record, `raw=None` removes it; a claim into a status that
    keeps none stores none."""
    ledger.claim("a", raw={"v": 1})
    assert ledger.set_status("a", "quarantined", reason="bad", raw={"v": 2}).raw == {"v": 2}
    assert ledger.get("a").raw == {"v": 2}
    assert ledger.set_status("a", "held", raw=None).raw is None and ledger.get("a").raw is None
    assert _stored(ledger, "r:") == {}
    ledger.claim("b", status="skipped", reason="filtered", raw={"v": 3})
    assert ledger.get("b").raw is None and _stored(ledger, "r:") == {}


def test_version_1_entry_with_inline_raw_is_read_and_moved_out(ledger: DiskLedger) -> None:
    """An entry written by format 1 (raw inside the document) reads as before; its next move
    stores the raw record apart, and delivery drops it."""
    doc = {"v": 1, "status": "quarantined", "created": 1.0, "updated": 1.0, "reason": "bad",
           "raw": {"id": 9}, "data": {"n": 9}}
    ledger._cache.set("o:9", json.dumps(doc), tag="quarantined")
    entry = next(ledger.iter_status("quarantined"))
    assert (entry.raw, entry.reason, entry.data) == ({"id": 9}, "bad", {"n": 9})
    assert ledger.transition("9", "quarantined", "sending")
    assert "raw" not in json.loads(_stored(ledger, "o:")["o:9"][1])
    assert ledger.get("9").raw == {"id": 9} and ledger.get("9").attempts == 1
    ledger.set_status("9", "delivered", destination_id="W-9")
    assert ledger.get("9").raw is None and _stored(ledger, "r:") == {}


def test_reset_since_releases_the_raw_record_too(ledger: DiskLedger) -> None:
    """A released entry leaves nothing behind, its raw record included; a new claim starts clean."""
    ledger.claim("q", status="quarantined", reason="bad", raw={"id": 1})
    assert ledger.reset_since("2000-01-01", release=["quarantined"]) == 1
    assert _stored(ledger, "o:") == {} and _stored(ledger, "r:") == {}
    assert ledger.claim("q") and ledger.get("q").raw is None
