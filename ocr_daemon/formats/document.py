"""What every renderer is given: the recognised pages, each with its layout when the engine gave
one, and how the text was produced (engine, evaluation mode, time). Built in the engine process
from the `OcrResult` and rendered there; the daemon only writes the bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocr_daemon.engines.base import EngineInfo, OcrResult
from ocr_daemon.engines.layout import PageLayout

# Characters XML 1.0 cannot hold (C0 controls but tab/newline/CR, and U+FFFE/U+FFFF)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True)
class Page:
    number: int  # 1-based
    text: str
    layout: PageLayout | None  # None: the engine gave only text for this page


@dataclass(frozen=True)
class Document:
    source: str  # the input's file name
    engine: EngineInfo
    evaluation_mode: bool
    warnings: tuple[str, ...]
    recognize_seconds: float
    pages: tuple[Page, ...]

    @classmethod
    def of(cls, source: str, result: OcrResult, engine: EngineInfo, seconds: float) -> Document:
        layouts: tuple[PageLayout, ...] = getattr(result, "layout", ())  # `OcrResult.layout`
        pages = tuple(
            Page(n, text, layouts[n - 1] if n <= len(layouts) else None)
            for n, text in enumerate(result.pages, start=1)
        )
        return cls(source, engine, result.evaluation_mode, result.warnings, seconds, pages)


def xml_text(text: str) -> str:
    """`text` as XML 1.0 can carry it: lone surrogates escaped, forbidden controls dropped."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _NOT_XML.sub("", safe)
