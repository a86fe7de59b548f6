"""The scheduler's entries (Celery beat, no broker needed): one per enabled flow on its period,
first runs spread over the period, last runs kept across a restart, entries following the specs."""

from __future__ import annotations

import datetime
import shutil
from pathlib import Path

import pytest

pytest.importorskip("celery")

from engine import ROOT, runner  # noqa: E402
from engine.cluster import RUN_FLOW, Settings, dated_entries, first_due, make_app, scheduler_class  # noqa: E402

NOW = datetime.datetime(2026, 12, 3, 12, 0, tzinfo=datetime.timezone.utc)


def project_dir(tmp_path: Path) -> list[str]:
    shutil.copytree(ROOT / "samples" / "integrations", tmp_path / "integrations")
    return [str(ROOT / "connectors"), str(tmp_path / "integrations")]


def scheduler(paths: list[str], tmp_path: Path):
    app = make_app(Settings(paths, str(tmp_path / "state"), "memory://"))
    app.conf.beat_schedule = dated_entries(runner.load_project(paths), None, None, app.now())
    return scheduler_class(Settings(paths, str(tmp_path / "state"), "memory://"), None, None)(
        app=app, schedule_filename=str(tmp_path / "schedule"))


def test_one_entry_per_enabled_flow_on_its_period_expiring_within_it(tmp_path) -> None:
    paths = project_dir(tmp_path)
    project = runner.load_project(paths)
    entries = dated_entries(project, None, None, NOW)
    expected = {f"{i.name} {flow}" for i in project.integrations.values() for flow in i.flows if flow in runner.FLOWS}
    assert set(entries) == expected
    for name, entry in entries.items():
        integration, flow = name.split(" ")
        period = project.integrations[integration].flows[flow]
        assert entry["task"] == RUN_FLOW and entry["args"] == (integration, flow)
        assert entry["schedule"].total_seconds() == period and entry["options"]["expires"] == period
        assert NOW - datetime.timedelta(seconds=period) <= entry["last_run_at"] <= NOW
    only = dated_entries(project, 60.0, ["orders"], NOW)
    assert only and all(name.endswith(" orders") and e["schedule"].total_seconds() == 60 for name, e in only.items())


def test_first_runs_are_spread_over_the_period_and_fixed_by_name() -> None:
    period = 300.0
    offsets = sorted((first_due(f"shop-{n} orders", period, NOW) - NOW).total_seconds() + period for n in range(1000))
    assert 0 <= offsets[0] < 5 and period - 5 < offsets[-1] <= period
    buckets = [sum(1 for o in offsets if k * 30 <= o < (k + 1) * 30) for k in range(10)]
    assert min(buckets) > 60, buckets                    # about 100 in each tenth of the period
    assert first_due("shop-1 orders", period, NOW) == first_due("shop-1 orders", period, NOW)


def test_a_restart_keeps_when_each_job_last_ran(tmp_path) -> None:
    paths = project_dir(tmp_path)
    beat = scheduler(paths, tmp_path)
    name = next(iter(beat.schedule))
    ran = beat.app.now() - datetime.timedelta(seconds=17)
    beat.schedule[name].last_run_at = ran
    beat.sync()
    beat.close()
    again = scheduler(paths, tmp_path)
    try:
        assert again.schedule[name].last_run_at == ran
    finally:
        again.close()


def test_the_entries_follow_the_specs(tmp_path) -> None:
    paths = project_dir(tmp_path)
    beat = scheduler(paths, tmp_path)
    try:
        gone = Path(paths[1]) / "acme-woo-to-extensiv.yaml"
        assert any(name.startswith("acme-woo-to-extensiv ") for name in beat.schedule)
        gone.unlink()
        beat.checked = 0.0
        beat._refresh()
        assert not any(name.startswith("acme-woo-to-extensiv ") for name in beat.schedule)
        assert any(name.startswith("globex-shopify-to-extensiv ") for name in beat.schedule)
        (Path(paths[1]) / "broken.yaml").write_text("name: [not, a, spec\n", encoding="utf-8")
        before = dict(beat.schedule)
        beat.checked = 0.0
        beat._refresh()                                 # a spec that does not load: the schedule stays
        assert set(beat.schedule) == set(before)
    finally:
        beat.close()


def test_a_job_whose_ledger_cannot_be_reached_ends_in_one_error_line(tmp_path, monkeypatch, caplog) -> None:
    """A worker's job against a ledger that does not answer logs one line and returns; no
    traceback in the worker's log, nothing claimed (the next period tries again)."""
    from engine import cluster

    paths = project_dir(tmp_path)
    monkeypatch.setattr(cluster, "_settings", Settings(paths, "postgresql://postgres@127.0.0.1:1/nowhere", "memory://"))
    monkeypatch.setattr(cluster, "_projects", cluster._Projects())
    with caplog.at_level("ERROR", logger="syncengine.cluster"):
        result = cluster.run_flow("acme-woo-to-extensiv", "orders")
    assert "cannot open the PostgreSQL ledger" in result["error"]
    assert [r.getMessage() for r in caplog.records if r.name == "syncengine.cluster"] == [
        f"acme-woo-to-extensiv: orders job not run: {result['error']}"]
