"""Shared fixtures: pages rendered with DejaVu Sans, and the optional real-scan corpus."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import structlog
from PIL import Image, ImageDraw, ImageFont

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
