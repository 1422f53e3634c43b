"""The Tesseract engine behind the `Engine` seam, via the `tesserocr` wheel (bundled libtesseract).

Runs inside a worker process like every engine, and adds no parallelism: the wheel has no
OpenMP, so one recognition uses one thread (and releases the GIL). Language data comes from
Debian's `tesseract-ocr-<lang>` packages, provisioned into `.venv/native/tessdata` by
`make setup`, or from `tesseract.tessdata_dir`. Fully offline.

Inputs are vetted by `images` exactly as for Aspose; images are decoded there, PDFs are
rasterised by `pdf` from the bytes `images` vetted (Tesseract cannot read PDFs). Each page is
turned upright by `orientation` when `config.orientation` is on, then recognised with page
segmentation mode 3 (automatic layout, which keeps columns apart). Beside each page's text, its
layout: the words of each line with their boxes and confidences, from the same recognition (its
result iterator).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tesserocr
from PIL import Image

from ocr_daemon.config import Config, languages
from ocr_daemon.engines import images, orientation, pdf
from ocr_daemon.engines.aspose import render_warm_up_page
from ocr_daemon.engines.base import EngineInfo, OcrResult
from ocr_daemon.engines.layout import Box, Line, PageLayout, Word, page_dpi
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
        return _result([self._read(render_warm_up_page(), 0)])

    def recognize(self, path: Path) -> OcrResult:
        vetted = images.vet(path, self._config.limits)
        if isinstance(vetted, images.PdfInput):
            return _result(self._read_pdf(vetted))
        turned = (orientation.turned(page, self._config) for page in vetted.pages())
        return _result([self._read(page, rotation) for page, rotation in turned])

    def _read_pdf(self, vetted: images.PdfInput) -> list[tuple[str, PageLayout]]:
        """Each rendered page OCRed, except those whose own text `pdf_existing_text` keeps."""
        kept = pdf.existing_text(vetted, self._config.pdf_existing_text)
        reads = []
        for index, page in enumerate(pdf.render_pages(vetted, self._config.limits)):
            if index in kept:
                dpi = images.claimed_dpi(page) or pdf.DPI
                reads.append((kept[index], pdf.kept_layout(page.size, dpi)))
            else:
                reads.append(self._read(*orientation.turned(page, self._config)))
        return reads

    def _read(self, page: Image.Image, rotation: int) -> tuple[str, PageLayout]:
        """The page's text and where its words are, `rotation` being the turn it was given."""
        self._api.SetImage(page)
        try:
            text = str(self._api.GetUTF8Text())
            lines = tuple(self._lines())
        finally:
            self._api.Clear()
        dpi, dpi_source = page_dpi(images.claimed_dpi(page))
        return text, PageLayout(page.width, page.height, dpi, dpi_source, rotation, "word", lines)

    def _lines(self) -> Iterator[Line]:
        """The recognised lines, each with its words, in reading order (empty lines left out)."""
        iterator = self._api.GetIterator()
        if iterator is None:
            return
        line: tuple[Box | None, float] = (None, 0.0)
        words: list[Word] = []
        for item in tesserocr.iterate_level(iterator, tesserocr.RIL.WORD):
            if item.IsAtBeginningOf(tesserocr.RIL.TEXTLINE):
                if words:
                    yield _line(words, *line)
                line = (_box(item, tesserocr.RIL.TEXTLINE), item.Confidence(tesserocr.RIL.TEXTLINE))
                words = []
            word = _word(item)
            if word is not None:
                words.append(word)
        if words:
            yield _line(words, *line)


def _result(read: list[tuple[str, PageLayout]]) -> OcrResult:
    return OcrResult(
        tuple(text for text, _ in read),
        evaluation_mode=False,
        layout=tuple(layout for _, layout in read),
    )


def _word(item: Any) -> Word | None:
    try:
        text = item.GetUTF8Text(tesserocr.RIL.WORD)
    except RuntimeError:  # "No text returned": a blank page's iterator yields one empty element
        return None
    box = _box(item, tesserocr.RIL.WORD)
    if not text or not text.strip() or box is None:
        return None
    return Word(text.strip(), box, float(item.Confidence(tesserocr.RIL.WORD)))


def _line(words: list[Word], box: Box | None, confidence: float) -> Line:
    """A line of `words`; its box is Tesseract's, or the words' union when it gave none."""
    if box is None:
        boxes = [word.box for word in words]
        box = Box(min(b.left for b in boxes), min(b.top for b in boxes),
                  max(b.right for b in boxes), max(b.bottom for b in boxes))  # fmt: skip
    text = " ".join(word.text for word in words)
    return Line(text, box, float(confidence), tuple(words))


def _box(item: Any, level: int) -> Box | None:
    found = item.BoundingBox(level)
    if not found:
        return None
    left, top, right, bottom = found
    return Box(int(left), int(top), int(right), int(bottom))


def tesseract_version() -> str:
    """libtesseract's version, e.g. "5.5.4" (the first line of its banner)."""
    first = str(tesserocr.tesseract_version()).splitlines()[0]
    return first.removeprefix("tesseract ").strip()
