"""The scale-out: real Celery workers (`syncengine worker`, subprocesses) taking jobs from a real
Redis broker, with the ledger in a real PostgreSQL, against the sample cart and WMS on 127.0.0.1.

The WMS accepts a duplicate referenceNum, so an order sent twice shows up as a second order
instead of being refused. Kills are SIGKILLs of real processes at a point the test waits for
(orders arriving at the WMS), never after a sleep.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine import cli
from flow_support import NAME, ROOT, WMS_ORDERS, FlowRig, wait_for

ORDERS = 60


def fast(spec: dict) -> None:
    spec["http"]["rate_limit"] = {"per_second": 1000, "burst": 1000}


class Cluster:
    """A rig (cart, WMS, project) with a PostgreSQL ledger, a Redis queue of its own and workers."""

    def __init__(self, rig: FlowRig, broker: str, tmp: Path, orders: int = ORDERS) -> None:
        self.rig, self.broker, self.tmp, self.orders = rig, broker, tmp, orders
        self.queue = f"syncengine-test-{uuid.uuid4().hex[:10]}"
        self.processes: list[tuple[subprocess.Popen, Path]] = []

    def args(self, command: str, *extra: str) -> list[str]:
        if command in ("worker", "scheduler", "enqueue"):
            return [*self.rig.args(command), "--broker", self.broker, "--queue", self.queue, *extra]
        return [*self.rig.args(command), *extra]

    def start(self, command: str, *extra: str) -> tuple[subprocess.Popen, Path]:
        """`syncengine -v <command>` in a session of its own (a kill takes its pool with it)."""
        log = self.tmp / f"{command}-{len(self.processes)}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen([sys.executable, "-m", "engine", "-v", *self.args(command, *extra)],
                                       cwd=ROOT, env={**os.environ, **self.rig.environ}, stdout=sink,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.processes.append((process, log))
        return process, log

    def worker(self, *extra: str) -> tuple[subprocess.Popen, Path]:
        return self.start("worker", "--concurrency", "1", *extra)

    def enqueue(self, *extra: str) -> None:
        result = subprocess.run([sys.executable, "-m", "engine", *self.args("enqueue", *extra)], cwd=ROOT,
                                env={**os.environ, **self.rig.environ}, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr

    def send(self, integration: str, flow: str) -> None:
        """A job sent from this process (as `enqueue` does)."""
        from engine.cluster import RUN_FLOW, Settings, make_app

        app = make_app(Settings([], self.rig.location, self.broker, queue=self.queue))
        app.send_task(RUN_FLOW, (integration, flow), queue=self.queue)

    def logs(self) -> str:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace") for _, log in self.processes)

    def counts(self) -> dict[str, int]:
        with self.rig.ledger() as ledger:
            return ledger.counts()

    def delivered(self, timeout: float = 90) -> None:
        wait_for(lambda: self.counts() == {"delivered": self.orders}, timeout,
                 f"every order delivered; logs:\n{self.logs()[-4000:]}")

    def running_job(self) -> int:
        """The pid of the pool process running the orders flow: the holder of its run lock."""
        import psycopg

        def holder() -> int | None:
            with psycopg.connect(self.rig.state_url, autocommit=True) as conn:
                row = conn.execute("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                                   " WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE "
                                   "'syncengine %%' AND a.datname = current_database()").fetchone()
            return int(row[0].rsplit(" ", 1)[1]) if row else None
        return wait_for(holder, 90, "a job holding the orders run lock")    # a loaded machine starts workers slowly

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                with _gone():
                    os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class _gone:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, *_) -> bool:
        return kind is ProcessLookupError


def assert_exactly_once(rig: FlowRig) -> None:
    held = rig.wms_refs()
    assert sorted(held) == sorted(rig.eligible_refs()), "orders missing at the WMS"
    assert {ref: n for ref, n in held.items() if n > 1} == {}, "orders duplicated at the WMS"


def _cluster(flow_rigs, pg_url: str, redis_url: str, tmp_path: Path, orders: int) -> Iterator[Cluster]:
    pytest.importorskip("celery")
    rig = flow_rigs("woocommerce", orders=orders)
    rig.state_url = pg_url
    rig.patch_connector("extensiv", fast)
    rig.patch_connector("woocommerce", fast)
    group = Cluster(rig, redis_url, tmp_path, orders)
    try:
        yield group
    finally:
        group.stop()
        rig.open_gates()


@pytest.fixture
def cluster(flow_rigs, pg_url, redis_url, tmp_path) -> Iterator[Cluster]:
    yield from _cluster(flow_rigs, pg_url, redis_url, tmp_path, ORDERS)


@pytest.fixture
def big_cluster(flow_rigs, pg_url, redis_url, tmp_path) -> Iterator[Cluster]:
    """Six pages of orders (the cart's pages hold 100): a read worth splitting."""
    yield from _cluster(flow_rigs, pg_url, redis_url, tmp_path, 600)


def slow_wms(rig: FlowRig, seconds: float = 0.1) -> None:
    rig.wms.faults.add(path_prefix=WMS_ORDERS, method="POST", delay=seconds, times=100_000)


def test_a_worker_runs_an_enqueued_job_and_records_it(cluster) -> None:
    cluster.worker()
    cluster.enqueue()
    cluster.delivered()
    assert_exactly_once(cluster.rig)
    with cluster.rig.ledger() as ledger:
        wait_for(lambda: ledger.runs("orders"), 10, "the run in the history")
        (run,) = ledger.runs("orders")
    assert run["counts"]["delivered"] == ORDERS and run["error"] is None


def test_status_and_the_console_elsewhere_read_what_the_workers_did(cluster) -> None:
    """`status` and `serve --no-schedule` in other processes (another machine's, as far as they
    can tell) read the runs the workers recorded in the shared ledger."""
    import httpx
    from console_support import TOKEN, users_file

    cluster.worker()
    cluster.enqueue()
    cluster.delivered()
    with cluster.rig.ledger() as ledger:
        wait_for(lambda: ledger.runs("orders"), 10, "the run in the history")
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(["status", "--state", cluster.rig.location, "--format", "json"], out, err) == 0, err.getvalue()
    assert f'"{NAME}"' in out.getvalue() and '"delivered": 60' in out.getvalue()
    users = users_file(cluster.tmp / "users")
    serve, log = cluster.start("serve", "--no-schedule", "--users", str(users), "--listen", "127.0.0.1:0")
    address = wait_for(lambda: re.search(r"console at (http://\S+?)/? ", log.read_text(encoding="utf-8")), 60,
                       "the console's address")[1]
    page = httpx.get(f"{address}/index.json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert page.status_code == 200 and NAME in page.text
    assert serve.poll() is None


def test_one_run_of_a_flow_at_a_time_across_workers(cluster) -> None:
    """Two workers take the same job at once: one runs it, the other finds the run lock held
    cluster-wide and skips it (the run in progress does the work)."""
    slow_wms(cluster.rig, 0.2)
    cluster.worker()
    cluster.worker()
    wait_for(lambda: cluster.logs().count(" ready.") == 2, 60, "both workers ready")
    for _ in range(2):
        cluster.send("flow-shop", "orders")
    cluster.delivered()
    wait_for(lambda: "skipped: another run of it is in progress" in cluster.logs(), 30, "the second job skipped")
    assert_exactly_once(cluster.rig)
    assert cluster.rig.creates() == ORDERS


def test_a_pool_process_killed_mid_run_loses_nothing_and_its_job_runs_again(cluster) -> None:
    """SIGKILL the process running the job while orders are on their way to the WMS: the worker
    hands the job back at once (acks_late + reject on worker lost), the rerun reconciles what the
    dead run left `sending` and delivers the rest, each order once."""
    slow_wms(cluster.rig)
    cluster.worker()
    cluster.enqueue()
    pid = cluster.running_job()
    wait_for(lambda: len(cluster.rig.wms_refs()) >= 10, 60, "orders arriving at the WMS")
    os.kill(pid, signal.SIGKILL)
    assert len(cluster.rig.wms_refs()) < ORDERS
    cluster.delivered()
    assert_exactly_once(cluster.rig)
    assert "WorkerLostError" in cluster.logs() or "signal 9" in cluster.logs()


def test_sigterm_lets_the_run_in_progress_finish_then_the_worker_exits(cluster) -> None:
    """SIGTERM (docker stop, Kubernetes) is Celery's warm shutdown: no new job is taken, the run
    in progress finishes and is acknowledged, the worker exits 0."""
    slow_wms(cluster.rig)
    worker, log = cluster.worker()
    cluster.enqueue()
    cluster.running_job()
    wait_for(lambda: len(cluster.rig.wms_refs()) >= 10, 60, "orders arriving at the WMS")
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(60) == 0, log.read_text(encoding="utf-8")[-3000:]
    assert cluster.counts() == {"delivered": ORDERS}
    assert_exactly_once(cluster.rig)


def test_a_whole_worker_killed_mid_run_loses_nothing_and_another_worker_finishes(cluster) -> None:
    """SIGKILL a whole worker (its main process and its pool) mid-run: the message was never
    acknowledged, so after the visibility timeout the broker hands it to the other worker, whose
    run reconciles and finishes; 0 orders lost, 0 duplicated."""
    slow_wms(cluster.rig)
    first, _ = cluster.worker("--redeliver-after", "3")
    cluster.enqueue()
    holder = cluster.running_job()            # the only worker took the job
    assert os.getsid(holder) == first.pid
    cluster.worker("--redeliver-after", "3")
    wait_for(lambda: len(cluster.rig.wms_refs()) >= 10, 60, "orders arriving at the WMS")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    assert len(cluster.rig.wms_refs()) < ORDERS
    cluster.delivered()
    assert_exactly_once(cluster.rig)
    survivor = cluster.processes[1][1]
    wait_for(lambda: f"{NAME}: orders: pulled" in survivor.read_text(encoding="utf-8"), 30, "the survivor's run")


def test_the_scheduler_enqueues_each_flow_on_its_period(cluster) -> None:
    """`syncengine scheduler --every 1s` with one worker: the orders flow runs again and again,
    each run recorded; a paused integration is skipped; SIGTERM stops the scheduler cleanly."""
    cluster.worker()
    scheduler, log = cluster.start("scheduler", "--every", "1s", "--schedule-file", str(cluster.tmp / "beat"))
    cluster.delivered()
    with cluster.rig.ledger() as ledger:
        wait_for(lambda: len(ledger.runs("orders")) >= 3, 30, f"three runs; logs:\n{cluster.logs()[-3000:]}")
    assert_exactly_once(cluster.rig)
    assert cli.run(["pause", "--state", cluster.rig.location, "--integration", NAME], io.StringIO(), io.StringIO()) == 0
    wait_for(lambda: f"{NAME}: paused, orders not run" in cluster.logs(), 30, "a paused job skipped")
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(20) == 0, log.read_text()


def test_worker_errors_are_one_line_and_no_traceback(cluster, tmp_path) -> None:
    rig = cluster.rig
    for broker, expected in (("http://nowhere", "unsupported broker URL"), (None, "no broker")):
        env = {k: v for k, v in os.environ.items() if k != "SYNCENGINE_BROKER"}
        extra = ["--broker", broker] if broker else []
        result = subprocess.run([sys.executable, "-m", "engine", *rig.args("worker"), *extra], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2
        assert expected in result.stderr and "Traceback" not in result.stderr


def test_job_for_an_unknown_integration_is_dropped_without_harm(cluster) -> None:
    cluster.worker()
    cluster.send("no-such-integration", "orders")
    cluster.enqueue()
    cluster.delivered()
    wait_for(lambda: "no-such-integration: orders job dropped" in cluster.logs(), 20, "the dropped job")


def test_a_large_read_is_split_across_workers_and_each_order_delivered_once(big_cluster) -> None:
    """`--split 2`: the run deals half of the planned pages to a `read_share` job, which the other
    worker takes; both halves are delivered, the watermark moves once both reported."""
    cluster = big_cluster
    slow_wms(cluster.rig, 0.005)
    cluster.worker("--split", "2")
    cluster.worker("--split", "2")
    wait_for(lambda: cluster.logs().count(" ready.") == 2, 60, "both workers ready")
    cluster.send(NAME, "orders")
    cluster.delivered()
    assert_exactly_once(cluster.rig)
    logs = [log.read_text(encoding="utf-8") for _, log in cluster.processes]
    runner_log = next(text for text in logs if "read split into 2 shares" in text)
    assert any("syncengine.read_share" in text and "succeeded" in text for text in logs if text is not runner_log)
    with cluster.rig.ledger() as ledger:
        wait_for(lambda: ledger.runs("orders"), 10, "the run in the history")
        (run,) = ledger.runs("orders")
        assert run["error"] is None and run["counts"]["delivered"] == 600
        assert ledger.watermark("orders") is not None


def test_a_share_whose_worker_is_killed_fails_the_run_and_the_next_run_loses_nothing(big_cluster) -> None:
    """SIGKILL the worker reading a share: the run that split the read sees the share's lease
    lapse without a report and fails (its watermark stays); the next run reconciles and reads
    again: every order once."""
    cluster = big_cluster
    slow_wms(cluster.rig, 0.05)
    first, _ = cluster.worker("--split", "2", "--redeliver-after", "60")
    second, _ = cluster.worker("--split", "2", "--redeliver-after", "60")
    wait_for(lambda: cluster.logs().count(" ready.") == 2, 60, "both workers ready")
    cluster.send(NAME, "orders")
    holder = cluster.running_job()
    victim = second if os.getsid(holder) == first.pid else first
    victim_log = next(log for process, log in cluster.processes if process is victim)
    wait_for(lambda: "syncengine.read_share" in victim_log.read_text(encoding="utf-8"), 30, "the share started")
    wait_for(lambda: len(cluster.rig.wms_refs()) >= 100, 60, "orders arriving at the WMS")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    with cluster.rig.ledger() as ledger:
        wait_for(lambda: ledger.runs("orders"), 60, "the split run's end")
        (run,) = ledger.runs("orders")
        assert "died before reporting" in (run["error"] or "")
        assert ledger.watermark("orders") is None
    assert len(cluster.rig.wms_refs()) < 600
    cluster.send(NAME, "orders")
    cluster.delivered()
    assert_exactly_once(cluster.rig)


def test_a_share_no_worker_takes_is_read_by_the_run_that_split(big_cluster) -> None:
    """One worker, `--split 3`: nobody else takes the shares, so the run reads them itself once
    its own pages are done (no wait for a worker that may never come)."""
    cluster = big_cluster
    cluster.worker("--split", "3")
    cluster.send(NAME, "orders")
    cluster.delivered()
    assert_exactly_once(cluster.rig)
    wait_for(lambda: cluster.logs().count("not started elsewhere: read here") == 2, 30, "both shares read here")
    wait_for(lambda: cluster.logs().count("syncengine.read_share") >= 2, 30, "the shares' jobs, which find nothing to do")


def test_a_shares_requests_carry_no_secret() -> None:
    from engine import http
    from engine.cluster import _request, _request_data

    secret = "s3cr3t/value+with=chars"
    request = http.Request(url=f"https://shop.test/orders?key={secret}", params={"token": secret, "page": 2},
                           headers={"X-Key": f"Bearer {secret}"})
    data = _request_data(request, frozenset([secret]))
    assert secret not in repr(data) and "s3cr3t%2Fvalue" not in repr(data)
    assert _request(data, frozenset([secret])) == request
    with pytest.raises(Exception, match="did not resolve"):
        _request(data, frozenset(["another-secret"]))


def _rabbitmq() -> str:
    url = os.environ.get("SYNCENGINE_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
    if url == "off":
        pytest.skip("SYNCENGINE_TEST_RABBITMQ=off")
    try:
        import kombu

        with kombu.Connection(url, connect_timeout=3) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:                      # noqa: BLE001 - any failure: no broker here
        pytest.skip(f"no RabbitMQ at {url}: {exc}")
    return url


def test_a_worker_on_a_rabbitmq_broker_runs_the_same_jobs(flow_rigs, pg_url, tmp_path) -> None:
    """The broker is Celery's concern: the same job through RabbitMQ (a crashed worker's jobs are
    redelivered when its connection drops)."""
    pytest.importorskip("celery")
    broker = _rabbitmq()
    rig = flow_rigs("woocommerce", orders=ORDERS)
    rig.state_url = pg_url
    group = Cluster(rig, broker, tmp_path)
    try:
        group.worker()
        group.enqueue()
        group.delivered()
        assert_exactly_once(rig)
    finally:
        group.stop()
        import kombu

        with kombu.Connection(broker) as connection:      # leave nothing on the machine's server
            connection.default_channel.queue_delete(group.queue)
