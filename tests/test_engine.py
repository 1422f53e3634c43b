"""The Aspose engine, for real: every supported format, multipage files, odd modes, bad inputs.

Without a licence the engine returns only a prefix of each page followed by a 'Trial Licenses'
banner, so these tests compare the first words. One engine serves the whole module (start-up and
the first recognition cost ~2 s). Inputs that could crash the .NET runtime never reach it: every
bad input below is refused by `images.vet` first, so all run in-process; none crashed the engine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ocr_daemon.config import Config, Limits
from ocr_daemon.engines.aspose import AsposeEngine
from ocr_daemon.engines.base import WARM_UP_PREFIX, OcrResult
from ocr_daemon.errors import (
    ConfigError,
    CorruptInput,
    InputTooLarge,
)
from tests.conftest import render_page

LINES = [
    "Invoice number 4711 from the harbour office",
    "Payment is due within thirty days of receipt",
    "Please quote the reference on every letter",
    "Goods remain our property until paid in full",
    "Questions about this account may be sent to",
    "the accounts team at the address shown above",
    "Thank you for your custom and kind regards",
    "Deliveries are made on weekdays before noon",
    "Returned items must be unused and complete",
    "This document was produced by a test suite",
]
OTHER_LINES = [f"Page two begins with another sentence {n}" for n in range(10)]
THIRD_LINES = [f"Chapter three starts the story of number {n}" for n in range(10)]


def words(text: str, count: int = 3) -> list[str]:
    return text.split()[:count]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsposeEngine]:
    state = tmp_path_factory.mktemp("state")
    yield AsposeEngine(Config(state_dir=state))


@pytest.fixture(scope="module")
def page() -> Image.Image:
    return render_page(LINES)


def assert_reads(result: OcrResult, *pages: list[str]) -> None:
    assert result.page_count == len(pages)
    for text, lines in zip(result.pages, pages, strict=True):
        assert words(text) == words(lines[0]), text
        if result.evaluation_mode:
            assert "Trial Licenses" in text
            assert result.warnings == ("Trial Licenses",)


def test_info_and_warm_up(engine: AsposeEngine) -> None:
    info = engine.info()
    assert (info.name, info.version) == ("aspose", "26.10.0")
    assert engine.warm_up().pages[0].startswith(WARM_UP_PREFIX)
    assert ("EVALUATION" in info.detail) is not info.licensed


@pytest.mark.parametrize(
    ("suffix", "options"),
    [
        (".png", {}),
        (".jpg", {"quality": 90}),
        (".tif", {"compression": "tiff_lzw"}),
        (".bmp", {}),
        (".gif", {}),
        (".webp", {"lossless": True}),
        (".pdf", {"resolution": 150.0}),
    ],
)
def test_each_supported_format(
    engine: AsposeEngine, page: Image.Image, tmp_path: Path, suffix: str, options: dict[str, object]
) -> None:
    path = tmp_path / f"scan{suffix}"
    page.save(path, **options)
    assert_reads(engine.recognize(path), LINES)


@pytest.mark.parametrize("suffix", [".tif", ".pdf"])
def test_three_pages(engine: AsposeEngine, tmp_path: Path, suffix: str) -> None:
    pages = [render_page(lines) for lines in (LINES, OTHER_LINES, THIRD_LINES)]
    path = tmp_path / f"three{suffix}"
    pages[0].save(path, save_all=True, append_images=pages[1:], resolution=200.0)
    assert_reads(engine.recognize(path), LINES, OTHER_LINES, THIRD_LINES)


def test_exif_rotated_photo_is_read_upright(
    engine: AsposeEngine, page: Image.Image, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    page.rotate(90, expand=True).save(path, exif=exif, quality=90)
    assert_reads(engine.recognize(path), LINES)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "1", "LA", "RGBA", "P"])
def test_image_modes(engine: AsposeEngine, page: Image.Image, tmp_path: Path, mode: str) -> None:
    if mode == "I;16":  # a real 16-bit scan uses the full 0..65535 range
        image = page.convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
    else:
        image = page.convert(mode)
    path = tmp_path / ("scan.jpg" if mode == "CMYK" else "scan.png")
    image.save(path)
    with Image.open(path) as saved:
        assert saved.mode == mode
    assert_reads(engine.recognize(path), LINES)


def test_extension_that_lies(engine: AsposeEngine, page: Image.Image, tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    page.save(path, "PNG")
    assert_reads(engine.recognize(path), LINES)


def test_path_with_spaces_and_non_ascii(
    engine: AsposeEngine, page: Image.Image, tmp_path: Path
) -> None:
    folder = tmp_path / "scans é ü 日本"
    folder.mkdir()
    path = folder / "文字 page 1.png"
    page.save(path)
    assert_reads(engine.recognize(path), LINES)


def test_blank_page_gives_empty_text_not_an_error(engine: AsposeEngine, tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("L", (1200, 300), 255).save(path)
    result = engine.recognize(path)
    assert result.page_count == 1
    assert result.pages[0].replace("*", "").replace("Trial Licenses", "").strip() == ""


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_truncated_images_are_corrupt(
    engine: AsposeEngine, page: Image.Image, tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"cut.{fmt.lower()}"
    page.save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptInput, match="truncated"):
        engine.recognize(path)


def test_pdf_over_the_page_limit(engine: AsposeEngine, tmp_path: Path) -> None:
    path = tmp_path / "three.pdf"
    frames = [Image.new("L", (200, 200), 255) for _ in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    small = AsposeEngine(Config(state_dir=tmp_path, limits=Limits(max_pages=2)))
    with pytest.raises(InputTooLarge):
        small.recognize(path)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("language", "KLINGON", "key 'aspose.language' has unknown value 'KLINGON'"),
        ("detect_areas_mode", "SIDEWAYS", "key 'aspose.detect_areas_mode' has unknown value"),
        ("detect_areas_mode", "MULTICOLUMN", "needs the model aspose-ocr-document-structure"),
        ("license_file", Path("/nonexistent/Aspose.OCR.lic"), "Cannot find license"),
    ],
)
def test_bad_engine_settings_are_config_errors(
    engine: AsposeEngine, tmp_path: Path, key: str, value: object, message: str
) -> None:
    aspose = dataclasses.replace(engine._config.aspose, **{key: value})
    with pytest.raises(ConfigError, match=message):
        AsposeEngine(Config(state_dir=tmp_path, aspose=aspose))
