"""Memory: peak RSS of each worker and of the whole service over the page set; how the worker
count follows from CPUs and memory; and what a memory budget too small for one worker does.

    .venv/bin/python benchmarks/memory.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from daemonproc import DaemonProcess, RssSampler, write_config
from pageset import build, render_small_page

from ocr_daemon.config import Config
from ocr_daemon.pool import _cgroup_limit_mb, available_memory_mb, choose_worker_count

SAMPLE_S = 0.2


def run_page_set(root: Path, files: list[Path], **config: Any) -> dict[str, Any]:
    """`ocr-daemon once` over `files`, sampling RSS of the main process and each worker."""
    path = write_config(root, **config)
    for source in files:
        os.link(source, root / "inbox" / source.name)
    daemon = DaemonProcess(path, "once")
    sampler = RssSampler(daemon.pid)
    while daemon.proc.poll() is None:
        sampler.sample()
        time.sleep(SAMPLE_S)
    code = daemon.wait(60)
    events = daemon.events()
    started = next(e for e in events if e["event"] == "daemon.started")
    workers = {
        pid: kb / 1024
        for pid, kb in sampler.hwm_kb.items()
        if sampler.roles.get(pid) == "OCR worker"
    }
    helpers = {
        pid: kb / 1024
        for pid, kb in sampler.hwm_kb.items()
        if pid != daemon.pid and sampler.roles.get(pid) != "OCR worker"
    }
    return {
        "exit_code": code,
        "workers": started["workers"],
        "workers_reason": started["workers_reason"],
        "files_done": sum(1 for e in events if e["event"] == "file.done"),
        "files_failed": sum(1 for e in events if e["event"] == "file.failed"),
        "main_peak_mb": sampler.hwm_kb.get(daemon.pid, 0) / 1024,
        "worker_peak_mb": workers,
        "helper_peak_mb": helpers,
        "service_peak_mb": sampler.peak_total_kb / 1024,
        "samples": sampler.samples,
    }


def worker_count_table() -> dict[str, Any]:
    """`choose_worker_count` here, for the default budget and for budgets around the limit."""
    cpus = len(os.sched_getaffinity(0))
    available = available_memory_mb()
    budgets = [1300, 1600, available // 2 + 1, available + 1, 10_000_000]
    rows = []
    for budget in budgets:
        count, why = choose_worker_count(Config(worker_memory_mb=budget))
        rows.append({"worker_memory_mb": budget, "workers": count, "why": why})
    return {
        "cpus": cpus,
        "mem_available_mb": available,
        "cgroup_limit_mb": _cgroup_limit_mb() or None,
        "choices": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    choices = worker_count_table()
    with tempfile.TemporaryDirectory(prefix="ocr-bench-memory-") as tmp:
        root = Path(tmp)
        files = build(root / "pages", args.quick)
        print(f"page set: {len(files)} files", flush=True)
        full = run_page_set(root / "default", files, workers=0)
        small = [render_small_page(root / "small-a.png"), render_small_page(root / "small-b.png")]
        starved = run_page_set(root / "starved", small, workers=0, worker_memory_mb=10_000_000)
    report.table(
        f"peak RSS over {len(files)} files ({full['files_done']} done, "
        f"{full['files_failed']} failed), workers = {full['workers']}",
        ["process", "peak RSS MB"],
        [["main (daemon)", f"{full['main_peak_mb']:.0f}"]]
        + [[f"OCR worker pid {pid}", f"{mb:.0f}"] for pid, mb in full["worker_peak_mb"].items()]
        + [
            [f"helper pid {pid} (resource tracker)", f"{mb:.0f}"]
            for pid, mb in full["helper_peak_mb"].items()
        ]
        + [["whole service (peak of the sum)", f"{full['service_peak_mb']:.0f}"]],
    )
    report.table(
        f"choose_worker_count: {choices['cpus']} CPUs, MemAvailable "
        f"{choices['mem_available_mb']} MB, "
        f"cgroup memory.max {choices['cgroup_limit_mb'] or 'none'}",
        ["worker_memory_mb", "workers", "why"],
        [[c["worker_memory_mb"], c["workers"], c["why"]] for c in choices["choices"]],
    )
    report.table(
        "daemon run with worker_memory_mb = 10000000 (too small a budget for one worker)",
        ["workers", "files done", "exit code", "reason logged in daemon.started"],
        [
            [
                starved["workers"],
                starved["files_done"],
                starved["exit_code"],
                starved["workers_reason"],
            ]
        ],
    )
    peak_worker = max(full["worker_peak_mb"].values(), default=0.0)
    default_budget = Config().worker_memory_mb
    print(
        f"largest worker peak {peak_worker:.0f} MB vs worker_memory_mb default "
        f"{default_budget} MB: "
        f"{'within' if peak_worker <= default_budget else 'OVER'} budget",
        flush=True,
    )
    report.write_result(
        "memory",
        {
            "machine": report.machine(),
            "quick": args.quick,
            "files": [p.name for p in files],
            "page_set_run": full,
            "largest_worker_peak_mb": peak_worker,
            "worker_memory_mb_default": default_budget,
            "worker_count": choices,
            "too_small_budget_run": starved,
        },
    )


if __name__ == "__main__":
    main()
