"""`ocr-daemon check`: can the daemon run here? One `CheckLine` per verified fact, in order.

Owns the checks, not their printing: `run_checks` yields lines as they are established and the
CLI prints them. The engine is started in a **spawned child process**, so an abort inside the
.NET runtime (SIGABRT when OpenSSL 1.1 is unusable) becomes a FAIL line with a reason instead of
killing `check`; this process never imports `aspose.ocr`.
"""

from __future__ import annotations

import importlib.metadata
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Literal

from ocr_daemon import folders
from ocr_daemon.cluster import check as cluster_check
from ocr_daemon.config import Config, languages
from ocr_daemon.config.rules import RULE_KEYS
from ocr_daemon.engines import openssl
from ocr_daemon.engines.base import (
    EVALUATION_MODE,
    EVALUATION_REMEDY,
    WARM_UP_PREFIX,
    EngineInfo,
    OcrResult,
    load_engine,
)
from ocr_daemon.errors import EngineUnavailable, ExitCode, OcrDaemonError

PACKAGES = (
    *("ocr-daemon", "aspose-ocr-python-net", "Pillow", "watchfiles", "structlog"),
    *("tesserocr", "pypdfium2"),
)
ENGINE_TIMEOUT_SECONDS = 180.0
Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class CheckLine:
    status: Status
    text: str
    exit_code: ExitCode = ExitCode.OK

    def __str__(self) -> str:
        return f"{self.status:<4} {self.text}"


def run_checks(config: Config) -> Iterator[CheckLine]:
    """Versions, OpenSSL 1.1, engine start, warm-up, licence, folders."""
    yield _versions()
    yield _tesseract(config)
    openssl = _openssl()
    yield openssl
    if openssl.status == "FAIL" and config.engine == "aspose":
        yield from _stand_in_engine(config)
    else:
        yield from _engine(config)
    for name in folders.FOLDERS:
        yield _folder(name, getattr(config, name))
    if config.cluster.url:
        yield from (CheckLine(s, t, c) for s, t, c in cluster_check.check(config))


def exit_code(lines: list[CheckLine]) -> ExitCode:
    """OK when nothing failed, else the code of the first failure."""
    return next((line.exit_code for line in lines if line.status == "FAIL"), ExitCode.OK)


def _versions() -> CheckLine:
    found, missing = [f"Python {sys.version.split()[0]}"], []
    for package in PACKAGES:
        try:
            found.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    if missing:
        text = f"packages not installed: {', '.join(missing)} (run `make setup`)"
        return CheckLine("FAIL", text, ExitCode.UNAVAILABLE)
    return CheckLine("ok", ", ".join(found))


def _tesseract(config: Config) -> CheckLine:
    """libtesseract's version, where its data is, and which languages are installed there."""
    try:
        from ocr_daemon.engines.tesseract import tesseract_version  # noqa: PLC0415 - optional engine

        version = tesseract_version()
    except ImportError as exc:
        return CheckLine("FAIL", f"tesserocr not importable: {exc}", ExitCode.UNAVAILABLE)
    tessdata = languages.find_tessdata(config.tesseract.tessdata_dir)
    installed = languages.installed_tesseract(tessdata)
    effective_configs = [effective for effective, _ in config.variants()]
    needed = {"osd"} if any(c.orientation for c in effective_configs) else set()
    for effective in effective_configs:
        if effective.engine == "tesseract":
            needed.update(languages.tesseract_names(effective.languages))
    text = f"tesseract {version}: data in {tessdata}, languages installed: {', '.join(installed)}"
    missing = sorted(needed - set(installed))
    if missing:
        return CheckLine("FAIL", f"{text}; MISSING {', '.join(missing)}", ExitCode.CONFIG)
    return CheckLine("ok", text)


def explain(config: Config, path: Path) -> list[str]:
    """`check --explain PATH`: the effective settings for PATH (inside the inbox, or relative to
    it) and the rule that gave them."""
    absolute, inbox = path.resolve(), config.inbox.resolve()
    rel = absolute.relative_to(inbox) if absolute.is_relative_to(inbox) else path
    return _explain_rel(config, rel.as_posix())


def _explain_rel(config: Config, rel: str) -> list[str]:
    effective, rule = config.for_path(rel)
    source = rule.describe() if rule else "defaults (no rule matched)"
    lines = [f"path: {rel}", f"rule: {source}"]
    set_by_rule = dict(rule.overrides) if rule else {}
    in_file = _keys_in_file(config.source)
    for key in RULE_KEYS:
        value = getattr(effective, key)
        shown = f"0o{value:o}" if key == "output_mode" else value
        if isinstance(value, tuple):
            shown = ", ".join(value)
        origin = "rule" if key in set_by_rule else "config file" if key in in_file else "default"
        lines.append(f"  {key} = {shown}  ({origin})")
    return lines


def _keys_in_file(source: Path | None) -> set[str]:
    """The top-level keys the config file sets (the config keeps values, not where they came
    from); none when there is no file. The file was read and validated moments ago."""
    if source is None:
        return set()
    try:
        with open(source, "rb") as fh:
            return set(tomllib.load(fh))
    except (OSError, tomllib.TOMLDecodeError):
        return set()


