"""Scale-out pieces that need no broker: the [cluster] config table, the wire format, and that
single-host use never imports the NATS client."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import threading
from pathlib import Path, PurePosixPath

import pytest
import structlog

from ocr_daemon.cluster import wire
from ocr_daemon.cluster.registry import HostRegistry
from ocr_daemon.config import ClusterSettings, load_config
from ocr_daemon.engines.base import EngineSettings, OcrResult
from ocr_daemon.engines.layout import Box, Line, PageLayout, Word
from ocr_daemon.errors import (
    ClusterDeliveryExhausted,
    ClusterUnavailable,
    ConfigError,
    CorruptInput,
    InputError,
    TransientError,
    UnsupportedInput,
    WorkerCrashed,
)
from ocr_daemon.journal import Journal
from ocr_daemon.pool import choose_worker_count
from ocr_daemon.safefs import Identity
from tests.harness import make_config, subprocess_env


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_cluster_table_loads_and_defaults_are_inert(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "workers = 1\n")).cluster == ClusterSettings()
    config = load_config(write(tmp_path, '[cluster]\nurl = "nats://127.0.0.1:4222"\nslots = 2\n'))
    assert config.cluster.url == "nats://127.0.0.1:4222" and config.cluster.slots == 2


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("slotz = 2", "cluster.slotz"),
        ('url = "http://x"', "cluster.url"),
        ("max_deliver = 0", "cluster.max_deliver"),
        ("ack_wait_seconds = 0", "cluster.ack_wait_seconds"),
        ("local_workers = false", "cluster.local_workers"),
        ('url = "nats://h:4222"\nlocal_workers = false\nslots = 0', "cluster.local_workers"),
    ],
)
def test_bad_cluster_keys_name_the_key(tmp_path: Path, body: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(write(tmp_path, f"[cluster]\n{body}\n"))


def test_no_local_workers_when_the_cluster_does_the_work(tmp_path: Path) -> None:
    text = '[cluster]\nurl = "nats://127.0.0.1:4222"\nlocal_workers = false\n'
    assert choose_worker_count(load_config(write(tmp_path, text)))[0] == 0


def test_job_message_round_trips_any_file_name() -> None:
    name = "scan \udcff é.png"  # an undecodable byte, as os.fsdecode gives it
    job = wire.JobMessage("c.1.2-3-4.0", 1, name, 30.0, "ocr.results.c", None, b"\x00\xffdata")
    assert wire.JobMessage.decode(job.encode()) == job
    ruled = dataclasses.replace(job, settings=EngineSettings("tesseract", ("fra", "eng"), False))
    assert wire.JobMessage.decode(ruled.encode()) == ruled  # per-folder rules reach worker hosts


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (CorruptInput("bad"), CorruptInput),
        (WorkerCrashed("died"), WorkerCrashed),
        (ClusterDeliveryExhausted("gone"), ClusterDeliveryExhausted),
    ],
)
def test_errors_cross_the_wire_as_their_class(error: Exception, kind: type) -> None:
    assert isinstance(error, InputError | TransientError)
    reply = wire.ResultMessage("m", "h1", 2, 0.5, error=error)
    back = wire.ResultMessage.decode(reply.encode())
    assert type(back.error) is kind and back.error.reason == kind.reason
    assert (back.worker_id, back.delivery) == ("h1", 2)


def test_unknown_error_class_keeps_permanence_and_reason() -> None:
    body = (
        b'{"msg_id": "m", "worker": "h", "delivery": 1, "seconds": 0, "error": {"class": "X",'
        b' "reason": "plugin_specific", "message": "m", "permanent": true}}'
    )
    error = wire.ResultMessage.decode(body).error
    assert isinstance(error, InputError) and error.reason == "plugin_specific"


def test_result_round_trips_pages() -> None:
    result = OcrResult(("one", "two\n"), evaluation_mode=True, warnings=("w",))
    reply = wire.ResultMessage("m", "h", 1, 0.1, result=result)
    assert wire.ResultMessage.decode(reply.encode()).result == result


def test_result_round_trips_its_layout() -> None:
    word = Word("héllo", Box(1, 2, 30, 40), 91.5)
    words = PageLayout(640, 480, 300.0, "fallback", 90, "word",
                       (Line("héllo", Box(1, 2, 30, 40), 90.0, (word,)),))  # fmt: skip
    lines = PageLayout(900, 600, 150.0, "file", 0, "line", (Line("a b", Box(0, 0, 9, 9), None),))
    result = OcrResult(("héllo", "a b"), evaluation_mode=True, layout=(words, lines))
    reply = wire.ResultMessage("m", "h", 1, 0.1, result=result)
    assert wire.ResultMessage.decode(reply.encode()).result == result


def test_a_result_without_a_layout_decodes_with_none() -> None:
    body = b'{"msg_id": "m", "worker": "h", "delivery": 1, "seconds": 0, "pages": ["x"],'
    body += b' "evaluation_mode": false, "warnings": []}'
    result = wire.ResultMessage.decode(body).result
    assert result is not None and result.layout == ()


def test_single_host_never_imports_nats() -> None:
    code = (
        "import sys, ocr_daemon.cli, ocr_daemon.daemon, ocr_daemon.pool;"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'nats'], 'nats imported'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
        timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_unreachable_broker_under_systemd_points_at_the_network_drop_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shipped ocr-daemon.service has PrivateNetwork=yes: a coordinator started under it
    cannot reach any broker, and the error says what to do about it."""
    pytest.importorskip("nats")
    settings = ClusterSettings(url="nats://127.0.0.1:9", connect_timeout_seconds=2.0)
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    with pytest.raises(ClusterUnavailable) as raised:
        asyncio.run(wire.connect(settings, "ocr-coordinator-test", wire.NO_NETWORK_HINT))
    assert "cannot connect to the broker" in str(raised.value)
    assert "docs/cluster.md" in str(raised.value)
    monkeypatch.delenv("INVOCATION_ID")
    with pytest.raises(ClusterUnavailable) as raised:
        asyncio.run(wire.connect(settings, "ocr-coordinator-test", wire.NO_NETWORK_HINT))
    assert "docs/cluster.md" not in str(raised.value)


