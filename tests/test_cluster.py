"""Scale-out end to end: a real nats-server, a real coordinator process, real worker-host
processes in network namespaces (tests/netns.py), and host deaths, partitions and restarts.

Exactly once is judged from the folders: each input ends with exactly one sidecar (no
``name (2).txt``) or one failure record, and the inbox is empty. Most tests use the engine double
(instant; ``slow`` in a name takes 2 s); one runs the real engine on a worker host.
"""

from __future__ import annotations

import asyncio
import errno
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from ocr_daemon.cluster import wire
from ocr_daemon.cluster.check import check as check_cluster
from ocr_daemon.cluster.worker_host import WorkerHost
from ocr_daemon.config import ClusterSettings, Config, load_config
from ocr_daemon.pool import LocalSlot
from tests.harness import DOUBLE, files_under, subprocess_env, wait_for, wait_or_dump
from tests.netns import Lab, LabUnavailable, check_prerequisites

pytestmark = [pytest.mark.slow, pytest.mark.serial]


class Node:
    """One ocr-daemon process (coordinator or worker host) and its JSON log."""

    def __init__(self, lab: Lab, host: int | None, command: str, config: Path, name: str) -> None:
        self.log = config.parent / f"{name}.log"
        argv = [sys.executable, "-m", "ocr_daemon", command, "--config", str(config)]
        self.proc = lab.spawn(host, argv, self.log, subprocess_env())

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        found = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in found if name is None or e.get("event") == name]

    def wait(self, timeout: float) -> int:
        return wait_or_dump(self.proc, self.log, timeout)

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)


@pytest.fixture(scope="module")
def nats_server() -> str:
    try:
        return check_prerequisites()
    except LabUnavailable as exc:
        pytest.skip(f"cluster lab unavailable: {exc}")


@pytest.fixture
def lab_factory(tmp_path: Path, nats_server: str) -> Iterator[Callable[[int], Lab]]:
    labs: list[Lab] = []

    def make(hosts: int) -> Lab:
        lab = Lab(tmp_path, hosts, nats_server).__enter__()
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()


