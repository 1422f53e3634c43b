"""Page layouts from the real engines: boxes where the words were drawn, sizes, DPI and turns.

Pages are rendered here with each word at a known place (`render_words`). Tesseract must give a
box over each word it read; Aspose, lines only (granularity "line"), each over the line drawn with
the same text. Aspose's trial returns only some lines (and cuts its text differently again): the
layout holds what came back, so its lines are checked, not the page's.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ocr_daemon.config import Config, languages
from ocr_daemon.engines import aspose, layout
from ocr_daemon.engines.base import Engine, OcrResult, engine_class
from ocr_daemon.engines.layout import PageLayout
from tests.conftest import DRAWN_LINES as LINES
from tests.conftest import Drawn, DrawnWord, line_box, overlap


def scaled(box: tuple[int, int, int, int], factor: float) -> tuple[int, int, int, int]:
    left, top, right, bottom = (round(v * factor) for v in box)
    return left, top, right, bottom


def assert_words_where_drawn(page: PageLayout, drawn: list[list[DrawnWord]]) -> None:
    """Each drawn word has a box of the same text over it, allowing one misread word."""
    assert page.granularity == "word"
    found = [word for line in page.lines for word in line.words]
    missed = [
        (text, box)
        for row in drawn
        for text, box in row
        if max((overlap(w.box, box) for w in found if w.text == text), default=0.0) < 0.5
    ]
    assert len(missed) <= 1, (missed, found)


def assert_lines_where_drawn(
    page: PageLayout, drawn: list[list[DrawnWord]], factor: float = 1.0
) -> None:
    assert page.granularity == "line" and page.lines, page
    by_text = {" ".join(w for w, _ in row): line_box(row) for row in drawn}
    for line in page.lines:
        assert not line.words  # no word boxes are ever invented
        assert line.text in by_text, line.text
        assert overlap(line.box, scaled(by_text[line.text], factor)) >= 0.5, line


def test_tesseract_gives_each_word_a_box_where_it_was_drawn(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    image, words = drawn
    image.save(tmp_path / "page.png", dpi=(200, 200))
    result = real_engines["tesseract"].recognize(tmp_path / "page.png")
    (page,) = result.layout
    assert (page.width, page.height, page.dpi, page.dpi_source) == (1800, 1200, 200.0, "file")
    assert page.rotation == 0
    assert_words_where_drawn(page, words)
    assert all(w.confidence is not None and 0 <= w.confidence <= 100
               for line in page.lines for w in line.words)  # fmt: skip
    assert [line.text for line in page.lines] == list(LINES)


def test_aspose_gives_line_boxes_where_the_lines_were_drawn(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    image, words = drawn
    image.save(tmp_path / "page.png", dpi=(200, 200))
    result = real_engines["aspose"].recognize(tmp_path / "page.png")
    (page,) = result.layout
    assert (page.width, page.height, page.dpi, page.dpi_source) == (1800, 1200, 200.0, "file")
    assert_lines_where_drawn(page, words)


def test_an_implausible_dpi_falls_back_and_says_so(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
) -> None:
    drawn[0].convert("1").save(tmp_path / "page.tif", dpi=(1, 1), compression="group4")
    drawn[0].save(tmp_path / "page.jpg")  # no DPI at all
    for name in ("page.tif", "page.jpg"):
        (page,) = real_engines["tesseract"].recognize(tmp_path / name).layout
        assert (page.dpi, page.dpi_source) == (layout.FALLBACK_DPI, "fallback"), name


@pytest.mark.parametrize("name", ["tesseract", "aspose"])
def test_a_turned_page_is_laid_out_upright_and_says_its_turn(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
    name: str,
) -> None:
    image, words = drawn
    image.rotate(90, expand=True).save(tmp_path / "turned.png")  # counter-clockwise 90
    (page,) = real_engines[name].recognize(tmp_path / "turned.png").layout
    assert (page.width, page.height, page.rotation) == (1800, 1200, 90)
    if name == "tesseract":
        assert_words_where_drawn(page, words)
    else:
        assert_lines_where_drawn(page, words)


@pytest.mark.parametrize("name", ["tesseract", "aspose"])
def test_pdf_pages_are_laid_out_at_the_dpi_they_were_rendered(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
    name: str,
) -> None:
    image, words = drawn
    image.save(tmp_path / "scan.pdf", resolution=100)  # 18 x 12 inches
    (page,) = real_engines[name].recognize(tmp_path / "scan.pdf").layout
    dpi = 300.0 if name == "tesseract" else aspose.PDF_RENDER_DPI
    assert page.dpi == dpi
    assert (page.width, page.height) == pytest.approx((18 * dpi, 12 * dpi), abs=1)  # rounding
    if name == "tesseract":
        factor = dpi / 100
        scaled_words = [[(t, scaled(b, factor)) for t, b in row] for row in words]
        assert_words_where_drawn(page, scaled_words)
    else:
        assert_lines_where_drawn(page, words, dpi / 100)


@pytest.mark.parametrize("name", ["tesseract", "aspose"])
def test_a_result_with_its_layout_pickles_as_it_was(
    real_engines: dict[str, Engine],
    drawn: Drawn,
    tmp_path: Path,
    name: str,
) -> None:
    drawn[0].save(tmp_path / "page.png")
    result = real_engines[name].recognize(tmp_path / "page.png")
    assert result.layout and result.layout[0].lines
    assert pickle.loads(pickle.dumps(result)) == result


def test_the_text_is_what_the_engine_read_without_a_layout(drawn: Drawn, tmp_path: Path) -> None:
    """The .txt sidecar is the text alone: reading the layout changes none of it."""
    import tesserocr  # noqa: PLC0415

    engine = engine_class("tesseract")(Config(engine="tesseract", state_dir=tmp_path))
    drawn[0].save(tmp_path / "page.png")
    result: OcrResult = engine.recognize(tmp_path / "page.png")
    tessdata = languages.find_tessdata(None)
    lang = languages.tesseract_lang(Config().languages)
    with tesserocr.PyTessBaseAPI(path=f"{tessdata}/", lang=lang, psm=tesserocr.PSM.AUTO) as api:
        api.SetImage(drawn[0])
        assert result.pages == (api.GetUTF8Text(),)
