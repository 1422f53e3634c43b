"""A lab of simulated hosts for the cluster tests: a bridge, one network namespace per worker
host, and a Debian ``nats-server`` (JetStream) bound to the bridge address.

Recipe and timings: ../shared/notes/scale-out.md §3. Every name carries a random tag, so two runs
never collide; the subnet is one of 10.213-254.x.0/24 that no interface here uses yet. The broker
runs in the foreground as the test's child, its storage in the test's tmp folder. Only the
bridge address and the namespaces' own addresses are ever contacted. `Lab` is a context manager:
on exit (also on failure) it SIGKILLs every process in its namespaces and the broker, then
deletes the namespaces, the veths and the bridge. Every wait is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

NATS_PACKAGE = "nats-server"


class LabUnavailable(Exception):
    """This machine cannot run the lab; the message says what is missing."""


def ensure_nats_server() -> str:
    """The nats-server binary, installed from Debian's packages when root and missing."""
    found = shutil.which("nats-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise LabUnavailable("nats-server is not installed (apt-get install nats-server)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", NATS_PACKAGE]):
        subprocess.run(argv, env=env, capture_output=True, check=False, timeout=300)
    found = shutil.which("nats-server")
    if not found:
        raise LabUnavailable("nats-server could not be installed from Debian's packages")
    return found


def check_prerequisites() -> str:
    if os.geteuid() != 0:
        raise LabUnavailable(f"network namespaces need root; running as uid {os.geteuid()}")
    if shutil.which("ip") is None:
        raise LabUnavailable("iproute2's `ip` is missing (apt-get install iproute2)")
    return ensure_nats_server()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def _free_subnet() -> ipaddress.IPv4Network:
    used = [
        ipaddress.ip_interface(word).network
        for line in _ip("-4", "-o", "addr").stdout.splitlines()
        for word in line.split()[3:4]
    ]
    rng = random.Random()
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{rng.randint(213, 254)}.{rng.randint(0, 255)}.0/24")
        if not any(net.overlaps(other) for other in used):
            return net
    raise LabUnavailable("no free 10.x.y.0/24 subnet for the lab bridge")


class Lab:
    """Worker hosts 1..`hosts` (namespaces) around a bridge with the broker on it."""

    def __init__(self, root: Path, hosts: int, nats_server: str) -> None:
        self.root = root
        self.hosts = hosts
        self.nats_server = nats_server
        self.tag = f"oc{random.randrange(16**4):04x}"
        self.net = _free_subnet()
        self.bridge_ip = str(self.net[1])
        self.port = 4222
        self.broker: subprocess.Popen[bytes] | None = None
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        self._made: list[tuple[str, ...]] = []

    @property
    def url(self) -> str:
        return f"nats://{self.bridge_ip}:{self.port}"

    def ns(self, host: int) -> str:
        return f"{self.tag}h{host}"

    def veth(self, host: int) -> str:
        return f"{self.tag}v{host}"

    def __enter__(self) -> Lab:
        try:
            self._build()
            self.start_broker()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _build(self) -> None:
        bridge = f"{self.tag}br"
        _ip("link", "add", bridge, "type", "bridge")
        self._made.append(("link", "del", bridge))
        _ip("addr", "add", f"{self.bridge_ip}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for host in range(1, self.hosts + 1):
            ns, veth = self.ns(host), self.veth(host)
            _ip("netns", "add", ns)
            self._made.append(("netns", "del", ns))
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._made.append(("link", "del", veth))
            _ip("link", "set", veth, "master", bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.net[10 + host]}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def start_broker(self) -> None:
        """nats-server with JetStream in the foreground, as our child; waits until it listens."""
        log = open(self.root / "nats-server.log", "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        self.broker = subprocess.Popen(
            [self.nats_server, "-js", "-a", self.bridge_ip, "-p", str(self.port),
             "-sd", str(self.root / "jetstream")],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.broker.poll() is not None:
                raise LabUnavailable(f"nats-server exited with {self.broker.returncode}")
            try:
                with socket.create_connection((self.bridge_ip, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise LabUnavailable("nats-server did not listen within 15 s")

    def kill_broker(self) -> None:
        """SIGKILL the broker (no goodbye to its clients); `start_broker` brings it back on the
        same storage folder."""
        assert self.broker is not None
        self.broker.kill()
        self.broker.wait(timeout=10)

    def spawn(
        self, host: int | None, argv: Sequence[str], log_path: Path, env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        """Run `argv` on worker host `host` (its namespace), or in the root namespace if None."""
        prefix = [] if host is None else ["ip", "netns", "exec", self.ns(host)]
        log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        proc = subprocess.Popen([*prefix, *argv], stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append(proc)
        return proc

    def cut(self, host: int) -> None:
        """Pull the host's cable: no FIN, no RST reaches the broker."""
        _ip("link", "set", self.veth(host), "down")

    def heal(self, host: int) -> None:
        _ip("link", "set", self.veth(host), "up")

    def kill_host(self, host: int) -> None:
        """A silent host death: cut the link, then SIGKILL everything in its namespace."""
        self.cut(host)
        self._kill_namespace(host)

    def _kill_namespace(self, host: int) -> None:
        for _ in range(10):
            pids = _ip("netns", "pids", self.ns(host), check=False).stdout.split()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.05)

    def close(self) -> None:
        for host in range(1, self.hosts + 1):
            self._kill_namespace(host)
        for proc in [*self.procs, *([self.broker] if self.broker else [])]:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for args in reversed(self._made):
            _ip(*args, check=False)
        self._made.clear()
        for log in self._logs:
            log.close()
