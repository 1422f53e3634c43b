"""Vet an input file by its content and turn images into pages the engine reads correctly.

Owns: the real type of a file (magic bytes, never the extension), the limits in `config.limits`
(bytes before opening, pixels per frame before decoding, pages), full decoding so truncated files
are caught (the engine silently accepts them), EXIF orientation, and mode normalisation to "L" or
"RGB" (16-bit images otherwise come back as empty text; alpha is flattened onto white).

Images are decoded one frame at a time (`ImageInput.pages()`), so a long TIFF holds one page in
memory. PDFs are only checked cheaply here (header, trailer, page count when visible); the
engine reads them itself. A blank but valid image is not an error: it yields a page whose text
is empty. Images smaller than `MIN_SIDE_PX` in either dimension cannot hold text: `EmptyInput`.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ocr_daemon.config import Limits
from ocr_daemon.errors import (
    CorruptInput,
    EmptyInput,
    InputMissing,
    InputTooLarge,
    UnsupportedInput,
)

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

    def pages(self) -> Iterator[Image.Image]:
        """Each frame fully decoded, upright, in mode "L" or "RGB"."""
        with _open_image(self.path) as image:
            for index in range(self.page_count):
                _seek(image, index, self.path)
                _check_frame_size(image, self.path, self.limits, index)
                yield normalise(_decode(image, self.path, index))


@dataclass(frozen=True)
class PdfInput:
    """A PDF that passed the cheap structural checks; the engine reads the file itself."""

    path: Path
    page_count: int | None  # None when the page tree is compressed (object streams)
    kind: str = "pdf"


def vet(path: Path, limits: Limits) -> ImageInput | PdfInput:
    """Check `path` against the limits and its real type; raise an `InputError` if unusable."""
    size, head = _size_and_head(path, limits)
    kind = sniff(head)
    if kind not in SUPPORTED_KINDS:
        raise UnsupportedInput(
            f"content is {kind}, not a supported image or PDF "
            f"({', '.join(k.upper() for k in SUPPORTED_KINDS)})",
            str(path),
        )
    if kind == "pdf":
        return _vet_pdf(path, size, limits)
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
    """Upright per EXIF, then "L" or "RGB": alpha flattened onto white, 16/32-bit scaled to 8."""
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16"):
        return image.convert("I").point(lambda v: v / 256).convert("L")
    if mode in ("I", "F"):
        return _stretch_to_8bit(image)
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


@contextlib.contextmanager
def open_input(path: Path, limits: Limits) -> Iterator[tuple[int, os.stat_result]]:
    """A read descriptor for `path` and its stat, opened without following a symlink or blocking
    on a FIFO (the path may have been swapped since the daemon saw a regular file there): only a
    regular, non-empty file within ``limits.max_file_bytes``. Engines and the cluster
    coordinator (which sends the bytes to worker hosts) both read inputs through it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputMissing("file does not exist", str(path)) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsupportedInput("is a symlink (never followed)", str(path)) from None
        raise InputMissing(f"cannot access file: {exc.strerror}", str(path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedInput("not a regular file", str(path))
        if st.st_size == 0:
            raise EmptyInput("file is empty (0 bytes)", str(path))
        if st.st_size > limits.max_file_bytes:
            raise InputTooLarge(
                f"file is {st.st_size} bytes, over limits.max_file_bytes = {limits.max_file_bytes}",
                str(path),
            )
        yield fd, st
    finally:
        os.close(fd)


def _vet_pdf(path: Path, size: int, limits: Limits) -> PdfInput:
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if b"%%EOF" not in data[max(0, size - PDF_TAIL_BYTES) :]:
            raise CorruptInput("PDF is truncated: no %%EOF marker at its end", str(path))
        counts = [int(a or b) for a, b in _PDF_COUNT.findall(data)]
    page_count = max(counts) if counts else None
    if page_count == 0:
        raise EmptyInput("PDF has no pages", str(path))
    if page_count is not None and page_count > limits.max_pages:
        raise InputTooLarge(
            f"PDF has {page_count} pages, over limits.max_pages = {limits.max_pages}", str(path)
        )
    return PdfInput(path, page_count)


def _vet_image(path: Path, kind: str, limits: Limits) -> ImageInput:
    with _open_image(path) as image:
        page_count = getattr(image, "n_frames", 1)
        _check_frame_size(image, path, limits, 0)
    if page_count > limits.max_pages:
        raise InputTooLarge(
            f"image has {page_count} frames, over limits.max_pages = {limits.max_pages}", str(path)
        )
    return ImageInput(path, kind, page_count, limits)


def _open_image(path: Path) -> Image.Image:
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # never accept a truncated file as a short page
    try:
        with warnings.catch_warnings():
            # our own limits.max_pixels check runs before decoding; Pillow's warning is noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
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


def _decode(image: Image.Image, path: Path, index: int) -> Image.Image:
    try:
        image.load()
        return image.copy()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        what = f"frame {index + 1}" if index else "image"
        raise CorruptInput(f"{what} cannot be decoded: {exc}", str(path)) from None


def _stretch_to_8bit(image: Image.Image) -> Image.Image:
    low, high = cast(tuple[float, float], image.getextrema())
    if high <= low:
        return Image.new("L", image.size, 255)
    scale = 255 / (high - low)
    return image.point(lambda v: (v - low) * scale).convert("L")


def _flatten_on_white(rgba: Image.Image) -> Image.Image:
    flat = Image.new("RGB", rgba.size, "white")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    return flat
