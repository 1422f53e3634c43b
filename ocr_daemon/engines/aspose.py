"""The Aspose.OCR engine behind the `Engine` seam: the only code that calls `aspose.ocr`.

It runs **inside a worker process** (or the one-shot `ocr-daemon ocr` command), never in the
daemon's main process: constructing it starts CoreCLR in-process (see `runtime`), after which
`fork()` is unsafe. It adds no parallelism: one recognition at a time, holding the GIL.

Each file gets its own engine calls (one bad file in a batch would fail the batch), one call per
page: images are vetted and decoded by `images` and passed as raw 8-bit pixels, PDFs are read by
the engine page by page from the bytes `images` vetted, as a stream (except pages that orientation
detection, run on pdfium renderings, finds turned: those go in as upright pixels). Never the PDF's
path: the file may have been cut or rewritten since it was vetted (and read by path, a 64 MB PDF
took 43-116 ms and +64 MB RSS per page call, by stream 2-8 ms and nothing). Aspose raises only
`RuntimeError("Proxy error(<often obfuscated>): …")`, so `_classify` maps message substrings to our
typed errors; nothing else carries the cause.

Each page's layout holds the engine's lines (`recognition_lines_result`: text and box, no word
boxes, so granularity "line"), exactly as they came back: in evaluation mode they need not match
the cut text. Boxes are in the pixels of the image the engine read: our pixels for images and
turned PDF pages; for PDF pages it reads itself, its own rendering (150 dpi, measured), whose size
comes from the image it returns with the result.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.metadata
import io
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ocr_daemon.config import AsposeSettings, Config, aspose_mode_problem, languages
from ocr_daemon.engines import aspose_runtime, images, orientation
from ocr_daemon.engines import pdf as pdfpages
from ocr_daemon.engines.base import WARM_UP_LINES, EngineInfo, OcrResult
from ocr_daemon.engines.layout import Box, DpiSource, Line, PageLayout, page_dpi
from ocr_daemon.errors import (
    ConfigError,
    CorruptInput,
    EmptyInput,
    EngineUnavailable,
    InputError,
    InputMissing,
    InputTooLarge,
    OcrDaemonError,
    RecognitionFailed,
    UnsupportedInput,
)

PACKAGE = "aspose-ocr-python-net"
TRIAL_CHARS_PER_PAGE = 300
PDF_RENDER_DPI = 150.0  # measured: Aspose's line boxes on PDF pages it reads are at 150 dpi
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CORRUPT_MARKERS = (
    "InvalidPdfFileFormatException",
    "Startxref",
    "Trailer not found",
    "Incorrect file header",
)


class AsposeEngine:
    """One warm `AsposeOcr` instance with the settings from `config.aspose`."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._resources_dir = _resources_dir(config)
        # the older [aspose] language key wins; else the first of the shared `languages`
        self._language = config.aspose.language or languages.aspose_language(config.languages)
        self._ocr = aspose_runtime.load_aspose(config.aspose, self._resources_dir)
        self._settings = self._recognition_settings(config.aspose)
        self._licensed = self._apply_license(config.aspose.license_file)
        try:
            self._api = self._ocr.AsposeOcr()
        except RuntimeError as exc:
            raise EngineUnavailable(f"Aspose.OCR failed to start: {_clean(exc)}") from None

    def info(self) -> EngineInfo:
        mode = (
            "licensed"
            if self._licensed
            else (
                f"EVALUATION mode: output cut to ~{TRIAL_CHARS_PER_PAGE} chars per page plus a "
                "trial notice"
            )
        )
        settings = self._config.aspose
        detail = (
            f"{mode}; language={self._language}, detect_areas_mode="
            f"{settings.detect_areas_mode}, onnx_intra_op_threads="
            f"{settings.onnx_intra_op_threads}, sequential={settings.onnx_sequential}; "
            f"resources in {self._resources_dir}"
        )
        return EngineInfo("aspose", importlib.metadata.version(PACKAGE), self._licensed, detail)

    def warm_up(self) -> OcrResult:
        page = render_warm_up_page()
        return self._result([self._read_pixels(page, 0, Path("<warm-up page>"))])

    def recognize(self, path: Path) -> OcrResult:
        vetted = images.vet(path, self._config.limits)
        if isinstance(vetted, images.PdfInput):
            return self._result(self._recognize_pdf(vetted))
        turned = (orientation.turned(page, self._config) for page in vetted.pages())
        return self._result([self._read_pixels(page, rotation, path) for page, rotation in turned])

    def _read_pixels(self, page: Image.Image, rotation: int, path: Path) -> _Read:
        """One page given as pixels (already turned by `rotation`), with its layout."""
        result = self._recognize_pixels(page, path)
        dpi, dpi_source = page_dpi(images.claimed_dpi(page))
        return _read(result, _layout(result, page.size, (dpi, dpi_source), rotation))

    def _recognize_pixels(self, page: Image.Image, path: Path) -> Any:
        pixel_type = self._ocr.PixelType.BYTE if page.mode == "L" else self._ocr.PixelType.RGB
        inp = self._new_input(self._ocr.InputType.SINGLE_IMAGE)
        inp.add(page.tobytes(), page.width, page.height, pixel_type)
        results = self._call(inp, path)
        if len(results) != 1:
            raise RecognitionFailed(f"engine returned {len(results)} results for 1 page", str(path))
        return results[0]

    def _recognize_pdf(self, pdf: images.PdfInput) -> list[_Read]:
        """Page by page, until the engine returns nothing: memory stays at one page. A page
        that orientation detection finds turned is recognised as upright rendered pixels; a
        page whose own text `pdf_existing_text` keeps is not recognised."""
        limit = self._config.limits.max_pages
        kept = pdfpages.existing_text(pdf, self._config.pdf_existing_text)
        turned = self._turned_pdf_pages(pdf)
        pages: list[_Read] = []
        for index in range(limit + 1):
            if index in kept:
                size = pdfpages.page_pixels(pdf, index, PDF_RENDER_DPI)
                pages.append((kept[index], (), pdfpages.kept_layout(size, PDF_RENDER_DPI)))
                continue
            if index in turned:
                rendered = pdfpages.render_page(pdf, index, self._config.limits)
                upright = rendered.rotate(turned[index], expand=True)
                upright.info["dpi"] = rendered.info["dpi"]
                rotation = orientation.clockwise(turned[index])
                pages.append(self._read_pixels(upright, rotation, pdf.path))
                continue
            inp = self._new_input(self._ocr.InputType.PDF)
            inp.add(io.BytesIO(pdf.data), index, 1)
            results = self._call(inp, pdf.path)
            if not results:
                break
            if index == limit:
                raise InputTooLarge(f"PDF has over limits.max_pages = {limit} pages", str(pdf.path))
            pages.extend(_read(r, _pdf_page_layout(r, pdf, index)) for r in results)
        if not pages:
            raise EmptyInput("PDF has no pages", str(pdf.path))
        return pages

    def _turned_pdf_pages(self, pdf: images.PdfInput) -> dict[int, int]:
        """Page index -> degrees that make it upright, for the pages OSD finds turned (with
        `orientation` on). Aspose reads the other pages itself; so it does all of a PDF that
        pdfium cannot render, and reports its own error if it cannot either."""
        if not self._config.orientation:
            return {}
        tessdata, langs = self._config.tesseract.tessdata_dir, self._config.languages
        try:
            pages = pdfpages.render_pages(pdf, self._config.limits)
            found = {
                i: orientation.detect_rotation(page, tessdata, langs)
                for i, page in enumerate(pages)
            }
        except InputError:
            return {}
        return {index: degrees for index, degrees in found.items() if degrees}

    def _new_input(self, input_type: Any) -> Any:
        if not self._config.aspose.auto_skew:
            return self._ocr.OcrInput(input_type)
        filters = importlib.import_module("aspose.ocr.models.preprocessingfilters")
        chain = filters.PreprocessingFilter()
        chain.add(filters.PreprocessingFilter.auto_skew())
        return self._ocr.OcrInput(input_type, chain)

    def _call(self, inp: Any, path: Path) -> list[Any]:
        try:
            return list(self._api.recognize(inp, self._settings))
        except RuntimeError as exc:
            raise self._classify(_clean(exc), path) from None

    def _classify(self, message: str, path: Path) -> OcrDaemonError:
        if "Please install" in message:
            settings = self._config.aspose
            return EngineUnavailable(
                f"aspose.language={settings.language!r} / aspose.detect_areas_mode="
                f"{settings.detect_areas_mode!r} need a model that is not installed and "
                f"automatic downloads are off: {message} Put the .ocr file in "
                f"{self._resources_dir}, or choose LATIN-script languages and LEAN/UNIVERSAL"
            )
        if "Invalid password" in message:
            return UnsupportedInput("PDF is password-protected", str(path))
        if "FileNotFoundException" in message:
            return InputMissing("file does not exist", str(path))
        if any(marker in message for marker in _CORRUPT_MARKERS):
            return CorruptInput(message, str(path))
        return RecognitionFailed(message, str(path))

    def _result(self, reads: list[_Read]) -> OcrResult:
        warnings = dict.fromkeys(w for _, page_warnings, _ in reads for w in page_warnings)
        return OcrResult(
            pages=tuple(text for text, _, _ in reads),
            evaluation_mode=not self._licensed,
            warnings=tuple(warnings),
            layout=tuple(page for _, _, page in reads),
        )

    def _recognition_settings(self, settings: AsposeSettings) -> Any:
        where = str(self._config.source) if self._config.source else None
        recognition = self._ocr.RecognitionSettings()
        recognition.language = _enum(self._ocr.Language, self._language, "language", where)
        mode = _enum(
            self._ocr.DetectAreasMode, settings.detect_areas_mode, "detect_areas_mode", where
        )
        problem = aspose_mode_problem(settings, self._resources_dir)
        if problem:
            raise ConfigError(problem, where)
        recognition.detect_areas_mode = mode
        return recognition

    def _apply_license(self, license_file: Path | None) -> bool:
        if license_file is not None:
            try:
                self._ocr.License().set_license(str(license_file))
            except RuntimeError as exc:
                raise ConfigError(
                    f"key 'aspose.license_file' ({license_file}) rejected by Aspose: {_clean(exc)}",
                    str(self._config.source) if self._config.source else None,
                ) from None
        return bool(self._ocr.License().is_licensed)


