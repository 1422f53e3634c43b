"""Searchable PDF: each page as it was scanned, with an invisible text layer over it.

Built from libraries, no PDF syntax by hand (the "sandwich" measured in shared/notes/outputs.md
§4): img2pdf embeds each image losslessly (JPEG passed through, CCITT G4 kept, anything else
Flate), fpdf2 draws a text-only page per page and pikepdf lays it over the image page, or over
the original page of a PDF input, whose content is kept and never rasterised.

The text layer holds each word (each line, where the engine gave only lines) in render mode 3,
horizontally scaled onto its box, in a glyphless font as Tesseract and OCRmyPDF use: every glyph
empty, so any Unicode text is selectable and searchable. It is built per document with fontTools
(fpdf2's own dependency) for exactly the characters the document holds: a font covering all of
Unicode (OCRmyPDF's Occulta maps 65,536 code points) costs fpdf2 ~0.2 s a page to load and
subset, a built one ~5 ms. Widths follow Occulta's: 0 for combining marks, a full em for wide
(CJK) characters, half an em for the rest. OCRmyPDF's own renderer (`ocrmypdf.fpdf_renderer`)
was the alternative: not a public API, and pinning all of OCRmyPDF for it buys RTL/CJK shaping we
do not yet need.

Pages are sized from the layout's DPI. A page the engine read turned (EXIF orientation, or
orientation detection) keeps its image as stored and gets a /Rotate, so it shows upright; pikepdf
places the text layer through that turn. `pdfa=True` adds what PDF/A-2b asks for (sRGB output
intent, XMP pdfaid, embedded fonts, no encryption or JavaScript); it is not validated with veraPDF.
"""

from __future__ import annotations

import io
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import img2pdf
import pikepdf
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fpdf import FPDF
from fpdf.enums import TextMode
from PIL import Image, ImageCms

from ocr_daemon.config import Limits
from ocr_daemon.engines import images
from ocr_daemon.engines.base import OcrResult
from ocr_daemon.engines.layout import Box, PageLayout
from ocr_daemon.errors import CorruptInput, RecognitionFailed
from ocr_daemon.inputs import read_input

FONT = "GlyphLessFont"
ASCENT, DESCENT = 0.8, 0.2  # of the font size: the glyphless font's line spans its box
GLYPH_WIDTHS = {"space": 500, "mark": 0, "narrow": 500, "wide": 1000}  # of 1000 units
POINTS_PER_INCH = 72.0
EXIF_TURNS = {1: 0, 3: 180, 6: 90, 8: 270}  # EXIF orientation -> clockwise degrees (no flips)
_JAVASCRIPT_KEYS = ("/OpenAction", "/AA")
PageSize = Callable[[float, float, tuple[float, float]], tuple[float, float, float, float]]


def searchable_pdf(source: Path, result: OcrResult, *, pdfa: bool = False) -> bytes:
    """The PDF of `source` (an image, single or multipage, or a PDF) with `result`'s text."""
    if len(result.layout) != result.page_count:
        raise RecognitionFailed(
            f"{result.page_count} pages but {len(result.layout)} page layouts", str(source)
        )
    data, _ = read_input(source, Limits())  # once, whole, never mapped (see `inputs`)
    is_pdf = images.sniff(data[:16]) == "pdf"
    pages = _pdf_pages if is_pdf else _image_pages
    pdf = pages(source, data, result.layout)
    with pdf:
        sizes = [_shown_size(page) for page in pdf.pages]
        text = pikepdf.open(io.BytesIO(text_layer(result.layout, sizes)))
        for page, text_page, layout in zip(pdf.pages, text.pages, result.layout, strict=True):
            if layout.lines:  # none on a PDF page whose own text was kept
                _overlay(pdf, page, text_page)
        if pdfa:
            make_pdfa(pdf)
        out = io.BytesIO()
        pdf.save(out, encryption=False, compress_streams=True,
                 object_stream_mode=pikepdf.ObjectStreamMode.generate)  # fmt: skip
        return out.getvalue()


def _overlay(pdf: pikepdf.Pdf, page: pikepdf.Page, text_page: pikepdf.Page) -> None:
    """Draw `text_page` over `page` through its /Rotate, keeping its content streams as they
    are (pikepdf's `add_overlay` would merge them into one): they are only wrapped in q/Q."""
    form = pdf.copy_foreign(text_page.as_form_xobject())
    name = page.add_resource(form, pikepdf.Name.XObject, prefix="OCR")
    placed = page.calc_form_xobject_placement(
        form, name, pikepdf.Rectangle(page.cropbox), invert_transformations=True
    )
    page.contents_add(pdf.make_stream(b"q\n"), prepend=True)
    page.contents_add(pdf.make_stream(b"\nQ\nq\n" + bytes(placed) + b"\nQ\n"))


