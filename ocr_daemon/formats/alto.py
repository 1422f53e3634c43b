"""The ALTO 4 output (``scan.alto.xml``), valid against ALTO 4.4's XSD (the tests check it).

Measurement unit: pixels, as in the JSON. One ``TextBlock`` per page holds its lines in reading
order; a ``String`` is a word where the engine gave words, or the whole line (its text and box)
where it gave only lines: ALTO needs a String in every TextLine, and no word box is invented.
Confidences become ``WC`` (0..1). A page without layout has no text block (ALTO needs boxes).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import metadata

from ocr_daemon.engines.layout import Box, Line, PageLayout
from ocr_daemon.formats.document import Document, Page, xml_text

NS = "http://www.loc.gov/standards/alto/ns-v4#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
LOCATION = f"{NS} http://www.loc.gov/alto/v4/alto-4-4.xsd"


def render(doc: Document) -> bytes:
    alto = ET.Element(
        "alto",
        {"xmlns": NS, "xmlns:xsi": XSI, "xsi:schemaLocation": LOCATION, "SCHEMAVERSION": "4.4"},
    )
    alto.append(_description(doc))
    layout = ET.SubElement(alto, "Layout")
    for page in doc.pages:
        layout.append(_page(page))
    ET.indent(alto, space=" ")
    markup = ET.tostring(alto, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{markup}\n'.encode()


def _description(doc: Document) -> ET.Element:
    description = ET.Element("Description")
    ET.SubElement(description, "MeasurementUnit").text = "pixel"
    source = ET.SubElement(description, "sourceImageInformation")
    ET.SubElement(source, "fileName").text = xml_text(doc.source)
    step = ET.SubElement(description, "Processing", {"ID": "ocr"})
    ET.SubElement(step, "processingCategory").text = "contentGeneration"
    engine = f"{doc.engine.name} {doc.engine.version}"
    settings = f"engine={engine}; evaluation_mode={doc.evaluation_mode}"
    ET.SubElement(step, "processingStepSettings").text = xml_text(settings)
    software = ET.SubElement(step, "processingSoftware")
    ET.SubElement(software, "softwareName").text = "ocr-daemon"
    ET.SubElement(software, "softwareVersion").text = metadata.version("ocr-daemon")
    return description


def _page(page: Page) -> ET.Element:
    n = page.number
    attrs = {"ID": f"page_{n}", "PHYSICAL_IMG_NR": str(n), "PROCESSINGREFS": "ocr"}
    layout = page.layout
    if layout is None:
        return ET.Element("Page", attrs)
    attrs |= {"WIDTH": str(layout.width), "HEIGHT": str(layout.height)}
    if layout.rotation:
        attrs["ROTATION"] = str(layout.rotation)
    element = ET.Element("Page", attrs)
    space = ET.SubElement(element, "PrintSpace", _place(Box(0, 0, layout.width, layout.height)))
    lines = [line for line in layout.lines if line.text.strip()]
    if lines:
        space.append(_block(lines, n, layout))
    return element


def _block(lines: list[Line], page: int, layout: PageLayout) -> ET.Element:
    box = Box(
        min(line.box.left for line in lines),
        min(line.box.top for line in lines),
        max(line.box.right for line in lines),
        max(line.box.bottom for line in lines),
    )
    block = ET.Element("TextBlock", {"ID": f"block_{page}", **_place(box)})
    for n, line in enumerate(lines, start=1):
        block.append(_line(line, f"{page}_{n}", layout))
    return block


def _line(line: Line, key: str, layout: PageLayout) -> ET.Element:
    element = ET.Element("TextLine", {"ID": f"line_{key}", **_place(line.box)})
    words = [w for w in line.words if w.text.strip()] if layout.granularity == "word" else []
    strings = [(w.text, w.box, w.confidence) for w in words] or [
        (line.text.strip(), line.box, line.confidence)
    ]
    for n, (text, box, confidence) in enumerate(strings, start=1):
        if n > 1:
            ET.SubElement(element, "SP")
        attrs = {"ID": f"string_{key}_{n}", **_place(box), "CONTENT": xml_text(text)}
        if confidence is not None:
            attrs["WC"] = f"{min(max(confidence, 0.0), 100.0) / 100:.3f}"
        ET.SubElement(element, "String", attrs)
    return element


def _place(box: Box) -> dict[str, str]:
    return {
        "HPOS": str(box.left),
        "VPOS": str(box.top),
        "WIDTH": str(box.width),
        "HEIGHT": str(box.height),
    }
