"""16-bit and float images read like any page, with both real engines (issue 12 finding 4).

A rendered text page is stored the ways such files arrive: 16-bit greyscale holding 8-bit values
(0..255, what Pillow's own `convert("I;16")` writes), 12-bit values (0..4095) or the full range,
as PNG and as TIFF in both byte orders; 32-bit float TIFF (0..1); and 16-bit-per-channel colour
PNG, which Pillow cannot write, so `write_png16` below does (Pillow reads only the high byte of
each such sample). Each must give the page's first words; a blank 16-bit page must read as blank,
not fail; a layout Pillow cannot read at full precision must be refused, never read as empty.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from ocr_daemon.config import Limits
from ocr_daemon.engines.images import ImageInput, normalise, vet
from ocr_daemon.errors import UnsupportedInput
from tests.conftest import render_page
from tests.harness import error_record, files_under, make_config, run_once, subprocess_env
from tests.test_cli_ocr_check import normalised_words, run, write_config
from tests.test_tesseract import ENGINES, EngineCache

LINES = [
    "Harbour office invoice for the month of June",
    "Payment is due within thirty days of receipt",
    "Please quote the reference on every letter",
]
FIRST_WORDS = ["harbour", "office", "invoice"]
NOTICE = "Trial Licenses"


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> EngineCache:
    return EngineCache(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="module")
def page() -> Image.Image:
    return render_page(LINES, size=(1500, 400))


def grey16(page: Image.Image, white: int) -> Image.Image:
    """The page in mode "I;16", black 0 and white `white` (255, 4095 or 65535)."""
    return page.convert("L").convert("I").point(lambda v: v * white / 255).convert("I;16")


def big_endian(image: Image.Image) -> Image.Image:
    return Image.frombytes("I;16B", image.size, swap_bytes(image.tobytes()))


def swap_bytes(data: bytes) -> bytes:
    swapped = bytearray(len(data))
    swapped[0::2], swapped[1::2] = data[1::2], data[0::2]
    return bytes(swapped)


def samples16(page: Image.Image, white: int) -> bytes:
    """`page`'s 8-bit samples as big-endian 16-bit ones: v becomes round(v * white / 255)."""
    data = page.tobytes()
    samples = bytearray(2 * len(data))
    samples[0::2] = data.translate(bytes((v * white + 127) // 255 >> 8 for v in range(256)))
    samples[1::2] = data.translate(bytes((v * white + 127) // 255 & 255 for v in range(256)))
    return bytes(samples)


def write_png16(path: Path, page: Image.Image, white: int) -> None:
    """`page` ("RGB", "RGBA" or "LA") as a PNG with 16 bits per sample, 0..`white` each."""
    colour_type = {"LA": 4, "RGB": 2, "RGBA": 6}[page.mode]
    samples = samples16(page, white)
    stride = 2 * len(page.getbands()) * page.width
    rows = b"".join(b"\0" + samples[at : at + stride] for at in range(0, len(samples), stride))
    header = struct.pack(">IIBBBBB", page.width, page.height, 16, colour_type, 0, 0, 0)
    chunks = [(b"IHDR", header), (b"IDAT", zlib.compress(rows)), (b"IEND", b"")]
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + b"".join(
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
            for kind, body in chunks
        )
    )


def write_tiff16(path: Path, page: Image.Image, white: int, order: str) -> None:
    """`page` ("RGB") as an uncompressed TIFF with 16 bits per sample, 0..`white` each, in byte
    `order` "<" (II) or ">" (MM): the directory, then BitsPerSample's values, then one strip."""
    width, height = page.size
    data = samples16(page, white) if order == ">" else swap_bytes(samples16(page, white))
    bits_at = 8 + 2 + 10 * 12 + 4
    shorts = {258: (3, bits_at), 259: (1, 1), 262: (1, 2), 277: (1, 3), 284: (1, 1)}
    longs = {256: width, 257: height, 273: bits_at + 6, 278: height, 279: len(data)}
    entries = {tag: struct.pack(f"{order}HHII", tag, 4, 1, value) for tag, value in longs.items()}
    for tag, (count, value) in shorts.items():
        packed = f"{order}HHIHH" if count == 1 else f"{order}HHII"
        entries[tag] = struct.pack(packed, tag, 3, count, value, *([0] if count == 1 else []))
    magic = b"II*\0" if order == "<" else b"MM\0*"
    directory = struct.pack(f"{order}IH", 8, len(entries))
    directory += b"".join(entries[tag] for tag in sorted(entries)) + struct.pack(f"{order}I", 0)
    path.write_bytes(magic + directory + struct.pack(f"{order}HHH", 16, 16, 16) + data)


def save(page: Image.Image, path: Path, case: str) -> None:
    """`page` saved at `path` (its name is the case) as `SAVERS[case]` writes it."""
    SAVERS[case](page, path)


def first_page(path: Path) -> Image.Image:
    vetted = vet(path, Limits())
    assert isinstance(vetted, ImageInput)
    return next(vetted.pages())


def text_without_notice(text: str) -> str:
    return text.replace(NOTICE, "").replace("*", "").strip()


SAVERS: dict[str, Callable[[Image.Image, Path], None]] = {
    "grey255.png": lambda page, path: grey16(page, 255).save(path),
    "grey4095.png": lambda page, path: grey16(page, 4095).save(path),
    "grey65535.png": lambda page, path: grey16(page, 65535).save(path),
    "grey255.tif": lambda page, path: grey16(page, 255).save(path),
    "grey255-msb.tif": lambda page, path: big_endian(grey16(page, 255)).save(path),
    "grey4095.tif": lambda page, path: grey16(page, 4095).save(path, compression="tiff_lzw"),
    "float.tif": lambda page, path: page.convert("F").point(lambda v: v / 255).save(path),
    "rgb255.png": lambda page, path: write_png16(path, page.convert("RGB"), 255),
    "rgba255.png": lambda page, path: write_png16(path, page.convert("RGBA"), 255),
    "rgb4095.png": lambda page, path: write_png16(path, page.convert("RGB"), 4095),
    "rgb65535.png": lambda page, path: write_png16(path, page.convert("RGB"), 65535),
    "rgb255-II.tif": lambda page, path: write_tiff16(path, page.convert("RGB"), 255, "<"),
    "rgb255-MM.tif": lambda page, path: write_tiff16(path, page.convert("RGB"), 255, ">"),
}
READABLE = list(SAVERS)


@pytest.mark.parametrize("case", READABLE)
def test_page_keeps_black_text_on_white(page: Image.Image, tmp_path: Path, case: str) -> None:
    path = tmp_path / case
    save(page, path, case)
    assert first_page(path).convert("L").getextrema() == (0, 255)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("case", READABLE)
def test_page_reads(
    engines: EngineCache, page: Image.Image, tmp_path: Path, name: str, case: str
) -> None:
    path = tmp_path / case
    save(page, path, case)
    result = engines[name].recognize(path)
    assert normalised_words(result.pages[0]) == FIRST_WORDS, result.pages[0]


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("white", [255, 65535])
def test_blank_page_reads_as_blank(
    engines: EngineCache, tmp_path: Path, name: str, white: int
) -> None:
    path = tmp_path / f"blank{white}.png"
    Image.new("I;16", (1500, 400), white).save(path)
    result = engines[name].recognize(path)
    assert result.page_count == 1
    assert text_without_notice(result.pages[0]) == ""


@pytest.mark.parametrize("name", ENGINES)
def test_ocr_command_prints_the_text_of_a_16_bit_page(
    page: Image.Image, tmp_path: Path, name: str
) -> None:
    path = tmp_path / "scan16.png"
    save(page, path, "grey255.png")
    config = write_config(tmp_path, engine=f'"{name}"')
    result = run(["ocr", "--config", str(config), str(path)], tmp_path, **subprocess_env())
    assert result.returncode == 0, result.stderr
    assert normalised_words(result.stdout) == FIRST_WORDS, result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ENGINES)
def test_daemon_writes_sidecars_for_16_bit_pages_and_fails_what_it_cannot_read(
    page: Image.Image, tmp_path: Path, name: str
) -> None:
    config = make_config(tmp_path, engine=name, workers=1, ocr_timeout_seconds=600)
    for case in ("grey255.png", "rgb255.png", "float.tif"):
        save(page, config.inbox / case, case)
    Image.new("I;16", (1500, 400), 255).save(config.inbox / "blank.png")
    write_png16(config.inbox / "grey-alpha.png", page.convert("LA"), 255)

    assert run_once(config) == 1  # one failed file

    for sidecar in ("grey255.txt", "rgb255.txt", "float.txt"):
        text = (config.outbox / sidecar).read_text()
        assert normalised_words(text) == FIRST_WORDS, (sidecar, text)
    assert text_without_notice((config.outbox / "blank.txt").read_text()) == ""
    record = error_record(config, "grey-alpha.png")
    assert record["reason"] == "unsupported"
    assert "fewer than 16 bits" in record["message"]
    assert files_under(config.inbox) == []


def test_grey_with_alpha_in_16_bits_is_refused_by_name(page: Image.Image, tmp_path: Path) -> None:
    """Pillow has no low-byte reader for 16-bit grey+alpha PNG: refused, not read as blank."""
    path = tmp_path / "grey-alpha.png"
    write_png16(path, page.convert("LA"), 255)
    with pytest.raises(UnsupportedInput, match=r"LA;16B.*fewer than 16 bits") as caught:
        first_page(path)
    assert str(path) in str(caught.value)
    write_png16(path, page.convert("LA"), 65535)  # full range: the high bytes are the page
    assert first_page(path).convert("L").getextrema() == (0, 255)


@pytest.mark.parametrize(
    ("mode", "background", "square", "extrema"),
    [
        ("I;16", 255, 0, (0, 255)),
        ("I;16B", 255, 0, (0, 255)),
        ("I;16", 4095, 0, (0, 255)),
        ("I;16", 65535, 0, (0, 255)),
        ("I;16", 4095, 2048, (128, 255)),
        ("I;16", 200, 100, (100, 200)),  # 8-bit data: unchanged
        ("I;16", 3000, 0, (0, 187)),  # 12 bits: 4095 is white
        ("I", 255, 0, (0, 255)),
        ("I", 200000, 100000, (0, 255)),  # over 16 bits: its own range
        ("F", 1.0, 0.0, (0, 255)),
        ("F", 0.5, 0.25, (64, 128)),
        ("F", 255.0, 0.0, (0, 255)),
        ("F", 1.0, -1.0, (0, 255)),  # negative values: their own range
        ("I;16", 255, 255, (255, 255)),  # blank pages stay white
        ("I;16", 65535, 65535, (255, 255)),
        ("F", -2.0, -2.0, (255, 255)),
    ],
)
def test_normalise_maps_the_real_range(
    mode: str, background: float, square: float, extrema: tuple[int, int]
) -> None:
    """A 40x40 page of `background` with a 20x20 square of `square`, in "L"."""
    image = Image.new(mode, (40, 40), background)
    image.paste(Image.new(mode, (20, 20), square), (0, 0))
    result = normalise(image)
    assert result.mode == "L"
    assert result.getextrema() == extrema
