"""Scale-out over NATS JetStream against the single-host daemon, on this one machine.

Configurations, each an `ocr-daemon once` run on the same files:

* ``single``: the plain daemon, local workers only (no broker);
* ``cluster+1`` / ``cluster+2``: the coordinator with ``local_workers = false`` and one or two
  worker hosts, each in its own network namespace (tests/netns.py), nats-server on the bridge.

Engines: the instant test double, and the real engine on rendered A4 pages. Throughput is
files / (last ``file.done`` - ``daemon.started``), so engine warm-up is excluded everywhere. The
per-job messaging overhead is measured one job at a time (one engine, one slot, so nothing waits
in a queue): the wall time per job of that serial run (first to last ``file.done``, divided by the
jobs between them: read, publish, worker fetch, recognise, result, commit, next dispatch) minus
the same for the single-host daemon with one local worker. (``file.done`` seconds are rounded to
milliseconds, too coarse for a figure of a few ms; their medians are in the table.) Every host
shares the same 2 cores, so
the real-engine gain is bounded by the cores; the target is >= 0.9 of single-host throughput with
one worker host, and < 5 ms overhead per job with the instant engine.

    .venv/bin/python benchmarks/cluster_bench.py [--instant-files 400] [--real-pages 12]

Needs root (namespaces) and nats-server (installed from Debian's packages when missing). Prints a
table and writes benchmarks/results/cluster.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from daemonproc import DOUBLE, REPO, parse_ts, subprocess_env
from pageset import backdate, render_text_page

sys.path.insert(0, str(REPO))
from tests.netns import Lab, check_prerequisites

TARGET_OVERHEAD_MS = 5.0
TARGET_RATIO_ONE_HOST = 0.9


def write_toml(path: Path, values: dict[str, Any], cluster: dict[str, Any] | None) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    if cluster:
        lines += ["[cluster]", *(f"{k} = {json.dumps(v)}" for k, v in cluster.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


def events(log: Path) -> list[dict[str, Any]]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run_config(
    root: Path, files: list[Path], engine: str, hosts: int, engines_per_host: int, *, slots: int = 0
) -> dict[str, Any]:
    """One `once` run on hard links of `files`: single host when `hosts` is 0."""
    root.mkdir(parents=True)
    (root / "inbox").mkdir()
    for path in files:
        os.link(path, root / "inbox" / path.name)
    values = {
        "inbox": "inbox", "outbox": "outbox", "processed": "processed", "failed": "failed",
        "state_dir": "state", "engine": engine, "log_format": "json", "settle_seconds": 0.2,
        "workers": engines_per_host,
    }  # fmt: skip
    if hosts == 0:
        return _measure(root, files, write_toml(root / "daemon.toml", values, None), None, [])
    with Lab(root, hosts, check_prerequisites()) as lab:
        workers = []
        for host in range(1, hosts + 1):
            settings = {"url": lab.url, "worker_id": f"h{host}", "heartbeat_seconds": 1.0}
            worker_values = {"engine": engine, "workers": engines_per_host, "log_format": "json"}
            config = write_toml(root / f"worker-h{host}.toml", worker_values, settings)
            argv = [sys.executable, "-m", "ocr_daemon", "worker", "--config", str(config)]
            workers.append(root / f"worker-h{host}.log")
            lab.spawn(host, argv, workers[-1], subprocess_env())
        _wait_started(workers)
        cluster = {"url": lab.url, "coordinator_id": "bench", "local_workers": False,
                   "slots": slots or 2 * hosts * engines_per_host,
                   "heartbeat_seconds": 1.0}  # fmt: skip
        config = write_toml(root / "daemon.toml", values, cluster)
        return _measure(root, files, config, lab, workers)


def _wait_started(logs: list[Path], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(any(e["event"] == "worker_host.started" for e in events(log)) for log in logs):
            return
        time.sleep(0.1)
    raise TimeoutError(f"worker hosts did not start within {timeout_s} s: {logs}")


def _measure(
    root: Path, files: list[Path], config: Path, lab: Lab | None, worker_logs: list[Path]
) -> dict[str, Any]:
    import subprocess  # noqa: PLC0415

    log = root / "coordinator.log"
    argv = [sys.executable, "-m", "ocr_daemon", "once", "--config", str(config)]
    with open(log, "ab") as out:
        proc = (
            lab.spawn(None, argv, log, subprocess_env())
            if lab
            else subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=subprocess_env())
        )
        code = proc.wait(timeout=1800)
    found = events(log)
    done = [e for e in found if e["event"] == "file.done"]
    # daemon.started: workers warm, the inbox scan starts (it streams into the queue, so its own
    # end, inbox.scanned, can come after most files are done)
    started = next(parse_ts(e["timestamp"]) for e in found if e["event"] == "daemon.started")
    elapsed = max(parse_ts(e["timestamp"]) for e in done) - started
    figures: dict[str, Any] = {
        "exit_code": code, "files": len(files), "done": len(done),
        "seconds": round(elapsed, 3), "jobs_per_s": round(len(done) / elapsed, 4),
        "job_ms_median": round(1000 * statistics.median(e["seconds"] for e in done), 2),
        "wall_ms_per_job": _wall_ms_per_job(done),
    }  # fmt: skip
    if worker_logs:
        figures["files_by_host"] = _by_host(found)
    return figures


def _wall_ms_per_job(done: list[dict[str, Any]]) -> float | None:
    stamps = sorted(parse_ts(e["timestamp"]) for e in done)
    if len(stamps) < 2:
        return None
    return round(1000 * (stamps[-1] - stamps[0]) / (len(stamps) - 1), 3)


def _by_host(coordinator: list[dict[str, Any]]) -> dict[str, int]:
    by_host: dict[str, int] = {}
    for e in coordinator:
        if e["event"] == "file.done":
            by_host[str(e["worker"])] = by_host.get(str(e["worker"]), 0) + 1
    return by_host


def instant_files(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    files = []
    for i in range(count):
        path = folder / f"f{i:04}.png"
        path.write_bytes(b"x" * (1000 + i))
        files.append(path)
    backdate(files)
    return files


def real_pages(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True)
    files = [render_text_page(folder / f"page{i:02}.png", 20, seed=i) for i in range(count)]
    backdate(files)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instant-files", type=int, default=400)
    parser.add_argument("--real-pages", type=int, default=12)
    parser.add_argument("--latency-files", type=int, default=200)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ocr-cluster-bench-") as scratch:
        base = Path(scratch)
        suites = [("instant", DOUBLE, instant_files(base / "src-instant", args.instant_files), 2)]
        if not args.skip_real:
            suites.append(("real", "aspose", real_pages(base / "src-real", args.real_pages), 1))
        for suite, engine, files, per_host in suites:
            for name, hosts, engines in (("single", 0, 2), ("cluster+1", 1, 2),
                                         ("cluster+2", 2, per_host)):  # fmt: skip
                key = f"{suite} {name}"
                print(f"running {key} ({len(files)} files)...", flush=True)
                results[key] = run_config(
                    base / key.replace(" ", "-"), files, engine, hosts, engines
                )
                results[key]["engines"] = engines * max(1, hosts)
        # Latency: one job at a time (1 engine, 1 slot), so no job waits in a queue; the
        # difference of the per-job wall times is what the broker round trip adds to each job.
        files = instant_files(base / "src-latency", args.latency_files)
        for key, hosts in (("latency single", 0), ("latency cluster+1", 1)):
            print(f"running {key} ({len(files)} files, one at a time)...", flush=True)
            root = base / key.replace(" ", "-")
            results[key] = run_config(root, files, DOUBLE, hosts, 1, slots=1)
            results[key]["engines"] = 1
    _report(results)
    return 0


def _report(results: dict[str, dict[str, Any]]) -> None:
    rows = []
    for key, fig in results.items():
        single = results[f"{key.split()[0]} single"]["jobs_per_s"]
        fig["ratio_to_single"] = round(fig["jobs_per_s"] / single, 3)
        rows.append([key, fig["engines"], fig["done"], fig["seconds"], fig["jobs_per_s"],
                     fig["ratio_to_single"], fig["job_ms_median"], fig["wall_ms_per_job"],
                     fig.get("files_by_host", "-")])  # fmt: skip
    report.table(
        "ocr-daemon scale-out (NATS JetStream, worker hosts in network namespaces, 2 cores)",
        ["config", "engines", "files", "s", "jobs/s", "x single", "job ms (median)",
         "wall ms/job", "files by host"],
        rows,
    )  # fmt: skip
    single_ms = results["latency single"]["wall_ms_per_job"]
    cluster_ms = results["latency cluster+1"]["wall_ms_per_job"]
    overhead = round(cluster_ms - single_ms, 2)
    print(
        f"messaging overhead per job (instant engine, one at a time): {overhead} ms "
        f"({cluster_ms} ms a job through the broker, {single_ms} ms on the single host)"
    )
    ratio = results.get("real cluster+1", {}).get("ratio_to_single")
    targets = {
        "instant_overhead_ms_under_5": None if overhead is None else overhead < TARGET_OVERHEAD_MS,
        "real_one_host_ratio_at_least_0.9": None
        if ratio is None
        else ratio >= TARGET_RATIO_ONE_HOST,
    }
    for name, met in targets.items():
        print(f"{name}: {report.verdict(met)}")
    load = os.getloadavg()
    print(f"load average during the run: {load[0]:.1f} (1 min), {load[2]:.1f} (15 min)")
    report.write_result("cluster", {"machine": report.machine(), "load_average": load,
                                    "overhead_ms_per_job": overhead, "results": results,
                                    "targets": targets})  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
