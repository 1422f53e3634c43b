"""Render the requested formats of one result, in the engine process (never in the daemon).

The ``.txt`` is not rendered here: the daemon writes it from the result's text as it always has.
PDF comes from `formats.pdf.searchable_pdf`, imported only when a PDF is asked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ocr_daemon.engines.base import EngineInfo, OcrResult
from ocr_daemon.errors import ConfigError
from ocr_daemon.formats import Rendering, alto, hocr, json_doc
from ocr_daemon.formats.document import Document

PDF_MODULE = "ocr_daemon.formats.pdf"
TEXT_RENDERERS = {"json": json_doc.render, "hocr": hocr.render, "alto": alto.render}


def render(
    source: Path, result: OcrResult, engine: EngineInfo, seconds: float, rendering: Rendering
) -> dict[str, bytes]:
    """The bytes of each requested format other than txt, keyed by format name."""
    doc = Document.of(source.name, result, engine, seconds)
    out: dict[str, bytes] = {}
    for name in rendering.formats:
        if name == "pdf":
            out[name] = _pdf(source, result, rendering.pdfa)
        elif name != "txt":
            out[name] = TEXT_RENDERERS[name](doc)
    return out


def _pdf(source: Path, result: OcrResult, pdfa: bool) -> bytes:
    try:  # imports the PDF libraries: only when a PDF is asked for
        pdf = importlib.import_module(PDF_MODULE)
    except ImportError as exc:
        raise ConfigError(
            f'outputs includes "pdf" but the searchable-PDF renderer ({PDF_MODULE}) cannot be '
            f'imported here ({exc}); install it or remove "pdf" from outputs'
        ) from None
    data: bytes = pdf.searchable_pdf(source, result, pdfa=pdfa)
    return data
