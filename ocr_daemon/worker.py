"""The worker process: one warm engine, one job at a time, and nothing else.

Started with ``spawn`` by the pool (never forked: the .NET runtime is not fork-safe). It ignores
SIGINT and SIGTERM — systemd and Ctrl+C signal the whole process group, and the daemon decides when
work stops — and SIGUSR1 (the daemon's stack-dump request, which `systemctl kill` sends to the whole
group too). It neither logs nor writes outputs: it receives ``(job_id, path, settings, rendering)``
and sends back a `Done` (the result, and the bytes of each format `rendering` asks for beside the
text, rendered here, never in the daemon) or a `Failed`. `settings` (an `EngineSettings`, from the
path's rule) picks the engine: the configured default is built and warmed at start, any other on its
first job. Its stdout is pointed at stderr, because the engine writes to the raw file descriptor 1,
which in the daemon is the structured log stream.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from ocr_daemon.config import Config
from ocr_daemon.engines.base import Engine, EngineInfo, EngineSettings, OcrResult, load_engine
from ocr_daemon.errors import OcrDaemonError, RecognitionFailed
from ocr_daemon.formats import TXT_ONLY, Rendering

CODE_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ResourceWarning)


@dataclass(frozen=True)
class Ready:
    info: EngineInfo


@dataclass(frozen=True)
class Done:
    job_id: int
    result: OcrResult
    renders: dict[str, bytes] = field(default_factory=dict)  # format -> bytes; never "txt"


@dataclass(frozen=True)
class Failed:
    job_id: int
    error: OcrDaemonError


def serve(conn: Connection, config: Config) -> None:
    """Process entry point: warm up, report ready, then answer jobs until told to stop."""
    os.dup2(2, 1)
    _die_with_parent()
    _ignore_signals()
    try:
        engine = load_engine(config)
        _ignore_signals()  # again: importing the engine's runtime installs its own SIGTERM handler
        engine.warm_up()
        conn.send(Ready(engine.info()))
    except OcrDaemonError as exc:
        conn.send(Failed(-1, exc))
        return
    engines = {EngineSettings.of(config): engine}
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        job_id, path, settings, rendering = message
        conn.send(_recognize(engines, config, settings, job_id, path, rendering=rendering))


def _recognize(
    engines: dict[EngineSettings, Engine],
    config: Config,
    settings: EngineSettings,
    job_id: int,
    path: str,
    *,
    rendering: Rendering = TXT_ONLY,
) -> Done | Failed:
    try:
        if settings not in engines:
            engines[settings] = load_engine(settings.apply(config))
        engine = engines[settings]
        started = time.monotonic()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for noise in CODE_WARNINGS:  # about code, not the file: never the user's concern
                warnings.simplefilter("ignore", noise)
            result = engine.recognize(Path(path))
            seconds = time.monotonic() - started
            result = _with_warnings(result, caught)
            return Done(job_id, result, _render(Path(path), result, engine, seconds, rendering))
    except OcrDaemonError as exc:
        return Failed(job_id, exc)
    except Exception as exc:  # the engine's own errors: reported, never fatal to the worker
        return Failed(job_id, RecognitionFailed(f"{type(exc).__name__}: {exc}", path))


def _with_warnings(result: OcrResult, caught: list[warnings.WarningMessage]) -> OcrResult:
    """`result` with the Python warnings its file raised (Pillow's ``Corrupt EXIF data`` …),
    once each: in the result they reach the outputs, where on the engine process's stderr they
    would break the daemon's JSON log stream."""
    said = [f"{w.category.__name__}: {w.message}" for w in caught]
    new = [text for text in dict.fromkeys(said) if text not in result.warnings]
    return dataclasses.replace(result, warnings=(*result.warnings, *new)) if new else result


def _render(
    path: Path, result: OcrResult, engine: Engine, seconds: float, rendering: Rendering
) -> dict[str, bytes]:
    if not rendering.needs_rendering():
        return {}
    from ocr_daemon.formats import render  # noqa: PLC0415 - only engine processes render

    return render.render(path, result, engine.info(), seconds, rendering)


def _ignore_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the daemon's stack-dump request


def _die_with_parent() -> None:
    # If the daemon is SIGKILLed, its workers must not live on (a hung one would forever).
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
