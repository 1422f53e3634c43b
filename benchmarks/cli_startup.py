"""CLI start-up cost: wall time of `ocr-daemon --help` and `ocr-daemon status` (best of N runs),
the cumulative `python -X importtime` of `ocr_daemon.cli`, and which heavy modules each command
leaves in `sys.modules`. Target (issue 13): `--help` and `status` well under 0.3 s.

    .venv/bin/python benchmarks/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.3
HEAVY = ("PIL", "pypdfium2", "tesserocr", "aspose", "nats", "watchfiles")
PROBE = """
import sys
from ocr_daemon import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
heavy = [m for m in {heavy!r} if m in sys.modules]
ours = [m for m in sys.modules if m.startswith("ocr_daemon")]
print("\\n" + repr((heavy, len(ours))))
"""


def wall_s(argv: list[str], runs: int) -> float:
    """Best wall time of `python -m ocr_daemon ARGV` over RUNS runs."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "ocr_daemon", *argv], capture_output=True, check=False
        )
        best = min(best, time.perf_counter() - start)
    return best


def import_us() -> int:
    """Cumulative import time of ocr_daemon.cli in microseconds (one fresh interpreter)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import ocr_daemon.cli"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in done.stderr.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) == 3 and fields[2] == "ocr_daemon.cli":
            return int(fields[1])
    raise RuntimeError("ocr_daemon.cli missing from -X importtime output")


def loaded(argv: list[str]) -> tuple[list[str], int]:
    """Heavy modules and the number of ocr_daemon modules loaded after running ARGV."""
    code = PROBE.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False
    )
    heavy, ours = eval(done.stdout.strip().splitlines()[-1])  # our own repr, one line
    return heavy, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "ocr-daemon.toml"
        config.write_text(f'inbox = "{scratch}/inbox"\n')
        (Path(scratch) / "inbox").mkdir()
        commands = {"--help": ["--help"], "status": ["status", "--config", str(config)]}
        figures: dict[str, object] = {"import_ocr_daemon_cli_ms": import_us() / 1000}
        for name, argv in commands.items():
            heavy, ours = loaded(argv)
            figures[name] = {"best_wall_s": round(wall_s(argv, runs), 3), "heavy": heavy,
                             "ocr_daemon_modules": ours}  # fmt: skip
    print(json.dumps(figures, indent=2))
    for name in commands:
        best = figures[name]["best_wall_s"]  # type: ignore[index]
        verdict = "met" if best < TARGET_S else "NOT met"
        print(f"{name}: best of {runs} {best:.3f} s (< {TARGET_S} s {verdict})")


if __name__ == "__main__":
    main()
