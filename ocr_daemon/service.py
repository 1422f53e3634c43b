"""Running the daemon as a process (``ocr-daemon run`` and ``once``): command-line overrides
applied on every reload, signals turned into events (see `signals`).

SIGTERM/SIGINT set the daemon's `stop` event (a second one sets `force`: stop at once, still
losing nothing); SIGHUP sets `reload`. Handlers do nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from collections.abc import Callable

import structlog

from ocr_daemon import overrides
from ocr_daemon.config import Config, load_config
from ocr_daemon.daemon import Daemon
from ocr_daemon.engines import openssl
from ocr_daemon.signals import handle_dump_signal, handle_stop_signals, watch_the_loop
from ocr_daemon.systemd import Notifier

log = structlog.get_logger()


def run(args: argparse.Namespace, config: Config) -> int:
    """``ocr-daemon run``: watch until stopped. What start-up made (modules, classes: ~40,000
    objects) lives as long as the daemon, so the cycle collector stops walking it: a full
    collection, which holds the loop, then costs only what the daemon holds now."""
    config = _engine_that_starts(config)
    gc.collect()
    gc.freeze()
    return asyncio.run(_serve(config, once=False, reload_config=_reloader(args)))


def once(args: argparse.Namespace, config: Config) -> int:
    """``ocr-daemon once``: process what is pending, wait for it, exit (1 if any failed)."""
    config = _engine_that_starts(config)
    return asyncio.run(_serve(config, once=True, reload_config=_reloader(args)))


def _engine_that_starts(config: Config) -> Config:
    """Aspose without OpenSSL 1.1 would abort: run Tesseract instead, and say what is missing."""
    config, missing = openssl.with_stand_in_engine(config)
    if missing:
        log.warning("engine.stand_in", engine=config.engine, instead_of="aspose", missing=missing)
    return config


def _reloader(args: argparse.Namespace) -> Callable[[], Config]:
    def reload() -> Config:
        config = overrides.apply(load_config(args.config), args)
        return openssl.with_stand_in_engine(config)[0]

    return reload


async def _serve(config: Config, *, once: bool, reload_config: Callable[[], Config]) -> int:
    daemon = Daemon(config, once=once, notifier=Notifier(), reload_config=reload_config)
    watch_the_loop()
    handle_stop_signals(daemon.stop, daemon.force, event="daemon.signal")
    handle_dump_signal()
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, daemon.reload.set)
    return await daemon.run()
