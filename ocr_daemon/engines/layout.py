"""Where the text is on each page: the structured result an engine returns beside its text.

Plain frozen data, picklable and JSON-friendly (it travels from engine processes to the daemon and
over NATS to and from worker hosts). Coordinates are pixels of the page image as the engine read
it, after any turn applied by orientation detection, origin at the top left, ``right``/``bottom``
exclusive. A page's ``granularity`` says what the engine gave: ``"word"`` (each line carries its
words) or ``"line"`` (lines only: ``words`` is empty; no word boxes are ever invented).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Granularity = Literal["word", "line"]
DpiSource = Literal["file", "fallback"]
FALLBACK_DPI = 300.0
PLAUSIBLE_DPI = (50.0, 2400.0)  # outside this a file's DPI is a lie (some TIFFs say 1 dpi)


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


@dataclass(frozen=True)
class Word:
    text: str
    box: Box
    confidence: float | None  # 0..100; None when the engine gives none


@dataclass(frozen=True)
class Line:
    text: str
    box: Box
    confidence: float | None  # 0..100; None when the engine gives none (Aspose's trial gives 0.0)
    words: tuple[Word, ...] = ()  # empty when the page's granularity is "line"


@dataclass(frozen=True)
class PageLayout:
    width: int  # pixels
    height: int
    dpi: float  # the file's, or FALLBACK_DPI when missing or implausible
    dpi_source: DpiSource
    rotation: int  # degrees clockwise the page was turned before recognition (0, 90, 180, 270)
    granularity: Granularity
    lines: tuple[Line, ...] = ()


def page_dpi(claimed: float | None) -> tuple[float, DpiSource]:
    """The DPI to lay a page out with: the file's when plausible, else the fallback."""
    low, high = PLAUSIBLE_DPI
    if claimed is not None and low <= claimed <= high:
        return float(claimed), "file"
    return FALLBACK_DPI, "fallback"
