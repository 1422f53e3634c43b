"""The one place a coordinator's results come back in.

Each result goes to the job waiting for it (`expect`), is held as an orphan (published before a
restart: its job is not re-queued yet), or is acked and dropped as ``job.duplicate_dropped``
(a worker host that was cut off and came back). A result a job took is acked only once the
daemon has committed its outcome (`ack_when_committed`), so a coordinator crash in between gets
it redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ocr_daemon.cluster import wire
from ocr_daemon.cluster.registry import HostRegistry
from ocr_daemon.config import ClusterSettings
from ocr_daemon.errors import ClusterDeliveryExhausted

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = structlog.get_logger()
REMEMBERED_IDS = 10_000


@dataclass
class Waiter:
    future: asyncio.Future[wire.ResultMessage]
    seq: int = 0
    message: Msg | None = None  # the result's message, acked only once the outcome is committed
    consumed: bool = False  # a re-published job a worker already took (its result may be gone)


class Results:
    """The jobs waiting for a result, the early results, and the IDs already answered."""

    def __init__(
        self,
        settings: ClusterSettings,
        hosts: HostRegistry,
        counts: dict[str, int],
        committed: Callable[[int], bool],
        forget_renders: Callable[[wire.ResultMessage], Coroutine[Any, Any, None]],
    ) -> None:
        self.settings = settings
        self.hosts = hosts
        self.counts = counts  # the coordinator's, shared: duplicates_dropped, exhausted
        self._committed = committed
        self._forget_renders = forget_renders  # a result's rendered outputs in the object store
        self.waiters: dict[str, Waiter] = {}
        self.orphans: dict[str, tuple[float, wire.ResultMessage]] = {}
        self.finished: OrderedDict[str, None] = OrderedDict()
        self._acks: set[asyncio.Task[None]] = set()

    def expect(self, msg_id: str) -> Waiter:
        """Wait for `msg_id`'s result; already set when it arrived early (an orphan)."""
        waiter = Waiter(asyncio.get_running_loop().create_future())
        self.waiters[msg_id] = waiter
        early = self.orphans.pop(msg_id, None)
        if early is not None:
            waiter.future.set_result(early[1])
        return waiter

    def forget(self, msg_id: str) -> None:
        """The job is over: a later result for `msg_id` is a duplicate."""
        self.waiters.pop(msg_id, None)
        self.finished[msg_id] = None
        while len(self.finished) > REMEMBERED_IDS:
            self.finished.popitem(last=False)

    async def send_acks(self, timeout_s: float) -> None:
        """Let the pending acks go out, for up to `timeout_s`."""
        if self._acks:
            await asyncio.wait(set(self._acks), timeout=timeout_s)

    async def on_result(self, message: Msg) -> None:
        """The results consumer's callback."""
        try:
            reply = wire.ResultMessage.decode(message.data)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("cluster.bad_result", error=repr(exc))
        else:
            if self._route(reply, message):
                return  # acked once its outcome is committed
        with contextlib.suppress(*wire.transport_errors()):
            await message.ack()

    def _route(self, reply: wire.ResultMessage, message: Msg) -> bool:
        """Hand the result to the job waiting for it (True), or file it as early or duplicate."""
        waiter = self.waiters.get(reply.msg_id)
        if waiter is not None and not waiter.future.done():
            waiter.future.set_result(reply)
            waiter.message = message
            return True
        if waiter is not None or reply.msg_id in self.finished:
            self._drop(reply, "already answered")
        else:  # published before a restart: its job has not been re-queued yet
            self.orphans[reply.msg_id] = (time.monotonic(), reply)
        return False

    def ack_when_committed(self, job_id: int, message: Msg, reply: wire.ResultMessage) -> None:
        """Ack a result once the journal shows its outcome committed, so a coordinator crash
        between receiving and committing gets it redelivered; at most half an ack wait later.
        Its rendered outputs in the object store go with the ack (acked, it is never delivered
        again, so they are not needed; a coordinator that dies first gets both redelivered)."""

        async def ack() -> None:
            deadline = time.monotonic() + self.settings.ack_wait_seconds / 2
            while time.monotonic() < deadline:
                await asyncio.sleep(0.02)
                if await asyncio.to_thread(self._committed, job_id):
                    break
            with contextlib.suppress(*wire.transport_errors()):
                await message.ack()
            await self._forget_renders(reply)

        self.later(ack())

    def later(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` in the background; `send_acks` lets it finish (briefly) at close."""
        task = asyncio.create_task(work)
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    def _drop(self, reply: wire.ResultMessage, why: str) -> None:
        if reply.render_keys:
            self.later(self._forget_renders(reply))
        self.counts["duplicates_dropped"] += 1
        self.hosts.count_result(reply.worker_id, duplicate=True)
        log.warning("job.duplicate_dropped", msg_id=reply.msg_id, worker=reply.worker_id,
                    delivery=reply.delivery, why=why)  # fmt: skip

    def expire_orphans(self) -> None:
        """Drop the orphans no job claimed within ``duplicate_window_seconds``."""
        cutoff = time.monotonic() - self.settings.duplicate_window_seconds
        for msg_id, (since, reply) in list(self.orphans.items()):
            if since < cutoff:
                del self.orphans[msg_id]
                self._drop(reply, "no job claimed it")

    def exhausted(self, seq: int) -> bool:
        """Fail the job waiting on stream message `seq`, whose deliveries the broker used up;
        whether one was waiting (then the caller withdraws the message)."""
        found = False
        for msg_id, waiter in list(self.waiters.items()):
            if waiter.seq == seq and not waiter.future.done():
                self.counts["exhausted"] += 1
                error = ClusterDeliveryExhausted(
                    f"no worker host finished it in {self.settings.max_deliver} deliveries"
                )
                waiter.future.set_result(wire.ResultMessage(msg_id, "", 0, 0.0, error=error))
                found = True
        return found
