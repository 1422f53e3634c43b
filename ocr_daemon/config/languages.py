"""The one language setting both engines understand: ISO 639-2 codes mapped to each engine's names.

Owns: which ISO 639-2 codes are known, their Aspose `Language` member and Tesseract traineddata
names, where Tesseract's data lives (`find_tessdata`), and the load-time check that every
configured language is usable offline by the engine that will read it. Pure data and filesystem
look-ups: importing this module imports no engine, so the config loader and `check` may use it.

Aspose: its Latin-script languages are built in (measured offline, see the engine notes); other
scripts need a model file that it would otherwise download, so they are accepted only when that
file has been put in the resources folder. Aspose reads one language per call: the first
configured code is used (its Latin models read unaccented English text fine).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

TESSDATA_ENV = "TESSDATA_PREFIX"
OSD_MODEL = "osd"
SYSTEM_TESSDATA = (
    Path("/usr/share/tesseract-ocr/5/tessdata"),
    Path("/usr/share/tesseract-ocr/4.00/tessdata"),
    Path("/usr/share/tessdata"),
)

# ISO 639-2/T code -> Aspose Language member, for the languages Aspose reads without a download.
ASPOSE_BUILTIN: dict[str, str] = {
    code: code.upper()
    for code in [
        "eng",
        "deu",
        "fra",
        "spa",
        "por",
        "ita",
        "ces",
        "dan",
        "nld",
        "est",
        "fin",
        "lav",
        "lit",
        "nor",
        "pol",
        "ron",
        "slk",
        "slv",
        "swe",
        "hun",
        "tur",
        "vie",
        "ind",
        "cat",
        "afr",
        "hrv",
        "bos",
        "hbs",
    ]
}
# ISO 639-2 code -> (Aspose member, the model file it needs in the resources folder).
ASPOSE_WITH_MODEL: dict[str, tuple[str, str]] = {
    **{
        c: (c.upper(), "aspose-ocr-cyrillic-v1.ocr")
        for c in ("rus", "ukr", "bel", "bul", "kaz", "srp", "mon")
    },
    "chi": ("CHINESE", "aspose-ocr-chinese-v2.ocr"),
    "zho": ("CHINESE", "aspose-ocr-chinese-v2.ocr"),
    "hin": ("HIN", "aspose-ocr-hindi-v2.ocr"),
    "mar": ("MAR", "aspose-ocr-hindi-v2.ocr"),
    "nep": ("NEP", "aspose-ocr-hindi-v2.ocr"),
    "ara": ("ARA", "aspose-ocr-arabic-v1.ocr"),
    "per": ("PES", "aspose-ocr-arabic-v1.ocr"),
    "fas": ("PES", "aspose-ocr-arabic-v1.ocr"),
    "urd": ("URD", "aspose-ocr-arabic-v1.ocr"),
    "kor": ("KOR", "aspose-ocr-korean-v1.ocr"),
    "jpn": ("JPN", "aspose-ocr-japanese-v1.ocr"),
    "tam": ("TAM", "aspose-ocr-tamil-v1.ocr"),
    "tel": ("TEL", "aspose-ocr-telugu-v1.ocr"),
    "kan": ("KAN", "aspose-ocr-kannada-v1.ocr"),
}
# Aspose detect_areas_mode -> the model it downloads at first use (LEAN and UNIVERSAL need none).
ASPOSE_MODE_MODELS: dict[str, str] = {
    "MULTICOLUMN": "aspose-ocr-document-structure-detection-v2.ocr",
    "DOCUMENT_LAYOUT": "aspose-ocr-document-structure-detection-v2.ocr",
    "TABLE": "aspose-ocr-advanced-recognition-v1.ocr",
    "CURVED_TEXT": "aspose-ocr-advanced-recognition-v1.ocr",
    "FORMULA": "aspose-ocr-formula-det-v1.ocr",
}
# ISO 639-2 code -> Tesseract traineddata name, where they differ.
TESSERACT_NAMES: dict[str, str] = {
    "chi": "chi_sim",
    "zho": "chi_sim",
    "per": "fas",
    "hbs": "hrv",
}
# ISO 639-2/B (bibliographic) codes and their /T equivalent.
B_TO_T = {
    "ger": "deu",
    "fre": "fra",
    "cze": "ces",
    "dut": "nld",
    "rum": "ron",
    "slo": "slk",
    "ice": "isl",
    "gre": "ell",
    "arm": "hye",
    "geo": "kat",
    "mac": "mkd",
    "may": "msa",
    "alb": "sqi",
    "baq": "eus",
    "wel": "cym",
    "bur": "mya",
    "tib": "bod",
}
TESSERACT_ONLY = frozenset(
    [
        "isl",
        "ell",
        "hye",
        "kat",
        "mkd",
        "msa",
        "sqi",
        "eus",
        "cym",
        "mya",
        "bod",
        "heb",
        "tha",
        "gle",
        "glg",
        "epo",
        "lat",
        "ben",
        "guj",
        "pan",
        "mal",
        "sin",
        "khm",
        "lao",
        "amh",
        "aze",
        "uzb",
        "kir",
        "tgk",
        "tat",
        "yid",
    ]
)
KNOWN = frozenset({*ASPOSE_BUILTIN, *ASPOSE_WITH_MODEL, *TESSERACT_NAMES, *TESSERACT_ONLY})


def canonical(code: str) -> str:
    """`code` lower-cased with /B codes mapped to /T; ValueError naming it if unknown."""
    if not isinstance(code, str):
        raise TypeError(f"expected an ISO 639-2 code string, got {code!r}")
    iso = B_TO_T.get(code.lower(), code.lower())
    if iso not in KNOWN:
        raise ValueError(f"unknown language {code!r}: expected ISO 639-2 codes such as eng, fra")
    return iso


def parse_languages(value: object) -> tuple[str, ...]:
    """The `languages` key: a non-empty list of ISO 639-2 codes, duplicates dropped."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise TypeError('expected a non-empty list of ISO 639-2 codes, e.g. ["fra", "eng"]')
    return tuple(dict.fromkeys(canonical(code) for code in value))


