"""Renderers: a structured OCR result to the bytes of each output format.

Imported only inside engine processes and by the `ocr` command: never by the CLI, the daemon or
the watcher at import time (some renderers import pikepdf, img2pdf or fpdf2).
"""

from __future__ import annotations

FORMATS: tuple[str, ...] = ("txt", "pdf", "json", "hocr", "alto")
SUFFIX: dict[str, str] = {
    "txt": ".txt",
    "pdf": ".pdf",
    "json": ".json",
    "hocr": ".hocr",
    "alto": ".alto.xml",
}
