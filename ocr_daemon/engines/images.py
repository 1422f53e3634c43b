"""Vet an input file by its content and turn images into pages the engine reads correctly.

Owns: the real type of a file (magic bytes, never the extension), the limits in `config.limits`
(bytes before opening, pixels per frame before decoding, pages), full decoding so truncated files
are caught (the engine silently accepts them), EXIF orientation, and mode normalisation to "L" or
"RGB" (16-bit images otherwise come back as empty text; alpha is flattened onto white).
16-bit, 32-bit and float pages are scaled by their white point (`_value_range`), so 8-bit or
12-bit data stored in 16 bits reads like any page; Pillow keeps only the high byte of 16-bit colour
samples, so such images are decoded again for their low bytes (`_widen`).

Images are decoded one frame at a time (`ImageInput.pages()`), so a long TIFF holds one page in
memory. Every input is read whole, once, into memory, and decoded from those bytes: never mapped
(a writer that cuts a mapped file kills its reader with SIGBUS), never read from the file again
(what was vetted is what is recognised). A PDF is only checked cheaply here (header, trailer,
page count when visible); the engines read its pages from those bytes. A blank
but valid image is not an error: it yields a page whose text is empty. Images smaller than
`MIN_SIDE_PX` in either dimension cannot hold text: `EmptyInput`.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from PIL import Image, ImageFile, ImageMath, ImageOps, UnidentifiedImageError

from ocr_daemon.config import Limits
from ocr_daemon.errors import (
    CorruptInput,
    EmptyInput,
    InputTooLarge,
    UnsupportedInput,
)
from ocr_daemon.inputs import open_input, read_input

MIN_SIDE_PX = 8
PDF_TAIL_BYTES = 2048
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
    (b"II+\x00", 0, "tiff"),
    (b"MM\x00+", 0, "tiff"),
    (b"BM", 0, "bmp"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),
    (b"%PDF-", 0, "pdf"),
)
_OTHER_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "a ZIP archive (or DOCX/ODT)"),
    (b"\x1f\x8b", 0, "gzip data"),
    (b"ftyp", 4, "ISO media (HEIC/AVIF/MP4)"),
    (b"AT&TFORM", 0, "DjVu"),
    (b"\x00\x00\x00\x0cjP  ", 0, "JPEG 2000"),
    (b"\xd0\xcf\x11\xe0", 0, "an OLE document (DOC/XLS)"),
)
SUPPORTED_KINDS = tuple(dict.fromkeys(kind for _, _, kind in _MAGIC))
_WIDE_RAWMODES = (";16B", ";16L", ";16N")  # Pillow's 16-bit samples unpacked to their high byte
_OTHER_BYTE_ORDER = {"B": "L", "L": "B", "N": "B" if sys.byteorder == "little" else "L"}
_PDF_COUNT = re.compile(
    rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)|/Count\s+(\d+)[^>]*?/Type\s*/Pages\b"
)


@dataclass(frozen=True)
class ImageInput:
    """A vetted raster image: `pages()` decodes and normalises one frame at a time."""

    path: Path
    kind: str
    page_count: int
    limits: Limits
    data: bytes = field(repr=False)  # the bytes vetted: decoded from memory, never the file again

    def pages(self) -> Iterator[Image.Image]:
        """Each frame fully decoded, upright, in mode "L" or "RGB"."""
        with _open_image(self.data, self.path) as image:
            for index in range(self.page_count):
                _seek(image, index, self.path)
                _check_frame_size(image, self.path, self.limits, index)
                yield normalise(_decode(image, self.data, self.path, index))


@dataclass(frozen=True)
class PdfInput:
    """A PDF that passed the cheap structural checks, with the bytes they were made on: engines
    read these bytes, not the file, which its writer may have cut or rewritten since."""

    path: Path
    page_count: int | None  # None when the page tree is compressed (object streams)
    data: bytes = field(repr=False)
    kind: str = "pdf"


def vet(path: Path, limits: Limits) -> ImageInput | PdfInput:
    """Check `path` against the limits and its real type; raise an `InputError` if unusable."""
    _, head = _size_and_head(path, limits)
    kind = sniff(head)
    if kind not in SUPPORTED_KINDS:
        raise UnsupportedInput(
            f"content is {kind}, not a supported image or PDF "
            f"({', '.join(k.upper() for k in SUPPORTED_KINDS)})",
            str(path),
        )
    if kind == "pdf":
        return _vet_pdf(path, limits)
    return _vet_image(path, kind, limits)


def sniff(head: bytes) -> str:
    """The kind of file the first 16 bytes show: a supported kind, or a description."""
    for magic, offset, kind in (*_MAGIC, *_OTHER_MAGIC):
        if head[offset : offset + len(magic)] == magic:
            return "webp" if kind == "webp" and not head.startswith(b"RIFF") else kind
    text = head.decode("utf-8", errors="ignore")  # a cut multi-byte character is dropped
    if text and all(ch.isprintable() or ch in "\t\r\n\f" for ch in text):
        return "text"
    return "unrecognised binary data"


def normalise(image: Image.Image) -> Image.Image:
    """Upright per EXIF, then "L" or "RGB": alpha flattened onto white, 16/32-bit and float
    scaled to 8 by their white point."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I") or mode == "F":  # I, I;16, I;16B, I;16L, I;16N, F
        return _to_8bit(image.convert("F"))
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in image.info):
        flat = _flatten_on_white(image.convert("RGBA"))
        return flat.convert("L") if mode in ("LA", "La") else flat
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV


