"""Idle cost: CPU time and wake-ups of a running daemon and its warm workers with nothing to do.

`ocr-daemon run` (real engine, default workers) on an empty inbox; after it is ready and has
settled, utime+stime (/proc/<pid>/stat) and context switches (/proc/<pid>/task/*/status) of the
main process and each worker are read at the start and end of the window.
Target: under 0.5 % of one core in total.

    .venv/bin/python benchmarks/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from daemonproc import (
    DaemonProcess,
    context_switches,
    cpu_seconds,
    process_role,
    thread_count,
    write_config,
)

TARGET_PCT = 0.5


def snapshot(pids: dict[str, int]) -> dict[str, dict[str, Any]]:
    return {
        name: {
            "cpu_s": cpu_seconds(pid),
            "switches": context_switches(pid),
            "threads": thread_count(pid),
            "per_thread": per_thread(pid),
        }
        for name, pid in pids.items()
    }


def per_thread(pid: int) -> dict[int, tuple[str, int]]:
    """Voluntary context switches of each live thread: tid -> (name, count)."""
    counts: dict[int, tuple[str, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    counts[int(task.name)] = (comm, int(line.split()[1]))
        except OSError:
            continue
    return counts


def thread_wakeups(
    before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]]
) -> dict[str, int]:
    """Switches during the window by thread name, over threads alive at both ends."""
    by_name: dict[str, int] = {}
    for tid, (comm, count) in after.items():
        if tid in before:
            by_name[comm] = by_name.get(comm, 0) + count - before[tid][1]
    return by_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="accepted for run_all; same window")
    parser.add_argument("--engine", default="aspose", help="engine spec (default: aspose)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ocr-bench-idle-") as tmp:
        root = Path(tmp)
        daemon = DaemonProcess(write_config(root, workers=0, engine=args.engine), "run")
        try:
            daemon.wait_running()
            started = next(e for e in daemon.events() if e["event"] == "daemon.started")
            time.sleep(5.0)  # let start-up work (JIT, first status writes) finish
            pids = {"main": daemon.pid}
            pids.update({f"{process_role(pid)} {pid}": pid for pid in daemon.children()})
            before, t0 = snapshot(pids), time.monotonic()
            time.sleep(args.seconds)
            after, elapsed = snapshot(pids), time.monotonic() - t0
        finally:
            code = daemon.stop()
    rows, per_process = [], {}
    for name in pids:
        cpu = after[name]["cpu_s"] - before[name]["cpu_s"]
        threads = thread_wakeups(before[name]["per_thread"], after[name]["per_thread"])
        vol = sum(threads.values())
        invol = max(0, after[name]["switches"][1] - before[name]["switches"][1])
        busiest = sorted(((n, t) for t, n in threads.items() if n), reverse=True)[:4]
        per_process[name] = {
            "cpu_s": cpu,
            "cpu_pct_of_core": 100 * cpu / elapsed,
            "voluntary_switches_per_s": vol / elapsed,
            "involuntary_switches_per_s": invol / elapsed,
            "threads": after[name]["threads"],
            "wakeups_per_s_by_thread": {t: n / elapsed for n, t in busiest},
        }
        rows.append(
            [
                name,
                f"{cpu:.2f}",
                f"{100 * cpu / elapsed:.3f}",
                f"{vol / elapsed:.1f}",
                after[name]["threads"],
                ", ".join(f"{t} {n / elapsed:.1f}/s" for n, t in busiest),
            ]
        )
    total_cpu = sum(p["cpu_s"] for p in per_process.values())
    total_pct = 100 * total_cpu / elapsed
    rows.append(
        [
            "total",
            f"{total_cpu:.2f}",
            f"{total_pct:.3f}",
            f"{sum(p['voluntary_switches_per_s'] for p in per_process.values()):.1f}",
            "",
            "",
        ]
    )
    report.table(
        f"idle for {elapsed:.0f} s ({started.get('workers')} workers, engine {args.engine}); "
        f"target < {TARGET_PCT} % of one core: {report.verdict(total_pct < TARGET_PCT)}",
        ["process", "CPU s", "% of a core", "wake-ups/s", "threads", "busiest threads (wake-ups)"],
        rows,
    )
    report.write_result(
        "idle",
        {
            "machine": report.machine(),
            "seconds": elapsed,
            "engine": args.engine,
            "workers": started.get("workers"),
            "daemon_exit_code": code,
            "per_process": per_process,
            "total_cpu_s": total_cpu,
            "total_pct_of_core": total_pct,
            "target_pct": TARGET_PCT,
            "met": total_pct < TARGET_PCT,
        },
    )


if __name__ == "__main__":
    main()
