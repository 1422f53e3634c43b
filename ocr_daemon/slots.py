"""What the dispatcher runs a job on: the `Slot` Protocol.

A slot runs one job at a time. `pool.LocalSlot` runs it on a spawned engine process on this
machine; `cluster.coordinator.RemoteSlot` hands it to whichever worker host pulls it first. Neither
inherits from the other or from this Protocol: the daemon composes both kinds into one list, so
the pool knows nothing of the cluster and the cluster nothing of the pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ocr_daemon.engines.base import EngineInfo, EngineSettings
from ocr_daemon.formats import TXT_ONLY, Recognized, Rendering


class Slot(Protocol):
    """One place a job can run; `pid` names what ran the last job (a pid, or a worker host)."""

    index: int
    busy: bool  # running a job now
    broken: bool  # failed to (re)start its engine: the daemon is unhealthy
    info: EngineInfo | None  # the engine it runs, once started
    jobs_done: int

    @property
    def pid(self) -> int | str | None: ...

    async def start(self) -> EngineInfo:
        """Make the slot ready to take jobs (a warm engine, or a cluster connection)."""
        ...

    async def run(
        self,
        job_id: int,
        path: Path,
        timeout_s: float,
        settings: EngineSettings | None = None,
        rendering: Rendering = TXT_ONLY,
    ) -> Recognized:
        """Recognise `path` and render what `rendering` asks for; raise the job's typed error."""
        ...

    async def stop(self, grace_s: float) -> None:
        """Let the current job finish for up to `grace_s`, then release what the slot holds."""
        ...
