"""One failing integration never hides the others' results (issue 10, point 4): whatever
exception stops one integration of a multi-integration run, the others run to the end and
report their counts, and the failed one reports why, without a traceback."""

from __future__ import annotations

import io

import yaml

from engine import cli
from engine.flows.orders import OrdersFlow
from tests.sync_rig import NAME, rig


def test_an_unforeseen_exception_in_one_integration_leaves_the_others_running(tmp_path, monkeypatch) -> None:
    with rig(tmp_path, monkeypatch) as r:
        path = r.write()
        broken = yaml.safe_load(path.read_text(encoding="utf-8"))
        broken["name"] = "broken-shop"
        (path.parent / "broken-shop.yaml").write_text(yaml.safe_dump(broken, sort_keys=False), encoding="utf-8")
        run = OrdersFlow.run

        async def failing(self: OrdersFlow) -> None:
            if self.ctx.integration.name == "broken-shop":
                raise RuntimeError("a defect nobody foresaw")
            await run(self)

        monkeypatch.setattr(OrdersFlow, "run", failing)
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.run(r.args("run", "--flow", "orders"), stdout, stderr)
        out = stdout.getvalue() + stderr.getvalue()

    assert "Traceback" not in out
    assert "broken-shop: FAILED: internal error: RuntimeError: a defect nobody foresaw" in out
    assert f"{NAME}: orders: pulled 6, new 6, delivered 6," in out, out
    assert len(r.wms.state.created) == 6                     # the healthy integration delivered
    assert code == 1, out
