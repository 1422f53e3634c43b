"""Renderers: a structured OCR result to the bytes of each output format.

Imported only inside engine processes and by the `ocr` command: never by the CLI, the daemon or
the watcher at import time (some renderers import pikepdf, img2pdf or fpdf2). This module
itself is light: what a job asks to be rendered (`Rendering`) and what comes back (`Recognized`),
and the format names, which are the `outputs` key's vocabulary (`config.values`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ocr_daemon.config.values import FORMATS, SUFFIX
from ocr_daemon.engines.base import OcrResult

__all__ = ["FORMATS", "SUFFIX", "TXT_ONLY", "Recognized", "Rendering"]


@dataclass(frozen=True)
class Rendering:
    """Which output formats a job needs (the path's `outputs`) and the PDF flavour; sent with
    the job so the engine process renders them. Picklable."""

    formats: tuple[str, ...] = ("txt",)
    pdfa: bool = False

    def needs_rendering(self) -> bool:
        return any(name != "txt" for name in self.formats)


TXT_ONLY = Rendering()  # the default: the .txt sidecar alone, nothing rendered


@dataclass(frozen=True)
class Recognized:
    """A job's result and the bytes of each rendered format (no "txt": written from the text)."""

    result: OcrResult
    renders: dict[str, bytes] = field(default_factory=dict)
