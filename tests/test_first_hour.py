"""What a newcomer meets in the first hour (issue 17): trying the other engine from the command
line, seeing a batch progress, and a console a person can read."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ocr_daemon import cli
from ocr_daemon.errors import ExitCode
from tests.conftest import render_page
from tests.harness import DaemonProcess, start, subprocess_env, wait_for, write_config
from tests.test_engine import LINES


def test_run_engine_override_switches_to_tesseract_for_real(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    """`run --engine tesseract --languages eng` over a config that says aspose: the started
    event names Tesseract and a page comes back whole (Aspose unlicensed returns a fragment)."""
    config = write_config(tmp_path, engine="aspose", workers=1)
    render_page(LINES).save(tmp_path / "inbox" / "page.png")
    daemon = start(daemon_factory, config, args=("--engine", "tesseract", "--languages", "eng"))
    sidecar = tmp_path / "outbox" / "page.txt"
    wait_for(sidecar.exists, timeout=120)
    daemon.signal(2)
    assert daemon.wait() == 0
    (started,) = daemon.events("daemon.started")
    assert str(started["engine"]).startswith("tesseract")
    text = sidecar.read_text()
    assert all(line in text for line in LINES), text


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--engine", "nope"], "--engine nope"),
        (["--languages", "xyz"], "--languages"),
        (["--engine", "tesseract", "--languages", "zzz"], "--languages"),
        (["--languages", "ara"], "--languages ara"),  # Aspose needs a model it cannot download
    ],
)
def test_a_bad_engine_or_language_option_is_a_usage_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], named: str
) -> None:
    config = write_config(tmp_path, engine="aspose", workers=1)
    assert cli.main(["once", "--config", str(config), *args]) == ExitCode.USAGE
    assert named in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # refused before the daemon started


def status_text(config: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "status", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), check=False,
    )  # fmt: skip
    return done.stdout


def test_a_batch_logs_progress_and_status_shows_the_oldest_waiting_file(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    """Six 2-second files on one engine process, and an empty file waiting for content: while
    they run, `progress` events carry the counts, a rate and an ETA, and `status` names the
    empty file as the one waiting longest, with why; no `progress` once nothing is left."""
    config = write_config(tmp_path, workers=1)
    inbox = tmp_path / "inbox"
    (inbox / "empty.png").write_bytes(b"")
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    for number in range(6):
        (inbox / f"slow-{number}.png").write_bytes(b"x" * 100)
    waiting = wait_for(lambda: daemon.status().get("waiting"), timeout=60)
    assert waiting["path"] == "empty.png" and "empty" in waiting["why"]
    wait_for(lambda: daemon.events("progress"), timeout=60)
    text = status_text(config)
    assert "waiting longest: empty.png for" in text and "settling 1" in text, text
    wait_for(lambda: len(daemon.events("file.done")) == 6, timeout=120)
    wait_for(lambda: daemon.status().get("queued") == daemon.status().get("in_flight") == 0)
    daemon.signal(signal.SIGINT)
    assert daemon.wait() == 0
    events = daemon.events("progress")
    assert all(e["queued"] or e["in_flight"] or e["retrying"] for e in events), events
    assert all(e["settling"] == 1 for e in events), events
    timed = [e for e in events if e["eta_seconds"] is not None]
    assert timed and all(float(e["pages_per_minute"]) > 0 for e in timed), events


def test_status_shows_a_file_waiting_to_be_retried_and_why(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    """An engine process that crashes on a file: until its back-off is over, `status` says the
    file waits for a retry after an error, and counts it as retrying."""
    config = write_config(tmp_path, workers=1, retry_backoff_seconds=300.0, max_attempts=3)
    (tmp_path / "inbox" / "crash.png").write_bytes(b"x" * 100)
    daemon = start(daemon_factory, config)
    waiting = wait_for(lambda: daemon.status().get("waiting"), timeout=60)
    wait_for(lambda: "retrying" in str(daemon.status().get("waiting", {}).get("why")), timeout=60)
    text = status_text(config)
    assert "waiting longest: crash.png" in text and "retrying after an error" in text, text
    assert "retrying 1" in text, text
    assert waiting["path"] == "crash.png"
    daemon.signal(signal.SIGINT)
    assert daemon.wait() == 0


def test_on_the_console_the_first_line_is_a_sentence_naming_evaluation_mode(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    """The real Aspose engine without a licence: the console's first line says what the daemon
    watches, with how many engine processes, that they return fragments, and how to stop."""
    config = write_config(tmp_path, engine="aspose", workers=1, log_format="console")
    daemon = start(daemon_factory, config)
    log = tmp_path / "daemon.log"
    wait_for(lambda: "Ctrl+C stops" in log.read_text(errors="replace"), timeout=120)
    daemon.signal(signal.SIGINT)
    assert daemon.wait() == 0
    first = log.read_text(errors="replace").splitlines()[0]
    expected = (
        f"watching {tmp_path}/inbox → {tmp_path}/outbox with 1 Aspose engine process "
        "(evaluation mode: fragments); Ctrl+C stops"
    )
    assert expected in first, first


def test_a_refused_second_daemon_logs_no_stop_before_its_error(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, workers=1)
    first = start(daemon_factory, config)
    first.wait_running()
    second = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "run", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), check=False, timeout=60,
    )  # fmt: skip
    assert second.returncode == ExitCode.TEMP_FAIL == 75
    assert "daemon.stopped" not in second.stdout + second.stderr, second.stdout
    assert "another ocr-daemon" in second.stderr, second.stderr
    first.signal(signal.SIGINT)
    assert first.wait() == 0


def test_draining_says_a_second_ctrl_c_stops_at_once_and_where_files_stay(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, workers=1)
    daemon = start(daemon_factory, config)
    daemon.wait_running()
    (tmp_path / "inbox" / "slow.png").write_bytes(b"x" * 100)
    wait_for(lambda: daemon.status().get("in_flight") == 1)
    daemon.signal(signal.SIGINT)
    assert daemon.wait() == 0
    (draining,) = daemon.events("daemon.draining")
    message = str(draining["message"])
    assert "second Ctrl+C" in message and "stay in the inbox" in message, message


def test_check_explain_labels_a_value_set_in_the_file_as_from_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, workers=1, on_success="keep", languages=["eng"])
    assert cli.main(["check", "--config", str(config), "--explain", "x.png"]) == 0
    out = capsys.readouterr().out
    assert "on_success = keep  (config file)" in out, out
    assert "languages = eng  (config file)" in out, out  # the default's value, but set in the file
    assert "ocr_timeout_seconds = 600.0  (default)" in out, out


def test_a_rejected_licence_logs_no_stop_before_its_error(tmp_path: Path) -> None:
    """The real Aspose engine given a file that is not a licence: exit 78 with Aspose's reason,
    and no `daemon.stopped done=0` before it."""
    (tmp_path / "bad.lic").write_text("not a licence\n")
    config = write_config(tmp_path, engine="aspose", workers=1)
    with config.open("a") as fh:
        fh.write('[aspose]\nlicense_file = "bad.lic"\n')
    done = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "run", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert "rejected by Aspose" in done.stderr, done.stderr
    assert "daemon.stopped" not in done.stdout + done.stderr, done.stdout


def test_pillow_warnings_in_an_engine_process_reach_the_result_not_raw_stderr(
    tmp_path: Path,
) -> None:
    """A JPEG whose EXIF claims more bytes than it has makes Pillow warn inside the real
    Tesseract engine's process: every log line stays JSON, and the warning is in the JSON
    output's `warnings`."""
    exif = Image.Exif()
    exif[0x010E] = "x" * 200  # ImageDescription, cut off below: "Tag data larger than file"
    config = write_config(tmp_path, engine="tesseract", workers=1, outputs=["txt", "json"])
    render_page(LINES).save(tmp_path / "inbox" / "page.jpg", "JPEG", exif=exif.tobytes()[:60])
    done = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "once", "--config", str(config)],
        capture_output=True, text=True, env=subprocess_env(), check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert lines and all(line.startswith("{") for line in lines), lines
    document = json.loads((tmp_path / "outbox" / "page.json").read_text())
    assert any("Tag data larger than file" in w for w in document["warnings"]), document


def test_on_the_console_progress_is_one_short_line(
    tmp_path: Path, daemon_factory: list[DaemonProcess]
) -> None:
    config = write_config(tmp_path, workers=1, log_format="console")
    for number in range(5):
        (tmp_path / "inbox" / f"slow-{number}.png").write_bytes(b"x" * 100)
    daemon = start(daemon_factory, config, command="once")
    assert daemon.wait(timeout=120) == 0
    lines = [
        line for line in (tmp_path / "daemon.log").read_text().splitlines() if "progress: " in line
    ]
    assert lines and all("queued" in line and "pages/min" in line for line in lines), lines
    assert all("eta_seconds" not in line for line in lines), lines
