"""Searchable PDFs from the real engines, read back with pdfium (text layer) and pikepdf.

Held-out pages are rendered here with each word at a known place (`render_words`), OCRed, turned
into a PDF, and the PDF's text layer is read back: each word (Tesseract) or line (Aspose) must lie
where it was drawn, the text must be the engine's text, the image must be the input's pixels (or
its very bytes, for a JPEG), a PDF input must keep its own pages. PDF/A-2b is checked for its
structure only: veraPDF is not reachable here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pikepdf
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops

from ocr_daemon.config import Config, load_config
from ocr_daemon.engines.base import Engine, OcrResult, engine_class
from ocr_daemon.engines.layout import Box, PageLayout
from ocr_daemon.errors import ConfigError
from ocr_daemon.formats.pdf import searchable_pdf
from tests.conftest import DRAWN_LINES as LINES
from tests.conftest import FONT_FILE, Drawn, DrawnWord, line_box, overlap, render_words, union

OTHER = (
    "Crazy Fredrick bought many very exquisite opal jewels",
    "We promptly judged antique ivory buckles for the prize",
    "Six big juicy steaks sizzled in a pan as five workmen left",
    "A wizard's job is to vex chumps quickly in fog",
    "Grumpy wizards make toxic brew for the evil queen and jack",
    "The job requires extra pluck and zeal from every young wage earner",
)
TYPESET = ("Invoice number 4711 dated today", "Total amount due within thirty days")
Found = tuple[str, tuple[int, int, int, int]]  # a text piece read back, its box in image pixels


def normalised(text: str) -> str:
    return " ".join(text.split())


def read_back(data: bytes, layouts: Sequence[PageLayout]) -> list[list[Found]]:
    """Per page, the text layer's whitespace-separated pieces with their boxes, in the pixels of
    the image the engine read (page shown upright, origin top left)."""
    pages: list[list[Found]] = []
    doc = pdfium.PdfDocument(data)
    for index, layout in enumerate(layouts):
        page = doc[index]
        textpage = page.get_textpage()
        pieces: list[Found] = []
        chars: list[tuple[str, tuple[float, float, float, float]]] = []
        for i in range(textpage.count_chars() + 1):
            char = textpage.get_text_range(i, 1) if i < textpage.count_chars() else " "
            if char.isspace():
                if chars:
                    pieces.append(_piece(chars, page, layout))
                chars = []
            else:
                chars.append((char, textpage.get_charbox(i, loose=True)))
        pages.append(pieces)
    return pages


def _piece(
    chars: list[tuple[str, tuple[float, float, float, float]]],
    page: pdfium.PdfPage,
    layout: PageLayout,
) -> Found:
    left = min(box[0] for _, box in chars)
    bottom = min(box[1] for _, box in chars)
    right = max(box[2] for _, box in chars)
    top = max(box[3] for _, box in chars)
    corners = [_shown(x, y, page) for x, y in ((left, bottom), (right, top))]
    px = layout.width / max(page.get_size()[0], 1)  # pixels per point, as shown
    xs, ys = sorted(c[0] * px for c in corners), sorted(c[1] * px for c in corners)
    text = "".join(char for char, _ in chars)
    return text, (round(xs[0]), round(ys[0]), round(xs[1]), round(ys[1]))


def _shown(x: float, y: float, page: pdfium.PdfPage) -> tuple[float, float]:
    """A point of the page's user space as a viewer shows it: turned by /Rotate, y down."""
    left, bottom, right, top = page.get_mediabox()
    x, y = x - left, y - bottom
    width, height = right - left, top - bottom
    turn = page.get_rotation()
    if turn == 90:
        return y, x
    if turn == 180:
        return width - x, y
    if turn == 270:
        return height - y, width - x
    return x, height - y


def assert_words_where_drawn(found: list[Found], drawn: list[list[DrawnWord]]) -> None:
    """Each drawn word read back over where it was drawn, allowing one misread word."""
    missed = [
        (text, box)
        for row in drawn
        for text, box in row
        if max((overlap(Box(*b), box) for t, b in found if t == text), default=0.0) < 0.5
    ]
    assert len(missed) <= 1, (missed, found)


