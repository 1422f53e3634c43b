"""Page orientation: detect a 0/90/180/270° rotated page with Tesseract's OSD and turn it upright.

Runs inside a worker, on a page `images` has already decoded and turned upright per EXIF, for
either engine (Aspose reads nothing useful on pages turned 90° or 180°). One OSD-only Tesseract
instance per process, built at first use from ``osd.traineddata``; it releases the GIL.

A page is turned only when OSD is confident: on the real-scan corpus the rotated pages scored
9.3-11.0 and upright pages 4.3-30.1, but one upright German Antiqua page was called "180°" at 3.6
(script detected as Thai); `MIN_CONFIDENCE` sits between. Pages OSD cannot judge (too little
text) are left as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from ocr_daemon import languages
from ocr_daemon.config import Config
from ocr_daemon.errors import EngineUnavailable

MIN_CONFIDENCE = 6.0
MAX_OSD_SIDE_PX = 2400  # OSD needs no more; larger pages are scaled down for detection only

_apis: dict[Path | None, Any] = {}


def as_configured(page: Image.Image, config: Config) -> Image.Image:
    """`page` made upright when `config.orientation` is on (both engines call this)."""
    return upright(page, config.tesseract.tessdata_dir) if config.orientation else page


def upright(page: Image.Image, tessdata_dir: Path | None = None) -> Image.Image:
    """`page` rotated so its text reads left to right; the page itself when already upright."""
    degrees = detect_rotation(page, tessdata_dir)
    return page.rotate(degrees, expand=True) if degrees else page


def detect_rotation(page: Image.Image, tessdata_dir: Path | None = None) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) that make `page` upright."""
    api = _osd_api(tessdata_dir)
    api.SetImage(_for_detection(page))
    try:
        found = api.DetectOrientationScript()
    except RuntimeError:
        return 0
    finally:
        api.Clear()
    if not found or found["orient_conf"] < MIN_CONFIDENCE:
        return 0
    return int(found["orient_deg"]) % 360


def _for_detection(page: Image.Image) -> Image.Image:
    longest = max(page.size)
    if longest <= MAX_OSD_SIDE_PX:
        return page
    scale = MAX_OSD_SIDE_PX / longest
    return page.resize((round(page.width * scale), round(page.height * scale)))


def _osd_api(tessdata_dir: Path | None) -> Any:
    """The process's OSD instance for `tessdata_dir`, built at first use (looking for the data
    once, not on every page)."""
    if tessdata_dir not in _apis:
        _apis[tessdata_dir] = _build_osd_api(tessdata_dir)
    return _apis[tessdata_dir]


def _build_osd_api(tessdata_dir: Path | None) -> Any:
    tessdata = languages.find_tessdata(tessdata_dir)
    if tessdata is None or languages.missing_for_tesseract([languages.OSD_MODEL], tessdata):
        raise EngineUnavailable(
            f"page orientation needs Tesseract's osd.traineddata (looked in "
            f"{tessdata or 'no tessdata folder'}); run `make setup` or set orientation = false"
        )
    import tesserocr  # noqa: PLC0415 - only in processes that recognise

    return tesserocr.PyTessBaseAPI(
        path=f"{tessdata}/", lang=languages.OSD_MODEL, psm=tesserocr.PSM.OSD_ONLY
    )
