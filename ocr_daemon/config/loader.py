"""The one loader: a TOML file -> a `Config`, with environment overrides applied.

Unknown keys and bad values are `ConfigError`s naming the file, the key and why. Relative paths
are resolved against the directory holding the config file. `convert_value` is the same
conversion for one key given elsewhere (the command line's overrides).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ocr_daemon.config.rules import Rule, parse_rules
from ocr_daemon.config.schema import Config, check_relationships
from ocr_daemon.config.values import converter_for
from ocr_daemon.errors import ConfigError

LICENSE_ENV = "OCR_DAEMON_LICENSE_FILE"
# Where `make install` writes the config: a command given no --config reads it when it exists.
INSTALLED_CONFIG = Path("/etc/ocr-daemon/ocr-daemon.toml")


_PATH_KEYS = {
    *("inbox", "outbox", "processed", "failed", "state_dir", "license_file", "tessdata_dir"),
}


def load_config(path: Path | None) -> Config:
    """Read and validate `path`; None gives the defaults (plus environment overrides)."""
    if path is None:
        return _apply_env(Config())
    where = str(path)
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("config file not found", where) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", where) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where) from None
    base = path.resolve().parent
    config = _build(Config, raw, where, base, prefix="")
    config = dataclasses.replace(config, source=path.resolve())
    config = _apply_env(config)
    check_relationships(config, where)
    return config


def default_config_path(installed: Path = INSTALLED_CONFIG) -> Path | None:
    """The config a command reads without --config: the installed one if it exists, else None
    (the built-in defaults, which put every folder under /var/lib/ocr-daemon)."""
    return installed if installed.exists() else None


def convert_value(key: str, value: Any, name: str) -> Any:
    """`value` for top-level `key`, converted and checked exactly as the file's would be (a
    relative path is taken from the working directory); the `ConfigError` names it `name`."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    return _convert(fields[key], value, name, "<command line>", Path.cwd())


def _apply_env(config: Config) -> Config:
    licence = os.environ.get(LICENSE_ENV)
    if licence:
        aspose = dataclasses.replace(config.aspose, license_file=Path(licence))
        config = dataclasses.replace(config, aspose=aspose)
    return config


def _build(cls: type[Any], raw: Mapping[str, Any], where: str, base: Path, prefix: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise ConfigError(f"unknown key {name!r}", where)
        values[key] = _convert(fields[key], value, name, where, base)
    return cls(**values)


def _convert(fld: dataclasses.Field[Any], value: Any, name: str, where: str, base: Path) -> Any:
    default = fld.default_factory() if callable(fld.default_factory) else fld.default
    if dataclasses.is_dataclass(default):
        if not isinstance(value, dict):
            raise ConfigError(f"key {name!r} must be a table", where)
        return _build(type(default), value, where, base, prefix=f"{name}.")
    if fld.name in _PATH_KEYS:
        return _path(value, name, where, base)
    if fld.name == "rules":
        return _rules(value, name, where, base)
    converter = converter_for(fld.name, default)
    try:
        return converter(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for {name!r}: {exc}", where) from None


def _rules(value: Any, name: str, where: str, base: Path) -> tuple[Rule, ...]:
    fields = {f.name: f for f in dataclasses.fields(Config)}

    def convert(key: str, raw: Any, qualified: str) -> Any:
        return _convert(fields[key], raw, qualified, where, base)

    try:
        return parse_rules(value, name, convert)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for {name!r}: {exc}", where) from None


def _path(value: Any, name: str, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"key {name!r} must be a non-empty path string", where)
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()
