"""The coordinator's side of scale-out: remote slots that hand jobs to worker hosts over NATS
JetStream (their results come back in through `results.Results`).

A `RemoteSlot` is a `slots.Slot` to the daemon: ``await slot.run(job_id, path, timeout_s)``
returns an `OcrResult` or raises the job's error. Behind it the `Coordinator` publishes the scan's
bytes to the jobs stream with a ``Nats-Msg-Id`` made of the coordinator, the journal id, the file's
identity and its attempt count (so a re-publish after a crash is de-duplicated by the broker), and
waits for the first result carrying that ID. Commits stay in the daemon; a later result for the
same ID (a worker that was cut off and came back) is acked and dropped as ``job.duplicate_dropped``.
Worker hosts announce themselves in a KV bucket, tracked by `registry.HostRegistry`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from ocr_daemon import inputs
from ocr_daemon.cluster import wire
from ocr_daemon.cluster.registry import HostRegistry
from ocr_daemon.cluster.results import Results, Waiter
from ocr_daemon.config import Config
from ocr_daemon.engines.base import EngineInfo, EngineSettings
from ocr_daemon.errors import (
    ClusterNoResult,
    ClusterUnavailable,
)
from ocr_daemon.formats import TXT_ONLY, Recognized, Rendering
from ocr_daemon.journal import Journal

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = structlog.get_logger()


class RemoteSlot:
    """A slot (`slots.Slot`) whose jobs run on whichever worker host pulls them first."""

    def __init__(self, index: int, coordinator: Coordinator) -> None:
        self.index = index
        self.coordinator = coordinator
        self.busy = False
        self.broken = False
        self.info: EngineInfo | None = None
        self.jobs_done = 0
        self.last_host: str | None = None

    @property
    def pid(self) -> str | None:
        """The worker host that ran this slot's last job."""
        return self.last_host

    async def start(self) -> EngineInfo:
        self.info = await self.coordinator.start()
        return self.info

    async def run(
        self,
        job_id: int,
        path: Path,
        timeout_s: float,
        settings: EngineSettings | None = None,
        rendering: Rendering = TXT_ONLY,
    ) -> Recognized:
        self.busy = True
        try:
            reply = await self.coordinator.dispatch(job_id, path, timeout_s, settings, rendering)
        finally:
            self.busy = False
        self.jobs_done += 1
        self.last_host = reply.worker_id
        if reply.error is not None:
            reply.error.path = str(path)
            raise reply.error
        assert reply.result is not None
        return Recognized(reply.result, reply.renders)

    async def stop(self, grace_s: float) -> None:
        await self.coordinator.close()


