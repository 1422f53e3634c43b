"""Run every benchmark in turn (what `make bench` runs) and print a one-line summary of each.

Each script runs as its own process, so one failing does not stop the others; the total wall
time is printed and written with the summaries to ``benchmarks/results/run_all.json``.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import report

HERE = Path(__file__).resolve().parent
# Cheapest first; each entry: script, extra arguments in quick mode, extra arguments in full mode.
BENCHMARKS: list[tuple[str, list[str], list[str]]] = [
    ("idle", [], []),
    ("latency", ["--quick"], []),
    ("memory", ["--quick"], []),
    ("scale", ["--quick"], []),
    ("throughput", ["--quick"], []),
]


def headline(name: str, data: dict[str, Any]) -> str:
    """The figure each benchmark exists for, in one line."""
    if name == "throughput":
        r = data["ratios_mean"]
        return (
            f"daemon(1)/baseline(1) {r['daemon1_over_baseline1_work']:.3f} (>= 0.95 "
            f"{report.verdict(data['met']['daemon1_over_baseline1'])}); daemon(default)/best "
            f"{r['daemon_default_over_best_work']:.3f} (>= 0.90 "
            f"{report.verdict(data['met']['daemon_default_over_best'])})"
        )
    if name == "latency":
        s = data["summary"]
        return "; ".join(
            f"{m} p95 overhead {v['p95_overhead_s']:.2f} s ({report.verdict(v['met'])})"
            for m, v in s.items()
        )
    if name == "idle":
        return f"{data['total_pct_of_core']:.3f} % of one core ({report.verdict(data['met'])})"
    if name == "scale":
        return "; ".join(
            f"{r['mode']}: {r['files']} files, {r['files_per_s_work']:.0f} files/s, "
            f"main VmHWM {r['vmhwm_mb']:.0f} MB, accounted {r['all_accounted_for']}"
            for r in data["runs"]
        )
    if name == "memory":
        run = data["page_set_run"]
        return (
            f"worker peak {data['largest_worker_peak_mb']:.0f} MB, service peak "
            f"{run['service_peak_mb']:.0f} MB, main {run['main_peak_mb']:.0f} MB"
        )
    return ""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller page sets and counts")
    parser.add_argument("--only", nargs="*", default=None, help="run only these benchmarks")
    args = parser.parse_args()
    t_all = time.monotonic()
    summary: dict[str, Any] = {"machine": report.machine(), "quick": args.quick, "runs": {}}
    failures = 0
    for name, quick_args, full_args in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        command = [
            sys.executable,
            str(HERE / f"{name}.py"),
            *(quick_args if args.quick else full_args),
        ]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        t0 = time.monotonic()
        code = subprocess.run(command, check=False).returncode
        seconds = time.monotonic() - t0
        entry: dict[str, Any] = {"exit_code": code, "seconds": seconds}
        result = report.RESULTS_DIR / f"{name}.json"
        if code == 0 and result.is_file():
            entry["headline"] = headline(name, json.loads(result.read_text()))
        else:
            failures += 1
        summary["runs"][name] = entry
    summary["total_seconds"] = time.monotonic() - t_all
    print()
    report.table(
        f"benchmarks ({'quick' if args.quick else 'full'}): "
        f"{summary['total_seconds'] / 60:.1f} min",
        ["benchmark", "exit", "seconds", "headline"],
        [
            [n, e["exit_code"], f"{e['seconds']:.0f}", e.get("headline", "FAILED")]
            for n, e in summary["runs"].items()
        ],
    )
    report.write_result("run_all", summary)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
