"""images.py without the engine: real type by content, limits, decoding, orientation, modes."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from ocr_daemon.config import Limits
from ocr_daemon.engines.images import ImageInput, PdfInput, normalise, sniff, vet
from ocr_daemon.errors import (
    CorruptInput,
    EmptyInput,
    InputMissing,
    InputTooLarge,
    UnsupportedInput,
)

LIMITS = Limits()
FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "gif": "GIF", "webp": "WEBP"}


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(("kind", "fmt"), FORMATS.items())
def test_each_format_is_recognised_by_content_whatever_its_name(
    tmp_path: Path, kind: str, fmt: str
) -> None:
    data = _encoded(Image.new("RGB", (64, 48), "white"), fmt)
    vetted = vet(_write(tmp_path / "scan.txt", data), LIMITS)
    assert isinstance(vetted, ImageInput)
    assert vetted.kind == kind
    pages = list(vetted.pages())
    assert [(p.mode, p.size) for p in pages] == [("RGB", (64, 48))] or pages[0].mode == "L"


def test_pdf_is_vetted_cheaply_with_its_page_count(tmp_path: Path) -> None:
    frames = [Image.new("L", (100, 100), 255) for _ in range(3)]
    path = tmp_path / "doc.pdf"
    frames[0].save(path, "PDF", save_all=True, append_images=frames[1:])
    assert vet(path, LIMITS) == PdfInput(path, 3, path.read_bytes())
    with pytest.raises(InputTooLarge, match=r"3 pages, over limits\.max_pages = 2"):
        vet(path, Limits(max_pages=2))


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"PK\x03\x04rest", "a ZIP archive (or DOCX/ODT)"),
        (b"hello, world\n", "text"),
        (b"\x00\x01\x02\xff\xfe", "unrecognised binary data"),
        (b"RIFF\x00\x00\x00\x00WAVE", "unrecognised binary data"),
    ],
)
def test_sniff_names_unsupported_content(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


def test_text_file_named_png_is_unsupported_and_names_the_content(tmp_path: Path) -> None:
    path = _write(tmp_path / "scan.png", b"not an image at all\n")
    with pytest.raises(UnsupportedInput, match="content is text"):
        vet(path, LIMITS)


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    with pytest.raises(EmptyInput, match="0 bytes"):
        vet(_write(tmp_path / "empty.png", b""), LIMITS)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputMissing):
        vet(tmp_path / "nope.png", LIMITS)
    with pytest.raises(UnsupportedInput, match="not a regular file"):
        vet(tmp_path, LIMITS)


def test_file_over_byte_limit_is_refused_before_opening(tmp_path: Path) -> None:
    path = _write(tmp_path / "big.png", _encoded(Image.new("L", (64, 64)), "PNG"))
    with pytest.raises(InputTooLarge, match="max_file_bytes"):
        vet(path, Limits(max_file_bytes=10))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_truncated_image_is_corrupt(tmp_path: Path, fmt: str) -> None:
    noisy = Image.effect_noise((300, 200), 60).convert("RGB")
    data = _encoded(noisy, fmt)
    path = _write(tmp_path / f"cut.{fmt.lower()}", data[: len(data) // 2])
    vetted = vet(path, LIMITS)
    assert isinstance(vetted, ImageInput)
    with pytest.raises(CorruptInput, match="truncated"):
        list(vetted.pages())


def test_garbage_after_a_png_signature_is_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(CorruptInput):
        vet(path, LIMITS)


def test_pdf_without_eof_marker_is_corrupt(tmp_path: Path) -> None:
    path = _write(tmp_path / "cut.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n")
    with pytest.raises(CorruptInput, match="%%EOF"):
        vet(path, LIMITS)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = _write(tmp_path / "bomb.png", _encoded(Image.new("1", (2000, 2000)), "PNG"))
    with pytest.raises(InputTooLarge, match=r"4000000 pixels, over limits\.max_pixels"):
        vet(path, Limits(max_pixels=1_000_000))


def test_bomb_past_pillows_own_guard_is_too_large(tmp_path: Path) -> None:
    path = _write(tmp_path / "bomb.png", _encoded(Image.new("1", (20_000, 10_000)), "PNG"))
    assert path.stat().st_size < 100_000
    with pytest.raises(InputTooLarge):
        vet(path, Limits(max_pixels=10**9))


@pytest.mark.parametrize("size", [(1, 1), (600, 5)])
def test_tiny_image_cannot_hold_text(tmp_path: Path, size: tuple[int, int]) -> None:
    path = _write(tmp_path / "dot.png", _encoded(Image.new("L", size, 0), "PNG"))
    with pytest.raises(EmptyInput, match="too small to hold text"):
        vet(path, LIMITS)


def test_multipage_tiff_yields_one_page_per_frame_within_the_page_limit(tmp_path: Path) -> None:
    frames = [Image.new("L", (40 + i, 30), 255) for i in range(3)]
    path = tmp_path / "three.tif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    vetted = vet(path, LIMITS)
    assert isinstance(vetted, ImageInput)
    assert [p.size for p in vetted.pages()] == [(40, 30), (41, 30), (42, 30)]
    with pytest.raises(InputTooLarge, match="3 frames"):
        vet(path, Limits(max_pages=2))


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    upright = Image.new("RGB", (200, 100), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = tmp_path / "phone.jpg"
    upright.rotate(90, expand=True).save(path, exif=exif)
    vetted = vet(path, LIMITS)
    assert isinstance(vetted, ImageInput)
    assert next(vetted.pages()).size == (200, 100)


@pytest.mark.parametrize(
    ("image", "mode", "pixel"),
    [
        (Image.new("1", (10, 10), 1), "L", 255),
        (Image.new("I;16", (10, 10), 65535), "L", 255),
        (Image.new("I;16", (10, 10), 32768), "L", 128),
        (Image.new("I", (10, 10), 70000), "L", 255),
        (Image.new("F", (10, 10), 0.5), "L", 128),  # floats within 0..1: 1.0 is white
        (Image.new("LA", (10, 10), (0, 0)), "L", 255),
        (Image.new("RGBA", (10, 10), (0, 0, 0, 0)), "RGB", (255, 255, 255)),
        (Image.new("RGBA", (10, 10), (0, 0, 0, 255)), "RGB", (0, 0, 0)),
        (Image.new("CMYK", (10, 10), (0, 0, 0, 255)), "RGB", (0, 0, 0)),
    ],
    ids=["1", "I;16-white", "I;16-mid", "I", "F-flat", "LA-clear", "RGBA-clear", "RGBA", "CMYK"],
)
def test_modes_normalise_to_8_bit_l_or_rgb(image: Image.Image, mode: str, pixel: object) -> None:
    result = normalise(image)
    assert result.mode == mode
    assert result.getpixel((5, 5)) == pixel


def test_palette_image_becomes_rgb() -> None:
    image = Image.new("P", (10, 10), 3)
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    assert normalise(image).getpixel((5, 5)) == (3, 3, 3)


def test_palette_with_transparency_is_flattened_onto_white() -> None:
    image = Image.new("P", (10, 10), 0)
    image.putpalette([0, 0, 0] * 256)
    image.info["transparency"] = 0
    assert normalise(image).getpixel((5, 5)) == (255, 255, 255)


def test_strip_over_the_aspect_ratio_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "strip.png"
    Image.new("L", (3000, 20), 255).save(path)
    with pytest.raises(InputTooLarge, match=r"aspect ratio over limits\.max_aspect_ratio = 100"):
        vet(path, Limits())
    assert vet(path, Limits(max_aspect_ratio=200)) is not None


def test_symlink_and_fifo_are_refused_without_being_opened(tmp_path: Path) -> None:
    target = tmp_path / "real.png"
    Image.new("L", (100, 100), 255).save(target)
    (tmp_path / "link.png").symlink_to(target)
    os.mkfifo(tmp_path / "pipe.png")  # opening it for reading without O_NONBLOCK would hang
    with pytest.raises(UnsupportedInput, match="symlink"):
        vet(tmp_path / "link.png", Limits())
    with pytest.raises(UnsupportedInput, match="not a regular file"):
        vet(tmp_path / "pipe.png", Limits())