class Coordinator:
    """This daemon's connection to the cluster: publish, await results, watch worker hosts."""

    def __init__(self, config: Config, first_index: int, journal: Journal) -> None:
        self.config = config
        self.journal = journal  # the daemon's; read here, written only by the daemon
        self.settings = config.cluster
        self.id = wire.host_id(self.settings.coordinator_id)
        self.results_subject = f"{self.settings.results_subject}.{self.id}"
        count = self.settings.slots
        self.slots = [RemoteSlot(first_index + i, self) for i in range(count)]
        self.hosts = HostRegistry(self.settings)
        self.counts = {"published": 0, "redelivered": 0, "duplicates_dropped": 0, "exhausted": 0}
        self.results = Results(
            self.settings,
            self.hosts,
            self.counts,
            committed=self._committed,
            forget_renders=self.forget_renders,
        )
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._started: asyncio.Task[EngineInfo] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def start(self) -> EngineInfo:
        """Connect, set up the streams, start receiving (once, whichever slot asks first)."""
        if self._started is None:
            self._started = asyncio.create_task(self._start())
        return await asyncio.shield(self._started)

    async def _start(self) -> EngineInfo:
        name = f"ocr-coordinator-{self.id}"
        self._nc = await wire.connect(self.settings, name, wire.NO_NETWORK_HINT)
        self._js = js = self._nc.jetstream()
        try:
            await wire.ensure_streams(js, self.settings)
            await self._subscribe_results(js)
            advisory = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
            await self._nc.subscribe(
                f"{advisory}.{self.settings.stream}.{self.settings.consumer}", cb=self._exhausted
            )
        except wire.transport_errors() as exc:
            raise ClusterUnavailable(
                f"cannot set up JetStream: {exc!r}", self.settings.url
            ) from None
        self._tasks = [asyncio.create_task(self._watch_workers(), name="cluster-workers")]
        log.info(
            "cluster.connected", url=self.settings.url, coordinator=self.id,
            remote_slots=len(self.slots), stream=self.settings.stream,
        )  # fmt: skip
        await self.hosts.poll(js)
        return self.hosts.engine_info(self.config.engine)

    async def _subscribe_results(self, js: JetStreamContext) -> None:
        """A durable push consumer on this coordinator's results: the broker hands each result
        over the moment it is stored (a pull consumer costs a request round trip per batch,
        ~1 ms a job here). Durable, so results published while we were down still arrive."""
        from nats.js.api import AckPolicy, ConsumerConfig  # noqa: PLC0415

        config = ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT, ack_wait=self.settings.ack_wait_seconds,
            max_ack_pending=-1,
        )  # fmt: skip

        async def subscribe() -> object:
            return await js.subscribe(
                self.results_subject, durable=f"results-{self.id}",
                stream=self.settings.results_stream, config=config, manual_ack=True,
                cb=self.results.on_result,
            )  # fmt: skip

        # a predecessor killed a moment ago may still hold the consumer until the broker notices
        await wire.retry(subscribe, attempts=20, pause_s=0.5, what="results consumer")

    async def close(self) -> None:
        """Let pending result acks go out, stop watching hosts, disconnect: each step bounded,
        so the daemon's shutdown never waits on the broker or the client library."""
        if self._closed:
            return
        self._closed = True
        await self.results.send_acks(timeout_s=2.0)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=wire.CLOSE_SECONDS)
        if self._nc is not None:
            await wire.close(self._nc)
        log.info("cluster.closed", coordinator=self.id, **self.counts)

    # -- jobs ---------------------------------------------------------------------------------

    async def dispatch(
        self,
        job_id: int,
        path: Path,
        timeout_s: float,
        settings: EngineSettings | None = None,
        rendering: Rendering = TXT_ONLY,
    ) -> wire.ResultMessage:
        """Publish the job (or find it already published) and wait for its first result."""
        await self.start()
        msg_id, data = await asyncio.to_thread(self._read_job, job_id, path)
        waiter = self.results.expect(msg_id)
        object_key = None
        try:
            if not waiter.future.done():  # else it arrived early: published before a restart
                job = wire.JobMessage(msg_id, job_id, path.name, timeout_s, self.results_subject,
                                      None, data, settings, rendering)  # fmt: skip
                object_key = await self._publish(job, path, waiter)
            limit = self.settings.max_deliver * (timeout_s + self.settings.ack_wait_seconds)
            if waiter.consumed:
                limit = min(limit, 2 * self.settings.ack_wait_seconds + 5)
            reply = await self._await_result(msg_id, waiter, limit, str(path))
            try:
                return await self._with_renders(reply, rendering, str(path))
            finally:
                self._settle(job_id, waiter, reply)
        finally:
            self.results.forget(msg_id)
            if object_key is not None:
                await self._forget_object(object_key)

    async def _publish(self, job: wire.JobMessage, path: Path, waiter: Waiter) -> str | None:
        assert self._js is not None
        msg_id, object_key, size = job.msg_id, None, len(job.data)
        if size > self.settings.max_inline_bytes:
            object_key = wire.token(msg_id)
            await self._object_put(object_key, job.data, str(path))
            job = dataclasses.replace(job, object_key=object_key, data=b"")
        try:
            ack = await self._js.publish(
                self.settings.subject, job.encode(), headers={wire.MSG_ID: msg_id}, timeout=5.0
            )
        except wire.transport_errors() as exc:
            raise ClusterNoResult(f"cannot publish the job: {exc!r}", str(path)) from None
        waiter.seq = ack.seq
        if ack.duplicate:
            waiter.consumed = not await self._still_queued(ack.seq)
        self.counts["published"] += 0 if ack.duplicate else 1
        log.info(
            "job.published", path=str(path), msg_id=msg_id, seq=ack.seq,
            duplicate=bool(ack.duplicate), bytes=size, via="object" if object_key else "inline",
        )  # fmt: skip
        return object_key

    async def _object_put(self, key: str, data: bytes, what: str) -> None:
        assert self._js is not None
        try:
            store = await self._js.object_store(self.settings.object_bucket)
            await store.put(key, data)
        except wire.transport_errors() as exc:
            raise ClusterNoResult(f"cannot store the scan for workers: {exc!r}", what) from None

    async def _forget_object(self, key: str) -> None:
        assert self._js is not None
        with contextlib.suppress(*wire.transport_errors()):
            store = await self._js.object_store(self.settings.object_bucket)
            await store.delete(key)

    async def _still_queued(self, seq: int) -> bool:
        assert self._js is not None
        try:
            await self._js.get_msg(self.settings.stream, seq)
        except wire.not_found_error():
            return False
        except wire.transport_errors():
            return True
        return True

    async def _await_result(
        self, msg_id: str, waiter: Waiter, limit_s: float, what: str
    ) -> wire.ResultMessage:
        try:
            reply = await asyncio.wait_for(asyncio.shield(waiter.future), timeout=limit_s)
        except TimeoutError:
            await self._withdraw(waiter.seq)
            raise ClusterNoResult(
                f"no result from the cluster within {limit_s:g} s", what
            ) from None
        self.hosts.count_result(reply.worker_id)
        if reply.delivery > 1:
            self.counts["redelivered"] += 1
            log.info("job.redelivered", path=what, msg_id=msg_id, delivery=reply.delivery,
                     worker=reply.worker_id)  # fmt: skip
        return reply

    async def _withdraw(self, seq: int) -> None:
        """Take a job we gave up on out of the stream, so no worker starts it later."""
        if self._js is not None and seq:
            with contextlib.suppress(*wire.transport_errors()):
                await self._js.delete_msg(self.settings.stream, seq)

    def _read_job(self, job_id: int, path: Path) -> tuple[str, bytes]:
        """The job's message ID and the scan's bytes (one trip to a thread: they are per job)."""
        data, st = inputs.read_input(path, self.config.limits)  # as an engine reads it
        row = self.journal.progress(job_id)
        attempts = int(row[0]) if row else 0
        return f"{self.id}.{job_id}.{st.st_ino}-{st.st_size}-{st.st_mtime_ns}.{attempts}", data

    def _committed(self, job_id: int) -> bool:
        row = self.journal.progress(job_id)
        return row is None or row[1] in ("done", "failed", "gone")

    def _settle(self, job_id: int, waiter: Waiter, reply: wire.ResultMessage) -> None:
        """Ack the result once committed; an early one (already acked) just frees its objects."""
        if waiter.message is not None:
            self.results.ack_when_committed(job_id, waiter.message, reply)
        elif reply.render_keys:
            self.results.later(self.forget_renders(reply))

    async def _with_renders(
        self, reply: wire.ResultMessage, rendering: Rendering, what: str
    ) -> wire.ResultMessage:
        """The result with every rendered format the job asked for in `renders` (read from the
        object store where they were put), or `ClusterNoResult` (retried like a lost result)."""
        if reply.error is not None or not rendering.needs_rendering():
            return reply
        renders = dict(reply.renders)
        for name, key in reply.render_keys.items():
            renders[name] = await self._object_get(key, what)
        missing = [n for n in rendering.formats if n != "txt" and n not in renders]
        if missing:
            raise ClusterNoResult(
                f"worker host {reply.worker_id} returned no {', '.join(missing)} "
                "(an ocr-daemon too old for outputs?)",
                what,
            )
        return dataclasses.replace(reply, renders=renders)

    async def _object_get(self, key: str, what: str) -> bytes:
        assert self._js is not None
        try:
            store = await self._js.object_store(self.settings.object_bucket)
            data = (await store.get(key)).data
        except (*wire.transport_errors(), wire.not_found_error()) as exc:
            raise ClusterNoResult(f"cannot read a rendered output: {exc!r}", what) from None
        return data or b""

    async def forget_renders(self, reply: wire.ResultMessage) -> None:
        for key in reply.render_keys.values():
            await self._forget_object(key)

    async def _exhausted(self, message: Msg) -> None:
        """The broker gave up redelivering a job: fail it (it is the coordinator's to fail)."""
        seq = int(json.loads(message.data).get("stream_seq", 0))
        if self.results.exhausted(seq):
            await self._withdraw(seq)

    # -- worker hosts -------------------------------------------------------------------------

    async def _watch_workers(self) -> None:
        assert self._js is not None
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            await self.hosts.poll(self._js)
            self.results.expire_orphans()

    def status(self) -> dict[str, Any]:
        """Counts and per-worker-host counts for ``status.json``."""
        return {"url": self.settings.url, "coordinator": self.id, **self.counts,
                "hosts": self.hosts.status()}  # fmt: skip
