"""Validators for the rendered formats (test helpers): JSON against the shipped JSON Schema, ALTO
against ALTO 4.4's XSD, hOCR parsed as XML with every box inside its page. Each returns what it
parsed, for further assertions.

The ALTO XSD (and the XLink schema it imports) is read from ../shared/schemas/alto beside the
corpus: it is the ALTO board's file, not ours to ship, and no package registry reachable here
carries it. Where it is absent (a user's own clone), ALTO is checked for the structure the daemon
relies on (namespace, every String placed and with its content) and the XSD tests skip with a
message."""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from lxml import etree

SCHEMAS = Path(__file__).resolve().parents[2] / "shared" / "schemas" / "alto"
ALTO_XSD = SCHEMAS / "alto-4-4.xsd"
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
STRING_ATTRIBUTES = ("CONTENT", "HPOS", "VPOS", "WIDTH", "HEIGHT")
XLINK_REMOTE = "http://www.loc.gov/standards/xlink/xlink.xsd"
BBOX = re.compile(r"bbox (\d+) (\d+) (\d+) (\d+)")


@cache
def json_schema() -> dict[str, Any]:
    text = resources.files("ocr_daemon.formats").joinpath("schema/ocr-result-1.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def require_alto_xsd() -> None:
    if not ALTO_XSD.is_file():
        import pytest  # noqa: PLC0415

        pytest.skip(f"ALTO 4.4 XSD not found at {ALTO_XSD} (../shared is absent)")


@cache
def alto_schema() -> etree.XMLSchema | None:
    if not ALTO_XSD.is_file():
        return None
    tree = etree.parse(str(ALTO_XSD))
    for imported in tree.getroot().iter("{http://www.w3.org/2001/XMLSchema}import"):
        if imported.get("schemaLocation") == XLINK_REMOTE:
            imported.set("schemaLocation", (SCHEMAS / "xlink.xsd").as_uri())
    return etree.XMLSchema(tree)


def check_json(data: bytes) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(data)
    jsonschema.Draft202012Validator(json_schema()).validate(doc)
    for page in doc["pages"]:
        for line in page["lines"]:
            assert _inside(line["box"], page), (line, page["width"], page["height"])
            for word in line["words"]:
                assert _inside(word["box"], page), word
    return doc


def check_alto(data: bytes) -> etree._Element:
    root = etree.fromstring(data)
    schema = alto_schema()
    if schema is not None:
        assert schema.validate(root), schema.error_log
        return root
    assert root.tag == f"{{{ALTO_NS}}}alto", root.tag
    for string in root.iter(f"{{{ALTO_NS}}}String"):
        missing = [name for name in STRING_ATTRIBUTES if string.get(name) is None]
        assert not missing, (missing, etree.tostring(string))
    return root


def check_hocr(data: bytes) -> etree._Element:
    """Well-formed XHTML; every line and word box lies inside its page's box."""
    root = etree.fromstring(data)
    ns = {"h": "http://www.w3.org/1999/xhtml"}
    pages = root.findall(".//h:div[@class='ocr_page']", ns)
    assert pages, "no ocr_page"
    for page in pages:
        page_box = _bbox(page.get("title", ""))
        for item in page.iter("{http://www.w3.org/1999/xhtml}span"):
            box = _bbox(item.get("title", ""))
            if box is None:
                continue
            assert page_box is not None, "a box on a page without one"
            left, top, right, bottom = box
            assert 0 <= left <= right <= page_box[2] and 0 <= top <= bottom <= page_box[3], box
    return root


def _bbox(title: str) -> tuple[int, int, int, int] | None:
    match = BBOX.search(title)
    if match is None:
        return None
    left, top, right, bottom = (int(v) for v in match.groups())
    return left, top, right, bottom


def _inside(box: list[int], page: dict[str, Any]) -> bool:
    left, top, right, bottom = box
    return 0 <= left <= right <= page["width"] and 0 <= top <= bottom <= page["height"]
