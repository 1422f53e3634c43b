"""Aspose, for real, in every language it reads offline: lines come back as written, accents too.

Issue 12 finding 6 reported `fra`, `deu` and `EXT_LATIN` ending every line but the last with a
stray letter (`La Grèce Antiquek`). On clean pages that never happened here (26.10.0 and 26.9.1,
all fonts, sizes, modes and settings tried); it did on a page that itself carries a mark at the
end of each line but the last, which is what Pillow draws for CRLF text laid out without raqm
(the `\\r` becomes a .notdef box): those models read the box as a letter (`[`, `]`, `ß`, ...),
while `eng`/`LATIN` drop it along with every accent. So these tests render clean LF text and
check what each language model does with it; `test_the_check_sees_a_mark_at_each_line_end`
shows the check fails on the page that reproduces the report.

Evaluation mode returns only the first ~2 lines of such a page (cut mid-line), so the checks look
at the lines that come back whole: all returned lines but the last.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ocr_daemon.config import AsposeSettings, Config, languages
from ocr_daemon.engines.aspose import AsposeEngine
from tests.conftest import FONT_FILE, render_page

LINES = [
    "La Grèce Antique et le théâtre grec",
    "Über die Brücke gehen wir schön langsam",
    "Zwölf Boxkämpfer jagen Viktor quer",
    "Les élèves étudient la tragédie",
    "Die Straße führt zum großen Fluß",
    "Noël où êtes-vous maintenant",
]
BANNER = "***** Trial Licenses *****"
# Aspose language -> words it must return with their accents from LINES (measured: each model
# reads its own alphabet; e.g. DEU returns "Grece" and FRA returns "schon")
ACCENTED = {
    "DEU": ("Über", "Brücke"),
    "FRA": ("Grèce", "théâtre"),
    "EXT_LATIN": ("Grèce", "théâtre", "Über", "Brücke"),
}
ASPOSE_LANGUAGES = sorted({*languages.ASPOSE_BUILTIN.values(), "EXT_LATIN", "LATIN"})


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scans") / "accents.png"
    render_page(LINES, size=(1800, 900)).save(path)
    return path


def recognise(path: Path, language: str, state_dir: Path) -> str:
    config = Config(state_dir=state_dir, aspose=AsposeSettings(language=language))
    result = AsposeEngine(config).recognize(path)
    if result.evaluation_mode:  # the notice stays in the text, whatever the language
        assert BANNER in result.text
    return result.text


def whole_lines(text: str) -> list[str]:
    """The returned lines but the last (evaluation mode cuts the last one short), notice off."""
    body = text.split(BANNER, maxsplit=1)[0].rstrip("* \n")
    return [line.strip() for line in body.split("\n")][:-1]


def stray_endings(got: list[str], source: list[str]) -> list[tuple[str, str]]:
    """(returned, source) pairs whose last word came back longer than it is: a letter was added
    after the text. Substitutions (`grec` -> `gred`) are misreads, not counted here."""
    return [
        (line, want)
        for line, want in zip(got, source, strict=False)
        if len(line.split()[-1] if line.split() else "") > len(want.split()[-1])
    ]


@pytest.mark.parametrize("language", ASPOSE_LANGUAGES)
def test_no_stray_letter_at_line_ends(scan: Path, tmp_path: Path, language: str) -> None:
    got = whole_lines(recognise(scan, language, tmp_path))
    assert got, "no whole line came back"
    assert stray_endings(got, LINES) == []


@pytest.mark.parametrize("language", sorted(ACCENTED))
def test_accents_come_back(scan: Path, tmp_path: Path, language: str) -> None:
    text = recognise(scan, language, tmp_path)
    assert [word for word in ACCENTED[language] if word not in text] == [], text


def test_languages_key_picks_the_accented_model(scan: Path, tmp_path: Path) -> None:
    """`languages = ["fra", "eng"]` reads French accents; `["eng"]` (the default) drops them."""
    french = AsposeEngine(Config(state_dir=tmp_path, languages=("fra", "eng")))
    english = AsposeEngine(Config(state_dir=tmp_path))
    assert "Grèce" in french.recognize(scan).text
    assert "Grece" in english.recognize(scan).text


def test_the_check_sees_a_mark_at_each_line_end(tmp_path: Path) -> None:
    """The page behind the report: CRLF text drawn without raqm ends each line but the last
    with a .notdef box, which FRA returns as a letter. The check above flags it."""
    font = ImageFont.truetype(str(FONT_FILE), 40, layout_engine=ImageFont.Layout.BASIC)
    page = Image.new("RGB", (1800, 900), "white")
    ImageDraw.Draw(page).multiline_text((40, 40), "\r\n".join(LINES), fill="black", font=font)
    path = tmp_path / "crlf.png"
    page.save(path)
    got = whole_lines(recognise(path, "FRA", tmp_path))
    assert stray_endings(got, LINES), got
