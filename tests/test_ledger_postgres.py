"""The PostgreSQL ledger's own behaviour: chosen by a URL, versioned schema, errors that name the
problem (never the password), masked storage, the commands against it. The Ledger contract
itself runs on both ledgers in test_ledger.py; the crash and fault suites too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from engine import cli
from engine.errors import LedgerError
from engine.http import Redactor
from engine.ledger import open_store, postgres
from engine.ledger.stores import DiskStore, PostgresStore

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[test]')")
SECRET = 'pa"ss\\word-4711'


def run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    return cli.run(list(args), out, err), out.getvalue(), err.getvalue()


def test_the_state_names_the_store() -> None:
    """A postgresql:// (or postgres://) URL is the shared store, anything else a state directory."""
    assert isinstance(open_store("postgresql://u@h/db"), PostgresStore)
    assert isinstance(open_store("postgres://u@h/db"), PostgresStore)
    assert isinstance(open_store("state"), DiskStore)


def test_an_unknown_scheme_is_a_clear_usage_error() -> None:
    """`--state redis://…` stops with exit 2 and says what is accepted."""
    code, _, err = run("status", "--state", "redis://127.0.0.1:6379/0")
    assert code == 2 and "unsupported state URL scheme 'redis'" in err and "Traceback" not in err


def test_an_unreachable_server_is_named_without_its_password() -> None:
    """A server that does not answer: exit 2, the URL with its password masked, no traceback."""
    code, out, err = run("status", "--state", "postgresql://syncengine:s3cr3t-pw@127.0.0.1:1/ledger")
    assert code == 2 and "cannot open the PostgreSQL ledger postgresql://syncengine:***@127.0.0.1:1/ledger" in err
    assert "s3cr3t-pw" not in out + err and "Traceback" not in err


def test_the_schema_is_versioned_and_a_newer_one_is_refused(pg_url: str, monkeypatch) -> None:
    """Opening applies every migration once and records it; a schema written by a newer
    syncengine is refused rather than misread."""
    postgres.PostgresLedger(pg_url, "acme").close()
    postgres.PostgresLedger(pg_url, "globex").close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        versions = conn.execute("SELECT version FROM syncengine_migrations ORDER BY version").fetchall()
        assert [v for (v,) in versions] == [m[0] for m in postgres.MIGRATIONS]
        conn.execute("INSERT INTO syncengine_migrations (version, description) VALUES (99, 'from the future')")
    monkeypatch.setattr(postgres, "_migrated", set())          # a new process
    with pytest.raises(LedgerError, match="schema version 99, newer than this syncengine knows"):
        postgres.PostgresLedger(pg_url, "acme")


def test_a_search_path_without_a_schema_is_refused(pg_database: str) -> None:
    """A URL whose search_path names no existing schema says to create it, instead of writing elsewhere."""
    url = f"{pg_database}?options=-csearch_path%3Dnot_there"
    with pytest.raises(LedgerError, match="CREATE SCHEMA"):
        postgres.PostgresLedger(url, "acme")


def test_each_integration_has_its_own_ledger_in_the_shared_tables(pg_url: str) -> None:
    """Two integrations in one database share nothing: keys, watermarks, key/value areas."""
    with postgres.PostgresLedger(pg_url, "acme") as acme, postgres.PostgresLedger(pg_url, "globex") as globex:
        assert acme.claim("1001") and globex.claim("1001")
        acme.set_watermark("orders", "2026-01-02")
        acme.kv_set("pushed", "SKU", 3)
        assert globex.watermark("orders") is None and globex.kv_get("pushed", "SKU") is None
        assert acme.release_unsent() == 1 and globex.counts() == {"pending": 1}
    assert open_store(pg_url).names() == ["acme", "globex"]