def text_layer(layouts: Sequence[PageLayout], sizes: Sequence[tuple[float, float]]) -> bytes:
    """A text-only PDF: page i is `sizes[i]` points (as shown) holding `layouts[i]`'s text."""
    doc = FPDF(unit="pt")
    doc.set_auto_page_break(False)
    doc.set_creator("ocr-daemon")
    chars = {ch for layout in layouts for text, _, _ in _pieces(layout) for ch in text}
    with tempfile.TemporaryDirectory(prefix="ocr-daemon-font-") as folder:
        font_file = Path(folder) / "glyphless.ttf"
        font_file.write_bytes(glyphless_font(chars))
        doc.add_font(FONT, fname=font_file)
        for layout, (width, height) in zip(layouts, sizes, strict=True):
            doc.add_page(format=(width, height))
            doc.text_mode = TextMode.INVISIBLE
            scale = width / layout.width  # points per pixel
            for text, box, line in _pieces(layout):
                _place(doc, text, box, line, scale)
        return bytes(doc.output())


def glyphless_font(chars: set[str]) -> bytes:
    """A TrueType font whose glyphs are all empty, mapping each of `chars` and the space."""
    builder = FontBuilder(1000, isTTF=True)
    order = [".notdef", *GLYPH_WIDTHS]
    builder.setupGlyphOrder(order)
    builder.setupCharacterMap({ord(ch): _glyph(ch) for ch in chars | {" "}})
    empty = TTGlyphPen(None).glyph()
    builder.setupGlyf(dict.fromkeys(order, empty))
    builder.setupHorizontalMetrics({name: (GLYPH_WIDTHS.get(name, 500), 0) for name in order})
    builder.setupHorizontalHeader(ascent=round(ASCENT * 1000), descent=-round(DESCENT * 1000))
    builder.setupNameTable({"familyName": FONT, "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=round(ASCENT * 1000), sTypoDescender=-round(DESCENT * 1000),
                     usWinAscent=round(ASCENT * 1000), usWinDescent=round(DESCENT * 1000),
                     fsType=0)  # fmt: skip
    builder.setupPost()
    out = io.BytesIO()
    builder.save(out)
    return out.getvalue()


def _glyph(ch: str) -> str:
    if ch.isspace():
        return "space"
    if unicodedata.combining(ch):
        return "mark"
    return "wide" if unicodedata.east_asian_width(ch) in ("W", "F") else "narrow"


def _pieces(layout: PageLayout) -> Iterator[tuple[str, Box, Box]]:
    """Each word with its box and its line's box; each line alone where there are no words."""
    for line in layout.lines:
        if line.words:
            for word in line.words:
                yield word.text, word.box, line.box
        else:
            yield line.text, line.box, line.box


def _place(doc: FPDF, text: str, box: Box, line: Box, scale: float) -> None:
    """`text` followed by a space, its font as tall as its line and stretched to `box`'s width."""
    if not text.strip() or box.width <= 0 or line.height <= 0:
        return
    size = line.height * scale
    doc.set_font(FONT, size=size)
    doc.set_stretching(100)
    natural = doc.get_string_width(text)
    if natural <= 0:
        return
    doc.set_stretching(100 * box.width * scale / natural)
    doc.text(box.left * scale, line.bottom * scale - DESCENT * size, text + " ")


def _image_pages(source: Path, data: bytes, layouts: Sequence[PageLayout]) -> pikepdf.Pdf:
    """One page per frame: the frame as stored, sized at its layout's DPI and turned upright;
    frames img2pdf cannot embed as they are (alpha, flipped EXIF) as the pixels the engine
    read, losslessly compressed."""
    turns = _exif_turns(data, len(layouts))
    try:
        if any(turn is None for turn in turns):
            raise img2pdf.ImageOpenError("a flipped EXIF orientation")
        document = img2pdf.convert(data, rotation=img2pdf.Rotation.none,
                                   layout_fun=_at_layout_dpi(layouts))  # fmt: skip
    except (img2pdf.AlphaChannelError, img2pdf.ImageOpenError, ValueError):
        document = _engine_pixels_pdf(source, data, layouts)
        turns = [0] * len(layouts)
    pdf = pikepdf.open(io.BytesIO(document))
    if len(pdf.pages) != len(layouts):
        raise CorruptInput(f"{len(pdf.pages)} image pages for {len(layouts)} OCRed", str(source))
    for page, turn, layout in zip(pdf.pages, turns, layouts, strict=True):
        page.obj.Rotate = ((turn or 0) + layout.rotation) % 360
    return pdf


def _at_layout_dpi(layouts: Sequence[PageLayout]) -> PageSize:
    """img2pdf's page-size hook, called once per frame in order: each frame at its layout's DPI
    (the file's, or the fallback when the file's is missing or a lie)."""
    pending = iter(layouts)

    def layout_fun(
        width_px: float, height_px: float, _ndpi: tuple[float, float]
    ) -> tuple[float, float, float, float]:
        dpi = next(pending).dpi
        width, height = width_px * POINTS_PER_INCH / dpi, height_px * POINTS_PER_INCH / dpi
        return width, height, width, height

    return layout_fun


def _exif_turns(data: bytes, count: int) -> list[int | None]:
    """Per frame, the clockwise turn EXIF asks for (None for a flip, which a turn cannot show)."""
    with Image.open(io.BytesIO(data)) as image:
        turns: list[int | None] = []
        for index in range(count):
            image.seek(index)
            turns.append(EXIF_TURNS.get(int(image.getexif().get(0x0112, 1))))
        return turns


def _engine_pixels_pdf(source: Path, data: bytes, layouts: Sequence[PageLayout]) -> bytes:
    """A PDF of the frames as the engine read them (decoded, upright), each a lossless PNG."""
    frames = images.ImageInput(source, "image", len(layouts), Limits(), data).pages()
    pngs = []
    for frame, layout in zip(frames, layouts, strict=True):
        upright = frame.rotate(-layout.rotation, expand=True) if layout.rotation else frame
        png = io.BytesIO()
        upright.save(png, "PNG")
        pngs.append(png.getvalue())
    unturned = [_unturned(layout) for layout in layouts]
    return bytes(img2pdf.convert(pngs, layout_fun=_at_layout_dpi(unturned)))


def _unturned(layout: PageLayout) -> PageLayout:
    return PageLayout(layout.width, layout.height, layout.dpi, layout.dpi_source, 0, "line")


def _pdf_pages(source: Path, data: bytes, layouts: Sequence[PageLayout]) -> pikepdf.Pdf:
    """The PDF input as it is; a page the engine read turned by orientation is turned to match."""
    try:
        pdf = pikepdf.open(io.BytesIO(data))
    except pikepdf.PdfError as exc:
        raise CorruptInput(f"PDF cannot be read: {exc}", str(source)) from None
    if len(pdf.pages) != len(layouts):
        raise CorruptInput(f"{len(pdf.pages)} PDF pages for {len(layouts)} OCRed", str(source))
    for page, layout in zip(pdf.pages, layouts, strict=True):
        if layout.rotation:
            page.obj.Rotate = (int(page.obj.get("/Rotate", 0)) + layout.rotation) % 360
    return pdf


def _shown_size(page: pikepdf.Page) -> tuple[float, float]:
    """The page's width and height in points as a viewer shows it (its /Rotate applied)."""
    box = page.cropbox
    width, height = float(box[2]) - float(box[0]), float(box[3]) - float(box[1])
    turned = int(page.obj.get("/Rotate", 0)) % 180 == 90
    return (height, width) if turned else (width, height)


def make_pdfa(pdf: pikepdf.Pdf) -> None:
    """Give `pdf` what PDF/A-2b asks for, as OCRmyPDF's fast path does: an sRGB output intent,
    XMP naming part 2 conformance B, and no JavaScript (fonts are embedded by construction and
    the file is saved unencrypted). Not validated with veraPDF, which is not reachable here."""
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    profile = pdf.make_stream(icc, N=3)
    intent = pikepdf.Dictionary(
        Type=pikepdf.Name.OutputIntent, S=pikepdf.Name.GTS_PDFA1,
        OutputConditionIdentifier=pikepdf.String("sRGB"), Info=pikepdf.String("sRGB"),
        DestOutputProfile=profile,
    )  # fmt: skip
    pdf.Root.OutputIntents = pikepdf.Array([intent])
    _drop_javascript(pdf)
    with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
        meta["pdfaid:part"] = "2"
        meta["pdfaid:conformance"] = "B"
        meta["xmp:CreatorTool"] = "ocr-daemon"


def _drop_javascript(pdf: pikepdf.Pdf) -> None:
    names = pdf.Root.get("/Names")
    if isinstance(names, pikepdf.Dictionary) and "/JavaScript" in names:
        del names["/JavaScript"]
    for holder in (pdf.Root, *(page.obj for page in pdf.pages)):
        for key in _JAVASCRIPT_KEYS:
            if key in holder:
                del holder[key]
