"""What the orientation second look costs: pages/min of both engines with it on and off.

The second look (`ocr_daemon.orientation.SECOND_LOOK`) runs only when Tesseract's OSD is unsure of
a turn it guesses; it then reads an 800 px window of the page twice with Tesseract. This runs
the daemon's own engine classes, warm, with `orientation = true`, in one spawned process per
engine, on the real-scan corpus (../shared/corpus/real; skipped with a message when absent) plus
two rendered two-line pages (upright, and turned 180°, the case the second look is for). Each
file is read with the second look on and off, in an order that alternates file by file, so load
drift hits both. Pages/min counts the wall time of `recognize()` (vetting, orientation, OCR).

    .venv/bin/python benchmarks/orientation_bench.py [--engines aspose,tesseract] [--rounds N]

Prints the table and writes benchmarks/results/orientation.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import report

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "real"
SHORT = ("The quick brown fox jumps over the lazy dog", "Pack my box with five dozen jugs")


def serve(conn: Connection, engine_name: str) -> None:
    """Spawned process: one warm engine per language set; answers (path, langs, second_look)
    with (first words, pages, seconds, second looks taken)."""
    import dataclasses  # noqa: PLC0415

    sys.path.insert(0, str(REPO))
    from ocr_daemon.config import Config  # noqa: PLC0415
    from ocr_daemon.engines import orientation  # noqa: PLC0415
    from ocr_daemon.engines.base import load_engine  # noqa: PLC0415

    looks = [0]
    judge = orientation._turn_reads_better

    def counted(*args: Any) -> bool:
        looks[0] += 1
        return judge(*args)

    orientation._turn_reads_better = counted  # type: ignore[assignment]
    base = Config(engine=engine_name, state_dir=Path(tempfile.mkdtemp(prefix="orient-")))
    engines: dict[tuple[str, ...], Any] = {}
    while (request := conn.recv()) is not None:
        path, langs, second_look = request
        if langs not in engines:
            engines[langs] = load_engine(dataclasses.replace(base, languages=langs))
            engines[langs].warm_up()
            engines[langs].recognize(Path(path))  # loads this language's model: not timed
        orientation.SECOND_LOOK = second_look
        looks[0] = 0
        started = time.perf_counter()
        result = engines[langs].recognize(Path(path))
        seconds = time.perf_counter() - started
        conn.send((" ".join(result.text.split()[:3]), result.page_count, seconds, looks[0]))


def inputs(folder: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """The corpus files with their languages (those installed), then the two rendered pages."""
    sys.path.insert(0, str(REPO))
    from ocr_daemon.config import languages  # noqa: PLC0415
    from tests.conftest import render_page  # noqa: PLC0415

    files: list[tuple[Path, tuple[str, ...]]] = []
    if CORPUS.is_dir():
        installed = set(languages.installed_tesseract(languages.find_tessdata()))
        for entry in json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8")):
            wanted = [code.split()[0] for code in entry["lang"].split("+")]
            langs = tuple(code for code in wanted if code in installed) or ("eng",)
            files.append((CORPUS / entry["file"], langs))
    else:
        print(f"real-scan corpus not found at {CORPUS}: rendered pages only", flush=True)
    page = render_page(list(SHORT), size=(1200, 300))
    page.save(folder / "short_upright.png")
    page.rotate(180).save(folder / "short_rot180.png")
    files += [(folder / "short_upright.png", ("eng",)), (folder / "short_rot180.png", ("eng",))]
    return files


def run(engine_names: list[str], rounds: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="orient-pages-"))
    files = inputs(folder)
    context = multiprocessing.get_context("spawn")
    rows: list[dict[str, Any]] = []
    for name in engine_names:
        parent, child = context.Pipe()
        proc = context.Process(target=serve, args=(child, name), daemon=True)
        proc.start()
        for number, (path, langs) in enumerate(files * rounds):
            for look in (True, False) if number % 2 == 0 else (False, True):
                parent.send((str(path), langs, look))
                start, pages, seconds, looks = parent.recv()
                rows.append(
                    {
                        "engine": name,
                        "file": path.name,
                        "second_look": look,
                        "pages": pages,
                        "seconds": seconds,
                        "looks": looks,
                        "starts": start,
                    }
                )
        parent.send(None)
        proc.join(timeout=30)
    return {"machine": report.machine(), "rounds": rounds, "rows": rows}


def summarise(result: dict[str, Any], engine_names: list[str]) -> None:
    table = []
    for name in engine_names:
        for look in (False, True):
            mine = [r for r in result["rows"] if r["engine"] == name and r["second_look"] == look]
            pages = sum(r["pages"] for r in mine)
            seconds = sum(r["seconds"] for r in mine)
            rot = [r["starts"] for r in mine if r["file"] == "short_rot180.png"]
            table.append(
                [
                    name,
                    "on" if look else "off",
                    pages,
                    f"{seconds:.1f}",
                    f"{60 * pages / seconds:.1f}",
                    sum(r["looks"] for r in mine),
                    rot[0] if rot else "-",
                ]
            )
    report.table(
        "orientation second look: pages/min with it off and on",
        ["engine", "2nd look", "pages", "seconds", "pages/min", "looks", "short 180° page reads"],
        table,
    )
    looked = sorted({(r["engine"], r["file"]) for r in result["rows"] if r["looks"]})
    print("second looks taken on:", ", ".join(f"{e}:{f}" for e, f in looked) or "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", default="aspose,tesseract")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    engine_names = args.engines.split(",")
    result = run(engine_names, args.rounds)
    summarise(result, engine_names)
    report.write_result("orientation", result)


if __name__ == "__main__":
    main()
