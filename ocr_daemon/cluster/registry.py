"""The worker hosts a coordinator knows of: who joined, who went silent, and how many results
each sent, from the heartbeats in the workers KV bucket and the results themselves."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ocr_daemon.cluster import wire
from ocr_daemon.config import ClusterSettings
from ocr_daemon.engines.base import EngineInfo

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = structlog.get_logger()
Beats = dict[str, tuple[int, dict[str, Any]]]  # worker id -> (KV revision, heartbeat)


@dataclass
class WorkerSeen:
    """A worker host as the coordinator knows it, from its heartbeats and its results."""

    revision: int
    changed_at: float
    beat: dict[str, Any]
    alive: bool = True
    results: int = 0
    duplicates_dropped: int = 0


class HostRegistry:
    def __init__(self, settings: ClusterSettings) -> None:
        self.settings = settings
        self.seen: dict[str, WorkerSeen] = {}

    async def poll(self, js: JetStreamContext) -> None:
        """Read every heartbeat in the bucket and update who is alive (a broker away: no news)."""
        try:
            beats = await read_beats(js, self.settings)
        except wire.transport_errors():
            return
        self.update(beats, time.monotonic())

    def update(self, beats: Beats, now: float) -> None:
        """A host whose heartbeat has not changed for 3 periods is lost; a new or returning one
        has joined."""
        stale_s = 3 * self.settings.heartbeat_seconds
        for key, (revision, beat) in beats.items():
            seen = self.seen.get(key)
            if seen is not None and revision == seen.revision:
                continue  # no heartbeat since the last look (a lost host's key can linger)
            joined = seen is None or not seen.alive
            seen = self.seen.setdefault(key, WorkerSeen(revision, now, beat))
            seen.alive, seen.revision, seen.changed_at, seen.beat = True, revision, now, beat
            if joined:
                log.info("worker.joined", worker=key, slots=beat.get("slots"),
                         engine=beat.get("engine", {}).get("name"))  # fmt: skip
        for key, seen in self.seen.items():
            if seen.alive and now - seen.changed_at > stale_s:  # kv.keys() can miss a key
                seen.alive = False
                log.warning(
                    "worker.lost", worker=key, silent_seconds=round(now - seen.changed_at, 1)
                )

    def count_result(self, worker_id: str, *, duplicate: bool = False) -> None:
        seen = self.seen.get(worker_id)
        if seen is not None:
            seen.results += 0 if duplicate else 1
            seen.duplicates_dropped += 1 if duplicate else 0

    def engine_info(self, configured: str) -> EngineInfo:
        """The engine the first host reports, or the configured name until one has."""
        for seen in self.seen.values():
            engine = seen.beat.get("engine") or {}
            if engine:
                return EngineInfo(
                    str(engine.get("name")), str(engine.get("version")),
                    bool(engine.get("licensed")), detail="reported by a worker host",
                )  # fmt: skip
        return EngineInfo(configured, "on worker hosts", True, detail="no worker seen yet")

    def summary(self) -> str:
        """One line for systemd's STATUS=: ``h1 up 12 done, h2 lost 3 done``."""
        return ", ".join(
            f"{name} {'up' if seen.alive else 'lost'} {seen.results} done"
            for name, seen in sorted(self.seen.items())
        )

    def status(self) -> dict[str, dict[str, Any]]:
        """Per-host counts for ``status.json``."""
        return {key: _host_status(seen) for key, seen in self.seen.items()}


async def read_beats(js: JetStreamContext, settings: ClusterSettings) -> Beats:
    """Every worker host's latest heartbeat in the workers bucket (none when it is empty or not
    there yet); the broker's transport errors are the caller's."""
    from nats.js.errors import NoKeysError  # noqa: PLC0415

    beats: Beats = {}
    try:
        kv = await js.key_value(settings.workers_bucket)
        for key in await kv.keys():
            entry = await kv.get(key)
            beats[key] = (entry.revision or 0, json.loads(entry.value or b"{}"))
    except (NoKeysError, wire.not_found_error()):
        pass
    return beats


def _host_status(seen: WorkerSeen) -> dict[str, Any]:
    return {
        "alive": seen.alive, "slots": seen.beat.get("slots"), "busy": seen.beat.get("busy"),
        "jobs_done": seen.beat.get("jobs_done"), "results": seen.results,
        "duplicates_dropped": seen.duplicates_dropped,
    }  # fmt: skip
