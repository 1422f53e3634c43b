"""One exit-code table (`errors.ExitCode`) at every way out of the CLI: a usage error is 64 (not
argparse's 2), a bug is 70 (never 1, which means "files failed"), a bad command-line override is
refused by the same converter as its TOML key, and "no engine" is 69 from a worker host as from
the daemon."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from ocr_daemon import cli
from ocr_daemon.cluster.worker_host import WorkerHost
from ocr_daemon.config import ClusterSettings, Config
from ocr_daemon.errors import EngineUnavailable, ExitCode
from tests.harness import write_config


@pytest.mark.parametrize("argv", [["frobnicate"], ["status", "--no-such-option"]])
def test_a_usage_error_exits_64_not_argparses_2(argv: list[str]) -> None:
    assert cli.main(argv) == ExitCode.USAGE


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--max-attempts", "0"),
        ("--workers", "-3"),
        ("--settle-seconds", "-1"),
        ("--on-success", "burn"),
        ("--workers", "three"),
    ],
)
def test_a_bad_override_is_refused_naming_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str
) -> None:
    config = write_config(tmp_path, workers=1)
    assert cli.main(["once", "--config", str(config), option, value]) == ExitCode.USAGE
    assert option in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # refused before the daemon started


def test_a_good_override_goes_through_the_same_converter(tmp_path: Path) -> None:
    config = write_config(tmp_path, workers=1)
    assert cli.main(["once", "--config", str(config), "--max-attempts", "1"]) == ExitCode.OK


def test_a_bug_exits_70_with_its_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace, config: Config) -> int:
        raise RuntimeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "status", cli.Command("status", broken, logs=False))
    assert (
        cli.main(["status", "--config", str(write_config(tmp_path, workers=1))])
        == ExitCode.SOFTWARE
    )
    err = capsys.readouterr().err
    assert "RuntimeError: a bug" in err and "internal error" in err


def test_status_of_a_stopped_daemon_is_not_running(tmp_path: Path) -> None:
    code = cli.main(["status", "--config", str(write_config(tmp_path, workers=1))])
    assert code == ExitCode.NOT_RUNNING == 3


def test_a_worker_host_with_no_engine_left_exits_as_the_daemon_does(tmp_path: Path) -> None:
    config = Config(workers=1, cluster=ClusterSettings(url="nats://127.0.0.1:9"))
    host = WorkerHost(config)
    for slot in host.pool.slots:
        slot.broken = True  # what a slot is after its engine failed to restart
    with pytest.raises(EngineUnavailable) as caught:
        asyncio.run(host._pull(None))  # type: ignore[arg-type]  # raises before fetching
    assert caught.value.exit_code == ExitCode.UNAVAILABLE
