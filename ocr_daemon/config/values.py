"""How one TOML value becomes a typed setting: a converter for keys with rules of their own
(choices, modes, counts >= 1, languages), otherwise one shaped like the key's default value.
Converters raise TypeError or ValueError; `config` turns those into a `ConfigError` naming the
file and the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from ocr_daemon.config import languages as langs

# the output formats (`outputs`) and the suffix each gives its file, beside the sidecar
FORMATS: tuple[str, ...] = ("txt", "pdf", "json", "hocr", "alto")
SUFFIX: dict[str, str] = {
    "txt": ".txt",
    "pdf": ".pdf",
    "json": ".json",
    "hocr": ".hocr",
    "alto": ".alto.xml",
}
OnSuccess = Literal["move", "keep", "delete"]
LogFormat = Literal["auto", "json", "console"]
PdfExistingText = Literal["skip", "force"]  # "redo" (replace an old OCR layer) is not built yet
PdfFormat = Literal["pdf", "pdfa-2b"]
LOG_LEVELS = {"debug", "info", "warning", "error"}


def converter_for(key: str, default: Any) -> Callable[[Any], Any]:
    """The converter for a key of a settings table (not a path, a table or the rules)."""
    converter: Callable[[Any], Any] = _CONVERTERS.get(key, _typed_like(default))
    return converter


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


def _outputs(value: Any) -> tuple[str, ...]:
    """A non-empty list of output formats, kept in the canonical order, each once."""
    if not isinstance(value, list) or not value:
        raise TypeError(f"expected a non-empty list of formats from {', '.join(FORMATS)}")
    for name in value:
        if name not in FORMATS:
            raise ValueError(f"unknown format {name!r}: expected any of {', '.join(FORMATS)}")
    return tuple(name for name in FORMATS if name in value)


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"expected a whole number >= 1, got {value!r}")
    return value


def _log_level(value: Any) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ValueError(f"expected one of {', '.join(sorted(LOG_LEVELS))}; got {value!r}")
    return value.lower()


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "on_success": _choice(get_args(OnSuccess)),
    "log_format": _choice(get_args(LogFormat)),
    "pdf_existing_text": _choice(get_args(PdfExistingText)),
    "log_level": _log_level,
    "force_polling": _force_polling,
    "languages": langs.parse_languages,
    "ignore_patterns": _patterns,
    "output_mode": _mode,
    "outputs": _outputs,
    "pdf_format": _choice(get_args(PdfFormat)),
    "max_attempts": _positive_int,
    "max_jobs_per_worker": _positive_int,
    "queue_size": _positive_int,
    "worker_memory_mb": _positive_int,
    "onnx_intra_op_threads": _positive_int,
    "max_pages": _positive_int,
    "max_aspect_ratio": _positive_int,
    "max_pixels": _positive_int,
    "max_file_bytes": _positive_int,
    "max_deliver": _positive_int,
    "max_inline_bytes": _positive_int,
}
