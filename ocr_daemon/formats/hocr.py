"""The hOCR output (``scan.hocr``): well-formed XHTML with ``ocr_page``, ``ocr_line`` and, where
the engine gave words, ``ocrx_word`` elements, each titled with its ``bbox`` (pixels, as in the
JSON) and ``x_wconf`` (0..100, when the engine gave a confidence). A line-granularity page has
lines only, its text inside the line; a page without layout has its lines of text and no boxes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import metadata

from ocr_daemon.engines.layout import Box, Line, PageLayout, Word
from ocr_daemon.formats.document import Document, Page, xml_text

DOCTYPE = (
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">'
)


def render(doc: Document) -> bytes:
    html = ET.Element("html", {"xmlns": "http://www.w3.org/1999/xhtml", "lang": "und"})
    html.append(_head(doc))
    body = ET.SubElement(html, "body")
    for page in doc.pages:
        body.append(_page(doc, page))
    ET.indent(html, space=" ")
    markup = ET.tostring(html, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{DOCTYPE}\n{markup}\n'.encode()


def _head(doc: Document) -> ET.Element:
    head = ET.Element("head")
    ET.SubElement(head, "title").text = xml_text(doc.source)
    meta = {"http-equiv": "Content-Type", "content": "text/html; charset=utf-8"}
    ET.SubElement(head, "meta", meta)
    system = f"ocr-daemon {metadata.version('ocr-daemon')} ({doc.engine.name} {doc.engine.version})"
    ET.SubElement(head, "meta", {"name": "ocr-system", "content": xml_text(system)})
    ET.SubElement(head, "meta", {"name": "ocr-capabilities", "content": _capabilities(doc)})
    return head


def _capabilities(doc: Document) -> str:
    kinds = {page.layout.granularity for page in doc.pages if page.layout}
    return "ocr_page ocr_line" + (" ocrx_word" if "word" in kinds else "")


def _page(doc: Document, page: Page) -> ET.Element:
    index = page.number
    title = [f'image "{_quoted(doc.source)}"', f"ppageno {index - 1}"]
    layout = page.layout
    if layout is not None:
        title[1:1] = [_bbox(Box(0, 0, layout.width, layout.height))]
        title.append(f"scan_res {_dpi(layout)} {_dpi(layout)}")
    div = ET.Element("div", {"class": "ocr_page", "id": f"page_{index}", "title": "; ".join(title)})
    if layout is None:
        for n, text in enumerate(filter(None, page.text.splitlines()), start=1):
            span = ET.SubElement(div, "span", {"class": "ocr_line", "id": f"line_{index}_{n}"})
            span.text = xml_text(text)
        return div
    for n, line in enumerate(layout.lines, start=1):
        div.append(_line(line, f"{index}_{n}", layout))
    return div


def _line(line: Line, key: str, layout: PageLayout) -> ET.Element:
    span = ET.Element("span", {"class": "ocr_line", "id": f"line_{key}", "title": _title(line)})
    if layout.granularity == "line" or not line.words:
        span.text = xml_text(line.text)
        return span
    for n, word in enumerate(line.words, start=1):
        span.append(_word(word, f"{key}_{n}"))
    return span


def _word(word: Word, key: str) -> ET.Element:
    span = ET.Element("span", {"class": "ocrx_word", "id": f"word_{key}", "title": _title(word)})
    span.text = xml_text(word.text)
    return span


def _title(item: Line | Word) -> str:
    parts = [_bbox(item.box)]
    if item.confidence is not None:
        parts.append(f"x_wconf {round(item.confidence)}")
    return "; ".join(parts)


def _bbox(box: Box) -> str:
    return f"bbox {box.left} {box.top} {box.right} {box.bottom}"


def _dpi(layout: PageLayout) -> int:
    return round(layout.dpi)


def _quoted(name: str) -> str:
    return xml_text(name).replace("\\", "\\\\").replace('"', '\\"')
