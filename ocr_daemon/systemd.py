"""sd_notify for the service manager: READY, STATUS, RELOADING, STOPPING, WATCHDOG, timeouts.

Implements the datagram protocol of sd_notify(3) with the standard library only. `Notifier` is
built from the environment systemd gives a ``Type=notify`` service (``NOTIFY_SOCKET``, which may be
a filesystem path or an abstract ``@name``; ``WATCHDOG_USEC``; ``WATCHDOG_PID``). Outside systemd
(no ``NOTIFY_SOCKET``) every method is a no-op, so the daemon calls them unconditionally. A failed
send is logged as a warning and never raised: losing a status line must not stop OCR.

Worker processes must never see these variables (a worker could otherwise send READY or keep a
hung daemon's watchdog alive): the pool hides them while it spawns one (`pool._start_with_env`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

import structlog

# Meant for the main process only: sd_notify, the watchdog, and socket activation's fds.
MAIN_PROCESS_VARIABLES = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)

_log = structlog.get_logger()


def scrub_environment(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` without the variables systemd meant for the main process only, for
    spawning worker processes."""
    return {key: value for key, value in env.items() if key not in MAIN_PROCESS_VARIABLES}


def _socket_address(raw: str) -> str | None:
    if raw.startswith("@"):
        return "\0" + raw[1:]  # abstract namespace
    if raw.startswith("/"):
        return raw
    return None  # e.g. vsock: addresses, which a service on the host never gets


class Notifier:
    """Sends notifications to the service manager named by the environment (or does nothing)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        source = os.environ if env is None else env
        self._address = _socket_address(source.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = source.get("WATCHDOG_USEC", "")
        self._watchdog_pid = source.get("WATCHDOG_PID", "")

    @property
    def enabled(self) -> bool:
        """True when a notification socket was given (we run under systemd as Type=notify)."""
        return self._address is not None

    def ready(self) -> None:
        """Startup finished: `systemctl start` returns and dependents may start."""
        self.notify("READY=1")

    def status(self, text: str) -> None:
        """A one-line human status, shown by `systemctl status`."""
        self.notify("STATUS=" + text.replace("\n", " "))

    def reloading(self) -> None:
        """Configuration reload started; send `ready()` when it is done."""
        self.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """Shutdown started."""
        self.notify("STOPPING=1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for `seconds` more before the current start/stop timeout fires."""
        self.notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")

    def watchdog(self) -> None:
        """Keep-alive: the daemon is healthy. Send every `watchdog_interval_seconds()`."""
        self.notify("WATCHDOG=1")

    def watchdog_interval_seconds(self) -> float | None:
        """Half the watchdog timeout, or None when no watchdog is set for this process."""
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        if usec <= 0:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 2 / 1_000_000

    def notify(self, message: str) -> bool:
        """Send one raw notification; True if it was sent, False if disabled or it failed."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(message.encode("utf-8"))
        except OSError as exc:
            _log.warning("sd_notify.failed", message=message.split("=", 1)[0], error=str(exc))
            return False
        return True
