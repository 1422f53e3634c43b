"""The fixed page set: the real scans in ../shared/corpus/real plus pages rendered here with
Pillow and DejaVu fonts (a dense A4 page, a two-page A4 PDF, a small two-line page).

`--quick` keeps a representative subset (small, medium and dense pages; one PDF; one multipage
file). Every file is given an mtime in the past, so a daemon started on it treats the files as
complete at once (as for a batch that has been sitting in the inbox).
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import time
from pathlib import Path

from daemonproc import REPO
from PIL import Image, ImageDraw, ImageFont

CORPUS = REPO.parent / "shared" / "corpus" / "real"
FONTS = Path(sys.prefix) / "native" / "fonts"
QUICK_CORPUS = (
    "01_phototest.tif",
    "04_eurotext.tif",
    "09_oldbook_h020.tiff",
    "10_oldbook_c017-c019_multipage.tif",
    "12_fr_dictee_scan.pdf",
    "19_deposition_scan.png",
)
A4_300DPI = (2480, 3508)
VOCABULARY = (
    "the of and to in is was for that with as on by at from this which are be or an have it not "
    "daemon inbox scan page letter invoice report quarterly meeting account customer delivery "
    "number total amount payment received section chapter summary figure table results method "
    "engine worker process throughput latency memory document archive office machine quality"
)


def corpus_files(quick: bool) -> list[Path]:
    """The real scans to use, or [] with a printed message when the corpus is absent."""
    if not CORPUS.is_dir():
        print(f"corpus not found at {CORPUS}: using rendered pages only", flush=True)
        return []
    files = sorted(p for p in CORPUS.iterdir() if p.is_file() and not _is_metadata(p))
    if quick:
        files = [p for p in files if p.name in QUICK_CORPUS]
    return files


def _is_metadata(path: Path) -> bool:
    return path.name.endswith(".gt.txt") or path.suffix in (".md", ".json")


def build(dest: Path, quick: bool) -> list[Path]:
    """Copy the corpus pages and render the extra ones into `dest`; returns them in name order."""
    dest.mkdir(parents=True, exist_ok=True)
    for source in corpus_files(quick):
        shutil.copyfile(source, dest / source.name)
    render_text_page(dest / "r1_rendered_a4_dense.png", lines=45, seed=1)
    if not quick:
        render_pdf(dest / "r2_rendered_a4_2pages.pdf", pages=2, seed=2)
        render_small_page(dest / "r3_rendered_small.png")
    files = sorted(dest.iterdir())
    backdate(files)
    return files


def backdate(files: list[Path], age_s: float = 3600.0) -> None:
    old = time.time() - age_s
    for path in files:
        os.utime(path, (old, old))


def _font(
    size_px: int, name: str = "DejaVuSerif.ttf"
) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONTS / name
    if path.is_file():
        return ImageFont.truetype(str(path), size_px)
    return ImageFont.load_default(size=size_px)


def text_page(lines: int, seed: int) -> Image.Image:
    """An A4 page at 300 dpi with `lines` lines of 10-12 words in 11 pt serif."""
    rng = random.Random(seed)
    words_list = VOCABULARY.split()
    page = Image.new("L", A4_300DPI, 255)
    draw = ImageDraw.Draw(page)
    font = _font(44)
    for number in range(lines):
        words = " ".join(rng.choice(words_list) for _ in range(rng.randint(10, 12)))
        draw.text((200, 220 + number * 68), words.capitalize() + ".", fill=0, font=font)
    return page


def render_text_page(path: Path, lines: int, seed: int) -> Path:
    text_page(lines, seed).save(path, dpi=(300, 300))
    return path


def render_pdf(path: Path, pages: int, seed: int) -> Path:
    images = [text_page(40, seed + n) for n in range(pages)]
    images[0].save(path, "PDF", resolution=300.0, save_all=True, append_images=images[1:])
    return path


def render_small_page(path: Path) -> Path:
    """A 1200x300 page with two lines: the fastest real recognition (for latency runs)."""
    page = Image.new("L", (1200, 300), 255)
    draw = ImageDraw.Draw(page)
    font = _font(40, "DejaVuSans.ttf")
    draw.text((40, 60), "Sphinx of black quartz, judge my vow", fill=0, font=font)
    draw.text((40, 160), "How vexingly quick daft zebras jump", fill=0, font=font)
    page.save(path)
    return path