def test_the_postgres_ledger_stores_nothing_secret(pg_url: str) -> None:
    """Opened with a run's mask, it stores errors, raw records and notes masked, as valid JSON."""
    with postgres.PostgresLedger(pg_url, "masked", mask=Redactor([SECRET]).mask) as ledger:
        ledger.claim("1", status="quarantined", reason=f"bad {SECRET}", raw={"note": SECRET, SECRET: 1})
        ledger.set_status("1", "error", last_error=json.dumps({"echo": SECRET}))
        ledger.kv_set("notes", "n", {"why": SECRET})
        entry = ledger.get("1")
        assert entry.last_error == '{"echo": "***"}' and ledger.kv_get("notes", "n") == {"why": "***"}
        assert entry.raw == {"note": "***", "***": 1}
    with psycopg.connect(pg_url) as conn:
        stored = conn.execute("SELECT doc || coalesce(raw, '') FROM syncengine_entries"
                              " UNION ALL SELECT value FROM syncengine_kv").fetchall()
    text = "".join(row[0] for row in stored)
    assert "word-4711" not in text and "***" in text


def test_status_retry_and_reset_read_the_shared_ledger(pg_url: str, tmp_path: Path) -> None:
    """`status`, `reset` and `retry` take `--state URL` (or $SYNCENGINE_STATE) like a directory."""
    with postgres.PostgresLedger(pg_url, "acme") as ledger:
        ledger.claim("1001", status="delivered", destination_id="W-1")
        ledger.claim("1002", status="quarantined", reason="no sku", raw={"id": 1002})
        ledger.set_watermark("orders", "2026-03-01T00:00:00Z")
    code, out, _ = run("status", "--state", pg_url)
    assert code == 8 and "acme: delivered 1, quarantined 1; watermark 2026-03-01T00:00:00Z" in out   # 8: quarantined
    assert "1002" in out and "no sku" in out
    code, out, err = run("reset", "--state", pg_url, "--integration", "acme", "--since", "2026-01-01")
    assert code == 0 and "re-read from 2026-01-01" in out, err
    code, _, err = run("status", "--state", pg_url, "--integration", "globex")
    assert code == 2 and "no ledger for integration 'globex' in postgresql://" in err
    with postgres.PostgresLedger(pg_url, "acme") as ledger:
        assert ledger.watermark("orders") == "2026-01-01" and ledger.get("1001").status == "delivered"


def test_status_of_a_database_where_nothing_ran_says_so(pg_url: str) -> None:
    """An empty database is not an error trace: `status` says nothing has run yet (exit 2)."""
    code, _, err = run("status", "--state", pg_url)
    assert code == 2 and "nothing has run yet" in err


def test_the_state_may_come_from_the_environment(pg_url: str, monkeypatch) -> None:
    """$SYNCENGINE_STATE is the default for --state (a deployment sets it once for every command)."""
    postgres.PostgresLedger(pg_url, "acme").close()
    monkeypatch.setenv("SYNCENGINE_STATE", pg_url)
    code, out, _ = run("status")
    assert code == 0 and out.startswith("acme: no orders yet"), out


def test_a_dry_run_writes_nothing_a_run_records_its_history_in_the_database(pg_url: str, tmp_path: Path, monkeypatch) -> None:
    """`run --dry-run --state URL` creates no ledger (not even the tables); a real run then
    delivers through the shared ledger, a second run delivers nothing again, and both are in the
    run history `status` reads, with whether a run holds the cluster-wide lock now."""
    from sync_rig import NAME, rig

    with rig(tmp_path, monkeypatch, state_url=pg_url) as r:
        r.write()
        assert r.cli("run", "--flow", "orders", "--dry-run").code == 0
        with pytest.raises(Exception, match="nothing has run yet"):
            open_store(pg_url).names()
        first = r.cli("run", "--flow", "orders")
        assert first.code == 0 and "delivered 6," in first.out, first.out
        assert r.cli("run", "--flow", "orders").out.count("delivered 0,") == 1
        assert open_store(pg_url).names() == [NAME]
        with r.ledger() as ledger:
            assert ledger.counts() == {"delivered": 6} and ledger.watermark("orders")
        from engine import status

        store = open_store(pg_url)
        document = status.status_document(pg_url)["integrations"][NAME]["flows"]["orders"]
        assert document["last_run"]["counts"]["delivered"] == 0 and document["running"] is False
        assert [run["counts"]["delivered"] for run in status.runs(pg_url, NAME, "orders")] == [0, 6]
        with store.lock(NAME, "orders"):
            assert store.busy(NAME, "orders") and not store.busy(NAME, "shipments")