def _openssl() -> CheckLine:
    try:
        found = openssl.find_openssl()
    except EngineUnavailable as exc:
        return CheckLine("FAIL", exc.message, exc.exit_code)
    return CheckLine("ok", f"OpenSSL 1.1 ({found.source}): {found.libssl}, {found.libcrypto}")


def _stand_in_engine(config: Config) -> Iterator[CheckLine]:
    """Aspose cannot start without OpenSSL 1.1: check the engine `run` and `once` use instead."""
    try:
        stand_in, _missing = openssl.with_stand_in_engine(config)
    except EngineUnavailable as exc:
        yield CheckLine("FAIL", f"engine not started: {exc.message}", exc.exit_code)
        return
    yield CheckLine(
        "warn",
        f"engine aspose not started (it needs OpenSSL 1.1): `run` and `once` use the "
        f"{stand_in.engine} engine instead until the two libraries above are provided",
    )
    yield from _engine(stand_in)


def _engine(config: Config) -> Iterator[CheckLine]:
    """Start the engine in a spawned child; report each message it sends, then how it ended."""
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    with tempfile.NamedTemporaryFile(prefix="ocr-daemon-check-", suffix=".log") as output:
        child = context.Process(
            target=probe_engine, args=(config, sender, output.name), daemon=True
        )
        child.start()
        sender.close()
        steps = yield from _engine_messages(receiver, config)
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
        if steps < 2:
            yield _engine_died(child.exitcode, Path(output.name), steps)


def _engine_messages(receiver: Connection, config: Config) -> Generator[CheckLine, None, int]:
    deadline = time.monotonic() + ENGINE_TIMEOUT_SECONDS
    steps = 0
    while receiver.poll(max(0.0, deadline - time.monotonic())):
        try:
            kind, payload, seconds = receiver.recv()
        except EOFError:
            break
        if kind == "error":
            yield CheckLine("FAIL", f"engine: {payload}", payload.exit_code)
            return 2
        steps += 1
        yield from _engine_step(kind, payload, seconds, config)
    return steps


def _engine_step(kind: str, payload: object, seconds: float, config: Config) -> Iterator[CheckLine]:
    if kind == "loaded" and isinstance(payload, EngineInfo):
        yield CheckLine("ok", f"engine {payload.name} {payload.version} loads ({seconds:.1f} s)")
        yield _licence(payload)
    elif kind == "warm" and isinstance(payload, OcrResult):
        text = payload.pages[0] if payload.pages else ""
        first = text.strip().splitlines()[0] if text.strip() else ""
        if config.engine == "aspose" and not text.startswith(WARM_UP_PREFIX):
            failure = f"warm-up recognition returned {first!r}, expected {WARM_UP_PREFIX!r}..."
            yield CheckLine("FAIL", failure, ExitCode.SOFTWARE)
        else:
            yield CheckLine("ok", f"warm-up recognition returned {first!r} ({seconds:.1f} s)")


def _licence(info: EngineInfo) -> CheckLine:
    if info.licensed:
        return CheckLine("ok", f"{info.licence}: full text output")
    return CheckLine(
        "warn", f"EVALUATION MODE ({EVALUATION_MODE}). To lift it, {EVALUATION_REMEDY}"
    )


def _engine_died(exitcode: int | None, output: Path, steps: int) -> CheckLine:
    stage = "while starting" if steps == 0 else "during warm-up recognition"
    if exitcode is None:
        how = f"did not finish within {ENGINE_TIMEOUT_SECONDS:.0f} s"
    elif exitcode < 0:
        how = f"was killed by {signal.Signals(-exitcode).name}"
    else:
        how = f"exited with status {exitcode}"
    tail = output.read_text(errors="replace").strip().splitlines()[:3]
    said = f"; it said: {' | '.join(tail)}" if tail else ""
    return CheckLine("FAIL", f"engine process {how} {stage}{said}", ExitCode.UNAVAILABLE)


def _folder(name: str, folder: Path) -> CheckLine:
    problem = folders.problem(folder)
    if problem is None:
        return CheckLine("ok", f"{name} {folder} exists and is writable")
    if not problem:
        return CheckLine("warn", f"{name} {folder} does not exist yet; the daemon creates it")
    return CheckLine("FAIL", f"{name} {folder} {problem}", ExitCode.CANT_CREATE)


def probe_engine(config: Config, sender: Connection, output_path: str) -> None:
    """Child process: construct and warm the engine, sending each outcome to the parent."""
    descriptor = os.open(output_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(descriptor, 1)  # the runtime writes to raw fds (abort traces, .NET console)
    os.dup2(descriptor, 2)
    try:
        started = time.monotonic()
        engine = load_engine(config)
        sender.send(("loaded", engine.info(), time.monotonic() - started))
        started = time.monotonic()
        result = engine.warm_up()
        sender.send(("warm", result, time.monotonic() - started))
    except OcrDaemonError as exc:
        sender.send(("error", exc, 0.0))
    finally:
        sender.close()
