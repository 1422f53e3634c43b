"""The [cluster] lines of ``ocr-daemon check``: the broker answers, the JetStream streams and the
worker consumer have this config's settings, and at least one worker host has a live heartbeat."""

from __future__ import annotations

import asyncio
from enum import Enum
from typing import TYPE_CHECKING, Any, Literal

from ocr_daemon.cluster import wire
from ocr_daemon.cluster.registry import read_beats
from ocr_daemon.config import ClusterSettings, Config
from ocr_daemon.errors import ClusterUnavailable, ExitCode

if TYPE_CHECKING:
    from nats.js import JetStreamContext

OK = ExitCode.OK
CheckResult = tuple[Literal["ok", "warn", "FAIL"], str, ExitCode]  # status, text, exit code


def check(config: Config) -> list[CheckResult]:
    """The [cluster] lines of ``ocr-daemon check``: the broker answers, the streams and the worker
    consumer have this config's settings, and at least one worker host has a live heartbeat.
    Empty when ``cluster.url`` is not set."""
    if not config.cluster.url:
        return []
    return asyncio.run(_check(config.cluster))


async def _check(settings: ClusterSettings) -> list[CheckResult]:
    try:
        nc = await wire.connect(settings, "ocr-daemon-check")
    except ClusterUnavailable as exc:
        return [("FAIL", f"broker {settings.url}: {exc.message}", exc.exit_code)]
    lines: list[CheckResult] = [
        ("ok", f"broker {settings.url} answers (nats-server {nc.connected_server_version})", OK)
    ]
    try:
        js = nc.jetstream()
        lines += await _check_streams(js, settings)
        lines.append(await _check_workers(js, settings))
    except wire.transport_errors() as exc:
        lines.append(("FAIL", f"JetStream: {exc!r}", ExitCode.UNAVAILABLE))
    finally:
        await wire.close(nc)
    return lines


async def _check_streams(js: JetStreamContext, settings: ClusterSettings) -> list[CheckResult]:
    want = wire.expected_streams(settings)
    lines: list[CheckResult] = []
    for key in ("jobs", "results"):
        name = want[key].name
        try:
            got = (await js.stream_info(name)).config
        except wire.not_found_error():
            lines.append(("warn", f"stream {name} not created yet (the first start does)", OK))
            continue
        wrong = _differences(want[key], got, ("retention", "storage", "duplicate_window"))
        lines.append(_settings_line(f"stream {name}", wrong))
    try:
        consumer = (await js.consumer_info(settings.stream, settings.consumer)).config
    except wire.not_found_error():
        return lines
    wrong = _differences(want["consumer"], consumer, ("ack_wait", "max_deliver", "ack_policy"))
    lines.append(_settings_line(f"consumer {settings.consumer}", wrong))
    return lines


def _differences(want: Any, got: Any, fields: tuple[str, ...]) -> list[str]:
    def plain(value: Any) -> str:
        return str(value.value if isinstance(value, Enum) else value)

    return [
        f"{name} is {plain(getattr(got, name))}, config says {plain(getattr(want, name))}"
        for name in fields
        if plain(getattr(got, name)) != plain(getattr(want, name))
    ]


def _settings_line(what: str, wrong: list[str]) -> CheckResult:
    if wrong:
        return ("FAIL", f"{what}: {'; '.join(wrong)}", ExitCode.CONFIG)
    return ("ok", f"{what} has the configured settings", OK)


async def _check_workers(js: JetStreamContext, settings: ClusterSettings) -> CheckResult:
    beats = await read_beats(js, settings)
    if not beats:
        text = f"no worker host has answered within {3 * settings.heartbeat_seconds:g} s"
        return (
            "FAIL",
            f"{text}: start `ocr-daemon worker` on at least one host",
            ExitCode.UNAVAILABLE,
        )
    hosts = ", ".join(f"{b.get('worker')} ({b.get('slots')} engines)" for _, b in beats.values())
    return ("ok", f"worker hosts answering: {hosts}", OK)
