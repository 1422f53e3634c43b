"""Which config a command reads (issue 17, item 5): `--config` when given, else the installed
/etc/ocr-daemon/ocr-daemon.toml when it exists, else the built-in defaults; and `status` says
which one it read and which state directory it looked in.

The resolution is tested on a tmp path (the code has no variable that moves /etc); the CLI runs
as a real process, against a real daemon for `status`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocr_daemon.config import INSTALLED_CONFIG, Config, default_config_path
from ocr_daemon.errors import ExitCode
from tests.harness import DaemonProcess, subprocess_env, write_config


def status(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "status", *args],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_installed_config_is_the_default_when_it_exists(tmp_path: Path) -> None:
    installed = tmp_path / "etc" / "ocr-daemon.toml"
    assert default_config_path(installed) is None
    installed.parent.mkdir()
    installed.write_text('inbox = "/srv/scans"\n')
    assert default_config_path(installed) == installed


def test_status_names_the_config_and_state_directory_it_read(tmp_path: Path) -> None:
    config = write_config(tmp_path, workers=1)
    daemon = DaemonProcess(config)
    try:
        daemon.wait_running()
        proc = status("--config", str(config))
    finally:
        daemon.stop()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("ocr-daemon: running"), proc.stdout
    assert f"  config: {config}; state directory: {tmp_path / 'state'}" in lines, proc.stdout


def test_status_without_config_says_it_fell_back_to_the_defaults() -> None:
    if INSTALLED_CONFIG.exists():
        pytest.skip(f"{INSTALLED_CONFIG} exists on this machine, so it is the default")
    proc = status()
    assert proc.returncode == ExitCode.NOT_RUNNING, proc.stderr  # no daemon under the defaults
    assert (
        f"  config: none ({INSTALLED_CONFIG} does not exist), so the built-in defaults; "
        f"state directory: {Config().state_dir}"
    ) in proc.stdout.splitlines(), proc.stdout
