"""Accuracy and speed of both engines on the real-scan corpus, side by side, in one run.

Character error rate (CER) = Levenshtein(ocr, ground truth) / len(ground truth), after NFC and
collapsing all whitespace to one space; per page and overall (total edits / total GT chars).
Only pages whose ground truth the corpus MANIFEST marks ``gold`` count (20 and 21 are ``silver``:
their reference is itself OCR output). Each engine runs the daemon's own engine class, warm, in
its own spawned process (as in the daemon); pages alternate A-B / B-A so load drifts hit both.

Aspose without a licence returns only ~300 characters per page followed by a trial notice: then
its CER is computed on that prefix P against the same-length GT prefix (``gt[:len(P)]``), and
Tesseract is scored on the same n characters too (column "T same prefix") for a like-for-like
comparison. Pages/min counts wall time of `recognize()` (vetting, orientation, OCR) per engine.

    .venv/bin/python benchmarks/accuracy.py                       # the README table
    .venv/bin/python benchmarks/accuracy.py --engines tesseract --no-orientation   # probes
    .venv/bin/python benchmarks/accuracy.py --engines aspose --aspose-auto-skew --only 07,09

Prints the table and writes benchmarks/results/accuracy.json (or accuracy-<tag>.json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
import unicodedata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import report

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "real"
TRIAL_MARKER = "Trial Licenses"
ENGINES = ("aspose", "tesseract")


def normalise(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def levenshtein(a: str, b: str) -> int:
    """Edit distance, bit-parallel (Myers/Hyyrö): fast enough for 4 000-char pages in Python."""
    if len(a) < len(b):
        a, b = b, a
    m = len(b)
    if m == 0:
        return len(a)
    peq: dict[str, int] = {}
    for i, ch in enumerate(b):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    full, top = (1 << m) - 1, 1 << (m - 1)
    pv, mv, score = full, 0, m
    for ch in a:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | (~(xh | pv) & full)
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & full
        mh = (mh << 1) & full
        pv = mh | (~(xv | ph) & full)
        mv = ph & xv
    return score


def trial_prefix(page: str) -> tuple[str, bool]:
    """The text before Aspose's trial notice, and whether there was one."""
    if TRIAL_MARKER not in page:
        return page, False
    cut = page.index(TRIAL_MARKER)
    return page[:cut].rstrip("* \n"), True


def languages_for(entry: dict[str, Any], installed: set[str]) -> tuple[str, ...]:
    wanted = [code.split()[0] for code in entry["lang"].split("+")]
    usable = tuple(code for code in wanted if code in installed)
    return usable or ("eng",)


def serve(conn: Connection, engine_name: str, options: dict[str, Any]) -> None:
    """Spawned process: one warm engine per language set; answers (path, languages) requests."""
    import dataclasses  # noqa: PLC0415

    from ocr_daemon.config import AsposeSettings, Config  # noqa: PLC0415
    from ocr_daemon.engines.base import load_engine  # noqa: PLC0415

    state = Path(tempfile.mkdtemp(prefix="accuracy-"))
    base = Config(
        engine=engine_name,
        state_dir=state,
        orientation=options["orientation"],
        aspose=AsposeSettings(auto_skew=options["aspose_auto_skew"]),
    )
    engines: dict[tuple[str, ...], Any] = {}
    while (request := conn.recv()) is not None:
        path, languages = request
        if languages not in engines:
            engines[languages] = load_engine(dataclasses.replace(base, languages=languages))
            engines[languages].warm_up()
        started, cpu = time.perf_counter(), time.process_time()
        try:
            pages = list(engines[languages].recognize(Path(path)).pages)
            error = ""
        except Exception as exc:  # report, keep measuring the other pages
            pages, error = [], f"{type(exc).__name__}: {exc}"
        conn.send((pages, time.perf_counter() - started, time.process_time() - cpu, error))


def score_page(gt: str, text: str, prefix_of: str | None) -> dict[str, Any]:
    """Full-page CER, plus the trial-prefix comparison when `prefix_of` (Aspose's prefix) is
    given: that prefix's length n scores both engines on gt[:n]."""
    row: dict[str, Any] = {"gt_chars": len(gt), "chars": len(text)}
    row["edits"] = levenshtein(text, gt)
    row["cer"] = row["edits"] / max(1, len(gt))
    if prefix_of is not None:
        n = len(prefix_of)
        row["prefix_chars"] = n
        row["prefix_edits"] = levenshtein(text[:n], gt[:n]) if n else 0
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ocr_daemon.config import languages  # noqa: PLC0415

    manifest = json.loads((CORPUS / "manifest.json").read_text())
    gold = [e for e in manifest if e["gt_quality"] == "gold"]
    if args.only:
        gold = [e for e in gold if e["stem"][:2] in args.only.split(",")]
    installed = set(languages.installed_tesseract(languages.find_tessdata()))
    options = {"orientation": args.orientation, "aspose_auto_skew": args.aspose_auto_skew}
    context = multiprocessing.get_context("spawn")
    conns: dict[str, Connection] = {}
    procs: list[multiprocessing.process.BaseProcess] = []
    for name in args.engines:
        parent, child = context.Pipe()
        proc = context.Process(target=serve, args=(child, name, options), daemon=True)
        proc.start()
        conns[name], procs = parent, [*procs, proc]
    pages: list[dict[str, Any]] = []
    totals = {name: {"seconds": 0.0, "cpu": 0.0, "pages": 0} for name in args.engines}
    for number, entry in enumerate(gold):
        langs = languages_for(entry, installed)
        order = list(args.engines) if number % 2 == 0 else list(reversed(args.engines))
        outputs: dict[str, tuple[list[str], float, float, str]] = {}
        for name in order:
            conns[name].send((str(CORPUS / entry["file"]), langs))
            outputs[name] = conns[name].recv()
        gts = (CORPUS / entry["gt"]).read_text(encoding="utf-8").split("\f")
        for name, (_texts, seconds, cpu, _) in outputs.items():
            totals[name]["seconds"] += seconds
            totals[name]["cpu"] += cpu
            totals[name]["pages"] += len(gts)
        pages.extend(_score_entry(entry, langs, gts, outputs))
    for conn in conns.values():
        conn.send(None)
    for process in procs:
        process.join(timeout=30)
    return {"pages": pages, "totals": totals, "options": options}


