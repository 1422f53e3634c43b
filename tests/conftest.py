"""Shared fixtures: pages rendered with DejaVu Sans, and the optional real-scan corpus."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest
import structlog
from PIL import Image, ImageDraw, ImageFont

from ocr_daemon.config import Config
from ocr_daemon.engines.base import Engine, engine_class
from ocr_daemon.engines.layout import Box
from tests.harness import DaemonProcess

FONT_FILE = Path(sys.prefix) / "native" / "fonts" / "DejaVuSans.ttf"
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "real"


def render_page(
    lines: Sequence[str], size: tuple[int, int] = (1800, 1200), font_size: int = 40
) -> Image.Image:
    """White RGB page with `lines` in black, one per 1.6 line heights from the top left."""
    if not FONT_FILE.is_file():
        pytest.skip(f"DejaVu fonts missing at {FONT_FILE}: run `make setup`")
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT_FILE), font_size)
    for number, line in enumerate(lines):
        draw.text((40, 40 + int(number * font_size * 1.6)), line, fill="black", font=font)
    return page


DrawnWord = tuple[str, tuple[int, int, int, int]]  # text, (left, top, right, bottom) in pixels


def render_words(
    lines: Sequence[str], size: tuple[int, int] = (1800, 1200), font_size: int = 40
) -> tuple[Image.Image, list[list[DrawnWord]]]:
    """A page like `render_page`'s, each word drawn on its own, and where each word's ink is."""
    if not FONT_FILE.is_file():
        pytest.skip(f"DejaVu fonts missing at {FONT_FILE}: run `make setup`")
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT_FILE), font_size)
    drawn: list[list[DrawnWord]] = []
    for number, line in enumerate(lines):
        y, x, row = 40 + int(number * font_size * 1.6), 40, []
        for word in line.split(" "):
            draw.text((x, y), word, fill="black", font=font)
            left, top, right, bottom = draw.textbbox((x, y), word, font=font)
            row.append((word, (int(left), int(top), int(right), int(bottom))))
            x += round(font.getlength(word + " "))
        drawn.append(row)
    return page, drawn


@pytest.fixture
def shared_corpus() -> Path:
    """../shared/corpus/real next to the checkout; tests using it skip where it is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"real-scan corpus not found at {CORPUS}")
    return CORPUS


@pytest.fixture
def daemon_factory() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.stop()


@pytest.fixture(autouse=True)
def _structlog_as_it_was() -> Iterator[None]:
    """A test that runs a command in-process (`cli.main`) configures structlog onto that test's
    captured stdout, which pytest closes afterwards; later in-process daemons in the same
    process (xdist runs several tests per process) must not log into it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# -- pages with each word at a known place, and both real engines (tests of page layouts) ------

DRAWN_LINES = (
    "The quick brown fox jumps over the lazy dog again",
    "Pack my box with five dozen liquor jugs today",
    "How vexingly quick daft zebras jump all night",
    "Sphinx of black quartz judge my solemn vow now",
    "Waltz nymph for quick jigs vex bud at dawn",
    "Jackdaws love my big sphinx of quartz stone",
    "The five boxing wizards jump quickly at noon",
    "Bright vixens jump dozy fowl quack loudly here",
)
Pixels = tuple[int, int, int, int]  # (left, top, right, bottom)
Drawn = tuple[Image.Image, list[list[DrawnWord]]]  # a page, and where each of its words is


@pytest.fixture(scope="module")
def real_engines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Engine]:
    """Tesseract and Aspose, warm, shared by a module's tests."""
    state = tmp_path_factory.mktemp("state")
    return {
        name: engine_class(name)(Config(engine=name, state_dir=state))
        for name in ("tesseract", "aspose")
    }


@pytest.fixture(scope="module")
def drawn() -> Drawn:
    """`DRAWN_LINES` rendered, and where each word's ink is."""
    return render_words(DRAWN_LINES)


def union(boxes: Iterable[Pixels]) -> Pixels:
    """The smallest box holding all of `boxes`."""
    lefts, tops, rights, bottoms = zip(*boxes, strict=True)
    return min(lefts), min(tops), max(rights), max(bottoms)


def line_box(row: Sequence[DrawnWord]) -> Pixels:
    """Where a drawn line's ink is: the union of its words' boxes."""
    return union(box for _, box in row)


def overlap(box: Box, drawn: Pixels) -> float:
    """Intersection over union of a layout box and a drawn one."""
    left, top = max(box.left, drawn[0]), max(box.top, drawn[1])
    right, bottom = min(box.right, drawn[2]), min(box.bottom, drawn[3])
    inter = max(0, right - left) * max(0, bottom - top)
    union_area = box.width * box.height + (drawn[2] - drawn[0]) * (drawn[3] - drawn[1]) - inter
    return inter / union_area if union_area else 0.0
