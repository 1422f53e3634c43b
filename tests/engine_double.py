"""Test doubles at the engine seam, for injecting crashes and hangs (never used in production).

Select one with ``engine = "tests.engine_double:ScriptedEngine"`` in a test config (the tests
directory's parent must be importable in the worker, e.g. via PYTHONPATH). Behaviour is chosen by
markers in the input's file name, so one batch can mix good and bad files:

- ``crash``: the worker aborts (SIGABRT), like the .NET runtime's fail-fast;
- ``segv``: the worker dies of SIGSEGV;
- ``oom``: the worker is SIGKILLed, as the kernel's OOM killer does;
- ``hang``: the recognition never returns;
- ``slow``: takes 2 s;
- ``corrupt``: raises `CorruptInput`;
- anything else: one page whose text is ``"text of NAME (N bytes)"``, instantly.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from ocr_daemon.config import Config
from ocr_daemon.engines.base import EngineInfo, OcrResult
from ocr_daemon.errors import CorruptInput


class ScriptedEngine:
    def __init__(self, config: Config) -> None:
        self.config = config

    def info(self) -> EngineInfo:
        return EngineInfo(name="scripted-double", version="0", licensed=True)

    def warm_up(self) -> OcrResult:
        return OcrResult(pages=("warm",), evaluation_mode=False)

    def recognize(self, path: Path) -> OcrResult:
        name = path.name
        if "crash" in name:
            os.abort()
        if "segv" in name:
            os.kill(os.getpid(), signal.SIGSEGV)
        if "oom" in name:
            os.kill(os.getpid(), signal.SIGKILL)
        if "hang" in name:
            time.sleep(3600)
        if "slow" in name:
            time.sleep(2)
        if "corrupt" in name:
            raise CorruptInput("scripted corruption", str(path))
        size = path.stat().st_size
        return OcrResult(pages=(f"text of {name} ({size} bytes)",), evaluation_mode=False)