def claimed_dpi(page: Image.Image) -> float | None:
    """The horizontal DPI a decoded (or pdfium-rendered) page says it has, if any, to a tenth
    (PNG stores pixels per metre: 200 dpi reads back as 199.9996)."""
    dpi = page.info.get("dpi")
    if isinstance(dpi, tuple) and dpi:
        dpi = dpi[0]
    return round(float(dpi), 1) if isinstance(dpi, int | float) else None


def _size_and_head(path: Path, limits: Limits) -> tuple[int, bytes]:
    """Size and first 16 bytes (see `open_input`)."""
    with open_input(path, limits) as (fd, st):
        return st.st_size, os.pread(fd, 16, 0)


def _vet_pdf(path: Path, limits: Limits) -> PdfInput:
    data, _ = read_input(path, limits)
    if b"%%EOF" not in data[-PDF_TAIL_BYTES:]:
        raise CorruptInput("PDF is truncated: no %%EOF marker at its end", str(path))
    counts = [int(a or b) for a, b in _PDF_COUNT.findall(data)]
    page_count = max(counts) if counts else None
    if page_count == 0:
        raise EmptyInput("PDF has no pages", str(path))
    if page_count is not None and page_count > limits.max_pages:
        raise InputTooLarge(
            f"PDF has {page_count} pages, over limits.max_pages = {limits.max_pages}", str(path)
        )
    return PdfInput(path, page_count, data)


def _vet_image(path: Path, kind: str, limits: Limits) -> ImageInput:
    data, _ = read_input(path, limits)
    with _open_image(data, path) as image:
        page_count = getattr(image, "n_frames", 1)
        _check_frame_size(image, path, limits, 0)
    if page_count > limits.max_pages:
        raise InputTooLarge(
            f"image has {page_count} frames, over limits.max_pages = {limits.max_pages}", str(path)
        )
    return ImageInput(path, kind, page_count, limits, data)


def _open_image(data: bytes, path: Path) -> Image.Image:
    """The image in `data` (read from `path`), opened from memory: given a file name, Pillow
    maps uncompressed TIFF and BMP frames, and a writer that cuts a mapped file kills its reader
    with SIGBUS."""
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # never accept a truncated file as a short page
    try:
        with warnings.catch_warnings():
            # our own limits.max_pixels check runs before decoding; Pillow's warning is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise InputTooLarge(f"decompression bomb refused by Pillow: {exc}", str(path)) from None
    except UnidentifiedImageError:
        raise CorruptInput("not decodable as an image despite its header", str(path)) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise CorruptInput(f"cannot read image header: {exc}", str(path)) from None


def _seek(image: Image.Image, index: int, path: Path) -> None:
    try:
        image.seek(index)
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise CorruptInput(f"cannot read frame {index + 1}: {exc}", str(path)) from None


def _check_frame_size(image: Image.Image, path: Path, limits: Limits, index: int) -> None:
    width, height = image.size
    where = f"frame {index + 1} is " if index else ""
    if width * height > limits.max_pixels:
        raise InputTooLarge(
            f"{where}{width}x{height} = {width * height} pixels, over limits.max_pixels = "
            f"{limits.max_pixels} (decompression bomb guard)",
            str(path),
        )
    if min(width, height) < MIN_SIDE_PX:
        raise EmptyInput(
            f"{where}{width}x{height} px: too small to hold text "
            f"(minimum {MIN_SIDE_PX} px in each dimension)",
            str(path),
        )
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise InputTooLarge(
            f"{where}{width}x{height} px is a strip, not a page: aspect ratio over "
            f"limits.max_aspect_ratio = {limits.max_aspect_ratio} (such images cost the engine "
            "minutes of CPU)",
            str(path),
        )