def write_config(path: Path, values: dict[str, Any], cluster_values: dict[str, Any]) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    lines += ["[cluster]", *(f"{k} = {json.dumps(v)}" for k, v in cluster_values.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def coordinator_config(root: Path, lab: Lab, **cluster_extra: Any) -> Path:
    values = {
        "inbox": "inbox", "outbox": "outbox", "processed": "processed", "failed": "failed",
        "state_dir": "state", "engine": DOUBLE, "settle_seconds": 0.2,
        "retry_backoff_seconds": 0.2, "log_format": "json", "ocr_timeout_seconds": 30.0,
        "corrupt_grace_seconds": 0.0,  # bad files fail at once (tests/test_slow_writers.py)
    }  # fmt: skip
    settings = {
        "url": lab.url, "coordinator_id": "coord", "local_workers": False, "slots": 4,
        "ack_wait_seconds": 2.0, "heartbeat_seconds": 1.0, **cluster_extra,
    }  # fmt: skip
    (root / "inbox").mkdir(exist_ok=True)
    return write_config(root / "coordinator.toml", values, settings)


def start_workers(lab: Lab, root: Path, workers: int = 1, **extra: Any) -> list[Node]:
    nodes = []
    engine = extra.pop("engine", DOUBLE)
    for host in range(1, lab.hosts + 1):
        values = {"engine": engine, "workers": workers, "log_format": "json"}
        settings = {"url": lab.url, "worker_id": f"h{host}", "ack_wait_seconds": 2.0,
                    "heartbeat_seconds": 1.0, **extra}  # fmt: skip
        config = write_config(root / f"worker-h{host}.toml", values, settings)
        nodes.append(Node(lab, host, "worker", config, f"worker-h{host}"))
    for node in nodes:
        wait_for(lambda n=node: n.events("worker_host.started"), timeout=60)
    return nodes


def run_coordinator(lab: Lab, config: Path) -> Node:
    """`ocr-daemon run` as the coordinator, once it has started (workers warm, scan under way)."""
    coordinator = Node(lab, None, "run", config, "coordinator")
    wait_for(lambda: coordinator.events("daemon.started"), timeout=60)
    return coordinator


def assert_exactly_once(root: Path, names: list[str]) -> None:
    expected = sorted(n.rsplit(".", 1)[0] + ".txt" for n in names)
    assert files_under(root / "outbox") == expected, "one sidecar per input, none numbered"
    assert files_under(root / "inbox") == []
    for name in names:
        text = (root / "outbox" / (name.rsplit(".", 1)[0] + ".txt")).read_text()
        assert text.startswith(f"text of {name} ")


def host_that_received(workers: list[Node], needle: str) -> int:
    def find() -> int:
        for host, node in enumerate(workers, start=1):
            if any(needle in e["msg_id"] for e in node.events("job.received")):
                return host
        return 0

    host: int = wait_for(find, timeout=30, interval=0.02)
    return host


def msg_id_of(coordinator: Node, name: str) -> str:
    def find() -> str:
        published = coordinator.events("job.published")
        return next((e["msg_id"] for e in published if e["path"].endswith(name)), "")

    found: str = wait_for(find, timeout=30, interval=0.02)
    return found


def test_jobs_spread_over_two_hosts_inline_and_object_store(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(2)
    workers = start_workers(lab, tmp_path, workers=2)
    config = coordinator_config(tmp_path, lab, max_inline_bytes=5000)
    names = [f"f{i:02}.png" for i in range(40)]
    for name in names:
        (tmp_path / "inbox" / name).write_bytes(name.encode() * 10)
    (tmp_path / "inbox/big.png").write_bytes(b"b" * 300_000)  # through the object store
    (tmp_path / "inbox/corrupt.png").write_bytes(b"bad")

    coordinator = Node(lab, None, "once", config, "coordinator")
    assert coordinator.wait(timeout=90) == 1  # one file failed, on purpose

    assert_exactly_once(tmp_path, [*names, "big.png"])
    record = json.loads((tmp_path / "failed/corrupt.png.error.json").read_text())
    assert record["reason"] == "corrupt"
    published = coordinator.events("job.published")
    assert {e["via"] for e in published} == {"inline", "object"}
    done_by = {e["worker"] for e in coordinator.events("file.done")}
    assert done_by == {"h1", "h2"}, "both hosts took jobs"
    assert {e["worker"] for e in coordinator.events("worker.joined")} == {"h1", "h2"}
    assert not coordinator.events("job.duplicate_dropped")
    hosts = json.loads((tmp_path / "state/status.json").read_text())["hosts"]  # also in STATUS=
    assert "h1 up" in hosts and "h2 up" in hosts, hosts
    for node in workers:
        assert node.stop() == 0


def test_host_killed_mid_job_the_job_is_redelivered(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(2)
    workers = start_workers(lab, tmp_path)
    config = coordinator_config(tmp_path, lab)
    coordinator = run_coordinator(lab, config)
    (tmp_path / "inbox/slow-victim.png").write_bytes(b"takes two seconds")
    victim = host_that_received(workers, msg_id_of(coordinator, "slow-victim.png"))

    lab.kill_host(victim)
    names = ["slow-victim.png", *(f"after{i}.png" for i in range(5))]
    for name in names[1:]:
        (tmp_path / "inbox" / name).write_bytes(b"x")
    wait_for(lambda: len(files_under(tmp_path / "outbox")) == len(names), timeout=60)

    assert coordinator.stop() == 0
    assert_exactly_once(tmp_path, names)
    redelivered = coordinator.events("job.redelivered")
    assert [(e["delivery"], e["worker"]) for e in redelivered] == [(2, f"h{3 - victim}")]
    assert {e["worker"] for e in coordinator.events("worker.lost")} <= {f"h{victim}"}


def test_partitioned_host_heals_and_its_late_result_is_dropped(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(2)
    workers = start_workers(lab, tmp_path, ack_wait_seconds=1.0)
    config = coordinator_config(tmp_path, lab, ack_wait_seconds=1.0)
    coordinator = run_coordinator(lab, config)
    (tmp_path / "inbox/slow-zombie.png").write_bytes(b"two seconds")
    zombie = host_that_received(workers, msg_id_of(coordinator, "slow-zombie.png"))

    lab.cut(zombie)
    wait_for((tmp_path / "outbox/slow-zombie.txt").exists, timeout=30)
    lab.heal(zombie)
    dropped = wait_for(lambda: coordinator.events("job.duplicate_dropped"), timeout=40)

    assert [e["worker"] for e in dropped] == [f"h{zombie}"]
    assert coordinator.stop() == 0
    assert_exactly_once(tmp_path, ["slow-zombie.png"])
    done = coordinator.events("file.done")
    assert [e["worker"] for e in done] == [f"h{3 - zombie}"]


def test_coordinator_killed_and_restarted_mid_batch_exactly_once(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(2)
    start_workers(lab, tmp_path, workers=2)
    config = coordinator_config(tmp_path, lab, slots=4)
    names = [f"n{i:03}.png" for i in range(80)] + [f"slow-{i}.png" for i in range(4)]
    for name in names:
        (tmp_path / "inbox" / name).write_bytes(name.encode())
    for round_number in range(2):
        first = Node(lab, None, "run", config, f"coordinator-{round_number}")
        wait_for(lambda n=first: n.events("job.published"), timeout=60, interval=0.01)
        time.sleep(0.3 + 0.4 * round_number)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)

    final = Node(lab, None, "once", config, "coordinator-final")
    assert final.wait(timeout=120) == 0
    assert_exactly_once(tmp_path, names)
    assert files_under(tmp_path / "processed") == sorted(names)


def test_broker_killed_and_restarted_mid_batch_exactly_once(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(2)
    workers = start_workers(lab, tmp_path)
    config = coordinator_config(tmp_path, lab, slots=2)
    coordinator = run_coordinator(lab, config)
    names = [f"slow-{i}.png" for i in range(2)] + [f"b{i:02}.png" for i in range(30)]
    for name in names[:2]:
        (tmp_path / "inbox" / name).write_bytes(name.encode())
    wait_for(lambda: len(coordinator.events("job.published")) == 2, timeout=30, interval=0.01)

    lab.kill_broker()  # both slow jobs in flight; the rest arrive while the broker is away
    for name in names[2:]:
        (tmp_path / "inbox" / name).write_bytes(name.encode())
    time.sleep(1.5)
    lab.start_broker()
    wait_for(lambda: len(files_under(tmp_path / "outbox")) == len(names), timeout=90)

    assert coordinator.stop() == 0
    assert_exactly_once(tmp_path, names)
    assert coordinator.events("broker.disconnected") and coordinator.events("broker.reconnected")
    assert all(node.proc.poll() is None for node in workers), "worker hosts ride it out"


def test_slow_page_longer_than_ack_wait_is_not_redelivered(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(2)
    workers = start_workers(lab, tmp_path, ack_wait_seconds=1.0)
    config = coordinator_config(tmp_path, lab, ack_wait_seconds=1.0)
    (tmp_path / "inbox/slow-long.png").write_bytes(b"2 s against a 1 s lease")
    coordinator = Node(lab, None, "once", config, "coordinator")
    assert coordinator.wait(timeout=60) == 0

    assert_exactly_once(tmp_path, ["slow-long.png"])
    received = [e for node in workers for e in node.events("job.received")]
    assert len(received) == 1 and received[0]["delivery"] == 1
    assert not coordinator.events("job.redelivered")


def test_delivery_limit_exhausted_fails_the_input(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(2)
    workers = start_workers(lab, tmp_path, ack_wait_seconds=1.0, max_deliver=1)
    config = coordinator_config(tmp_path, lab, ack_wait_seconds=1.0, max_deliver=1)
    coordinator = run_coordinator(lab, config)
    (tmp_path / "inbox/slow-stranded.png").write_bytes(b"its host dies")
    victim = host_that_received(workers, msg_id_of(coordinator, "slow-stranded.png"))

    lab.kill_host(victim)
    record_path = tmp_path / "failed/slow-stranded.png.error.json"
    wait_for(record_path.exists, timeout=30)

    assert coordinator.stop() == 0
    assert json.loads(record_path.read_text())["reason"] == "cluster_delivery_exhausted"
    assert files_under(tmp_path / "outbox") == []


def test_check_sees_broker_stream_and_a_worker(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    lab = lab_factory(1)
    config_path = coordinator_config(tmp_path, lab)
    before = check_cluster(load_config(config_path))
    assert [status for status, _text, _code in before][:1] == ["ok"]
    assert before[-1][0] == "FAIL" and "no worker host" in before[-1][1]

    start_workers(lab, tmp_path)
    after = check_cluster(load_config(config_path))
    assert [status for status, _text, _code in after] == ["ok"] * len(after), after
    assert any("h1" in text for _status, text, _code in after)


def test_real_engine_on_a_worker_host(tmp_path: Path, lab_factory: Callable[[int], Lab]) -> None:
    from tests.conftest import render_page  # noqa: PLC0415 - skips when fonts are missing

    probe = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "check"], capture_output=True, text=True,
        env=subprocess_env(), timeout=240, check=False,
    )  # fmt: skip
    if "engine aspose" not in probe.stdout or "warm-up recognition returned" not in probe.stdout:
        pytest.skip(f"the real engine cannot start here: {probe.stdout[-300:]}")
    lab = lab_factory(1)
    start_workers(lab, tmp_path, engine="aspose")
    config = coordinator_config(tmp_path, lab, ack_wait_seconds=5.0)
    lines = [f"Cluster page line {i} alpha bravo charlie" for i in range(8)]
    render_page(lines).save(tmp_path / "inbox/page.png")

    coordinator = Node(lab, None, "once", config, "coordinator")
    assert coordinator.wait(timeout=180) == 0
    text = (tmp_path / "outbox/page.txt").read_text()
    assert text.split()[:3] == ["Cluster", "page", "line"]
    assert [e["worker"] for e in coordinator.events("file.done")] == ["h1"]


def test_per_folder_rule_picks_the_engine_on_the_worker_host(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    from tests.conftest import render_page  # noqa: PLC0415 - skips when fonts are missing

    lab = lab_factory(1)
    workers = start_workers(lab, tmp_path)  # the host's own default engine is the double
    config = coordinator_config(tmp_path, lab, ack_wait_seconds=5.0)
    config.write_text(config.read_text() + '[[rules]]\nmatch = "tess/**"\nengine = "tesseract"\n')
    (tmp_path / "inbox/tess").mkdir()
    render_page(["Ruled page read by Tesseract", "on the worker host"]).save(
        tmp_path / "inbox/tess/page.png"
    )
    (tmp_path / "inbox/plain.png").write_bytes(b"plain")

    coordinator = Node(lab, None, "once", config, "coordinator")
    assert coordinator.wait(timeout=180) == 0

    assert (tmp_path / "outbox/plain.txt").read_text() == "text of plain.png (5 bytes)"
    ruled = (tmp_path / "outbox/tess/page.txt").read_text()
    assert ruled.split()[:3] == ["Ruled", "page", "read"], ruled
    assert {e["worker"] for e in coordinator.events("file.done")} == {"h1"}
    for node in workers:
        assert node.stop() == 0


def test_worker_host_job_that_dies_is_logged_and_redelivered_at_once(
    tmp_path: Path, lab_factory: Callable[[int], Lab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker host's job task that raises (here: staging the scan hits a full disk) logs an
    error and hands the job back at once. The lease is 30 s, so a result within 10 s can only
    come from that hand-back, not from the broker's own redelivery of a job nobody acked."""
    lab = lab_factory(0)  # the broker only: the worker host runs in this process
    settings = ClusterSettings(url=lab.url, worker_id="h1", ack_wait_seconds=30.0,
                               heartbeat_seconds=1.0)  # fmt: skip
    config = Config(engine=DOUBLE, workers=1, log_format="json", cluster=settings)
    staged: list[str] = []
    real_stage = WorkerHost._stage

    async def full_disk_once(
        host: WorkerHost, job: wire.JobMessage, slot: LocalSlot, data: bytes
    ) -> Path:
        staged.append(job.msg_id)
        if len(staged) == 1:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return await real_stage(host, job, slot, data)

    monkeypatch.setattr(WorkerHost, "_stage", full_disk_once)
    with structlog.testing.capture_logs() as logged:
        results = asyncio.run(_one_job_through(WorkerHost(config), settings))
    failed = [e for e in logged if e["event"] == "job.handling_failed"]
    assert len(failed) == 1 and failed[0]["log_level"] == "error", logged
    assert "No space left on device" in failed[0]["error"]
    assert [r.delivery for r in results] == [2], "processed once, by the redelivery"
    assert results[0].result is not None and results[0].result.pages == ("text of a.png (3 bytes)",)
    assert len([e for e in logged if e["event"] == "job.recognised"]) == 1


async def _one_job_through(host: WorkerHost, settings: ClusterSettings) -> list[wire.ResultMessage]:
    """Publish one job to `host`, collect the results that come back within 10 s, stop it."""
    runner = asyncio.create_task(host.run())
    nc = await wire.connect(settings, "test-client")
    js = nc.jetstream()
    await wire.ensure_streams(js, settings)
    results: list[wire.ResultMessage] = []

    async def on_result(message: Any) -> None:
        results.append(wire.ResultMessage.decode(message.data))
        await message.ack()

    await js.subscribe(f"{settings.results_subject}.test", cb=on_result, manual_ack=True)
    job = wire.JobMessage("test.1.1-3-1.0", 1, "a.png", 20.0, f"{settings.results_subject}.test",
                          None, b"abc")  # fmt: skip
    await js.publish(settings.subject, job.encode(), headers={wire.MSG_ID: job.msg_id})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not results:
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)  # a second result would come in this time
    host.stop.set()
    assert await asyncio.wait_for(runner, timeout=30) == 0
    await wire.close(nc)
    return results


def test_worker_hosts_return_the_whole_set_inline_or_through_the_object_store(
    tmp_path: Path, lab_factory: Callable[[int], Lab]
) -> None:
    """outputs over the cluster: the host's engine process renders, the coordinator writes the
    set. Small renders travel inline; big/** (four formats, over half of max_inline_bytes) go
    through the object store and are deleted once committed."""
    lab = lab_factory(1)
    workers = start_workers(lab, tmp_path, max_inline_bytes=3000)  # each side reads its own
    config = coordinator_config(tmp_path, lab, max_inline_bytes=3000)
    config.write_text(
        config.read_text()
        + '[[rules]]\nmatch = "big/**"\noutputs = ["txt", "json", "hocr", "alto"]\n'
        + '[[rules]]\nmatch = "**"\noutputs = ["txt", "json"]\n'
    )
    (tmp_path / "inbox/big").mkdir()
    (tmp_path / "inbox/big/scan.png").write_bytes(b"big one")
    (tmp_path / "inbox/small.png").write_bytes(b"small")

    coordinator = Node(lab, None, "once", config, "coordinator")
    assert coordinator.wait(timeout=120) == 0

    outbox = tmp_path / "outbox"
    assert files_under(outbox) == [
        "big/scan.alto.xml", "big/scan.hocr", "big/scan.json", "big/scan.txt",
        "small.json", "small.txt",
    ]  # fmt: skip
    assert (outbox / "small.txt").read_text() == "text of small.png (5 bytes)"
    small = json.loads((outbox / "small.json").read_bytes())
    big = json.loads((outbox / "big/scan.json").read_bytes())
    assert (small["source"], big["source"]) == ("small.png", "scan.png")
    assert big["pages"][0]["text"] == (outbox / "big/scan.txt").read_text()
    stored = [e for node in workers for e in node.events("job.renders_stored")]
    assert [e["formats"] for e in stored] == [["json", "hocr", "alto"]], stored
    for node in workers:
        assert node.stop() == 0

    async def bucket_keys() -> list[str]:
        settings = ClusterSettings(url=lab.url)
        nc = await wire.connect(settings, "test")
        try:
            store = await nc.jetstream().object_store(settings.object_bucket)
            try:
                return [info.name for info in await store.list(ignore_deletes=True)]
            except Exception:  # nats raises NotFoundError for an empty bucket
                return []
        finally:
            await wire.close(nc)

    assert asyncio.run(bucket_keys()) == [], "rendered outputs left in the object store"
