"""The `ocr-daemon` command, run as users run it: `--version`, `ocr FILE...` and `check`.

Each test starts the real console script in a subprocess: `check` must survive an engine that
aborts (the fake-OpenSSL case below really does die of SIGABRT, in check's spawned child).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import render_page

COMMAND = Path(sys.prefix) / "bin" / "ocr-daemon"
FOLDERS = ("inbox", "outbox", "processed", "failed", "state_dir")
NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
LINES = [f"Line {n} of the command test says hello to everybody" for n in NUMBERS]
SYSTEM_SSL3 = Path("/lib/x86_64-linux-gnu")


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env}
    return subprocess.run(
        [str(COMMAND), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def write_config(folder: Path, **extra: str) -> Path:
    lines = [f'{name} = "{name}"' for name in FOLDERS]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    for name in FOLDERS:
        (folder / name).mkdir(exist_ok=True)
    config = folder / "ocr-daemon.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def normalised_words(text: str, count: int = 3) -> list[str]:
    bare = unicodedata.normalize("NFKD", text.replace("Trial Licenses", ""))
    bare = "".join(ch for ch in bare if not unicodedata.combining(ch)).lower()
    return re.findall(r"\w+", bare)[:count]


def test_version(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert (result.returncode, result.stdout) == (0, "ocr-daemon 0.1.0\n")


@pytest.mark.parametrize("args", [["--help"], ["ocr", "--help"], ["check", "--help"]])
def test_help(tmp_path: Path, args: list[str]) -> None:
    result = run(args, tmp_path)
    assert result.returncode == 0
    assert "usage: ocr-daemon" in result.stdout


def test_ocr_prints_text_and_reports_bad_files_without_touching_cwd(tmp_path: Path) -> None:
    good, bad = tmp_path / "good scan.png", tmp_path / "bad.png"
    render_page(LINES).save(good)
    bad.write_text("plain text\n")
    work = tmp_path / "cwd"
    work.mkdir()
    result = run(["ocr", str(good), str(bad)], work)
    assert result.returncode == 1
    assert result.stdout.startswith(f"==> {good} <==\nLine one of the")
    assert str(bad) not in result.stdout
    assert result.stderr == f"ocr-daemon: {bad}: unsupported: content is text, " + (
        "not a supported image or PDF (PNG, JPEG, TIFF, BMP, GIF, WEBP, PDF)\n"
    )
    assert list(work.iterdir()) == []  # no aspose_data/, no Aspose.OCR.log.txt


def test_ocr_single_file_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / "one.pdf"
    render_page(LINES).save(path, resolution=200.0)
    result = run(["ocr", str(path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Line one of the")


def test_ocr_with_bad_config_exits_78(tmp_path: Path) -> None:
    config = write_config(tmp_path, colour='"blue"')
    result = run(["ocr", "--config", str(config), "x.png"], tmp_path)
    assert result.returncode == 78
    assert "unknown key 'colour'" in result.stderr


def test_check_passes_here(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run(["check", "--config", str(config)], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = [line.split()[0] for line in result.stdout.splitlines()]
    assert "FAIL" not in statuses
    assert len(statuses) == 11
    assert "ok   tesseract 5." in result.stdout
    assert "warm-up recognition returned 'The quick brown" in result.stdout
    if "licensed: full text" not in result.stdout:
        assert "warn EVALUATION MODE" in result.stdout
        assert "OCR_DAEMON_LICENSE_FILE" in result.stdout


def test_check_without_openssl_fails_with_the_fix(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state_dir").rmdir()
    result = run(["check", "--config", str(config)], tmp_path, OCR_DAEMON_NATIVE_DIR=str(tmp_path))
    if "OpenSSL 1.1 (system)" in result.stdout:
        pytest.skip("this machine has a system OpenSSL 1.1, which cannot be hidden")
    assert result.returncode == 69, result.stdout
    assert "FAIL OpenSSL 1.1 (libcrypto.so.1.1 and libssl.so.1.1) not found" in result.stdout
    assert "run `make setup` in the ocr-daemon checkout" in result.stdout
    assert f"warn state_dir {tmp_path / 'state_dir'} does not exist yet" in result.stdout


def test_check_fails_for_a_folder_it_cannot_create(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "state_dir").rmdir()
    (tmp_path / "state_dir").write_text("a file where a folder should be")
    config.write_text(config.read_text().replace('= "state_dir"', '= "state_dir/sub"'))
    result = run(["check", "--config", str(config)], tmp_path)
    assert result.returncode == 73, result.stdout
    assert f"FAIL state_dir {tmp_path / 'state_dir/sub'} does not exist" in result.stdout


def test_check_survives_an_engine_that_aborts(tmp_path: Path) -> None:
    """Libraries named 1.1 that are really OpenSSL 3: the CLR aborts (SIGABRT) in the child."""
    if not (SYSTEM_SSL3 / "libssl.so.3").is_file():
        pytest.skip("needs the system's OpenSSL 3 to fake a broken 1.1")
    fake = tmp_path / "fake" / "lib"
    fake.mkdir(parents=True)
    for name in ("libssl", "libcrypto"):
        shutil.copy(SYSTEM_SSL3 / f"{name}.so.3", fake / f"{name}.so.1.1")
    config = write_config(tmp_path)
    result = run(
        ["check", "--config", str(config)], tmp_path, OCR_DAEMON_NATIVE_DIR=str(fake.parent)
    )
    if "OpenSSL 1.1 (system)" in result.stdout:
        pytest.skip("this machine has a system OpenSSL 1.1, which takes precedence")
    assert result.returncode == 69
    assert "FAIL engine process was killed by SIGABRT while starting" in result.stdout
    assert "No usable version of libssl was found" in result.stdout
    assert result.stdout.count("ok   ") == 8  # versions, tesseract, OpenSSL, five folders


@pytest.mark.parametrize(
    "name",
    ["01_phototest.tif", "04_eurotext.tif", "19_deposition_scan.png", "11_fr_histoire_scan.pdf"],
)
def test_ocr_on_real_scans(shared_corpus: Path, tmp_path: Path, name: str) -> None:
    source = shared_corpus / name
    truth = source.with_name(source.name.split(".")[0] + ".gt.txt").read_text(encoding="utf-8")
    result = run(["ocr", str(source)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert normalised_words(result.stdout) == normalised_words(truth)


def test_python_dash_m_runs_the_same_cli(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ocr_daemon", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout == "ocr-daemon 0.1.0\n"
