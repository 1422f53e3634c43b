"""The JSON, hOCR and ALTO renderers: valid against their schemas, faithful to the layout, and
never inventing a word box where the engine gave lines only."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from ocr_daemon.engines.base import EngineInfo, OcrResult
from ocr_daemon.engines.layout import Box, Line, PageLayout, Word
from ocr_daemon.formats import alto, hocr, json_doc
from ocr_daemon.formats.document import Document, Page
from tests.formats_check import check_alto, check_hocr, check_json, require_alto_xsd

ENGINE = EngineInfo("tesseract", "5.5.4", True)
WORDS = PageLayout(
    width=640, height=480, dpi=200.0, dpi_source="file", rotation=90, granularity="word",
    lines=(
        Line("Fish & <chips>", Box(10, 20, 300, 50), 91.5, (
            Word("Fish", Box(10, 20, 80, 50), 96.0),
            Word("&", Box(90, 20, 110, 50), 80.0),
            Word('<chips>"\x0c', Box(120, 20, 300, 50), None),
        )),
        Line("second", Box(10, 60, 200, 90), None, (Word("second", Box(10, 60, 200, 90), 70.0),)),
    ),
)  # fmt: skip
LINES = PageLayout(
    width=2480, height=3508, dpi=300.0, dpi_source="fallback", rotation=0, granularity="line",
    lines=(Line("A whole line", Box(100, 100, 2000, 160), 0.0), Line("  ", Box(1, 1, 2, 2), 0.0)),
)  # fmt: skip


def document(*layouts: PageLayout | None) -> Document:
    pages = tuple(Page(n, f"text {n}\nmore", lay) for n, lay in enumerate(layouts, start=1))
    return Document('scan "1" & co.png', ENGINE, False, ("w",), 1.23456, pages)


def test_json_validates_and_keeps_every_box_and_confidence() -> None:
    doc = check_json(json_doc.render(document(WORDS, LINES, None)))
    assert doc["version"] == 1 and doc["engine"]["name"] == "tesseract"
    first, second, third = doc["pages"]
    assert first["granularity"] == "word" and first["rotation"] == 90
    amp = {"text": "&", "box": [90, 20, 110, 50], "confidence": 80.0}
    assert first["lines"][0]["words"][1] == amp
    assert second["granularity"] == "line" and second["dpi_source"] == "fallback"
    assert all(line["words"] == [] for line in second["lines"])
    assert third["granularity"] == "none" and third["width"] is None and third["lines"] == []
    assert [p["text"] for p in doc["pages"]] == ["text 1\nmore", "text 2\nmore", "text 3\nmore"]


def test_json_schema_rejects_what_it_must() -> None:
    """The schema is not vacuous: a box with three numbers or a confidence of 120 fails it."""
    doc = json.loads(json_doc.render(document(WORDS)))
    doc["pages"][0]["lines"][0]["box"] = [1, 2, 3]
    with pytest.raises(jsonschema.ValidationError):
        check_json(json.dumps(doc).encode())
    doc = json.loads(json_doc.render(document(WORDS)))
    doc["pages"][0]["lines"][0]["words"][0]["confidence"] = 120
    with pytest.raises(jsonschema.ValidationError):
        check_json(json.dumps(doc).encode())


def test_alto_validates_against_the_xsd() -> None:
    require_alto_xsd()
    root = check_alto(alto.render(document(WORDS, LINES, None)))
    ns = {"a": alto.NS}
    pages = root.findall(".//a:Page", ns)
    assert [p.get("WIDTH") for p in pages] == ["640", "2480", None]
    word_strings = pages[0].findall(".//a:String", ns)
    assert [s.get("CONTENT") for s in word_strings] == ["Fish", "&", '<chips>"', "second"]
    assert word_strings[0].get("WC") == "0.960" and word_strings[2].get("WC") is None
    line_strings = pages[1].findall(".//a:String", ns)  # the whole line, not invented words
    assert [s.get("CONTENT") for s in line_strings] == ["A whole line"]
    assert line_strings[0].get("HPOS") == "100" and line_strings[0].get("WIDTH") == "1900"


def test_alto_xsd_rejects_what_it_must() -> None:
    """The validator bites, XSD or not: a String without CONTENT is refused."""
    data = alto.render(document(WORDS)).replace(b'CONTENT="Fish"', b"")
    with pytest.raises(AssertionError):
        check_alto(data)


def test_hocr_is_well_formed_with_boxes_inside_the_page() -> None:
    root = check_hocr(hocr.render(document(WORDS, LINES, None)))
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    words = root.findall(".//h:span[@class='ocrx_word']", ns)
    assert [w.text for w in words] == ["Fish", "&", '<chips>"', "second"]
    assert words[0].get("title") == "bbox 10 20 80 50; x_wconf 96"
    pages = root.findall(".//h:div[@class='ocr_page']", ns)
    assert not pages[1].findall(".//h:span[@class='ocrx_word']", ns)  # lines only
    assert pages[1].findall("h:span", ns)[0].text == "A whole line"
    assert "bbox" not in pages[2].get("title", "")


def test_hocr_check_catches_a_box_outside_its_page() -> None:
    data = hocr.render(document(WORDS)).replace(b"bbox 10 20 80 50", b"bbox 10 20 800 50")
    with pytest.raises(AssertionError):
        check_hocr(data)


def test_renderers_of_a_real_result_shape(tmp_path: Path) -> None:
    """`Document.of` pairs pages with layouts; a result without layout gives text-only pages."""
    result = OcrResult(pages=("one", "two"), evaluation_mode=True)
    doc = Document.of("x.png", result, ENGINE, 0.5)
    assert [p.layout for p in doc.pages] == [None, None]
    check_json(json_doc.render(doc))
    check_alto(alto.render(doc))
    check_hocr(hocr.render(doc))
