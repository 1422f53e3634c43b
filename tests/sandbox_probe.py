"""Run *inside* the service sandbox by tests/test_systemd_service.py; prints one JSON report.

The test copies the installed ocr-daemon.service to a probe unit whose only change is
ExecStart= (this script, with the installed venv's Python), so what is reported is what the
daemon itself gets: identity, privileges, what it can write and see, the network, and whether
the Aspose engine (.NET JIT, ONNX) still recognises text in a spawned worker under that sandbox.
Standard library plus the installed ocr_daemon only; never raises (errors are reported).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import socket
import sys
import traceback
from pathlib import Path
from typing import Any


def try_write(path: str) -> str:
    try:
        with open(path, "w") as fh:
            fh.write("probe\n")
    except OSError as exc:
        return f"errno {exc.errno}"
    mode = oct(os.stat(path).st_mode & 0o777)
    os.unlink(path)
    return f"ok {mode}"


def try_socket(family: int) -> str:
    try:
        socket.socket(family, socket.SOCK_STREAM).close()
    except OSError as exc:
        return f"errno {exc.errno}"
    return "ok"


def listing(path: str) -> Any:
    try:
        return sorted(os.listdir(path))
    except OSError as exc:
        return f"errno {exc.errno}"


def status_fields() -> dict[str, str]:
    wanted = {"NoNewPrivs", "Seccomp", "CapEff", "CapBnd", "CapPrm"}
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            fields[key] = value.strip()
    return fields


def ocr_in_worker(image: str, queue: Any) -> None:
    """Runs in a spawned worker, like the daemon's pool: warm engine, then one recognition."""
    try:
        from ocr_daemon.config import load_config  # noqa: PLC0415
        from ocr_daemon.engines.base import load_engine  # noqa: PLC0415

        engine = load_engine(load_config(Path("/etc/ocr-daemon/ocr-daemon.toml")))
        engine.warm_up()
        queue.put({"text": engine.recognize(Path(image)).text, "env": sorted(os.environ)})
    except BaseException:
        queue.put({"error": traceback.format_exc()})


def main() -> None:
    report: dict[str, Any] = {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "status": status_fields(),
        "write": {
            p: try_write(p)
            for p in (
                "/etc/probe",
                "/usr/probe",
                "/opt/ocr-daemon/probe",
                "/var/tmp/probe",
                "/tmp/probe",
                "/var/lib/ocr-daemon/outbox/probe",
            )
        },
        "home": listing("/home"),
        "root": listing("/root"),
        "tmp": listing("/tmp"),
        "dev": listing("/dev"),
        "net": listing("/sys/class/net"),
        "af_inet": try_socket(socket.AF_INET),
        "af_unix": try_socket(socket.AF_UNIX),
        "proc_meminfo": Path("/proc/meminfo").exists(),
        "proc_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "pid": os.getpid(),
        "notify_socket": "NOTIFY_SOCKET" in os.environ,
    }
    if len(sys.argv) > 1:
        ctx = multiprocessing.get_context("spawn")
        queue = ctx.Queue()
        env_backup = {k: os.environ.pop(k) for k in ("NOTIFY_SOCKET",) if k in os.environ}
        worker = ctx.Process(target=ocr_in_worker, args=(sys.argv[1], queue))
        worker.start()
        os.environ.update(env_backup)
        try:
            report["ocr"] = queue.get(timeout=60)
        except Exception as exc:  # report, never raise
            report["ocr"] = {"error": f"no answer from the worker: {exc!r}"}
        worker.join(10)
        report["ocr_exitcode"] = worker.exitcode
    with contextlib.suppress(OSError):
        report["aspose_tmp_files"] = listing("/tmp")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
