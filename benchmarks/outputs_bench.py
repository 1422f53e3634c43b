"""What the searchable PDF costs: pages/min with the .txt alone vs .txt + PDF, and PDF size.

For each corpus document (../shared/corpus/real, or `--corpus`), in one process per engine, warm:
`recognize()` (vetting, orientation, OCR: all the .txt needs) is timed, then
`formats.pdf.searchable_pdf()` on the same result; pages/min is pages over the summed wall time
of the first, and of both. The PDF's size is compared with the input's bytes (goal: at most
1.1 x input + the text). Timings are figures to read, not assertions.

    .venv/bin/python benchmarks/outputs_bench.py [--engines tesseract,aspose] [--pdfa]
        [--corpus DIR] [--only 01,08]

Prints the tables and writes benchmarks/results/outputs.json.
"""

from __future__ import annotations

import argparse
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
SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".pdf")


def serve(conn: Connection, engine_name: str, pdfa: bool) -> None:
    """Spawned process: one warm engine; answers a path with (pages, ocr s, pdf s, pdf bytes,
    text chars)."""
    sys.path.insert(0, str(REPO))
    from ocr_daemon.config import Config  # noqa: PLC0415
    from ocr_daemon.engines.base import load_engine  # noqa: PLC0415
    from ocr_daemon.formats.pdf import searchable_pdf  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as state:
        engine = load_engine(Config(engine=engine_name, state_dir=Path(state)))
        engine.warm_up()
        conn.send("ready")
        while (path := conn.recv()) is not None:
            start = time.perf_counter()
            result = engine.recognize(Path(path))
            ocr_s = time.perf_counter() - start
            start = time.perf_counter()
            pdf = searchable_pdf(Path(path), result, pdfa=pdfa)
            pdf_s = time.perf_counter() - start
            conn.send((result.page_count, ocr_s, pdf_s, len(pdf), result.chars))


def run_engine(name: str, files: list[Path], pdfa: bool) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=serve, args=(theirs, name, pdfa))
    proc.start()
    assert ours.recv() == "ready"
    rows = []
    for path in files:
        ours.send(str(path))
        pages, ocr_s, pdf_s, pdf_bytes, chars = ours.recv()
        rows.append({"file": path.name, "pages": pages, "ocr_s": ocr_s, "pdf_s": pdf_s,
                     "input_bytes": path.stat().st_size, "pdf_bytes": pdf_bytes,
                     "chars": chars})  # fmt: skip
    ours.send(None)
    proc.join()
    return rows


def summary(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    pages = sum(r["pages"] for r in rows)
    ocr_s, pdf_s = sum(r["ocr_s"] for r in rows), sum(r["pdf_s"] for r in rows)
    return {"engine": name, "pages": pages, "ppm_txt": 60 * pages / ocr_s,
            "ppm_txt_pdf": 60 * pages / (ocr_s + pdf_s), "pdf_share": pdf_s / ocr_s,
            "pdf_s_per_page": pdf_s / pages}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="tesseract,aspose")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--only", default="", help="comma-separated file-name prefixes")
    parser.add_argument("--pdfa", action="store_true")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"corpus not found at {args.corpus}: give --corpus")
    only = tuple(p for p in args.only.split(",") if p)
    files = sorted(
        p
        for p in args.corpus.iterdir()
        if p.suffix.lower() in SUFFIXES and (not only or p.name.startswith(only))
    )
    results: dict[str, Any] = {"machine": report.machine(), "pdfa": args.pdfa, "engines": {}}
    sizes: list[list[Any]] = []
    totals: list[list[Any]] = []
    for name in args.engines.split(","):
        rows = run_engine(name, files, args.pdfa)
        results["engines"][name] = {"files": rows, "summary": summary(name, rows)}
        s = results["engines"][name]["summary"]
        share, per_page = f"{100 * s['pdf_share']:.1f} %", f"{1000 * s['pdf_s_per_page']:.0f}"
        totals.append(
            [name, s["pages"], f"{s['ppm_txt']:.1f}", f"{s['ppm_txt_pdf']:.1f}", share, per_page]
        )
        if not sizes:
            for r in rows:
                ratio = r["pdf_bytes"] / r["input_bytes"]
                within = r["pdf_bytes"] <= 1.1 * r["input_bytes"] + 4 * r["chars"] + 20_000
                sizes.append([r["file"], r["pages"], r["input_bytes"], r["pdf_bytes"],
                              f"{ratio:.2f}", report.verdict(within)])  # fmt: skip
    report.table("Cost of the searchable PDF (same run, warm engine, 1 process)",
                       ["engine", "pages", "pages/min txt", "pages/min txt+pdf",
                        "PDF time / OCR time", "PDF ms/page"], totals)  # fmt: skip
    report.table(f"PDF size vs input ({args.engines.split(',')[0]} layout)",
                       ["file", "pages", "input bytes", "PDF bytes", "PDF/input",
                        "<= 1.1x input + text"], sizes)  # fmt: skip
    report.write_result("outputs", results)


if __name__ == "__main__":
    main()
