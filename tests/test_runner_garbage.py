"""A long-lived process (a `syncengine worker` pool process, `run --every`, `serve`) runs one
integration after another: the cyclic garbage each run leaves must be collected, not kept.

`runner._startup_frozen` freezes the objects alive before a run (gc.freeze) and unfreezes them
after. Garbage not yet collected at a freeze went into the permanent generation with the rest,
back into the oldest generation at the unfreeze, and into the next run's freeze again: a full
collection never ran between two runs, so a worker pool process grew ~100 KB a job without end
(found by bench/cluster.py: 66 MB -> 386 MB over 1,000 jobs)."""

from __future__ import annotations

import asyncio
import gc

from engine import runner
from flow_support import NAME

RUNS = 12


def test_back_to_back_runs_leave_no_cyclic_garbage_behind(flow_rigs) -> None:
    rig = flow_rigs("woocommerce", orders=20)
    project = runner.load_project([str(rig.connectors), str(rig.integrations)])
    integration = project.integrations[NAME]
    options = runner.Options(rig.location, ["orders"], emit=lambda line: None)
    asyncio.run(runner.run_integration(project, integration, options))     # delivers the 20 orders
    gc.collect()
    for _ in range(RUNS):                     # nothing new: the steady state of a scheduled flow
        outcome = asyncio.run(runner.run_integration(project, integration, options))
        assert outcome.error is None
    left = gc.collect()                       # what the runs left that no collection took
    assert left < 1500, f"{left} objects of cyclic garbage kept over {RUNS} runs"


def test_a_run_collects_its_young_objects_less_often_and_restores_the_thresholds() -> None:
    """While a run is open the youngest generation is collected every YOUNG_THRESHOLD
    allocations (a page's objects live until it is claimed: at 700 they were walked twice);
    the process's own thresholds come back after, and a higher one of its own is kept."""
    before = gc.get_threshold()

    async def thresholds(young: int) -> tuple:
        gc.set_threshold(young, *before[1:])
        async with runner._startup_frozen():
            inside = gc.get_threshold()
            async with runner._startup_frozen():           # nested (a split read's share)
                nested = gc.get_threshold()
        return inside, nested, gc.get_threshold()

    try:
        assert asyncio.run(thresholds(700)) == ((runner.YOUNG_THRESHOLD, *before[1:]),) * 2 + ((700, *before[1:]),)
        assert asyncio.run(thresholds(50_000)) == ((50_000, *before[1:]),) * 3
    finally:
        gc.set_threshold(*before)
