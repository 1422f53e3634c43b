"""The Tesseract engine behind the `Engine` seam, via the `tesserocr` wheel (bundled libtesseract).

Runs inside a worker process like every engine, and adds no parallelism: the wheel has no
OpenMP, so one recognition uses one thread (and releases the GIL). Language data comes from
Debian's `tesseract-ocr-<lang>` packages, provisioned into `.venv/native/tessdata` by
`make setup`, or from `tesseract.tessdata_dir`. Fully offline.

Inputs are vetted by `images` exactly as for Aspose; images are decoded there, PDFs are
rasterised by `pdf` from the bytes `images` vetted (Tesseract cannot read PDFs). Each page is
turned upright by `orientation` when `config.orientation` is on, then recognised with page
segmentation mode 3 (automatic layout, which keeps columns apart).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import tesserocr
from PIL import Image

from ocr_daemon.config import Config, languages
from ocr_daemon.engines import images, orientation, pdf
from ocr_daemon.engines.aspose import render_warm_up_page
from ocr_daemon.engines.base import EngineInfo, OcrResult
from ocr_daemon.errors import ConfigError, EngineUnavailable


class TesseractEngine:
    """One warm `PyTessBaseAPI` for `config.languages` (joined, e.g. "fra+eng")."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._tessdata = languages.find_tessdata(config.tesseract.tessdata_dir)
        self._lang = languages.tesseract_lang(config.languages)
        problem = languages.check_for_engine(
            "tesseract", config.languages, self._tessdata, config.state_dir
        )
        if problem or self._tessdata is None:
            where = str(config.source) if config.source else None
            raise ConfigError(problem or "no tessdata folder found", where)
        try:
            self._api = tesserocr.PyTessBaseAPI(
                path=f"{self._tessdata}/", lang=self._lang, psm=tesserocr.PSM.AUTO
            )
        except RuntimeError as exc:
            raise EngineUnavailable(f"Tesseract failed to start: {exc}") from None

    def info(self) -> EngineInfo:
        detail = (
            f"languages={self._lang}, orientation={self._config.orientation}; "
            f"data in {self._tessdata} (installed: "
            f"{', '.join(languages.installed_tesseract(self._tessdata))})"
        )
        return EngineInfo("tesseract", tesseract_version(), True, detail)

    def warm_up(self) -> OcrResult:
        return OcrResult((self._read(render_warm_up_page()),), evaluation_mode=False)

    def recognize(self, path: Path) -> OcrResult:
        texts = tuple(
            self._read(orientation.as_configured(page, self._config)) for page in self._pages(path)
        )
        return OcrResult(texts, evaluation_mode=False)

    def _pages(self, path: Path) -> Iterator[Image.Image]:
        vetted = images.vet(path, self._config.limits)
        if isinstance(vetted, images.PdfInput):
            return pdf.render_pages(vetted, self._config.limits)
        return vetted.pages()

    def _read(self, page: Image.Image) -> str:
        self._api.SetImage(page)
        try:
            return str(self._api.GetUTF8Text())
        finally:
            self._api.Clear()


def tesseract_version() -> str:
    """libtesseract's version, e.g. "5.5.4" (the first line of its banner)."""
    first = str(tesserocr.tesseract_version()).splitlines()[0]
    return first.removeprefix("tesseract ").strip()
