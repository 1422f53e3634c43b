"""Rasterise PDF pages for engines that cannot read PDFs (Tesseract), and for page orientation
detection on PDFs (both engines), with pdfium in-process.

Pillow only writes PDFs, it cannot read them; `pypdfium2` is a 4 MB wheel with pdfium inside and
no system dependencies, and renders in-process (the peers measurement spent 1.3-2.8 s per PDF in a
`pdftoppm` child at 300 dpi). Pages are rendered one at a time in 8-bit grey at `DPI`, scaled
down when a page would exceed `limits.max_pixels`; each image says the DPI it was rendered at in
``info["dpi"]`` (as a decoded image file would); errors become our typed `InputError`s.
pdfium reads the vetted bytes (`images.PdfInput.data`), never the file: the file may have been cut
or rewritten since it was vetted.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pypdfium2 as pdfium
from PIL import Image

from ocr_daemon.config import Limits
from ocr_daemon.engines.images import PdfInput
from ocr_daemon.engines.layout import PageLayout
from ocr_daemon.errors import CorruptInput, EmptyInput, InputTooLarge, UnsupportedInput

DPI = 300
POINTS_PER_INCH = 72


def render_pages(pdf: PdfInput, limits: Limits) -> Iterator[Image.Image]:
    """Each page of the vetted `pdf` as an upright "L" image."""
    document = _open(pdf)
    try:
        count = len(document)
        if count == 0:
            raise EmptyInput("PDF has no pages", str(pdf.path))
        if count > limits.max_pages:
            raise InputTooLarge(
                f"PDF has {count} pages, over limits.max_pages = {limits.max_pages}", str(pdf.path)
            )
        for index in range(count):
            yield _render(document, index, pdf, limits)
    finally:
        document.close()


def render_page(pdf: PdfInput, index: int, limits: Limits) -> Image.Image:
    """Page `index` (from 0) of the vetted `pdf`, as `render_pages` renders it."""
    document = _open(pdf)
    try:
        return _render(document, index, pdf, limits)
    finally:
        document.close()


def existing_text(pdf: PdfInput, policy: str) -> dict[int, str]:
    """Page index -> the text that page of the vetted `pdf` already carries, for the pages that
    `policy` (``config.pdf_existing_text``) says not to OCR: all pages with text for "skip",
    none for "force". Line breaks as "\n", one at the end, like an engine's page text."""
    if policy == "force":
        return {}
    document = _open(pdf)
    found: dict[int, str] = {}
    try:
        for index in range(len(document)):
            text = document[index].get_textpage().get_text_range()
            text = text.replace("\r\n", "\n").replace("\r", "\n").rstrip()
            if text.strip():
                found[index] = text + "\n"
    except pdfium.PdfiumError as exc:
        raise CorruptInput(f"PDF text cannot be read: {exc}", str(pdf.path)) from None
    finally:
        document.close()
    return found


def kept_layout(size: tuple[int, int], dpi: float) -> PageLayout:
    """The layout of a page whose own text was kept: its size, and no lines (none to add)."""
    return PageLayout(size[0], size[1], dpi, "file", 0, "line")


def page_pixels(pdf: PdfInput, index: int, dpi: float) -> tuple[int, int]:
    """The pixel size page `index` of the vetted `pdf` renders to at `dpi`."""
    document = _open(pdf)
    try:
        width_pt, height_pt = document[index].get_size()
    except (pdfium.PdfiumError, IndexError) as exc:
        raise CorruptInput(f"PDF page {index + 1} cannot be read: {exc}", str(pdf.path)) from None
    finally:
        document.close()
    scale = dpi / POINTS_PER_INCH
    return round(width_pt * scale), round(height_pt * scale)


def _open(pdf: PdfInput) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(pdf.data)  # held, not copied, while the document is open
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise UnsupportedInput("PDF is password-protected", str(pdf.path)) from None
        raise CorruptInput(f"PDF cannot be read: {exc}", str(pdf.path)) from None


def _render(document: pdfium.PdfDocument, index: int, pdf: PdfInput, limits: Limits) -> Image.Image:
    try:
        page = document[index]
        width_pt, height_pt = page.get_size()
        scale = DPI / POINTS_PER_INCH
        pixels = width_pt * height_pt * scale * scale
        if pixels > limits.max_pixels:
            scale *= math.sqrt(limits.max_pixels / pixels) * 0.99
        bitmap = page.render(scale=scale, grayscale=True, may_draw_forms=True)
        image: Image.Image = bitmap.to_pil()
    except pdfium.PdfiumError as exc:
        raise CorruptInput(
            f"PDF page {index + 1} cannot be rendered: {exc}", str(pdf.path)
        ) from None
    image = image.convert("L") if image.mode != "L" else image
    image.info["dpi"] = (scale * POINTS_PER_INCH, scale * POINTS_PER_INCH)
    return image
