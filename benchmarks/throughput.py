"""Throughput against the engine's limit: warm engines in tight loops versus the daemon (`once`).

Baselines run `ocr_daemon.engine.AsposeEngine` (the daemon's own engine code path) in spawned
processes that first warm up, then pull the page set's files from one shared queue until it is
empty. The daemon runs as `ocr-daemon once` on the same files. Configurations run in an order
that reverses every round, so each ratio compares neighbours measured minutes apart at most.

    .venv/bin/python benchmarks/throughput.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import report
from daemonproc import DaemonProcess, parse_ts, write_config
from pageset import build

from ocr_daemon.config import Config
from ocr_daemon.engines.aspose import AsposeEngine
from ocr_daemon.pool import choose_worker_count

SPAWN = multiprocessing.get_context("spawn")
TARGET_ONE = 0.95
TARGET_DEFAULT = 0.90


def engine_config(root: Path) -> Config:
    """The daemon's default engine settings, with its state folder (models dir) under `root`."""
    (root / "state").mkdir(parents=True, exist_ok=True)
    return Config(
        inbox=root / "inbox",
        outbox=root / "outbox",
        processed=root / "processed",
        failed=root / "failed",
        state_dir=root / "state",
    )


# -- baseline: warm engines in tight loops ----------------------------------------------------


def baseline_worker(config: Config, jobs: Any, results: Any, go: Any, threads: int) -> None:
    """One process: `threads` warm engines (one per thread), each pulling jobs until none left."""
    started = time.monotonic()
    engines = [AsposeEngine(config) for _ in range(threads)]
    for engine in engines:
        engine.warm_up()
    results.put(("ready", os.getpid(), time.monotonic() - started))
    go.wait()

    def loop(engine: AsposeEngine) -> None:
        while True:
            path = jobs.get()
            if path is None:
                return
            t0 = time.monotonic()
            pages = engine.recognize(Path(path)).page_count
            results.put(("page", path, time.monotonic() - t0, pages))

    workers = [threading.Thread(target=loop, args=(e,)) for e in engines]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    results.put(("finished", os.getpid(), 0.0))


