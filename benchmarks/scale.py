"""The daemon's own machinery at scale, with the instant engine double (no OCR cost).

- drop: N small files written at once into the inbox of a running daemon (`ocr-daemon run`);
- present: N files already in the inbox when `ocr-daemon once` starts.
Reports files/s, time to the first dispatch, peak RSS of the main process (target: flat, under
200 MB) and whether every file ended with exactly one sidecar and left the inbox.

    .venv/bin/python benchmarks/scale.py [--quick] [--drop N] [--present N]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from daemonproc import DOUBLE, DaemonProcess, parse_ts, status_kb, write_config

TARGET_RSS_MB = 200.0
SAMPLE_S = 0.5


def create_files(inbox: Path, count: int, backdate: bool) -> float:
    """`count` small files in 100-file subfolders? No: one flat folder, as a scanner writes."""
    t0 = time.monotonic()
    old = time.time() - 3600
    payload = b"\x89PNG small test input for the engine double\n"
    for number in range(count):
        path = inbox / f"scan-{number:06d}.png"
        with open(path, "wb") as fh:
            fh.write(payload)
        if backdate:
            os.utime(path, (old, old))
    return time.monotonic() - t0


def count_entries(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


class Watch:
    """Samples the main process's RSS while waiting for the status to show every file handled."""

    def __init__(self, daemon: DaemonProcess) -> None:
        self.daemon = daemon
        self.rss_mb: list[tuple[float, float]] = []
        self.hwm_mb = 0.0

    def sample(self) -> None:
        values = status_kb(self.daemon.pid, "VmRSS", "VmHWM")
        if values:
            self.rss_mb.append((time.time(), values["VmRSS"] / 1024))
            self.hwm_mb = max(self.hwm_mb, values["VmHWM"] / 1024)

    def handled(self, root: Path) -> int:
        try:
            data = json.loads((root / "state" / "status.json").read_text())
        except (OSError, ValueError):
            return 0
        if data.get("pid") != self.daemon.pid:
            return 0
        return int(data.get("done", 0)) + int(data.get("failed", 0))

    def until_handled(self, root: Path, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.handled(root) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.handled(root)} of {count} handled in {timeout_s} s")
            self.sample()
            time.sleep(SAMPLE_S)

    def until_exit(self) -> None:
        while self.daemon.proc.poll() is None:
            self.sample()
            time.sleep(SAMPLE_S)


def run_drop(root: Path, count: int, timeout_s: float) -> dict[str, Any]:
    daemon = DaemonProcess(write_config(root, engine=DOUBLE, workers=0), "run")
    watch = Watch(daemon)
    try:
        daemon.wait_running()
        watch.sample()
        rss_ready = watch.rss_mb[-1][1]
        t_drop = time.time()
        create_s = create_files(root / "inbox", count, backdate=False)
        watch.until_handled(root, count, timeout_s)
        watch.sample()
    finally:
        code = daemon.stop()
    return summarise(
        "drop into running daemon",
        root,
        daemon,
        watch,
        count,
        t0=t_drop,
        code=code,
        rss_ready=rss_ready,
        create_s=create_s,
    )


def run_present(root: Path, count: int, timeout_s: float) -> dict[str, Any]:
    config = write_config(root, engine=DOUBLE, workers=0)
    create_s = create_files(root / "inbox", count, backdate=True)
    t_start = time.time()
    daemon = DaemonProcess(config, "once")
    watch = Watch(daemon)
    try:
        watch.until_exit()
        code = daemon.wait(timeout_s)
    finally:
        daemon.kill()
    return summarise(
        "present at start (once)",
        root,
        daemon,
        watch,
        count,
        t0=t_start,
        code=code,
        create_s=create_s,
    )


def summarise(
    label: str,
    root: Path,
    daemon: DaemonProcess,
    watch: Watch,
    count: int,
    *,
    t0: float,
    code: int,
    **extra: Any,
) -> dict[str, Any]:
    events = daemon.events()
    done = [e for e in events if e["event"] == "file.done"]
    stamps = sorted(parse_ts(e["timestamp"]) for e in done)
    started = next(e for e in events if e["event"] == "daemon.started")
    outbox, processed, inbox = (count_entries(root / n) for n in ("outbox", "processed", "inbox"))
    accounted = (
        len({e["path"] for e in done}) == count
        and outbox == count
        and processed == count
        and inbox == 0
    )
    peak_rss = max(r for _, r in watch.rss_mb) if watch.rss_mb else 0.0
    first_quarter = [
        r for t, r in watch.rss_mb if stamps and t < stamps[0] + (stamps[-1] - stamps[0]) / 4
    ]
    return {
        "mode": label,
        "files": count,
        "exit_code": code,
        "files_done": len(done),
        "failed": sum(1 for e in events if e["event"] == "file.failed"),
        "outbox_files": outbox,
        "processed_files": processed,
        "left_in_inbox": inbox,
        "all_accounted_for": accounted,
        "workers": started["workers"],
        "first_dispatch_after_s": stamps[0] - t0 if stamps else None,
        "first_dispatch_after_ready_s": stamps[0] - parse_ts(started["timestamp"])
        if stamps
        else None,
        "files_per_s_work": (count - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else None,
        "files_per_s_total": count / (stamps[-1] - t0) if stamps else None,
        "last_done_after_s": stamps[-1] - t0 if stamps else None,
        "peak_rss_mb": peak_rss,
        "vmhwm_mb": watch.hwm_mb,
        "rss_first_quarter_max_mb": max(first_quarter) if first_quarter else None,
        "rss_samples": [(round(t - t0, 1), round(r, 1)) for t, r in watch.rss_mb][::10],
        **extra,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--drop", type=int, default=None, help="default 20000 (5000 quick)")
    parser.add_argument(
        "--present",
        type=int,
        default=None,
        help="default 30000 (5000 quick); the issue's full size is 100000 (~10 min here)",
    )
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--result-name", default="scale", help="JSON file name in results/")
    args = parser.parse_args()
    drop = args.drop if args.drop is not None else (5_000 if args.quick else 20_000)
    present = args.present if args.present is not None else (5_000 if args.quick else 30_000)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ocr-bench-scale-") as tmp:
        if drop:
            runs.append(run_drop(Path(tmp) / "drop", drop, args.timeout))
        if present:
            runs.append(run_present(Path(tmp) / "present", present, args.timeout))
    rows = [
        [
            r["mode"],
            r["files"],
            f"{r['files_per_s_work']:.0f}",
            f"{r['files_per_s_total']:.0f}",
            f"{r['first_dispatch_after_s']:.2f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['vmhwm_mb']:.0f}",
            "yes" if r["all_accounted_for"] else "NO",
        ]
        for r in runs
    ]
    met = all(r["vmhwm_mb"] < TARGET_RSS_MB and r["all_accounted_for"] for r in runs)
    report.table(
        f"scale with the engine double; target: main RSS < {TARGET_RSS_MB:.0f} MB and every file "
        f"accounted for: {report.verdict(met)}",
        [
            "mode",
            "files",
            "files/s (work)",
            "files/s (incl. start)",
            "1st dispatch s",
            "peak RSS MB",
            "VmHWM MB",
            "all accounted",
        ],
        rows,
    )
    report.write_result(
        args.result_name,
        {
            "machine": report.machine(),
            "quick": args.quick,
            "runs": runs,
            "target_rss_mb": TARGET_RSS_MB,
            "met": met,
        },
    )


if __name__ == "__main__":
    main()
