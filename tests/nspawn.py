"""A throwaway real systemd (Debian 12, systemd 252) booted with systemd-nspawn, for service tests.

The recipe is the one measured in ../shared/notes/systemd-harness.md. It works on a host whose
PID 1 is not systemd: nspawn runs with ``--register=no --keep-unit`` (no host D-Bus), inside a
cgroup of our own that is removed afterwards, and the container is driven from outside with
``nsenter`` into its PID 1's namespaces (no machined needed). Every boot is ``--volatile=overlay``,
so the cached rootfs stays pristine and whatever a test installs is discarded at poweroff.

Cached between runs under ``$OCR_DAEMON_TEST_CACHE`` (default ``/var/cache/ocr-daemon-tests``):
the debootstrapped rootfs (keyed on the package list) and a wheelhouse of the project's
dependencies (keyed on pyproject.toml), so the container installs offline with ``--no-index``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "libnss-systemd",
    "procps",
    "python3",
    "python3-venv",
)
HOST_TOOLS = {"systemd-nspawn": "systemd-container", "debootstrap": "debootstrap"}
CACHE_DIR = Path(os.environ.get("OCR_DAEMON_TEST_CACHE", "/var/cache/ocr-daemon-tests"))
INNER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class HarnessUnavailable(Exception):
    """This host cannot run the harness; the message says exactly what is missing."""


def ensure_host_tools() -> None:
    """Install systemd-container and debootstrap with apt when root and missing, else explain."""
    if os.geteuid() != 0:
        raise HarnessUnavailable(
            f"needs root (systemd-nspawn boots a container); running as uid {os.geteuid()}"
        )
    missing = [pkg for tool, pkg in HOST_TOOLS.items() if shutil.which(tool) is None]
    if missing and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
            env=env,
            capture_output=True,
            check=False,
        )
    for tool, pkg in HOST_TOOLS.items():
        if shutil.which(tool) is None:
            raise HarnessUnavailable(
                f"{tool} not found (Debian package {pkg}) and could not be installed with apt-get"
            )
    if shutil.which("nsenter") is None:
        raise HarnessUnavailable("nsenter not found (util-linux)")


def _host_mirror() -> str | None:
    if os.environ.get("SD_HARNESS_MIRROR"):
        return os.environ["SD_HARNESS_MIRROR"]
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list.d/debian.sources").read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return None


def remove_tree(path: Path) -> None:
    """rm -rf that first unmounts whatever an interrupted debootstrap left mounted inside (its
    /proc, /sys, maybe a bind-mounted /dev) and never crosses into another filesystem."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mounts = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], capture_output=True, check=False)


def build_rootfs(cache: Path = CACHE_DIR) -> Path:
    """The cached Debian rootfs, debootstrapped first if absent or built from another recipe."""
    recipe = f"{SUITE} {','.join(PACKAGES)}"
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    root = cache / f"rootfs-{SUITE}-{key}"
    if (root / ".complete").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a concurrent run waits for it
        if not (root / ".complete").exists():
            _debootstrap(cache, root, recipe)
    return root