def run_baseline(files: list[Path], root: Path, processes: int, threads: int = 1) -> dict[str, Any]:
    config = engine_config(root)
    jobs, results, go = SPAWN.Queue(), SPAWN.Queue(), SPAWN.Event()
    for path in files:
        jobs.put(str(path))
    for _ in range(processes * threads):
        jobs.put(None)
    t_start = time.monotonic()
    procs = [
        SPAWN.Process(target=baseline_worker, args=(config, jobs, results, go, threads))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    warm = [_expect(results, "ready")[2] for _ in procs]
    t_go = time.monotonic()
    go.set()
    per_file: dict[str, float] = {}
    pages = finished = 0
    while finished < processes:
        message = results.get(timeout=900)
        if message[0] == "page":
            per_file[Path(message[1]).name] = message[2]
            pages += message[3]
        elif message[0] == "finished":
            finished += 1
    t_end = time.monotonic()
    for proc in procs:
        proc.join(timeout=30)
    return _figures(
        f"baseline {processes}p x {threads}t",
        pages,
        t_end - t_go,
        t_end - t_start,
        per_file=per_file,
        warm_up_s=max(warm),
    )


def _expect(results: Any, kind: str) -> tuple[Any, ...]:
    message = results.get(timeout=300)
    if message[0] != kind:
        raise RuntimeError(f"expected {kind!r} from a baseline worker, got {message!r}")
    return tuple(message)


# -- the daemon ---------------------------------------------------------------------------------


def run_daemon(files: list[Path], root: Path, workers: int) -> dict[str, Any]:
    """`ocr-daemon once` on hard links of `files`; times from the process and from its log."""
    config = write_config(root, workers=workers)
    for path in files:
        os.link(path, root / "inbox" / path.name)
    t_start = time.time()
    daemon = DaemonProcess(config, command="once")
    code = daemon.wait(timeout_s=1800)
    t_end = time.time()
    events = daemon.events()
    done = [e for e in events if e["event"] == "file.done"]
    failed = [e for e in events if e["event"] == "file.failed"]
    started = next(e for e in events if e["event"] == "daemon.started")
    first_dispatch = min(parse_ts(e["timestamp"]) - e["seconds"] for e in done)
    last_done = max(parse_ts(e["timestamp"]) for e in done)
    stopped = next((e for e in events if e["event"] == "daemon.stopped"), None)
    figures = _figures(
        f"daemon workers={workers or 'default'}",
        sum(int(e["pages"]) for e in done),
        last_done - first_dispatch,
        t_end - t_start,
        per_file={e["path"]: e["seconds"] for e in done},
    )
    figures.update(
        exit_code=code,
        files_done=len(done),
        files_failed=len(failed),
        workers=started["workers"],
        workers_reason=started["workers_reason"],
        start_to_ready_s=parse_ts(started["timestamp"]) - t_start,
        ready_to_first_dispatch_s=first_dispatch - parse_ts(started["timestamp"]),
        last_done_to_exit_s=t_end - last_done,
        last_done_to_stopped_log_s=(parse_ts(stopped["timestamp"]) - last_done)
        if stopped
        else None,
        sum_job_seconds=sum(e["seconds"] for e in done),
    )
    return figures


def _figures(label: str, pages: int, work_s: float, total_s: float, **extra: Any) -> dict[str, Any]:
    return {
        "config": label,
        "pages": pages,
        "work_s": work_s,
        "total_s": total_s,
        "pages_per_min_work": 60 * pages / work_s,
        "pages_per_min_total": 60 * pages / total_s,
        **extra,
    }


# -- the run ----------------------------------------------------------------------------------


def thread_check(files: list[Path], root: Path) -> dict[str, Any]:
    """Threads cannot help if `recognize` holds the GIL: 1 process x 2 threads vs 1 x 1."""
    one = run_baseline(files, root / "t1", processes=1, threads=1)
    two = run_baseline(files, root / "t2", processes=1, threads=2)
    return {
        "one_thread": one,
        "two_threads": two,
        "ratio_2t_over_1t": two["pages_per_min_work"] / one["pages_per_min_work"],
    }


def run_round(
    files: list[Path], root: Path, order: list[str], default_workers: int
) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    for name in order:
        where = root / name
        if name.startswith("baseline"):
            runs[name] = run_baseline(files, where, processes=int(name[-1]))
        else:
            runs[name] = run_daemon(files, where, workers=int(name[-1]))
        fig = runs[name]
        print(
            f"  {fig['config']:<24} {fig['pages']:3d} pages  work {fig['work_s']:6.1f} s  "
            f"total {fig['total_s']:6.1f} s  {fig['pages_per_min_work']:5.1f} p/min",
            flush=True,
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller page set")
    parser.add_argument("--rounds", type=int, default=None, help="default: 2 quick, 1 full")
    parser.add_argument(
        "--extra-baseline",
        type=int,
        default=0,
        help="also time a baseline with this many processes (e.g. 3)",
    )
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 1)
    default_workers, why = choose_worker_count(Config())
    print(f"default worker count here: {default_workers} ({why})", flush=True)
    with tempfile.TemporaryDirectory(prefix="ocr-bench-throughput-") as tmp:
        root = Path(tmp)
        files = build(root / "pages", args.quick)
        print(f"page set: {len(files)} files: {', '.join(p.name for p in files)}", flush=True)
        small = [p for p in files if p.stat().st_size < 200_000][:4] or files[:2]
        threads = thread_check(small, root / "threads")
        print(
            f"thread check on {len(small)} files: 2 threads / 1 thread = "
            f"{threads['ratio_2t_over_1t']:.2f}",
            flush=True,
        )
        base = ["baseline1", "daemon1", "daemon0", "baseline2"]
        if args.extra_baseline:
            base.append(f"baseline{args.extra_baseline}")
        all_rounds = []
        for number in range(rounds):
            order = base if number % 2 == 0 else base[::-1]
            print(f"round {number + 1}: {', '.join(order)}", flush=True)
            all_rounds.append(run_round(files, root / f"round{number}", order, default_workers))
    summarise(
        all_rounds, threads, files, default_workers=default_workers, why=why, quick=args.quick
    )


def summarise(
    all_rounds: list[dict[str, Any]],
    threads: dict[str, Any],
    files: list[Path],
    *,
    default_workers: int,
    why: str,
    quick: bool,
) -> None:
    ratios = []
    for runs in all_rounds:
        baselines = [v for k, v in runs.items() if k.startswith("baseline")]
        best_work = max(baselines, key=lambda f: f["pages_per_min_work"])
        best_total = max(baselines, key=lambda f: f["pages_per_min_total"])
        b1, d1, d0 = runs["baseline1"], runs["daemon1"], runs["daemon0"]
        ratios.append(
            {
                "best_baseline": best_work["config"],
                "daemon1_over_baseline1_work": d1["pages_per_min_work"] / b1["pages_per_min_work"],
                "daemon1_over_baseline1_total": d1["pages_per_min_total"]
                / b1["pages_per_min_total"],
                "daemon_default_over_best_work": d0["pages_per_min_work"]
                / best_work["pages_per_min_work"],
                "daemon_default_over_best_total": d0["pages_per_min_total"]
                / best_total["pages_per_min_total"],
                "baseline2_over_baseline1_work": runs["baseline2"]["pages_per_min_work"]
                / b1["pages_per_min_work"],
            }
        )
    rows = []
    for name in all_rounds[0]:
        figs = [r[name] for r in all_rounds]
        rows.append(
            [
                figs[0]["config"],
                figs[0]["pages"],
                f"{statistics.mean(f['work_s'] for f in figs):.1f}",
                f"{statistics.mean(f['total_s'] for f in figs):.1f}",
                f"{statistics.mean(f['pages_per_min_work'] for f in figs):.1f}",
                f"{statistics.mean(f['pages_per_min_total'] for f in figs):.1f}",
            ]
        )
    report.table(
        "throughput (mean over rounds; work = first dispatch to last page)",
        ["config", "pages", "work s", "total s", "p/min work", "p/min total"],
        rows,
    )
    mean = {k: statistics.mean(r[k] for r in ratios) for k in ratios[0] if k != "best_baseline"}
    one_ok = mean["daemon1_over_baseline1_work"] >= TARGET_ONE
    default_ok = mean["daemon_default_over_best_work"] >= TARGET_DEFAULT
    report.table(
        "ratios (mean of per-round ratios)",
        ["ratio", "work", "with start-up", "target"],
        [
            [
                "daemon(1) / baseline(1 process)",
                f"{mean['daemon1_over_baseline1_work']:.3f}",
                f"{mean['daemon1_over_baseline1_total']:.3f}",
                f">= {TARGET_ONE} {report.verdict(one_ok)}",
            ],
            [
                "daemon(default) / best baseline",
                f"{mean['daemon_default_over_best_work']:.3f}",
                f"{mean['daemon_default_over_best_total']:.3f}",
                f">= {TARGET_DEFAULT} {report.verdict(default_ok)}",
            ],
            [
                "baseline(2 processes) / baseline(1)",
                f"{mean['baseline2_over_baseline1_work']:.3f}",
                "",
                "",
            ],
            ["1 process: 2 threads / 1 thread", f"{threads['ratio_2t_over_1t']:.3f}", "", ""],
        ],
    )
    report.write_result(
        "throughput",
        {
            "machine": report.machine(),
            "quick": quick,
            "files": [p.name for p in files],
            "default_workers": default_workers,
            "default_workers_reason": why,
            "rounds": all_rounds,
            "ratios_per_round": ratios,
            "ratios_mean": mean,
            "targets": {
                "daemon1_over_baseline1": TARGET_ONE,
                "daemon_default_over_best": TARGET_DEFAULT,
            },
            "met": {"daemon1_over_baseline1": one_ok, "daemon_default_over_best": default_ok},
            "thread_check": threads,
        },
    )


if __name__ == "__main__":
    main()