def assert_lines_where_drawn(
    found: list[Found], page: PageLayout, drawn: list[list[DrawnWord]]
) -> None:
    """Each line the engine gave read back over the line drawn with its text."""
    by_text = {" ".join(w for w, _ in row): line_box(row) for row in drawn}
    assert page.lines
    pieces = iter(found)
    for line in page.lines:
        words = [next(pieces) for _ in line.text.split()]
        assert " ".join(t for t, _ in words) == line.text
        boxes = [b for _, b in words]
        around = Box(*union(boxes))
        want = by_text[line.text]
        slack = (want[3] - want[1]) / 2  # edges within half a line height of the ink's
        assert abs(around.left - want[0]) <= slack and abs(around.right - want[2]) <= slack, line
        assert overlap(around, want) >= 0.5, (line, around)


def layer_text(data: bytes) -> list[str]:
    """Each page's text layer as pdfium extracts it; it marks a hyphen that ends a line (and
    joins the word across) with U+FFFE, put back as the hyphen and line break it was."""
    doc = pdfium.PdfDocument(data)
    pages = (doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    return [normalised(text.replace("\ufffe", "- ")) for text in pages]


def engine_text(result: OcrResult) -> list[str]:
    """What the text layer must hold: the .txt's text, or in evaluation mode the lines that the
    engine returned (its cut text and its lines differ)."""
    if not result.evaluation_mode:
        return [normalised(page) for page in result.pages]
    return [normalised(" ".join(line.text for line in page.lines)) for page in result.layout]


Embedded = tuple[list[str], bytes, Image.Image]  # an image's filters, raw bytes, pixels


def images_of(data: bytes) -> list[Embedded]:
    """Each page's one image: how it is compressed, its bytes as stored, and its pixels."""
    with pikepdf.open(io.BytesIO(data)) as pdf:
        found = []
        for page in pdf.pages:
            (stream,) = page.get_images().values()
            image = pikepdf.PdfImage(stream)  # type: ignore[arg-type]
            found.append((list(image.filters), stream.read_raw_bytes(), image.as_pil_image()))
        return found


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return (
        a.size == b.size
        and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None
    )


# -- positions and text --------------------------------------------------------------------------


def test_tesseract_words_lie_where_they_were_drawn(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    image, words = drawn
    image.save(tmp_path / "page.png", dpi=(200, 200))
    result = real_engines["tesseract"].recognize(tmp_path / "page.png")
    data = searchable_pdf(tmp_path / "page.png", result)
    (found,) = read_back(data, result.layout)
    assert_words_where_drawn(found, words)
    assert layer_text(data) == engine_text(result)
    assert pdfium.PdfDocument(data)[0].get_size() == pytest.approx(
        (1800 * 72 / 200, 1200 * 72 / 200)
    )


def test_aspose_lines_lie_where_they_were_drawn(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    image, words = drawn
    image.save(tmp_path / "page.png", dpi=(150, 150))
    result = real_engines["aspose"].recognize(tmp_path / "page.png")
    data = searchable_pdf(tmp_path / "page.png", result)
    (found,) = read_back(data, result.layout)
    assert_lines_where_drawn(found, result.layout[0], words)
    assert layer_text(data) == engine_text(result)
    assert pdfium.PdfDocument(data)[0].get_size() == pytest.approx(
        (1800 * 72 / 150, 1200 * 72 / 150)
    )


@pytest.mark.parametrize("name", ["tesseract", "aspose"])
def test_a_page_read_turned_is_shown_upright_with_its_text_in_place(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
    name: str,
) -> None:
    image, words = drawn
    image.rotate(90, expand=True).save(tmp_path / "turned.png", dpi=(300, 300))
    result = real_engines[name].recognize(tmp_path / "turned.png")
    data = searchable_pdf(tmp_path / "turned.png", result)
    page = pdfium.PdfDocument(data)[0]
    assert page.get_rotation() == 90
    shown = page.render(scale=1).to_pil().convert("L")
    assert shown.size == (432, 288)  # upright: 1800 x 1200 px at 300 dpi
    expected = image.convert("L").resize(shown.size)
    assert (
        ImageChops.difference(shown, expected).point(lambda v: 255 if v > 128 else 0).getbbox()
        is None
    )
    (found,) = read_back(data, result.layout)
    if name == "tesseract":
        assert_words_where_drawn(found, words)
    else:
        assert_lines_where_drawn(found, result.layout[0], words)


def test_an_exif_turned_photo_is_shown_upright(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    image, words = drawn
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 counter-clockwise: a viewer turns it clockwise
    image.rotate(90, expand=True).save(
        tmp_path / "photo.jpg", exif=exif, dpi=(300, 300), quality=95
    )
    result = real_engines["tesseract"].recognize(tmp_path / "photo.jpg")
    assert result.layout[0].rotation == 0  # EXIF, not orientation detection, made it upright
    data = searchable_pdf(tmp_path / "photo.jpg", result)
    assert pdfium.PdfDocument(data)[0].get_rotation() == 90
    (found,) = read_back(data, result.layout)
    assert_words_where_drawn(found, words)
    ((filters, raw, _),) = images_of(data)
    assert filters == ["/DCTDecode"]
    assert raw == (tmp_path / "photo.jpg").read_bytes()  # passed through


# -- lossless images, pages, order ---------------------------------------------------------------


def test_a_g4_tiff_stays_g4_with_the_same_pixels(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    bilevel = drawn[0].convert("1")
    bilevel.save(tmp_path / "scan.tif", compression="group4", dpi=(1, 1))  # a lying DPI
    result = real_engines["tesseract"].recognize(tmp_path / "scan.tif")
    data = searchable_pdf(tmp_path / "scan.tif", result)
    ((filters, _, pixels),) = images_of(data)
    assert filters == ["/CCITTFaxDecode"]
    assert same_pixels(pixels, bilevel)
    assert pdfium.PdfDocument(data)[0].get_size() == pytest.approx(
        (1800 * 72 / 300, 1200 * 72 / 300)
    )
    assert len(data) <= 1.1 * (tmp_path / "scan.tif").stat().st_size + 20_000  # image + text


def test_a_multipage_tiff_keeps_its_pages_in_order_and_their_pixels(
    real_engines: dict[str, Engine], tmp_path: Path
) -> None:
    pages = [render_words(lines)[0] for lines in (LINES[:4], OTHER[:4], LINES[4:])]
    pages[0].save(tmp_path / "three.tif", save_all=True, append_images=pages[1:],
                  compression="tiff_deflate", dpi=(200, 200))  # fmt: skip
    result = real_engines["tesseract"].recognize(tmp_path / "three.tif")
    data = searchable_pdf(tmp_path / "three.tif", result)
    assert layer_text(data) == engine_text(result)
    assert [text.split()[:3] for text in layer_text(data)] == [
        LINES[0].split()[:3],
        OTHER[0].split()[:3],
        LINES[4].split()[:3],
    ]
    for (_, _, pixels), page in zip(images_of(data), pages, strict=True):
        assert same_pixels(pixels, page)


def test_an_image_with_alpha_is_embedded_as_the_pixels_the_engine_read(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    image, words = drawn
    image.convert("RGBA").save(tmp_path / "alpha.png")
    result = real_engines["tesseract"].recognize(tmp_path / "alpha.png")
    data = searchable_pdf(tmp_path / "alpha.png", result)
    ((_, _, pixels),) = images_of(data)
    assert same_pixels(pixels, image)
    (found,) = read_back(data, result.layout)
    assert_words_where_drawn(found, words)


# -- PDF inputs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tesseract", "aspose"])
def test_a_pdf_keeps_its_own_pages_and_gains_the_text(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
    name: str,
) -> None:
    image, words = drawn
    image.save(tmp_path / "scan.pdf", resolution=150)
    with pikepdf.open(tmp_path / "scan.pdf") as original:
        content = original.pages[0].obj.Contents.read_bytes()
        image_bytes = next(iter(original.pages[0].get_images().values())).read_raw_bytes()
    result = real_engines[name].recognize(tmp_path / "scan.pdf")
    data = searchable_pdf(tmp_path / "scan.pdf", result)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        (page,) = pdf.pages
        contents = page.obj.Contents
        streams = list(contents) if isinstance(contents, pikepdf.Array) else [contents]
        assert content in [s.read_bytes() for s in streams]  # the original content stream
        (kept,) = page.get_images().values()
        assert kept.read_raw_bytes() == image_bytes  # not rasterised, not re-encoded
    assert layer_text(data) == engine_text(result)
    (found,) = read_back(data, result.layout)
    scaled = [[(t, tuple(round(v * result.layout[0].width / 1800) for v in b)) for t, b in row]
              for row in words]  # fmt: skip
    if name == "tesseract":
        assert_words_where_drawn(found, scaled)  # type: ignore[arg-type]
    else:
        assert_lines_where_drawn(found, result.layout[0], scaled)  # type: ignore[arg-type]


def born_digital_then_scanned(tmp_path: Path) -> Path:
    """A two-page PDF: page 1 typeset text (as an office suite writes it), page 2 a scan."""
    from fpdf import FPDF  # noqa: PLC0415

    typeset = FPDF(unit="pt", format=(864, 576))
    typeset.add_font("dejavu", fname=str(FONT_FILE))
    typeset.add_page()
    typeset.set_font("dejavu", size=24)
    for number, line in enumerate(TYPESET):
        typeset.text(40, 60 + 40 * number, line)
    render_words(LINES)[0].save(tmp_path / "scan.pdf", resolution=150)
    with (
        pikepdf.open(io.BytesIO(bytes(typeset.output()))) as pdf,
        pikepdf.open(tmp_path / "scan.pdf") as scan,
    ):
        pdf.pages.extend(scan.pages)
        pdf.save(tmp_path / "mixed.pdf")
    return tmp_path / "mixed.pdf"


@pytest.mark.parametrize("name", ["tesseract", "aspose"])
def test_pdf_pages_with_text_keep_it_and_are_not_ocred_again(
    real_engines: dict[str, Engine], tmp_path: Path, name: str
) -> None:
    source = born_digital_then_scanned(tmp_path)
    result = real_engines[name].recognize(source)
    assert normalised(result.pages[0]) == " ".join(TYPESET)  # its own text, to the .txt
    assert result.layout[0].lines == ()  # nothing OCRed, nothing to lay over it
    assert LINES[0].split()[:3] == result.pages[1].split()[:3]  # the scan is OCRed
    data = searchable_pdf(source, result)
    assert layer_text(data)[0] == " ".join(TYPESET)  # once: no second layer over it


def test_pdf_pages_with_text_are_ocred_when_forced(tmp_path: Path) -> None:
    source = born_digital_then_scanned(tmp_path)
    forced = engine_class("tesseract")(
        Config(engine="tesseract", state_dir=tmp_path, pdf_existing_text="force")
    )
    result = forced.recognize(source)
    assert result.layout[0].lines  # OCRed from the rendered page
    assert normalised(result.pages[0]).split()[:3] == TYPESET[0].split()[:3]


def test_an_unknown_pdf_existing_text_policy_names_the_key(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('pdf_existing_text = "redo"\n')
    with pytest.raises(ConfigError, match="pdf_existing_text"):
        load_config(tmp_path / "c.toml")


# -- PDF/A-2b structure ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["png", "pdf"])
def test_pdfa_has_the_output_intent_the_xmp_and_embedded_fonts(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
    kind: str,
) -> None:
    source = tmp_path / f"scan.{kind}"
    drawn[0].save(source, **({"resolution": 200} if kind == "pdf" else {"dpi": (200, 200)}))
    if kind == "pdf":  # a JavaScript open action, which PDF/A forbids
        with pikepdf.open(source, allow_overwriting_input=True) as pdf:
            pdf.Root.OpenAction = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS="app.alert(1)")
            pdf.save(source)
    result = real_engines["tesseract"].recognize(source)
    data = searchable_pdf(source, result, pdfa=True)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert not pdf.is_encrypted
        (intent,) = pdf.Root.OutputIntents
        assert intent.S == pikepdf.Name.GTS_PDFA1 and intent.DestOutputProfile.N == 3
        meta = pdf.open_metadata()
        assert (meta["pdfaid:part"], meta["pdfaid:conformance"]) == ("2", "B")
        assert "/OpenAction" not in pdf.Root and "/JavaScript" not in pdf.Root.get("/Names", {})
        fonts = [obj for obj in pdf.objects if isinstance(obj, pikepdf.Dictionary)
                 and obj.get("/Type") == pikepdf.Name.FontDescriptor]  # fmt: skip
        assert fonts and all(
            any(key in font for key in ("/FontFile", "/FontFile2", "/FontFile3")) for font in fonts
        )
    assert layer_text(data) == engine_text(result)
    assert layer_text(searchable_pdf(source, result)) == layer_text(data)


# -- the real corpus -------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("name", ["10_oldbook_c017-c019_multipage.tif", "11_fr_histoire_scan.pdf"])
def test_corpus_documents_keep_their_page_order(
    real_engines: dict[str, Engine], shared_corpus: Path, name: str
) -> None:
    source = shared_corpus / name
    result = real_engines["tesseract"].recognize(source)
    data = searchable_pdf(source, result)
    assert len(pdfium.PdfDocument(data)) == result.page_count
    assert layer_text(data) == engine_text(result)  # page i's text on page i
    if source.suffix == ".tif":
        assert len(data) <= 1.1 * source.stat().st_size + 50_000 * result.page_count