def tesseract_names(languages: Sequence[str]) -> list[str]:
    return [TESSERACT_NAMES.get(code, code) for code in languages]


def tesseract_lang(languages: Sequence[str]) -> str:
    """Tesseract's `lang` argument: traineddata names joined by '+', e.g. "fra+eng"."""
    return "+".join(tesseract_names(languages))


def aspose_language(languages: Sequence[str]) -> str:
    """The Aspose `Language` member for the first language (Aspose reads one per call)."""
    first = languages[0]
    if first in ASPOSE_BUILTIN:
        return ASPOSE_BUILTIN[first]
    if first in ASPOSE_WITH_MODEL:
        return ASPOSE_WITH_MODEL[first][0]
    raise ValueError(f"language {first!r} is not supported by the Aspose engine")


def find_tessdata(configured: Path | None = None) -> Path | None:
    """The first tessdata folder holding traineddata: `configured`, $TESSDATA_PREFIX, the venv's
    provisioned copy (`.venv/native/tessdata`, see `make setup`), then the system's."""
    if configured is not None:
        return configured
    env = os.environ.get(TESSDATA_ENV)
    candidates = [Path(env)] if env else []
    candidates += [Path(sys.prefix) / "native" / "tessdata", *SYSTEM_TESSDATA]
    for folder in candidates:
        if any(folder.glob("*.traineddata")):
            return folder
    return None


def installed_tesseract(tessdata: Path | None) -> list[str]:
    """Traineddata names present in `tessdata` (sorted)."""
    if tessdata is None or not tessdata.is_dir():
        return []
    return sorted(p.name.removesuffix(".traineddata") for p in tessdata.glob("*.traineddata"))


def missing_for_tesseract(languages: Sequence[str], tessdata: Path | None) -> list[str]:
    have = set(installed_tesseract(tessdata))
    return [name for name in tesseract_names(languages) if name not in have]


def check_for_engine(
    engine: str, languages: Sequence[str], tessdata: Path | None, aspose_resources: Path
) -> str | None:
    """Why `languages` cannot be used by `engine` here, or None when they can."""
    if engine == "tesseract":
        return _tesseract_problem(languages, tessdata)
    if engine == "aspose":
        return _aspose_problem(languages[0], aspose_resources)
    return None  # plug-in engines interpret languages themselves


def _tesseract_problem(languages: Sequence[str], tessdata: Path | None) -> str | None:
    missing = missing_for_tesseract(languages, tessdata)
    if not missing:
        return None
    return (
        f"Tesseract language data not installed: {', '.join(missing)} (looked in "
        f"{tessdata or 'no tessdata folder found'}); run `make setup` (it provisions eng, osd, "
        "fra, deu), install Debian's tesseract-ocr-<lang> packages, or set tesseract.tessdata_dir"
    )


def _aspose_problem(first: str, resources: Path) -> str | None:
    if first in ASPOSE_BUILTIN:
        return None
    if first not in ASPOSE_WITH_MODEL:
        return f"language {first!r} is not supported by the Aspose engine; use tesseract"
    model = ASPOSE_WITH_MODEL[first][1]
    if (resources / model).is_file():
        return None
    return (
        f"language {first!r} needs the Aspose model {model}, which is not in {resources}; "
        "automatic downloads are off (they hang or fail offline). Put the .ocr file there, "
        "or use the tesseract engine for this language"
    )