def _debootstrap(cache: Path, root: Path, recipe: str) -> None:
    tmp = cache / f"rootfs.tmp-{os.getpid()}"
    remove_tree(tmp)
    mirror = _host_mirror()
    cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(tmp)]
    proc = subprocess.run(
        [*cmd, *([mirror] if mirror else [])], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        remove_tree(tmp)
        raise HarnessUnavailable(
            f"debootstrap failed (rc {proc.returncode}): {proc.stdout[-2000:]}"
        )
    subprocess.run(["chroot", str(tmp), "apt-get", "clean"], check=False, capture_output=True)
    shutil.rmtree(tmp / "var/lib/apt/lists", ignore_errors=True)
    (tmp / "var/lib/apt/lists/partial").mkdir(parents=True)
    (tmp / ".complete").write_text(recipe + "\n")
    remove_tree(root)
    tmp.rename(root)
    for stale in cache.glob("rootfs*"):  # older recipes and interrupted builds
        if stale != root:
            remove_tree(stale)


def build_wheelhouse(checkout: Path, cache: Path = CACHE_DIR) -> Path:
    """Wheels for the project's dependencies and its build backend, downloaded on the host (the
    container's pip cannot verify PyPI's TLS chain here) and reused while pyproject is unchanged."""
    pyproject = (checkout / "pyproject.toml").read_bytes()
    key = hashlib.sha256(pyproject).hexdigest()[:12]
    house = cache / f"wheelhouse-{key}"
    if (house / ".complete").exists():
        return house
    data = tomllib.loads(pyproject.decode())
    requirements = [*data["project"]["dependencies"], *data["build-system"]["requires"], "wheel"]
    house.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            "-d",
            str(house),
            *requirements,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise HarnessUnavailable(f"pip download for the wheelhouse failed: {proc.stderr[-2000:]}")
    (house / ".complete").write_text("\n".join(requirements) + "\n")
    for stale in cache.glob("wheelhouse-*"):  # built for an older pyproject.toml
        if stale != house:
            shutil.rmtree(stale, ignore_errors=True)
    return house


def _cgroup_dirs(name: str) -> list[Path]:
    """The cgroup folders nspawn is started in (hybrid/v1 host or pure cgroup2 host)."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base / f"sd-harness-{name}"]
    dirs = [base / "systemd" / f"sd-harness-{name}"]
    if (base / "unified").is_dir():
        dirs.append(base / "unified" / f"sd-harness-{name}")
    return dirs


def _children(pid: int) -> Iterator[tuple[int, str]]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                yield int(stat.parent.name), comm


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    """Poll `predicate` until it is truthy or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


class Container:
    """One booted container: `up()`, then `run(...)` commands inside, then `down()` (idempotent)."""

    def __init__(self, rootfs: Path, binds: Sequence[str] = (), name: str | None = None) -> None:
        self.rootfs = rootfs
        self.binds = list(binds)
        self.name = name or "ocrd-" + uuid.uuid4().hex[:8]
        self.console = Path("/run/sd-harness", f"{self.name}.console.log")
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.init_pid: int | None = None

    def up(self, timeout: float = 60.0) -> None:
        """Boot and wait until the container's systemd says running (or degraded)."""
        dirs = _cgroup_dirs(self.name)
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        enter = "".join(f'echo $$ > "{d}/cgroup.procs"; ' for d in dirs)
        args = [
            "systemd-nspawn",
            "-D",
            str(self.rootfs),
            f"--machine={self.name}",
            "-b",
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            "-q",
            "--volatile=overlay",
            *self.binds,
        ]
        self.console.parent.mkdir(parents=True, exist_ok=True)
        with open(self.console, "wb") as log:
            self.nspawn = subprocess.Popen(
                ["sh", "-c", enter + 'exec "$@"', "sh", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        if not wait_for(self._find_init, 20, 0.05):
            raise HarnessUnavailable(f"container init did not appear: {self.console_text()}")
        wait_for(
            lambda: self.run("test", "-S", "/run/systemd/private", check=False).returncode == 0,
            20,
            0.05,
        )
        state = self.run(
            "systemctl", "is-system-running", "--wait", check=False, timeout=timeout
        ).stdout.strip()
        if state not in ("running", "degraded"):
            raise HarnessUnavailable(
                f"container did not boot (state {state!r}): {self.console_text()}"
            )

    def _find_init(self) -> bool:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise HarnessUnavailable(
                f"systemd-nspawn exited rc {self.nspawn.returncode}: {self.console_text()}"
            )
        self.init_pid = next(
            (pid for pid, comm in _children(self.nspawn.pid) if comm == "systemd"), None
        )
        return self.init_pid is not None

    def console_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.console.read_text(errors="replace")[-3000:]
        return ""

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 120.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the container (all of PID 1's namespaces), with a clean environment."""
        assert self.init_pid is not None, "container is not up"
        proc = subprocess.run(
            ["nsenter", "-t", str(self.init_pid), "-a", *cmd],
            env={"PATH": INNER_PATH, "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} -> rc {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def sh(self, script: str, check: bool = True, timeout: float = 120.0) -> str:
        """Run a shell snippet inside; returns stdout."""
        return self.run("sh", "-c", script, check=check, timeout=timeout).stdout

    def down(self) -> None:
        """Power off (nspawn turns SIGTERM into a clean halt), kill if stuck, remove our cgroups."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait(10)
        for d in _cgroup_dirs(self.name):
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()
        shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}", ignore_errors=True)
        self.console.unlink(missing_ok=True)
        self.init_pid = None