def test_check_with_no_broker_fails_within_the_connect_timeout(tmp_path: Path) -> None:
    """nats-py alone retries a first connection forever; `check` must answer instead."""
    pytest.importorskip("nats")
    (tmp_path / "inbox").mkdir()
    config = write(
        tmp_path,
        'inbox = "inbox"\nengine = "tests.engine_double:ScriptedEngine"\n'
        '[cluster]\nurl = "nats://127.0.0.1:9"\nconnect_timeout_seconds = 2.0\n',
    )
    argv = [sys.executable, "-m", "ocr_daemon", "check", "--config", str(config)]
    done = subprocess.run(
        argv, check=False, capture_output=True, text=True, env=subprocess_env(), timeout=60
    )
    assert done.returncode == 69, done.stdout + done.stderr
    assert "FAIL broker nats://127.0.0.1:9: cannot connect to the broker within 2 s" in done.stdout
    assert "broker.disconnected" not in done.stderr


def test_host_registry_joins_loses_and_rejoins_a_host_by_its_heartbeats() -> None:
    hosts = HostRegistry(ClusterSettings(url="nats://x", heartbeat_seconds=1.0))
    beat = {"slots": 2, "engine": {"name": "aspose", "version": "26", "licensed": False}}
    with structlog.testing.capture_logs() as logged:
        hosts.update({"h1": (1, beat)}, now=100.0)
        hosts.update({"h1": (2, beat)}, now=101.0)  # a fresh heartbeat
        hosts.update({"h1": (2, beat)}, now=103.5)  # 2.5 s silent: still up
        hosts.count_result("h1")
        hosts.count_result("h1", duplicate=True)
        assert hosts.summary() == "h1 up 1 done"
        hosts.update({"h1": (2, beat)}, now=104.5)  # 3.5 s silent: lost
        assert hosts.summary() == "h1 lost 1 done"
        hosts.update({"h1": (3, beat)}, now=110.0)  # back
    assert [e["event"] for e in logged] == ["worker.joined", "worker.lost", "worker.joined"]
    assert hosts.status()["h1"] == {"alive": True, "slots": 2, "busy": None, "jobs_done": None,
                                    "results": 1, "duplicates_dropped": 1}  # fmt: skip
    assert hosts.engine_info("aspose").version == "26"
    assert not hosts.engine_info("aspose").licensed


@pytest.mark.parametrize("swap", ["symlink", "fifo"])
def test_coordinator_never_sends_what_a_swapped_inbox_path_points_at(
    tmp_path: Path, swap: str
) -> None:
    """The file was regular when it was queued; by the time the coordinator reads it for a
    worker host it is a symlink to a secret (or a FIFO that would block a thread forever). The
    coordinator opens it as a local engine process does: refused, and no byte of the secret is
    read into the job."""
    from ocr_daemon.cluster.coordinator import Coordinator  # noqa: PLC0415 - imports nats lazily

    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET " * 100)
    config = dataclasses.replace(
        make_config(tmp_path), cluster=ClusterSettings(url="nats://127.0.0.1:9")
    )
    journal = Journal(config.state_dir)
    journal.open()
    scan = config.inbox / "scan.png"
    scan.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    record = journal.begin(PurePosixPath("scan.png"), Identity.of(os.stat(scan)))
    scan.unlink()
    if swap == "symlink":
        scan.symlink_to(secret)
    else:
        os.mkfifo(scan)
    coordinator = Coordinator(config, first_index=0, journal=journal)
    outcome: list[object] = []

    def read() -> None:  # in a thread of its own: a FIFO read blocks until a writer comes
        try:
            outcome.append(coordinator._read_job(record.id, scan)[1])
        except UnsupportedInput as exc:
            outcome.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    journal.close()
    assert outcome, "the coordinator blocked reading the inbox path"
    assert isinstance(outcome[0], UnsupportedInput), f"read {outcome[0]!r:.60}"
    assert outcome[0].path == str(scan)
