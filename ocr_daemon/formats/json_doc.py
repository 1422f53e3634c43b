"""The JSON output (``scan.json``): the whole structured result, versioned.

Schema: ``formats/schema/ocr-result-1.json`` (JSON Schema 2020-12), shipped in the package. A
reader checks ``schema`` and ``version``; a new version is a new file, never a silent change.
Boxes are ``[left, top, right, bottom]`` in pixels of the page image as the engine read it (after
any turn, see ``rotation``), origin top left, right and bottom exclusive. A page the engine gave
only text for has ``granularity`` ``"none"``, no lines and null geometry; on a ``"line"`` page
every line's ``words`` is empty (no word box is ever invented).
"""

from __future__ import annotations

import json
from typing import Any

from ocr_daemon.engines.layout import Box, Line, PageLayout, Word
from ocr_daemon.formats.document import Document, Page

SCHEMA = "ocr-daemon/ocr-result"
VERSION = 1


def render(doc: Document) -> bytes:
    body = {
        "schema": SCHEMA,
        "version": VERSION,
        "source": doc.source,
        "engine": {
            "name": doc.engine.name,
            "version": doc.engine.version,
            "licensed": doc.engine.licensed,
        },
        "evaluation_mode": doc.evaluation_mode,
        "warnings": list(doc.warnings),
        "timings": {"recognize_seconds": round(doc.recognize_seconds, 3)},
        "pages": [_page(page) for page in doc.pages],
    }
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8", "backslashreplace")


def _page(page: Page) -> dict[str, Any]:
    layout = page.layout
    geometry = _geometry(layout) if layout else dict.fromkeys(_GEOMETRY)
    return {
        "number": page.number,
        "text": page.text,
        **geometry,
        "granularity": layout.granularity if layout else "none",
        "lines": [_line(line) for line in layout.lines] if layout else [],
    }


_GEOMETRY = ("width", "height", "dpi", "dpi_source", "rotation")


def _geometry(layout: PageLayout) -> dict[str, Any]:
    return {key: getattr(layout, key) for key in _GEOMETRY}


def _line(line: Line) -> dict[str, Any]:
    return {
        "text": line.text,
        "box": _box(line.box),
        "confidence": line.confidence,
        "words": [_word(word) for word in line.words],
    }


def _word(word: Word) -> dict[str, Any]:
    return {"text": word.text, "box": _box(word.box), "confidence": word.confidence}


def _box(box: Box) -> list[int]:
    return [box.left, box.top, box.right, box.bottom]
