"""Latency: what a running daemon adds between a file becoming complete and its sidecar appearing.

`ocr-daemon run` (real engine, default workers and settle time) gets files one at a time, each
only after the previous sidecar appeared. Two ways of arriving:
- write-then-rename: written under a hidden name in the inbox, then renamed (timed from the rename);
- slow in-place write: written in chunks with pauses shorter than the settle time (timed from the
  last write).
Overhead = (sidecar appears - arrival) - the file's OCR time (`seconds` of its `file.done` event).
Target: p95 overhead <= settle_seconds + 0.25 s.

    .venv/bin/python benchmarks/latency.py [--quick] [--drops N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from daemonproc import DaemonProcess, write_config
from pageset import render_small_page

from ocr_daemon.config import Config

SETTLE_S = Config().settle_seconds
MARGIN_S = 0.25
CHUNKS, CHUNK_PAUSE_S = 6, 0.3


def wait_for_file(path: Path, timeout_s: float = 300.0) -> float:
    """Poll every 2 ms; returns the wall time at which `path` was first seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return time.time()
        time.sleep(0.002)
    raise TimeoutError(f"{path} did not appear within {timeout_s} s")


def drop_renamed(inbox: Path, name: str, data: bytes) -> float:
    temp = inbox / f".{name}.part"
    with open(temp, "wb") as fh:
        fh.write(data)
    os.rename(temp, inbox / name)
    return time.time()


def drop_slowly(inbox: Path, name: str, data: bytes) -> float:
    step = -(-len(data) // CHUNKS)
    with open(inbox / name, "wb") as fh:
        for start in range(0, len(data), step):
            if start:
                time.sleep(CHUNK_PAUSE_S)
            fh.write(data[start : start + step])
            fh.flush()
        last = time.time()
    return last


def measure(
    daemon: DaemonProcess, root: Path, data: bytes, mode: str, drops: int
) -> list[dict[str, Any]]:
    samples = []
    for number in range(drops):
        name = f"{mode}-{number:02d}.png"
        if mode == "rename":
            arrived = drop_renamed(root / "inbox", name, data)
        else:
            arrived = drop_slowly(root / "inbox", name, data)
        seen = wait_for_file(root / "outbox" / name.replace(".png", ".txt"))
        done = daemon.wait_event(
            lambda e, n=name: e.get("event") == "file.done" and e["path"] == n, 60
        )
        latency = seen - arrived
        samples.append(
            {
                "file": name,
                "latency_s": latency,
                "ocr_s": done["seconds"],
                "overhead_s": latency - done["seconds"],
            }
        )
        time.sleep(0.5)
    return samples


def percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--drops", type=int, default=None, help="files per mode (6 quick, 12 full)")
    args = parser.parse_args()
    drops = args.drops or (6 if args.quick else 12)
    with tempfile.TemporaryDirectory(prefix="ocr-bench-latency-") as tmp:
        root = Path(tmp)
        data = render_small_page(root / "page.png").read_bytes()
        daemon = DaemonProcess(write_config(root, workers=0, settle_seconds=SETTLE_S), "run")
        try:
            daemon.wait_running()
            started = next(e for e in daemon.events() if e["event"] == "daemon.started")
            results = {
                mode: measure(daemon, root, data, mode, drops) for mode in ("rename", "slow")
            }
        finally:
            code = daemon.stop()
    budget = SETTLE_S + MARGIN_S
    rows, summary = [], {}
    for mode, samples in results.items():
        overheads = [s["overhead_s"] for s in samples]
        p50, p95 = percentile(overheads, 50), percentile(overheads, 95)
        summary[mode] = {
            "p50_overhead_s": p50,
            "p95_overhead_s": p95,
            "max_overhead_s": max(overheads),
            "p50_latency_s": percentile([s["latency_s"] for s in samples], 50),
            "mean_ocr_s": statistics.mean(s["ocr_s"] for s in samples),
            "met": p95 <= budget,
        }
        rows.append(
            [
                {"rename": "write-then-rename", "slow": "slow in-place write"}[mode],
                len(samples),
                f"{summary[mode]['p50_latency_s']:.3f}",
                f"{summary[mode]['mean_ocr_s']:.3f}",
                f"{p50:.3f}",
                f"{p95:.3f}",
                f"{max(overheads):.3f}",
                f"<= {budget:.2f} {report.verdict(p95 <= budget)}",
            ]
        )
    report.table(
        f"latency overhead (s), settle_seconds = {SETTLE_S}, workers = {started.get('workers')}",
        [
            "arrival",
            "files",
            "p50 latency",
            "mean OCR",
            "p50 overhead",
            "p95 overhead",
            "max",
            "target p95",
        ],
        rows,
    )
    report.write_result(
        "latency",
        {
            "machine": report.machine(),
            "quick": args.quick,
            "settle_seconds": SETTLE_S,
            "target_p95_s": budget,
            "workers": started.get("workers"),
            "daemon_exit_code": code,
            "summary": summary,
            "samples": results,
        },
    )


if __name__ == "__main__":
    main()
