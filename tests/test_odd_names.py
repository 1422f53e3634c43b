"""Any name Linux allows, dropped while the daemon watches, through the real engine and daemon.

watchfiles cannot turn a non-UTF-8 path into a str: its watch raises on such an event (and
drops the rest of that batch). The daemon must neither stop nor go blind: it finds the file by a
rescan, writes the sidecar under the same bytes, and logs the name escaped (``caf\\xe9.png``).
One daemon, one batch of hostile names dropped after the watch is armed.
"""

from __future__ import annotations

import io
import json
import os
import signal
from pathlib import Path

import pytest
import structlog

from ocr_daemon.logs import configure_logging
from tests import hostile_files as hf
from tests.harness import DaemonProcess, start, wait_for, write_config

NAMES = [
    b"caf\xe9.png",  # Latin-1 é
    b"\xff\xfe.png",
    b"tab\there.png",
    b"new\nline.png",
    b"-rf --help.png",
    b"back\\slash \\xe9.png",  # a literal backslash-x: not an escape
    b"  leading spaces.png",
    b"UPPER CASE.PNG",
    b"n" * 251 + b".png",  # 255 bytes
    b"\xe9" * 250 + b".jpeg",  # 255 bytes, none of them UTF-8
    "日本語 ünïcödé.png".encode(),
    b"plain.png",  # an ordinary name in the same batch must not be lost with it
    b"dir-\xe9/inside \xff.png",  # a folder that is not UTF-8 either
]
MOVED_IN = [b"moved-\xe9/one\xe9.png", b"moved-\xe9/two.png"]  # a folder renamed into the inbox
FAILING = b"bad-\xff\xfe.png"  # text, not an image: failed/ with its record


def shown(name: bytes) -> str:
    """How the log and the error record show a name."""
    return name.decode("utf-8", "backslashreplace")


def sidecar(name: bytes) -> bytes:
    return name.rsplit(b".", 1)[0] + b".txt"


def wait_alive(daemon: DaemonProcess, predicate: object, timeout: float = 180) -> None:
    def check() -> object:
        if daemon.proc.poll() is not None:
            tail = (daemon.root / "daemon.log").read_text(errors="replace")[-4000:]
            raise AssertionError(f"daemon exited {daemon.proc.returncode}:\n{tail}")
        return predicate()  # type: ignore[operator]

    wait_for(check, timeout=timeout, interval=0.1)


def files_at(root: bytes) -> list[bytes]:
    """Every file below `root`, as sorted relative bytes paths."""
    return sorted(
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _dirs, names in os.walk(root)
        for name in names
    )


def log_events(daemon: DaemonProcess) -> list[dict[str, object]]:
    """Every log line, parsed strictly: UTF-8 and JSON, or the test fails."""
    raw = (daemon.root / "daemon.log").read_bytes().decode("utf-8")
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


@pytest.mark.slow
def test_hostile_names_dropped_while_watching(tmp_path: Path, daemon_factory: list) -> None:
    config = write_config(
        tmp_path, engine="aspose", workers=2, settle_seconds=0.3, ocr_timeout_seconds=120,
        rescan_interval_seconds=3600,  # only the watch (and what it triggers) may find them
    )  # fmt: skip
    root = os.fsencode(str(tmp_path))
    inbox, outbox = root + b"/inbox", root + b"/outbox"
    page = hf.good("PNG")
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    wait_alive(daemon, lambda: daemon.events("inbox.scanned"))
    hf.write_at(inbox, b"canary.png", page)  # its sidecar says the watch is armed
    wait_alive(daemon, lambda: hf.read_at(outbox, b"canary.txt"))

    os.mkdir(root + b"/staging")
    for name in MOVED_IN:
        hf.write_at(root + b"/staging", name, page)
    for name in NAMES:
        hf.write_at(inbox, name, page)
    hf.write_at(inbox, FAILING, hf.TEXT)
    os.rename(root + b"/staging/moved-\xe9", inbox + b"/moved-\xe9")

    every = NAMES + MOVED_IN
    wait_alive(daemon, lambda: all(hf.read_at(outbox, sidecar(n)) for n in every))
    wait_alive(daemon, lambda: hf.read_at(root + b"/failed", FAILING + b".error.json"))

    for name in every:
        text = hf.read_at(outbox, sidecar(name))
        assert text is not None and text.decode().split()[:3] == list(hf.FIRST_WORDS), name
        assert hf.read_at(root + b"/processed", name) == page, name
        assert hf.read_at(inbox, name) is None, name
    record = json.loads(hf.read_at(root + b"/failed", FAILING + b".error.json") or b"")
    assert (record["file"], record["reason"]) == (shown(FAILING), "unsupported")
    assert hf.read_at(root + b"/failed", FAILING) == hf.TEXT

    events = log_events(daemon)
    assert not [e for e in events if e["event"] in ("daemon.fatal", "watcher.error")]
    done = sorted(str(e["path"]) for e in events if e["event"] == "file.done")
    assert done == sorted(shown(n) for n in [b"canary.png", *every])
    assert files_at(outbox) == sorted(sidecar(n) for n in [b"canary.png", *every])
    assert [e for e in events if e["event"] == "watcher.undecodable"]

    daemon.signal(signal.SIGTERM)
    assert daemon.wait(timeout=60) == 0


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_non_utf8_name_is_logged_escaped(log_format: str) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)  # strict, like stdout
    configure_logging(log_format, "info", stream=stream)
    try:
        structlog.get_logger().info("file.done", path=os.fsdecode(b"caf\xe9.png"))
    finally:
        structlog.reset_defaults()
    assert "caf\\xe9.png" in raw.getvalue().decode("utf-8").replace("\\\\", "\\")