_Read = tuple[str, tuple[str, ...], PageLayout]  # a page's text, warnings and layout


def _read(result: Any, layout: PageLayout) -> _Read:
    return str(result.recognition_text), tuple(str(w) for w in (result.warnings or ())), layout


def _layout(
    result: Any, size: tuple[int, int], dpi: tuple[float, DpiSource], rotation: int
) -> PageLayout:
    """The page's lines as the engine returned them (its trial gives confidence 0.0: None)."""
    lines = tuple(
        Line(str(item.text_in_line), _box(item.line), _confidence(item))
        for item in (result.recognition_lines_result or ())
        if str(item.text_in_line).strip()
    )
    return PageLayout(size[0], size[1], dpi[0], dpi[1], rotation, "line", lines)


def _pdf_page_layout(result: Any, pdf: images.PdfInput, index: int) -> PageLayout:
    """The layout of a PDF page Aspose rendered itself: the size of the image it returns with
    the result, else the page's size at `PDF_RENDER_DPI`."""
    size = _png_size(result.serializable_image) or pdfpages.page_pixels(pdf, index, PDF_RENDER_DPI)
    return _layout(result, size, (PDF_RENDER_DPI, "file"), 0)


def _png_size(blob: Any) -> tuple[int, int] | None:
    """Width and height from the IHDR of the PNG inside `blob` (Aspose prefixes a header)."""
    data = bytes(blob or b"")
    start = data.find(_PNG_SIGNATURE)
    if start < 0 or len(data) < start + 24:
        return None
    width, height = struct.unpack(">II", data[start + 16 : start + 24])
    return int(width), int(height)


