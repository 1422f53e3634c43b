"""Builders of hostile and broken input files, as bytes, made cheaply and deterministically.

Used by `test_hostile_inputs.py`. Everything here is hand-built or rendered once: a TIFF with
thousands of frames shares one strip, a PDF with thousands of pages repeats one page object, a
decompression bomb is a valid header over a few bytes of data, and a file of many gigabytes is
sparse. Paths are bytes throughout, so any name (newlines, non-UTF-8, 255 bytes, deeper than
PATH_MAX) can be created and inspected; directories are walked with ``dir_fd`` like the daemon.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import stat
import struct
import zlib
from collections.abc import Iterator

from PIL import Image

from tests.conftest import render_page

LINES = [
    "Invoice number 4711 from the harbour office",
    "Payment is due within thirty days of receipt",
    "Please quote the reference on every letter",
]
FIRST_WORDS = ("Invoice", "number", "4711")


@functools.cache
def page() -> Image.Image:
    """A 1200x400 RGB page of three lines the engine reads in well under a second."""
    return render_page(LINES, size=(1200, 400))


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


@functools.cache
def good(fmt: str) -> bytes:
    """The page in `fmt` (PNG, JPEG, TIFF, BMP, GIF, WEBP, PDF)."""
    image = page().convert("P") if fmt == "GIF" else page()
    params: dict[str, object] = {"resolution": 150.0} if fmt == "PDF" else {}
    return encode(image, fmt, **params)


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def bit_flipped(data: bytes) -> bytes:
    """16 bytes inverted at a third and at two thirds of the file (header left intact)."""
    out = bytearray(data)
    for at in (len(data) // 3, 2 * len(data) // 3):
        for i in range(at, min(at + 16, len(out))):
            out[i] ^= 0xFF
    return bytes(out)


# -- odd images -----------------------------------------------------------------------------


def sixteen_bit_png() -> bytes:
    wide = page().convert("L").convert("I").point(lambda v: v * 257).convert("I;16")
    return encode(wide, "PNG")


def palette_with_transparency_png() -> bytes:
    pal = page().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    white = pal.getpixel((0, 0))  # the background: transparent, flattened back onto white
    return encode(pal, "PNG", transparency=white)


def exif_rotated_jpeg() -> bytes:
    """Stored turned 90 degrees anticlockwise, EXIF Orientation 6 says: turn clockwise to view."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(page().transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif.tobytes())


def long_strip_png(width: int = 30000, height: int = 20) -> bytes:
    strip = Image.new("L", (width, height), 255)
    strip.paste(page().convert("L").resize((1200 * height // 400, height)), (0, 0))
    return encode(strip, "PNG")


# -- hand-built headers ---------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height 8-bit grey pixels over one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def tiff(frames: list[tuple[int, int]], *, loop: bool = False) -> bytes:
    """A little-endian TIFF whose IFDs (one per frame size) all share one small white strip.

    With `loop`, the last IFD points back at the first (a cyclic chain)."""
    strip = b"\xff" * 4096
    first = 8 + len(strip)
    ifd_size = 2 + 9 * 12 + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", first) + strip)
    for index, (width, height) in enumerate(frames):
        here = first + index * ifd_size
        last = index == len(frames) - 1
        following = (first if loop else 0) if last else here + ifd_size
        tags = [(256, 4, width), (257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                (273, 4, 8), (277, 3, 1), (278, 4, height), (279, 4, len(strip))]  # fmt: skip
        out += struct.pack("<H", len(tags))
        for tag, kind, value in tags:
            packed = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, 1) + packed
        out += struct.pack("<I", following)
    return bytes(out)


def pdf(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A classic PDF (xref table, no object streams) of `objects` numbered from 1; 1 is /Root."""
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R %s>>\n" % (len(objects) + 1, trailer)
    return out + b"startxref\n%d\n%%%%EOF\n" % xref


CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
BLANK_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] >>"


def pdf_zero_pages() -> bytes:
    return pdf([CATALOG, b"<< /Type /Pages /Kids [] /Count 0 >>"])


def pdf_many_pages(count: int) -> bytes:
    kids = b" ".join([b"3 0 R"] * count)
    return pdf([CATALOG, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, count), BLANK_PAGE])


def pdf_count_lies(real_pages: int) -> bytes:
    """/Count says 1; the page tree holds `real_pages` pages."""
    kids = b" ".join([b"3 0 R"] * real_pages)
    return pdf([CATALOG, b"<< /Type /Pages /Kids [%s] /Count 1 >>" % kids, BLANK_PAGE])


def pdf_count_indirect(real_pages: int) -> bytes:
    """/Count is an indirect reference (``/Count 4 0 R``): no cheap check can read it."""
    kids = b" ".join([b"3 0 R"] * real_pages)
    pages = b"<< /Type /Pages /Kids [%s] /Count 4 0 R >>" % kids
    return pdf([CATALOG, pages, BLANK_PAGE, b"%d" % real_pages])


def pdf_encrypted() -> bytes:
    """Standard security handler, RC4 40-bit, with /O and /U no password opens."""
    encrypt = b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P -3904 >>" % (
        b"ab" * 32,
        b"cd" * 32,
    )
    doc_id = b"<0123456789abcdef0123456789abcdef>"
    return pdf(
        [CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", BLANK_PAGE, encrypt],
        trailer=b"/Encrypt 4 0 R /ID [%s %s] " % (doc_id, doc_id),
    )


ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + b"\x02\x00\x3e\x00" + b"\x00" * 200
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 200
TEXT = b"Dear scanner,\nthis is not an image at all.\n" * 4


# -- bytes paths, walked like the daemon walks them ----------------------------------------


@contextlib.contextmanager
def dir_fd(root: bytes, parts: list[bytes], *, create: bool) -> Iterator[int]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, dir_fd=fd)
            child = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def write_at(root: bytes, rel: bytes, data: bytes) -> None:
    *parents, name = rel.split(b"/")
    with dir_fd(root, parents, create=True) as fd:
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
        try:
            os.write(out, data)
        finally:
            os.close(out)


def sparse_at(root: bytes, rel: bytes, head: bytes, size: int) -> None:
    """A file of `size` bytes that occupies a few blocks: `head`, then a hole."""
    *parents, name = rel.split(b"/")
    with dir_fd(root, parents, create=True) as fd:
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
        try:
            os.write(out, head)
            os.ftruncate(out, size)
        finally:
            os.close(out)


def read_at(root: bytes, rel: bytes) -> bytes | None:
    """Contents of ``root/rel``, or None when it (or a folder on the way) is absent."""
    *parents, name = rel.split(b"/")
    try:
        with dir_fd(root, parents, create=False) as fd:
            handle = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        return None
    with os.fdopen(handle, "rb") as fh:
        return fh.read()
