"""A test double at the engine seam: the real Aspose engine, behind a writer that cuts files.

Select it with ``engine = "tests.cutting_engine:CutBeforeReading"``. A file whose name starts with
``cut-`` and is longer than `CUT_TO` bytes is truncated to `CUT_TO` bytes in the worker just before
the engine opens it: after the daemon saw it settle, before any of it is read. Once cut it is left
alone, so when it settles again it is recognised as it now is. Every other file is the real
engine's, untouched.
"""

from __future__ import annotations

import os
from pathlib import Path

from ocr_daemon.engines.aspose import AsposeEngine
from ocr_daemon.engines.base import OcrResult

CUT_TO = 4096
PREFIX = "cut-"


class CutBeforeReading(AsposeEngine):
    def recognize(self, path: Path) -> OcrResult:
        if path.name.startswith(PREFIX) and path.stat().st_size > CUT_TO:
            os.truncate(path, CUT_TO)
        return super().recognize(path)
