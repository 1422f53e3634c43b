"""The sd_notify protocol against a real AF_UNIX datagram socket (path and abstract addresses)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from ocr_daemon.systemd import Notifier, scrub_environment


class Manager:
    """The service manager's end: a bound datagram socket we read notifications from."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def receive(self) -> str:
        return self.sock.recv(4096).decode()


@pytest.fixture(params=["path", "abstract"])
def manager(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Manager]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
        env_value = address
    else:
        name = f"ocr-daemon-test/{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        env_value = "@" + name
    with sock:
        yield Manager(sock, env_value)


def test_each_message_arrives_as_one_datagram(manager: Manager) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": manager.env_value})
    assert notifier.enabled
    notifier.ready()
    assert manager.receive() == "READY=1"
    notifier.status("queue=3 inflight=1\ndone=7")
    assert manager.receive() == "STATUS=queue=3 inflight=1 done=7"
    notifier.stopping()
    assert manager.receive() == "STOPPING=1"
    notifier.watchdog()
    assert manager.receive() == "WATCHDOG=1"
    notifier.extend_timeout(90.5)
    assert manager.receive() == "EXTEND_TIMEOUT_USEC=90500000"


def test_reloading_carries_a_monotonic_timestamp(manager: Manager) -> None:
    before_usec = time.monotonic_ns() // 1000
    Notifier({"NOTIFY_SOCKET": manager.env_value}).reloading()
    first, second = manager.receive().split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before_usec <= int(value) <= time.monotonic_ns() // 1000


def test_unset_socket_is_a_silent_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    with capture_logs() as logs:
        notifier.ready()
        notifier.status("x")
        notifier.watchdog()
    assert notifier.notify("READY=1") is False
    assert logs == []


def test_send_failure_is_logged_not_raised(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens.sock")})
    with capture_logs() as logs:
        notifier.ready()
    assert [(e["event"], e["log_level"], e["message"]) for e in logs] == [
        ("sd_notify.failed", "warning", "READY")
    ]


def test_defaults_to_the_process_environment(
    manager: Manager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", manager.env_value)
    Notifier().ready()
    assert manager.receive() == "READY=1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}, 1.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "garbage"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout_for_our_pid(
    env: dict[str, str], expected: float | None
) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/x", **env}).watchdog_interval_seconds() == expected


def test_unsupported_socket_kind_disables_notifications() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


def test_scrub_removes_only_the_main_process_variables() -> None:
    env = {
        "NOTIFY_SOCKET": "/run/systemd/notify",
        "WATCHDOG_USEC": "30000000",
        "WATCHDOG_PID": "42",
        "LISTEN_FDS": "1",
        "LISTEN_PID": "42",
        "PATH": "/usr/bin",
        "INVOCATION_ID": "abc",
    }
    assert scrub_environment(env) == {"PATH": "/usr/bin", "INVOCATION_ID": "abc"}
    assert "NOTIFY_SOCKET" in env  # the input is not modified
