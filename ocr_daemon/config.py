"""The configuration: frozen typed data, and the one loader that builds it from a TOML file.

Unknown keys and bad values are `ConfigError`s naming the file, the key and why. Relative paths
are resolved against the directory holding the config file. Relationships between folders are
checked here (outputs never inside the watched inbox), so nothing later has to.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from ocr_daemon.errors import ConfigError

OnSuccess = Literal["move", "keep", "delete"]
LogFormat = Literal["auto", "json", "console"]
LICENSE_ENV = "OCR_DAEMON_LICENSE_FILE"


@dataclass(frozen=True)
class AsposeSettings:
    """Settings of the Aspose engine; applied inside each worker process."""

    language: str = "LATIN"
    detect_areas_mode: str = "UNIVERSAL"
    onnx_intra_op_threads: int = 1
    onnx_sequential: bool = True
    auto_skew: bool = False
    license_file: Path | None = None


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every input before the engine sees it."""

    max_file_bytes: int = 256 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_pages: int = 200


@dataclass(frozen=True)
class Config:
    inbox: Path = Path("/var/lib/ocr-daemon/inbox")
    outbox: Path = Path("/var/lib/ocr-daemon/outbox")
    processed: Path = Path("/var/lib/ocr-daemon/processed")
    failed: Path = Path("/var/lib/ocr-daemon/failed")
    state_dir: Path = Path("/var/lib/ocr-daemon/state")
    engine: str = "aspose"
    workers: int = 0
    worker_memory_mb: int = 1300
    max_jobs_per_worker: int = 500
    settle_seconds: float = 2.0
    rescan_interval_seconds: float = 300.0
    force_polling: bool | None = None
    ignore_patterns: tuple[str, ...] = ()
    queue_size: int = 10_000
    ocr_timeout_seconds: float = 600.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 5.0
    shutdown_timeout_seconds: float = 60.0
    on_success: OnSuccess = "move"
    output_mode: int = 0o640
    log_format: LogFormat = "auto"
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)
    aspose: AsposeSettings = field(default_factory=AsposeSettings)
    source: Path | None = None

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied and re-validated (used for CLI overrides)."""
        new = dataclasses.replace(self, **changes)
        check_relationships(new, str(self.source or "<command line>"))
        return new


_PATH_KEYS = {"inbox", "outbox", "processed", "failed", "state_dir", "license_file"}
_LOG_LEVELS = {"debug", "info", "warning", "error"}


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
    converter = _CONVERTERS.get(fld.name, _typed_like(default))
    try:
        return converter(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for {name!r}: {exc}", where) from None


def _path(value: Any, name: str, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"key {name!r} must be a non-empty path string", where)
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _typed_like(default: Any) -> Any:
    def convert(value: Any) -> Any:
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {value!r}")
            return value
        if isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"expected a whole number >= 0, got {value!r}")
            return value
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise TypeError(f"expected a number of seconds >= 0, got {value!r}")
            return float(value)
        if not isinstance(value, str):
            raise TypeError(f"expected a string, got {value!r}")
        return value

    return convert


def _choice(options: tuple[str, ...]) -> Any:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}; got {value!r}")
        return str(value)

    return convert


def _force_polling(value: Any) -> bool | None:
    if value == "auto":
        return None
    if isinstance(value, bool):
        return value
    raise ValueError(f'expected true, false or "auto"; got {value!r}')


def _patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError("expected a list of non-empty glob strings")
    return tuple(value)


def _mode(value: Any) -> int:
    if not isinstance(value, str) or len(value) not in (3, 4):
        raise TypeError(f'expected an octal mode string such as "0640", got {value!r}')
    mode = int(value, 8)
    if mode & ~0o666:
        raise ValueError(f"output files may not be executable or special: {value!r}")
    return mode


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"expected a whole number >= 1, got {value!r}")
    return value


def _log_level(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in _LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(sorted(_LOG_LEVELS))}; got {value!r}")
    return value.lower()


_CONVERTERS: dict[str, Any] = {
    "on_success": _choice(get_args(OnSuccess)),
    "log_format": _choice(get_args(LogFormat)),
    "log_level": _log_level,
    "force_polling": _force_polling,
    "ignore_patterns": _patterns,
    "output_mode": _mode,
    "max_attempts": _positive_int,
    "max_jobs_per_worker": _positive_int,
    "queue_size": _positive_int,
    "worker_memory_mb": _positive_int,
    "onnx_intra_op_threads": _positive_int,
    "max_pages": _positive_int,
    "max_pixels": _positive_int,
    "max_file_bytes": _positive_int,
}


def check_relationships(config: Config, where: str) -> None:
    """Outputs and state never live inside the watched inbox (nor the inbox inside them)."""
    inbox = config.inbox.resolve()
    for name in ("outbox", "processed", "failed", "state_dir"):
        other = getattr(config, name).resolve()
        if other == inbox or other.is_relative_to(inbox) or inbox.is_relative_to(other):
            raise ConfigError(
                f"{name} ({other}) may not be inside the inbox ({inbox}) or contain it: "
                "the daemon would pick up its own outputs",
                where,
            )
    if config.settle_seconds <= 0:
        raise ConfigError("key 'settle_seconds' must be > 0", where)
    if config.ocr_timeout_seconds <= 0:
        raise ConfigError("key 'ocr_timeout_seconds' must be > 0", where)
