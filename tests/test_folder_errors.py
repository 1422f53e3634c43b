"""A folder the daemon cannot create or use stops `run` and `once` the way `check` reports it:
one line on stderr naming the config key, the folder and the OS error, and exit 73
(EX_CANTCREAT) — never a traceback. Each test starts the real console script in a subprocess.

The permission case runs the daemon as ``nobody`` (tests run as root, for whom every folder is
writable), under the system Python as tests/test_faults.py does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import REPO, subprocess_env, write_config

COMMAND = Path(sys.prefix) / "bin" / "ocr-daemon"
KEYS = ("inbox", "outbox", "processed", "failed", "state_dir")
NOBODY = 65534
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")


def start(command: str, config: Path, **popen: object) -> subprocess.CompletedProcess[str]:
    """`ocr-daemon COMMAND --config CONFIG`; a daemon that starts despite the bad folder would
    run forever, so the timeout turns that into a failure."""
    argv = [str(COMMAND), command, "--config", str(config)]
    return subprocess.run(
        argv, cwd=config.parent, env=subprocess_env(), capture_output=True, text=True,
        timeout=60, check=False, **popen,  # type: ignore[call-overload]
    )  # fmt: skip


def assert_one_line_error(
    result: subprocess.CompletedProcess[str], key: str, folder: Path, os_error: str
) -> None:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 73, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ocr-daemon: "), lines
    assert f"'{key}'" in lines[0] and str(folder) in lines[0] and os_error in lines[0], lines


@pytest.mark.parametrize("command", ["run", "once"])
@pytest.mark.parametrize("key", KEYS)
def test_folder_under_a_regular_file_fails_in_one_line(
    tmp_path: Path, command: str, key: str
) -> None:
    (tmp_path / "a-file").write_text("a file where a folder should be")
    folder = tmp_path / "a-file" / key
    config = write_config(tmp_path, **{key: str(folder)})
    assert_one_line_error(start(command, config), key, folder, "Not a directory")


@pytest.mark.parametrize("command", ["run", "once"])
@pytest.mark.parametrize("key", KEYS)
def test_folder_under_proc_fails_in_one_line(tmp_path: Path, command: str, key: str) -> None:
    folder = Path("/proc/ocr-daemon-no-such-folder") / key
    config = write_config(tmp_path, **{key: str(folder)})
    assert_one_line_error(start(command, config), key, folder, "No such file or directory")


@pytest.mark.parametrize("command", ["run", "once"])
def test_a_regular_file_named_as_a_folder_fails_in_one_line(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "outbox"
    folder.write_text("a file where a folder should be")
    config = write_config(tmp_path, outbox=str(folder))
    assert_one_line_error(start(command, config), "outbox", folder, "not a folder")


@pytest.fixture
def world_root() -> Iterator[Path]:
    """A folder `nobody` can reach (pytest's tmp_path is private to root)."""
    if not SYSTEM_PYTHON.exists():
        pytest.skip(f"{SYSTEM_PYTHON} not found: needed to run the daemon as nobody")
    if any(not d.stat().st_mode & 0o001 for d in (REPO, *REPO.parents)):
        pytest.skip(f"nobody cannot reach the checkout {REPO}")
    root = Path(tempfile.mkdtemp(prefix="ocr-daemon-folders-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def start_as_nobody(command: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = subprocess_env()
    site = [p for p in sys.path if p.endswith("site-packages")]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *site])
    tessdata = Path(sys.prefix) / "native" / "tessdata"  # found via sys.prefix otherwise
    if tessdata.is_dir():
        env.setdefault("TESSDATA_PREFIX", str(tessdata))
    argv = [str(SYSTEM_PYTHON), "-m", "ocr_daemon", command, "--config", str(config)]
    return subprocess.run(
        argv, cwd=config.parent, env=env, capture_output=True, text=True, timeout=60,
        check=False, user=NOBODY, group=NOBODY, extra_groups=[],
    )  # fmt: skip


@pytest.mark.parametrize("command", ["run", "once"])
@pytest.mark.parametrize("key", KEYS)
def test_folder_in_a_folder_without_permission_fails_in_one_line(
    world_root: Path, command: str, key: str
) -> None:
    closed = world_root / "root-only"
    closed.mkdir(mode=0o755)  # root's: nobody may not create anything in it
    folders = {name: world_root / name for name in KEYS}
    folders[key] = closed / key
    for name, folder in folders.items():
        if name != key:
            folder.mkdir(exist_ok=True)
            os.chown(folder, NOBODY, NOBODY)
    config = write_config(world_root, **{k: str(v) for k, v in folders.items()})
    result = start_as_nobody(command, config)
    assert_one_line_error(result, key, folders[key], "Permission denied")


@pytest.mark.parametrize("command", ["run", "once"])
def test_state_dir_that_exists_but_is_not_writable_fails_in_one_line(
    world_root: Path, command: str
) -> None:
    for name in KEYS:
        (world_root / name).mkdir()
        if name != "state_dir":
            os.chown(world_root / name, NOBODY, NOBODY)
    config = write_config(world_root, **{k: str(world_root / k) for k in KEYS})
    result = start_as_nobody(command, config)
    assert_one_line_error(result, "state_dir", world_root / "state_dir", "Permission denied")


def test_check_names_the_same_os_error_as_the_daemon(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("a file where a folder should be")
    folder = tmp_path / "a-file" / "outbox"
    config = write_config(tmp_path, outbox=str(folder))
    daemon = start("once", config)
    check = start("check", config)
    assert (daemon.returncode, check.returncode) == (73, 73), check.stdout
    assert "Not a directory" in daemon.stderr
    assert f"FAIL outbox {folder} does not exist and cannot be created: " in check.stdout
    assert "Not a directory" in check.stdout