def _decode(image: Image.Image, data: bytes, path: Path, index: int) -> Image.Image:
    rawmode = _rawmode(image)  # read before load(), which consumes the tiles
    try:
        image.load()
        page = image.copy()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        what = f"frame {index + 1}" if index else "image"
        raise CorruptInput(f"{what} cannot be decoded: {exc}", str(path)) from None
    if rawmode.endswith(_WIDE_RAWMODES) and not page.mode.startswith(("I", "F")):
        return _widen(page, data, path, index, rawmode)
    return page


def _rawmode(image: Image.Image) -> str:
    """How Pillow will unpack the frame's samples ("RGB;16B": 16-bit RGB, big-endian)."""
    tiles = getattr(image, "tile", None) or []
    args = tiles[0].args if tiles else None
    return args if isinstance(args, str) else str(args[0]) if args else ""


def _widen(high: Image.Image, data: bytes, path: Path, index: int, rawmode: str) -> Image.Image:
    """A 16-bit-per-channel frame at full precision. Pillow gave the high byte of each sample
    (`high`): right when every band's high bytes reach 128 (data spanning 16 bits), all black
    for 8-bit data stored in 16 bits. Otherwise the low bytes are decoded again (byte order
    swapped) and each sample is scaled by its white point: one for the colours, one for alpha."""
    if min(_high(band) for band in high.split()) >= 128:
        return high
    names = high.getbands()
    low = _low_bytes(data, path, index, rawmode)
    if max(_high(band) for band in high.split()) == 0:
        return low  # 8-bit data stored in 16 bits: the low bytes are the page
    bands = [
        ImageMath.lambda_eval(lambda a: a["h"] * 256 + a["l"], h=h, l=lo).convert("F")
        for h, lo in zip(high.split(), low.split(), strict=True)
    ]
    colour_max = max(_high(b) for name, b in zip(names, bands, strict=True) if name != "A")
    scaled = [
        _scale(band, 0.0, _white_point(_high(band) if name == "A" else colour_max))
        for name, band in zip(names, bands, strict=True)
    ]
    return Image.merge(high.mode, scaled)


def _high(band: Image.Image) -> float:
    return cast(tuple[float, float], band.getextrema())[1]


def _low_bytes(data: bytes, path: Path, index: int, rawmode: str) -> Image.Image:
    """Frame `index` decoded with the other byte order: the low byte of each sample."""
    swapped = rawmode[:-1] + _OTHER_BYTE_ORDER[rawmode[-1]]
    with _open_image(data, path) as opened:
        _seek(opened, index, path)
        image = cast(ImageFile.ImageFile, opened)  # what Image.open returns: it has tiles
        image.tile = [tile._replace(args=_with_rawmode(tile.args, swapped)) for tile in image.tile]
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            raise UnsupportedInput(
                f"16-bit samples ({rawmode}) whose values use fewer than 16 bits: Pillow reads "
                f"only their high byte, and not their low byte in this layout ({exc}); save the "
                "image with 8 bits per sample, or as 16-bit greyscale without alpha",
                str(path),
            ) from None
        return image.copy()


def _with_rawmode(args: tuple[object, ...] | str | None, rawmode: str) -> tuple[object, ...] | str:
    """A tile's decoder arguments with `rawmode`: PNG's are a rawmode, TIFF's start with one."""
    return rawmode if isinstance(args, str) or not args else (rawmode, *args[1:])


def _to_8bit(image: Image.Image) -> Image.Image:
    """A float page ("F") in "L", scaled by `_value_range`; one value everywhere stays blank."""
    low, white = _value_range(image)
    if white <= low:
        return Image.new("L", image.size, 255)
    return _scale(image, low, white)


def _value_range(image: Image.Image) -> tuple[float, float]:
    """Black and white of a float page holding 16-bit, 32-bit or float samples: 0 and 1 for
    values within 0..1 (floats, or a two-level 0/1 page); for other values within 0..65535, 0 and
    `_white_point` (8-bit data stored in 16 bits maps to itself, 12-bit data spans 12 bits, full
    16-bit data keeps its high byte); for any other values, their own extrema."""
    low, high = cast(tuple[float, float], image.getextrema())
    if low < 0 or high > 65535:
        return low, high
    if high <= 1:
        return 0.0, 1.0
    return 0.0, _white_point(high)


def _white_point(high: float) -> float:
    """The top of the fewest bits, at least 8, that hold `high`: 255, 4095, 65535 …"""
    return float(2 ** max(8, math.ceil(high).bit_length()) - 1)


def _scale(image: Image.Image, low: float, white: float) -> Image.Image:
    """A float band in "L": `low` to 0, `white` to 255, rounded (Pillow's F to L truncates)."""
    scale = 255 / (white - low)
    return image.point(lambda v: (v - low) * scale + 0.5).convert("L")


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat
