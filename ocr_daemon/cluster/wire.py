"""The wire between a coordinator and its worker hosts: the NATS connection, the JetStream streams,
consumer and buckets both sides rely on, and the job and result messages.

`nats` (the optional ``cluster`` extra) is imported inside functions only, so single-host users who
never set ``cluster.url`` never import it. A job message is a 4-byte length, a JSON header and the
scan's bytes (or, above ``max_inline_bytes``, an object-store key instead of the bytes); a result
message is JSON, carrying the formats the host's engine process rendered (``outputs`` beyond txt)
inline in base64, or, when they would make the message larger than half of ``max_inline_bytes``
(NATS refuses messages over its ``max_payload``, 1 MB by default), as object-store keys that the
coordinator reads and deletes once the result is acked. Errors cross the wire as their class
name, reason and message, and are rebuilt as the same `OcrDaemonError` class where this package
defines it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ocr_daemon import errors
from ocr_daemon.config import ClusterSettings
from ocr_daemon.engines.base import EngineSettings, OcrResult
from ocr_daemon.engines.layout import Box, Line, PageLayout, Word
from ocr_daemon.errors import ClusterUnavailable, InputError, OcrDaemonError, TransientError
from ocr_daemon.formats import TXT_ONLY, Rendering

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.js import JetStreamContext

log = structlog.get_logger()
MSG_ID = "Nats-Msg-Id"
CLOSE_SECONDS = 5.0  # each step of closing a connection
_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def token(text: str) -> str:
    """`text` made safe as one NATS subject token, consumer or object name."""
    return _TOKEN.sub("_", text) or "_"


def host_id(configured: str) -> str:
    return token(configured or socket.gethostname())


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a broker round trip raises when the broker is away (use in ``except``)."""
    import nats.errors  # noqa: PLC0415 - optional dependency, only on cluster code paths

    return (nats.errors.Error, TimeoutError, OSError)


def not_found_error() -> type[BaseException]:
    import nats.js.errors  # noqa: PLC0415

    return nats.js.errors.NotFoundError


NO_NETWORK_HINT = (
    "; under systemd, ocr-daemon.service has no network by design: give the coordinator the "
    "network with the drop-in in docs/cluster.md"
)


async def connect(settings: ClusterSettings, name: str, unit_hint: str = "") -> Client:
    """Connect, then reconnect endlessly. The first connection must succeed within
    ``connect_timeout_seconds`` (the client alone would retry it forever, hanging start-up and
    ``check``); the error then names the last failure, plus `unit_hint` under systemd."""
    try:
        from nats.aio.client import Client  # noqa: PLC0415
    except ImportError:
        raise ClusterUnavailable(
            "cluster.url is set but the NATS client is not installed: "
            "pip install 'ocr-daemon[cluster]'"
        ) from None
    failures: list[str] = []
    connected = False  # a first connection that never came up has nothing to report lost

    async def on_error(exc: Exception) -> None:
        failures.append(f"{type(exc).__name__}: {exc}")
        log.warning("broker.error", error=failures[-1])

    async def on_disconnect() -> None:
        if connected:
            log.warning("broker.disconnected", url=settings.url)

    async def on_reconnect() -> None:
        log.info("broker.reconnected", url=settings.url)

    nc, deadline_s = Client(), settings.connect_timeout_seconds
    try:
        await asyncio.wait_for(nc.connect(
            settings.url, name=name, connect_timeout=max(1, round(deadline_s)),
            allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=1,
            ping_interval=max(1, round(settings.heartbeat_seconds)), max_outstanding_pings=3,
            error_cb=on_error, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect,
        ), timeout=deadline_s)  # fmt: skip
    except transport_errors() as exc:
        await close(nc)
        why = failures[-1] if failures else repr(exc)
        hint = unit_hint if os.environ.get("INVOCATION_ID") else ""
        raise ClusterUnavailable(
            f"cannot connect to the broker within {deadline_s:g} s ({why}){hint}", settings.url
        ) from None
    connected = True
    return nc


async def close(nc: Client) -> None:
    """Disconnect within `CLOSE_SECONDS`, whatever the broker or the client library does, so no
    shutdown (daemon, worker host, ``check``) ever waits on them."""
    try:
        await asyncio.wait_for(nc.close(), timeout=CLOSE_SECONDS)
    except TimeoutError:  # before transport_errors(), which includes it
        log.warning("cluster.close_timeout", seconds=CLOSE_SECONDS)
    except transport_errors():
        pass


def expected_streams(settings: ClusterSettings) -> dict[str, Any]:
    """The jobs stream, results stream and worker consumer, as this config wants them."""
    from nats.js.api import (  # noqa: PLC0415
        AckPolicy,
        ConsumerConfig,
        RetentionPolicy,
        StorageType,
        StreamConfig,
    )

    def stream(name: str, subjects: list[str]) -> StreamConfig:
        return StreamConfig(
            name=name, subjects=subjects, retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE, duplicate_window=settings.duplicate_window_seconds,
        )  # fmt: skip

    consumer = ConsumerConfig(
        durable_name=settings.consumer, ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_seconds, max_deliver=settings.max_deliver,
        filter_subject=settings.subject, max_ack_pending=-1,
    )  # fmt: skip
    return {
        "jobs": stream(settings.stream, [settings.subject]),
        "results": stream(settings.results_stream, [f"{settings.results_subject}.>"]),
        "consumer": consumer,
    }


async def ensure_streams(js: JetStreamContext, settings: ClusterSettings) -> None:
    """Create (or bring up to date) the streams, the worker consumer and both buckets."""
    from nats.js.errors import BadRequestError  # noqa: PLC0415

    want = expected_streams(settings)
    for config in (want["jobs"], want["results"]):
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    await js.add_consumer(settings.stream, want["consumer"])
    await js.create_object_store(settings.object_bucket)
    await js.create_key_value(bucket=settings.workers_bucket, ttl=3 * settings.heartbeat_seconds)


@dataclass(frozen=True)
class JobMessage:
    """One job as it travels to a worker host."""

    msg_id: str
    job_id: int
    name: str
    timeout_s: float
    reply_subject: str
    object_key: str | None
    data: bytes
    settings: EngineSettings | None = None  # the job's engine, languages, orientation (rules)
    rendering: Rendering = TXT_ONLY  # the formats the host's engine process renders

    def encode(self) -> bytes:
        header = {
            "msg_id": self.msg_id, "job_id": self.job_id, "name": self.name,
            "timeout_s": self.timeout_s, "reply": self.reply_subject, "object": self.object_key,
            "settings": dataclasses.asdict(self.settings) if self.settings else None,
        }  # fmt: skip
        if self.rendering != TXT_ONLY:
            header["rendering"] = dataclasses.asdict(self.rendering)
        raw = json.dumps(header).encode()
        return len(raw).to_bytes(4, "big") + raw + self.data

    @classmethod
    def decode(cls, raw: bytes) -> JobMessage:
        size = int.from_bytes(raw[:4], "big")
        header = json.loads(raw[4 : 4 + size])
        return cls(
            msg_id=str(header["msg_id"]), job_id=int(header["job_id"]), name=str(header["name"]),
            timeout_s=float(header["timeout_s"]), reply_subject=str(header["reply"]),
            object_key=header["object"], data=raw[4 + size :],
            settings=_settings(header.get("settings")),
            rendering=_rendering(header.get("rendering")),
        )  # fmt: skip


def _settings(raw: dict[str, Any] | None) -> EngineSettings | None:
    if not raw:
        return None
    return EngineSettings(str(raw["engine"]), tuple(raw["languages"]), bool(raw["orientation"]))


def _rendering(raw: dict[str, Any] | None) -> Rendering:
    if not raw:
        return TXT_ONLY
    return Rendering(tuple(str(f) for f in raw["formats"]), bool(raw["pdfa"]))


def render_key(msg_id: str, delivery: int, name: str) -> str:
    """The object-store key of one rendered format of one delivery of one job."""
    return token(f"{msg_id}.d{delivery}.{name}")


def renders_fit_inline(renders: dict[str, bytes], settings: ClusterSettings) -> bool:
    """Whether the rendered formats (base64: 4/3 of their size) keep a result message under
    half of ``max_inline_bytes``; else they travel through the object store."""
    return sum(len(data) for data in renders.values()) * 4 // 3 <= settings.max_inline_bytes // 2


@dataclass(frozen=True)
class ResultMessage:
    """What a worker host sends back: the pages, or the error, for one delivery of one job."""

    msg_id: str
    worker_id: str
    delivery: int
    seconds: float
    result: OcrResult | None = None
    error: OcrDaemonError | None = None
    renders: dict[str, bytes] = dataclasses.field(default_factory=dict)  # carried inline
    render_keys: dict[str, str] = dataclasses.field(default_factory=dict)  # in the object store

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "msg_id": self.msg_id, "worker": self.worker_id, "delivery": self.delivery,
            "seconds": self.seconds,
        }  # fmt: skip
        if self.result is not None:
            body["pages"] = list(self.result.pages)
            body["evaluation_mode"] = self.result.evaluation_mode
            body["warnings"] = list(self.result.warnings)
            body["layout"] = [dataclasses.asdict(page) for page in self.result.layout]
        if self.error is not None:
            err = self.error
            body["error"] = {
                "class": type(err).__name__, "reason": err.reason, "message": err.message,
                "permanent": isinstance(err, InputError),
            }  # fmt: skip
        if self.renders or self.render_keys:
            body["renders"] = {
                name: base64.b64encode(data).decode() for name, data in self.renders.items()
            }
            body["render_keys"] = self.render_keys
        return json.dumps(body).encode()

    @classmethod
    def decode(cls, raw: bytes) -> ResultMessage:
        body = json.loads(raw)
        result = None
        if "pages" in body:
            result = OcrResult(
                tuple(body["pages"]), bool(body["evaluation_mode"]), tuple(body["warnings"]),
                tuple(_page_layout(page) for page in body.get("layout", ())),
            )  # fmt: skip
        error = _rebuild_error(body["error"]) if "error" in body else None
        renders = {str(k): base64.b64decode(v) for k, v in body.get("renders", {}).items()}
        keys = {str(k): str(v) for k, v in body.get("render_keys", {}).items()}
        return cls(
            str(body["msg_id"]), str(body["worker"]), int(body["delivery"]),
            float(body["seconds"]), result, error, renders, keys,
        )  # fmt: skip


def _page_layout(data: dict[str, Any]) -> PageLayout:
    """A page layout from its JSON form (`dataclasses.asdict`: boxes and words as objects)."""
    return PageLayout(
        int(data["width"]), int(data["height"]), float(data["dpi"]), data["dpi_source"],
        int(data["rotation"]), data["granularity"], tuple(map(_line, data["lines"])),
    )  # fmt: skip


def _line(data: dict[str, Any]) -> Line:
    words = tuple(Word(w["text"], Box(**w["box"]), w["confidence"]) for w in data["words"])
    return Line(data["text"], Box(**data["box"]), data["confidence"], words)


def _rebuild_error(data: dict[str, Any]) -> OcrDaemonError:
    """The same class when this package defines it; otherwise its permanence, with its reason."""
    cls = getattr(errors, data["class"], None)
    if isinstance(cls, type) and issubclass(cls, InputError | TransientError):
        return cls(data["message"])
    fallback = InputError if data.get("permanent") else TransientError
    error = fallback(data["message"])
    error.reason = data["reason"]
    return error


async def retry(
    action: Callable[[], Awaitable[Any]], *, attempts: int, pause_s: float, what: str
) -> Any:
    """Run `action` up to `attempts` times while the broker is away; the last error is raised."""
    for attempt in range(1, attempts + 1):
        try:
            return await action()
        except transport_errors() as exc:
            if attempt == attempts:
                raise
            log.debug("broker.retry", what=what, attempt=attempt, error=repr(exc))
        await asyncio.sleep(pause_s)
    raise AssertionError("unreachable")
