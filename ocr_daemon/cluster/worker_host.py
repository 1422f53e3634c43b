"""``ocr-daemon worker``: an OCR worker host for a coordinator, over NATS JetStream.

It runs the same warm engine pool as the daemon (`pool.LocalSlot`s), pulls only as many jobs as it
has free engines, renews the broker's lease (``+WPI``) every third of ``ack_wait_seconds`` while a
job is recognised, publishes the result, and only then acks. It owns no folders and commits nothing:
a job it never acks (host died, link cut) is redelivered to another worker after the ack wait, and
if its late result arrives after all, the coordinator drops it. It announces itself in the workers
KV bucket every ``heartbeat_seconds``. SIGTERM stops pulling and lets jobs in flight finish for
``shutdown_timeout_seconds``; a second signal stops at once (the broker redelivers)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from ocr_daemon.cluster import wire
from ocr_daemon.config import ClusterSettings, Config
from ocr_daemon.engines.base import EngineInfo
from ocr_daemon.errors import (
    EngineUnavailable,
    ExitCode,
    InputError,
    OcrDaemonError,
    TransientError,
    UsageError,
)
from ocr_daemon.formats import Recognized
from ocr_daemon.pool import Pool, choose_worker_count
from ocr_daemon.signals import handle_dump_signal, handle_stop_signals, watch_the_loop
from ocr_daemon.slots import Slot

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

log = structlog.get_logger()
INLINE_WRITE_BYTES = 1 << 20
NAK_DELAY_SECONDS = 1.0  # a job this host could not handle waits this long before redelivery


def run_worker(args: argparse.Namespace, config: Config) -> int:
    """The ``worker`` subcommand."""
    if not config.cluster.url:
        raise UsageError("`ocr-daemon worker` needs [cluster] url in the config")
    return asyncio.run(_serve(config))


async def _serve(config: Config) -> int:
    host = WorkerHost(config)
    watch_the_loop()
    handle_stop_signals(host.stop, host.force, event="worker_host.signal")
    handle_dump_signal()
    return await host.run()


class WorkerHost:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.cluster
        self.id = wire.host_id(self.settings.worker_id)
        local = dataclasses.replace(config, cluster=ClusterSettings())
        self.size, self.size_why = choose_worker_count(local)
        self.pool = Pool(local, self.size)
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.freed = asyncio.Event()
        self.reserved: set[int] = set()
        self.in_flight: set[asyncio.Task[None]] = set()
        self.counts = {"jobs_done": 0, "failed": 0, "redelivered": 0, "unpublished": 0}
        self.tmp = Path(tempfile.gettempdir())  # a private folder under it once running
        self._js: JetStreamContext | None = None

    async def run(self) -> int:
        nc: Client | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="ocr-worker-"))
        for slot in self.pool.slots:
            self._slot_folder(slot).mkdir()
        try:
            info = await self.pool.start()
            nc = await wire.connect(self.settings, f"ocr-worker-{self.id}")
            self._js = js = nc.jetstream()
            await wire.ensure_streams(js, self.settings)
            sub = await js.pull_subscribe_bind(self.settings.consumer, self.settings.stream)
            log.info("worker_host.started", worker=self.id, url=self.settings.url, slots=self.size,
                     slots_reason=self.size_why, engine=f"{info.name} {info.version}")  # fmt: skip
            beats = asyncio.create_task(self._heartbeats(info), name="heartbeats")
            try:
                await self._pull(sub)
                await self._drain()
            finally:
                beats.cancel()
                await self._leave()
        except OcrDaemonError as exc:
            log.critical("worker_host.fatal", error=str(exc), reason=exc.reason)
            return int(exc.exit_code)
        finally:
            if nc is not None:
                await wire.close(nc)
            await self.pool.close(grace_s=0 if self.force.is_set() else 5.0)
            shutil.rmtree(self.tmp, ignore_errors=True)
            log.info("worker_host.stopped", worker=self.id, **self.counts)
        return int(ExitCode.OK)

    # -- pulling -----------------------------------------------------------------------------

    def _free(self) -> list[Slot]:
        return [s for s in self.pool.slots if s.index not in self.reserved and not s.broken]

    async def _pull(self, sub: JetStreamContext.PullSubscription) -> None:
        """Fetch exactly as many jobs as there are idle engines; stop when told to."""
        while not self.stop.is_set():
            free = self._free()
            if not free:
                if not any(not s.broken for s in self.pool.slots):
                    raise EngineUnavailable("every engine on this host failed to start")
                self.freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.freed.wait(), timeout=1.0)
                continue
            try:
                messages = await sub.fetch(len(free), timeout=1.0)
            except TimeoutError:
                continue
            except wire.transport_errors():
                await asyncio.sleep(0.5)
                continue
            for message, slot in zip(messages, free, strict=False):
                self.reserved.add(slot.index)
                task = asyncio.create_task(self._handle(message, slot))
                self.in_flight.add(task)
                task.add_done_callback(self.in_flight.discard)

    async def _drain(self) -> None:
        if self.in_flight and not self.force.is_set():
            log.info("worker_host.draining", in_flight=len(self.in_flight))
            waiter = asyncio.create_task(asyncio.wait(set(self.in_flight)))
            force = asyncio.create_task(self.force.wait())
            await asyncio.wait(
                [waiter, force], timeout=self.config.shutdown_timeout_seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            waiter.cancel()
            force.cancel()
        for task in list(self.in_flight):
            task.cancel()  # never acked: the broker hands it to another worker after ack_wait
        await asyncio.gather(*self.in_flight, return_exceptions=True)

    # -- one job -----------------------------------------------------------------------------

    async def _handle(self, message: Msg, slot: Slot) -> None:
        """Run one job; whatever goes wrong with it (a staging write, a bad message, an engine
        that can no longer start) is logged and the job handed back to the broker for
        redelivery at once (nak), never left to die unread in its task."""
        try:
            await self._run_job(message, slot)
        except Exception as exc:
            log.error("job.handling_failed", worker=self.id, slot=slot.index, error=repr(exc),
                      exc_info=True)  # fmt: skip
            with contextlib.suppress(*wire.transport_errors()):
                await message.nak(delay=NAK_DELAY_SECONDS)
        finally:
            self.reserved.discard(slot.index)
            self.freed.set()

    async def _run_job(self, message: Msg, slot: Slot) -> None:
        delivery = message.metadata.num_delivered or 1
        job = wire.JobMessage.decode(message.data)
        log.info(
            "job.received", msg_id=job.msg_id, delivery=delivery, worker=self.id, slot=slot.index
        )
        if delivery > 1:
            self.counts["redelivered"] += 1
            log.info("job.redelivered", msg_id=job.msg_id, delivery=delivery, worker=self.id)
        lease = asyncio.create_task(self._keep_leased(message))
        try:
            reply = await self._recognize(job, slot, delivery)
            if reply is None:
                return
            if await self._publish(job, reply):
                with contextlib.suppress(*wire.transport_errors()):
                    await message.ack()
        finally:
            lease.cancel()

    async def _recognize(
        self, job: wire.JobMessage, slot: Slot, delivery: int
    ) -> wire.ResultMessage | None:
        data = job.data if job.object_key is None else await self._fetch_object(job.object_key)
        if data is None:
            return None  # the coordinator already has its result and removed the scan
        started = time.monotonic()
        recognized: Recognized | None = None
        error: OcrDaemonError | None = None
        path = await self._stage(job, slot, data)
        try:
            recognized = await slot.run(
                job.job_id, path, job.timeout_s, job.settings, job.rendering
            )
        except (InputError, TransientError) as exc:
            error = exc
        finally:
            path.unlink(missing_ok=True)
        seconds = time.monotonic() - started
        self.counts["jobs_done" if error is None else "failed"] += 1
        log.info("job.recognised", msg_id=job.msg_id, worker=self.id, delivery=delivery,
                 seconds=round(seconds, 3), error=error.reason if error else None)  # fmt: skip
        reply = wire.ResultMessage(job.msg_id, self.id, delivery, seconds, error=error)
        if recognized is None:
            return reply
        reply = dataclasses.replace(reply, result=recognized.result)
        return await self._attach_renders(reply, recognized.renders)

    async def _attach_renders(
        self, reply: wire.ResultMessage, renders: dict[str, bytes]
    ) -> wire.ResultMessage:
        """The rendered formats inline when small, else put in the object store by key."""
        if wire.renders_fit_inline(renders, self.settings):
            return dataclasses.replace(reply, renders=renders)
        assert self._js is not None
        js, keys = self._js, {}
        for name, data in renders.items():
            key = wire.render_key(reply.msg_id, reply.delivery, name)

            async def put(key: str = key, data: bytes = data) -> None:
                store = await js.object_store(self.settings.object_bucket)
                await store.put(key, data)

            await wire.retry(put, attempts=20, pause_s=0.5, what="rendered output")
            keys[name] = key
        size = sum(len(data) for data in renders.values())
        log.info("job.renders_stored", msg_id=reply.msg_id, worker=self.id, formats=list(keys),
                 bytes=size, why="too large to travel inline")  # fmt: skip
        return dataclasses.replace(reply, render_keys=keys)

    async def _stage(self, job: wire.JobMessage, slot: Slot, data: bytes) -> Path:
        """The scan as a file for the engine, in the slot's own folder (one job at a time each),
        under the job's name. Small scans are written in place: a trip to a thread costs more
        (~0.5-1 ms measured on 2 busy cores) than writing a few hundred kB."""
        path = self._slot_folder(slot) / os.fsdecode(os.fsencode(job.name).replace(b"/", b"_"))
        if len(data) <= INLINE_WRITE_BYTES:
            path.write_bytes(data)
        else:
            await asyncio.to_thread(path.write_bytes, data)
        return path

    def _slot_folder(self, slot: Slot) -> Path:
        return self.tmp / f"slot-{slot.index}"

    async def _fetch_object(self, key: str) -> bytes | None:
        assert self._js is not None
        js = self._js

        async def get() -> bytes | None:
            store = await js.object_store(self.settings.object_bucket)
            try:
                return (await store.get(key)).data
            except wire.not_found_error():
                return None

        data: bytes | None = await wire.retry(get, attempts=20, pause_s=0.5, what="object")
        return data

    async def _keep_leased(self, message: Msg) -> None:
        """``+WPI`` every third of the ack wait, so a long page is not handed to someone else."""
        period_s = self.settings.ack_wait_seconds / 3
        while True:
            await asyncio.sleep(period_s)
            with contextlib.suppress(*wire.transport_errors()):
                await message.in_progress()

    async def _publish(self, job: wire.JobMessage, reply: wire.ResultMessage) -> bool:
        """Publish until the broker stores it (its ID de-duplicates retries), for at most the
        duplicate window: past it the coordinator has long redone the job elsewhere."""
        assert self._js is not None
        js, body = self._js, reply.encode()
        headers = {wire.MSG_ID: f"{job.msg_id}.d{reply.delivery}"}
        deadline = time.monotonic() + self.settings.duplicate_window_seconds
        while time.monotonic() < deadline and not self.force.is_set():
            try:
                await js.publish(job.reply_subject, body, headers=headers, timeout=2.0)
                return True
            except wire.transport_errors():
                await asyncio.sleep(0.5)
        self.counts["unpublished"] += 1
        log.warning("job.result_unpublished", msg_id=job.msg_id, worker=self.id)
        return False

    # -- presence ----------------------------------------------------------------------------

    async def _heartbeats(self, info: EngineInfo) -> None:
        assert self._js is not None
        while True:
            beat = {
                "worker": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                "slots": self.size, "busy": len(self.reserved), **self.counts,
                "engine": {"name": info.name, "version": info.version, "licensed": info.licensed},
            }  # fmt: skip
            with contextlib.suppress(*wire.transport_errors()):
                kv = await self._js.key_value(self.settings.workers_bucket)
                await kv.put(self.id, json.dumps(beat).encode())
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def _leave(self) -> None:
        if self._js is not None:
            with contextlib.suppress(*wire.transport_errors()):
                kv = await self._js.key_value(self.settings.workers_bucket)
                await asyncio.wait_for(kv.delete(self.id), timeout=2.0)
