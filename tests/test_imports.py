"""What a command loads: `status` and `--help` load no engine, no nats and no watcher; a worker
host does not load the watcher or the daemon. Each probe is a fresh interpreter, so nothing this
test process imported counts. (`make lint` checks the same rules statically with import-linter.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENGINE_LIBRARIES = (
    "PIL",
    "pypdfium2",
    "tesserocr",
    "aspose",
    "pikepdf",
    "img2pdf",
    "fpdf",
    "fontTools",
    "lxml",
)
ENGINE_MODULES = tuple(
    f"ocr_daemon.engines.{name}"
    for name in ("aspose", "aspose_runtime", "tesseract", "images", "pdf", "orientation")
)
PROBE = """
import json, sys
from ocr_daemon import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def loaded_by(*argv: str, code: str = PROBE) -> tuple[int, set[str]]:
    """Run `code` in a fresh interpreter with `argv`; its exit code and the modules it loaded."""
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def heavy(modules: set[str]) -> set[str]:
    """What of the engines, nats, the watcher and the daemon `modules` holds."""
    libraries = {name.split(".")[0] for name in modules} & {*ENGINE_LIBRARIES, "nats", "watchfiles"}
    ours = modules & {*ENGINE_MODULES, "ocr_daemon.daemon", "ocr_daemon.watcher"}
    return libraries | ours


def test_help_loads_no_engine_no_nats_and_no_watcher() -> None:
    code, modules = loaded_by("--help")
    assert code == 0
    assert heavy(modules) == set()


def test_status_loads_no_engine_no_nats_and_no_watcher(tmp_path: Path) -> None:
    config = tmp_path / "ocr-daemon.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    code, modules = loaded_by("status", "--config", str(config))
    assert code == 3  # not running
    assert heavy(modules) == set()


def test_the_worker_command_imports_neither_the_watcher_nor_the_daemon() -> None:
    pytest.importorskip("nats")
    probe = (
        "import json, sys\n"
        "from ocr_daemon import cli\n"
        "cli.COMMANDS['worker'].handler  # the command as the CLI resolves it\n"
        "import ocr_daemon.cluster.worker_host\n"
        "print(json.dumps({'code': 0, 'modules': sorted(sys.modules)}))\n"
    )
    _, modules = loaded_by(code=probe)
    assert "ocr_daemon.cluster.worker_host" in modules
    assert heavy(modules) - {"nats"} == set()  # engines load in its engine processes only
    assert modules & {"ocr_daemon.daemon", "ocr_daemon.service"} == set()
