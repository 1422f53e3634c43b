"""OpenSSL 1.1 for the Aspose engine: where set-up gets it, and what happens without it.

Real processes throughout: `scripts/provision-native.sh` with its sources made unreachable (a
Debian mirror and a package index on a closed loopback port) or limited to one PyPI wheel, then
`ocr-daemon check` and `ocr-daemon once` with OCR_DAEMON_NATIVE_DIR pointed at what it left.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import render_page

REPO = Path(__file__).resolve().parent.parent
PROVISION = REPO / "scripts" / "provision-native.sh"
NATIVE = Path(sys.prefix) / "native"
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused
FOLDERS = ("inbox", "outbox", "processed", "failed", "state_dir")
LINES = ["The stand-in engine reads this page", "when OpenSSL is missing for Aspose"]


def environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def provision(dest: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """provision-native.sh into `dest`, fonts and Tesseract data copied in so only OpenSSL runs."""
    if not (NATIVE / "tessdata").is_dir() or not (NATIVE / "fonts").is_dir():
        pytest.skip(f"needs {NATIVE}/fonts and tessdata: run `make setup`")
    for part in ("fonts", "tessdata"):
        shutil.copytree(NATIVE / part, dest / part)
    return subprocess.run(
        ["bash", str(PROVISION), str(dest)],
        env=environment(PYTHON=sys.executable, **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def ocr_daemon(args: list[str], cwd: Path, native: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocr_daemon", *args],
        cwd=cwd,
        env=environment(OCR_DAEMON_NATIVE_DIR=str(native)),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def write_config(folder: Path) -> Path:
    for name in FOLDERS:
        (folder / name).mkdir()
    config = folder / "ocr-daemon.toml"
    lines = [f'{name} = "{name}"' for name in FOLDERS]
    config.write_text("\n".join([*lines, 'engine = "aspose"', "settle_seconds = 0.2"]) + "\n")
    return config


def skip_if_system_openssl(output: str) -> None:
    if "OpenSSL 1.1 (system)" in output or "already provisioned" in output:
        pytest.skip("this machine has a system OpenSSL 1.1, which cannot be hidden")


def events(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_setup_completes_when_no_openssl_source_answers(tmp_path: Path) -> None:
    dest = tmp_path / "native"
    closed = {"OCR_DAEMON_DEBIAN_MIRROR": f"{CLOSED}/debian", "PIP_INDEX_URL": f"{CLOSED}/simple"}
    result = provision(dest, PIP_CONFIG_FILE=os.devnull, PIP_NO_CACHE_DIR="1", **closed)
    skip_if_system_openssl(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (dest / "lib" / "libssl.so.1.1").exists()
    said = result.stderr
    assert "WARNING: OpenSSL 1.1 is not provisioned; set-up goes on without it." in said
    assert "needs libssl.so.1.1 and libcrypto.so.1.1" in said
    assert "use the Tesseract engine instead" in said
    assert f"copy the two files into {dest}/lib" in said
    assert "OCR_DAEMON_NATIVE_DIR=/that/folder" in said
    for source in ("debian-bullseye", "pypi-psycopg2-binary", "pypi-mysql-connector"):
        assert f"- {source}: " in said
    assert "Connection refused" in said


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the wheel pins are for x86_64")
def test_openssl_from_the_pypi_wheel_starts_aspose(tmp_path: Path) -> None:
    """The wheel's libraries are named libssl-<hash>.so.1.1 by auditwheel: copied as they are,
    .NET's dlopen("libssl.so.1.1") misses them and the CLR aborts; set-up renames them."""
    dest = tmp_path / "native"
    result = provision(dest, OCR_DAEMON_OPENSSL_SOURCES="pypi-psycopg2-binary")
    skip_if_system_openssl(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "provisioned OpenSSL 1.1 from pypi-psycopg2-binary" in result.stdout
    checked = ocr_daemon(["check", "--config", str(write_config(tmp_path))], tmp_path, dest)
    assert f"ok   OpenSSL 1.1 (OCR_DAEMON_NATIVE_DIR): {dest}/lib/libssl.so.1.1" in checked.stdout
    assert "ok   engine aspose " in checked.stdout, checked.stdout
    assert "warm-up recognition returned 'The quick brown" in checked.stdout
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_check_without_openssl_names_it_and_checks_the_stand_in(tmp_path: Path) -> None:
    empty = tmp_path / "no-openssl"
    empty.mkdir()
    result = ocr_daemon(["check", "--config", str(write_config(tmp_path))], tmp_path, empty)
    skip_if_system_openssl(result.stdout)
    assert result.returncode == 69, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    missing = next(line for line in lines if "OpenSSL 1.1" in line)
    assert missing.startswith("FAIL OpenSSL 1.1 (libcrypto.so.1.1 and libssl.so.1.1) not found")
    assert "set OCR_DAEMON_NATIVE_DIR=/that/folder" in missing
    assert (
        "warn engine aspose not started (it needs OpenSSL 1.1): `run` and `once` use the "
        "tesseract engine instead" in result.stdout
    )
    assert "ok   engine tesseract " in result.stdout
    assert "ok   warm-up recognition returned 'The quick brown fox" in result.stdout


def test_once_without_openssl_uses_tesseract_and_says_what_is_missing(tmp_path: Path) -> None:
    empty = tmp_path / "no-openssl"
    empty.mkdir()
    config = write_config(tmp_path)
    render_page(LINES).save(tmp_path / "inbox" / "page.png")
    result = ocr_daemon(["once", "--config", str(config)], tmp_path, empty)
    logged = events(result.stdout)  # run and once log to stdout
    assert result.returncode == 0, result.stderr
    stand_in = next(event for event in logged if event["event"] == "engine.stand_in")
    assert (stand_in["engine"], stand_in["instead_of"]) == ("tesseract", "aspose")
    assert "libssl.so.1.1" in str(stand_in["missing"])
    assert "OCR_DAEMON_NATIVE_DIR=/that/folder" in str(stand_in["missing"])
    started = next(event for event in logged if event["event"] == "daemon.started")
    assert str(started["engine"]).startswith("tesseract ")
    text = (tmp_path / "outbox" / "page.txt").read_text()
    assert "stand-in engine reads this page" in text
