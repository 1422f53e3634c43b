"""The config loader: unknown keys, bad types, folder relationships, relative paths, the example."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_daemon.config import Config, load_config
from ocr_daemon.errors import ConfigError, ExitCode

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "ocr-daemon.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ocr-daemon.toml"
    path.write_text(text)
    return path


def test_no_file_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCR_DAEMON_LICENSE_FILE", raising=False)
    assert load_config(None) == Config()


def test_unknown_key_names_the_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'inbox = "in"\n[aspose]\nlangauge = "FRA"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "unknown key 'aspose.langauge'" in str(caught.value)
    assert caught.value.path == str(path)
    assert caught.value.exit_code == ExitCode.CONFIG == 78


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("workers = 'two'", "bad value for 'workers'"),
        ("settle_seconds = -1", "bad value for 'settle_seconds'"),
        ("force_polling = 'sometimes'", "bad value for 'force_polling'"),
        ("[limits]\nmax_pages = 0", "bad value for 'limits.max_pages'"),
        ("aspose = 3", "key 'aspose' must be a table"),
        ("inbox = 3", "key 'inbox' must be a non-empty path string"),
        ("inbox = ", "not valid TOML"),
    ],
)
def test_bad_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text + "\n"))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize("outbox", ["in/out", "in"])
def test_outbox_inside_inbox_is_rejected(tmp_path: Path, outbox: str) -> None:
    path = write(tmp_path, f'inbox = "in"\noutbox = "{outbox}"\n')
    with pytest.raises(ConfigError, match=r"outbox .* may not be inside the inbox"):
        load_config(path)


def test_relative_paths_are_resolved_against_the_config_folder(tmp_path: Path) -> None:
    path = write(tmp_path, 'inbox = "spool/in"\n[aspose]\nlicense_file = "Aspose.OCR.lic"\n')
    config = load_config(path)
    assert config.inbox == tmp_path / "spool" / "in"
    assert config.aspose.license_file == tmp_path / "Aspose.OCR.lic"
    assert config.source == path


def test_licence_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCR_DAEMON_LICENSE_FILE", "/etc/ocr-daemon/Aspose.OCR.lic")
    config = load_config(write(tmp_path, ""))
    assert config.aspose.license_file == Path("/etc/ocr-daemon/Aspose.OCR.lic")


def test_the_example_config_loads() -> None:
    assert EXAMPLE.is_file(), f"the example config {EXAMPLE} is missing (make install copies it)"
    config = load_config(EXAMPLE)
    assert config.engine == "aspose"