def _box(rect: Any) -> Box:
    left, top = int(rect.x), int(rect.y)
    return Box(left, top, left + int(rect.width), top + int(rect.height))


def _confidence(item: Any) -> float | None:
    value = float(getattr(item, "confidence", 0.0) or 0.0)
    return None if value <= 0.0 else round(value * 100 if value <= 1.0 else value, 1)


def render_warm_up_page() -> Image.Image:
    """The built-in 1200x300 two-line page, drawn in memory with DejaVu Sans."""
    page = Image.new("L", (1200, 300), 255)
    draw = ImageDraw.Draw(page)
    font_file = Path(sys.prefix) / "native" / "fonts" / "DejaVuSans.ttf"
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    if font_file.is_file():
        font = ImageFont.truetype(str(font_file), 40)
    else:
        font = ImageFont.load_default(size=40)
    for number, line in enumerate(WARM_UP_LINES):
        draw.text((40, 60 + 100 * number), line, fill=0, font=font)
    return page


def _enum(enum: Any, name: str, key: str, where: str | None) -> Any:
    members = enum.__members__
    if name.upper() not in members:
        raise ConfigError(
            f"key 'aspose.{key}' has unknown value {name!r}; expected one of "
            f"{', '.join(sorted(members))}",
            where,
        )
    return members[name.upper()]


def _clean(exc: BaseException) -> str:
    """The engine's message with `Proxy error(Type): ` shortened to `Type: ` (dropped when the
    type name is obfuscated) and unprintable characters removed."""
    message = str(exc)
    if message.startswith("Proxy error(") and "): " in message:
        kind, message = message[len("Proxy error(") :].split("): ", 1)
        message = f"{kind}: {message}" if kind.isidentifier() else message
    return "".join(ch for ch in message if ch.isprintable() or ch == "\n").strip()


def _resources_dir(config: Config) -> Path:
    """Our private Aspose resources folder: state_dir/aspose when the state folder exists
    (operators put pre-provisioned .ocr models there), else a temp folder removed at exit."""
    if config.state_dir.is_dir():
        return config.state_dir / "aspose"
    temp = Path(tempfile.mkdtemp(prefix="ocr-daemon-aspose-"))
    atexit.register(shutil.rmtree, temp, ignore_errors=True)
    return temp
