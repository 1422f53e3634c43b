"""A test double that can also fail to start, for the "engine cannot come back" fault.

Behaves as `tests.engine_double.ScriptedEngine`, except that `warm_up` raises `EngineUnavailable`
while a file named ``engine-broken`` exists in the state directory. Select it with
``engine = "tests.fault_engine:FaultEngine"``.
"""

from __future__ import annotations

from ocr_daemon.engines.base import OcrResult
from ocr_daemon.errors import EngineUnavailable
from tests.engine_double import ScriptedEngine

BROKEN_MARKER = "engine-broken"


class FaultEngine(ScriptedEngine):
    def warm_up(self) -> OcrResult:
        if (self.config.state_dir / BROKEN_MARKER).exists():
            raise EngineUnavailable("injected fault: the engine cannot start")
        return super().warm_up()
