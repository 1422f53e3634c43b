"""Page orientation: detect a 0/90/180/270° rotated page with Tesseract's OSD and turn it upright.

Runs inside a worker, on a page `images` has already decoded and turned upright per EXIF, for
either engine (Aspose reads nothing useful on pages turned 90° or 180°). One OSD-only Tesseract
instance per process, built at first use from ``osd.traineddata``; it releases the GIL.

OSD's answer is taken as it is when it is confident: on the real-scan corpus the rotated pages
scored 9.3-11.0 and upright pages 4.3-30.1; `MIN_CONFIDENCE` sits between. Below it OSD is often
right but not always: a two-line page turned 180° scores 3.1-4.7 (and is guessed right), but one
upright German Antiqua page was called "180°" at 3.6 (script detected as Thai). So when OSD is
unsure *and* guesses a turn, a second look decides: Tesseract reads a window of the page as it
is and turned, and the turn is kept only if its mean word confidence is `JUDGE_MARGIN` points
higher (two-line pages: 84-95 upright vs 21-36 upside down; the Antiqua page: 82 vs 39). Neither
engine's own output can judge for Aspose: its evaluation mode cuts the text to a prefix and its
line confidences are all 0.0. Upright pages that OSD calls upright, however unsure, cost nothing
extra; pages OSD cannot judge at all (one line) are left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from ocr_daemon.config import Config, languages
from ocr_daemon.errors import EngineUnavailable

MIN_CONFIDENCE = 6.0
MAX_OSD_SIDE_PX = 2400  # OSD needs no more; larger pages are scaled down for detection only
JUDGE_MARGIN = 10  # mean word confidence (0-100) a doubted turn must gain to be kept
JUDGE_WINDOW_PX = 800  # the second look reads at most this square of the page's text
SECOND_LOOK = True  # benchmarks/orientation_bench.py switches it off to measure its cost

_apis: dict[Path | None, Any] = {}
_judges: dict[tuple[Path, str], Any] = {}


def as_configured(page: Image.Image, config: Config) -> Image.Image:
    """`page` made upright when `config.orientation` is on."""
    return turned(page, config)[0]


def turned(page: Image.Image, config: Config) -> tuple[Image.Image, int]:
    """`page` made upright when `config.orientation` is on (both engines call this), and the
    degrees clockwise it was turned (0 when it was not), as a page layout records them."""
    if not config.orientation:
        return page, 0
    degrees = detect_rotation(page, config.tesseract.tessdata_dir, config.languages)
    return (page.rotate(degrees, expand=True) if degrees else page), clockwise(degrees)


def clockwise(counter_clockwise: int) -> int:
    """The clockwise turn equal to `counter_clockwise` degrees (Pillow's sense of rotation)."""
    return (360 - counter_clockwise) % 360


def upright(
    page: Image.Image, tessdata_dir: Path | None = None, langs: Sequence[str] = ("eng",)
) -> Image.Image:
    """`page` rotated so its text reads left to right; the page itself when already upright."""
    degrees = detect_rotation(page, tessdata_dir, langs)
    return page.rotate(degrees, expand=True) if degrees else page


def detect_rotation(
    page: Image.Image, tessdata_dir: Path | None = None, langs: Sequence[str] = ("eng",)
) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) that make `page` upright: OSD's answer when
    it is sure, else the turn it guesses if a second look in `langs` confirms it, else 0."""
    found = osd_guess(page, tessdata_dir)
    if found is None:
        return 0
    degrees, confidence = found
    if degrees == 0 or confidence >= MIN_CONFIDENCE:
        return degrees
    return degrees if SECOND_LOOK and _turn_reads_better(page, degrees, tessdata_dir, langs) else 0


def osd_guess(page: Image.Image, tessdata_dir: Path | None = None) -> tuple[int, float] | None:
    """OSD's (degrees, confidence), or None when it finds too little text to judge."""
    api = _osd_api(tessdata_dir)
    api.SetImage(_for_detection(page))
    try:
        found = api.DetectOrientationScript()
    except RuntimeError:
        return None
    finally:
        api.Clear()
    if not found:
        return None
    return int(found["orient_deg"]) % 360, float(found["orient_conf"])


def _turn_reads_better(
    page: Image.Image, degrees: int, tessdata_dir: Path | None, langs: Sequence[str]
) -> bool:
    """Whether Tesseract reads the page's text window turned by `degrees` with clearly higher
    confidence than as it is. False when no language data is installed to read it with."""
    judge = _judge_api(tessdata_dir, langs)
    if judge is None:
        return False
    window = _text_window(_for_detection(page))
    as_is = _mean_confidence(judge, window)
    turned = _mean_confidence(judge, window.rotate(degrees, expand=True))
    return turned >= as_is + JUDGE_MARGIN


def _text_window(page: Image.Image) -> Image.Image:
    """The central `JUDGE_WINDOW_PX` square of the page's inked area (all of it if smaller)."""
    ink = ImageOps.invert(page.convert("L")).point(lambda v: 255 if v > 96 else 0).getbbox()
    if ink is None:
        return page
    left, top, right, bottom = ink
    half_w = min(right - left, JUDGE_WINDOW_PX) // 2
    half_h = min(bottom - top, JUDGE_WINDOW_PX) // 2
    x, y, pad = (left + right) // 2, (top + bottom) // 2, 8  # a white margin, inside the page
    box = (x - half_w - pad, y - half_h - pad, x + half_w + pad, y + half_h + pad)
    return page.crop((max(0, box[0]), max(0, box[1]), min(page.width, box[2]),
                      min(page.height, box[3])))  # fmt: skip


def _mean_confidence(api: Any, image: Image.Image) -> int:
    api.SetImage(image)
    try:
        api.GetUTF8Text()
        return int(api.MeanTextConf())
    finally:
        api.Clear()


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


def _judge_api(tessdata_dir: Path | None, langs: Sequence[str]) -> Any:
    """The process's Tesseract reader for the second look: the configured languages that are
    installed, else English; None when neither is."""
    tessdata = languages.find_tessdata(tessdata_dir)
    installed = set(languages.installed_tesseract(tessdata))
    names = [name for name in languages.tesseract_names(langs) if name in installed]
    names = names or (["eng"] if "eng" in installed else [])
    if tessdata is None or not names:
        return None
    key = (tessdata, "+".join(names))
    if key not in _judges:
        import tesserocr  # noqa: PLC0415 - only in processes that recognise

        _judges[key] = tesserocr.PyTessBaseAPI(
            path=f"{tessdata}/", lang=key[1], psm=tesserocr.PSM.AUTO
        )
    return _judges[key]