def _score_entry(
    entry: dict[str, Any],
    langs: tuple[str, ...],
    gts: list[str],
    outputs: dict[str, tuple[list[str], float, float, str]],
) -> list[dict[str, Any]]:
    rows = []
    for index, raw_gt in enumerate(gts):
        gt = normalise(raw_gt)
        row: dict[str, Any] = {
            "page": entry["stem"] + (f" p{index + 1}" if len(gts) > 1 else ""),
            "languages": "+".join(langs),
        }
        prefix = None
        if "aspose" in outputs:
            texts, seconds, _, error = outputs["aspose"]
            raw = texts[index] if index < len(texts) else ""
            text, trial = trial_prefix(raw)
            text = normalise(text)
            prefix = text if trial else None
            row["aspose"] = score_page(gt, text, prefix) | {"trial": trial, "error": error}
            row["aspose"]["seconds"] = seconds / len(gts)
        if "tesseract" in outputs:
            texts, seconds, _, error = outputs["tesseract"]
            text = normalise(texts[index] if index < len(texts) else "")
            row["tesseract"] = score_page(gt, text, prefix) | {"error": error}
            row["tesseract"]["seconds"] = seconds / len(gts)
        rows.append(row)
    return rows


def summarise(result: dict[str, Any], engines: list[str]) -> str:
    rows = []
    pages = result["pages"]
    trial = any(p.get("aspose", {}).get("trial") for p in pages)
    for p in pages:
        row = [p["page"], p["languages"], pages_gt(p)]
        for name in engines:
            e = p[name]
            row.append(f"{e['cer']:.1%}" if not (name == "aspose" and e["trial"]) else "-")
            row.append(f"{e['seconds']:.2f}")
        if trial and "aspose" in engines:
            row += _prefix_cells(p)
        rows.append(row)
    rows.append(_overall(pages, engines, trial, result["totals"]))
    headers = ["page", "lang", "GT chars"]
    for name in engines:
        headers += [f"{name} CER", f"{name} s"]
    if trial and "aspose" in engines:
        headers += ["A prefix chars", "A prefix CER", "T same prefix"]
    speed = ", ".join(
        f"{n}: {60 * t['pages'] / max(t['seconds'], 1e-9):.1f} pages/min ({t['cpu']:.0f} s CPU)"
        for n, t in result["totals"].items()
    )
    note = (
        "\nAspose ran in EVALUATION mode: it returns ~300 chars per page, so its CER is on that "
        "prefix vs the same-length GT prefix ('A prefix CER'); Tesseract is also scored on the "
        "same n chars ('T same prefix')."
        if trial
        else ""
    )
    title = f"Accuracy on {CORPUS} (gold GT only; options {result['options']}); {speed}{note}"
    return report.table(title, headers, rows)


def pages_gt(p: dict[str, Any]) -> int:
    return int(next(p[n]["gt_chars"] for n in ENGINES if n in p))


def _prefix_cells(p: dict[str, Any]) -> list[str]:
    a, t = p["aspose"], p.get("tesseract")
    n = a.get("prefix_chars", 0)
    if not n:
        return ["0", "-", "-"]
    same = f"{t['prefix_edits'] / n:.1%}" if t else "-"
    return [str(n), f"{a['prefix_edits'] / n:.1%}", same]


def _overall(
    pages: list[dict[str, Any]], engines: list[str], trial: bool, totals: dict[str, Any]
) -> list[str]:
    gt_total = sum(pages_gt(p) for p in pages)
    row = ["OVERALL", "", str(gt_total)]
    for name in engines:
        edits = sum(p[name]["edits"] for p in pages)
        full = not (name == "aspose" and trial)
        row.append(f"{edits / gt_total:.1%}" if full else "-")
        row.append(f"{totals[name]['seconds']:.1f}")
    if trial and "aspose" in engines:
        n = sum(p["aspose"].get("prefix_chars", 0) for p in pages)
        a = sum(p["aspose"].get("prefix_edits", 0) for p in pages)
        t = sum(p["tesseract"].get("prefix_edits", 0) for p in pages if "tesseract" in p)
        same = f"{t / max(n, 1):.1%}" if "tesseract" in engines else "-"
        row += [str(n), f"{a / max(n, 1):.1%}", same]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--no-orientation", dest="orientation", action="store_false")
    parser.add_argument("--aspose-auto-skew", action="store_true")
    parser.add_argument("--only", help="comma-separated page numbers, e.g. 02,03,13")
    parser.add_argument("--tag", default="", help="results file suffix for probe runs")
    args = parser.parse_args()
    if not (CORPUS / "manifest.json").is_file():
        print(f"skipped: the real-scan corpus is not at {CORPUS} (../shared is absent)")
        return 0
    started = time.monotonic()
    result = run(args)
    text = summarise(result, args.engines)
    result |= {"machine": report.machine(), "table": text, "wall_s": time.monotonic() - started}
    report.write_result(f"accuracy-{args.tag}" if args.tag else "accuracy", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
