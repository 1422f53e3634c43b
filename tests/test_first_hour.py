"""What a newcomer meets in the first hour (issue 17): trying the other engine from the command
line, seeing a batch progress, and a console a person can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_daemon import cli
from ocr_daemon.errors import ExitCode
from tests.conftest import render_page
from tests.harness import DaemonProcess, start, wait_for, write_config
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
