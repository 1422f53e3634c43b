"""Where OpenSSL 1.1 is, for the Aspose engine's bundled .NET Core 3.1 runtime, and what runs
instead when it is missing.

Light on purpose: it only looks at the filesystem and the linker cache, imports nothing of an
engine, and is the one piece of the Aspose runtime the daemon's main process (`run`, `once`,
`check`) may use. Loading the libraries and the engine is `aspose_runtime`'s, in engine processes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ocr_daemon.config import Config
from ocr_daemon.errors import ConfigError, EngineUnavailable

NATIVE_DIR_ENV = "OCR_DAEMON_NATIVE_DIR"
SSL_LIBS = ("libcrypto.so.1.1", "libssl.so.1.1")  # preload order matters: crypto first
FIX_COMMAND = "make setup"
FIX_DETAIL = "(it runs `bash scripts/provision-native.sh .venv/native`; README: OpenSSL 1.1)"
STAND_IN_ENGINE = "tesseract"

_LDCONFIG_LINE = re.compile(r"^\s*(lib(?:ssl|crypto)\.so\.1\.1) \(.*\) => (\S+)$", re.M)


@dataclass(frozen=True)
class OpenSslLocation:
    """Where OpenSSL 1.1 was found: the two library paths and which search step found them."""

    libcrypto: Path
    libssl: Path
    source: str  # "system", "OCR_DAEMON_NATIVE_DIR" or "venv"


def find_openssl() -> OpenSslLocation:
    """The system copy first, then `$OCR_DAEMON_NATIVE_DIR` if set (else the venv's copy).

    Setting OCR_DAEMON_NATIVE_DIR replaces the venv location, so it is the one override for both
    deployments with their own copy and tests that hide the libraries.
    """
    system = _system_openssl()
    if system is not None:
        return system
    override = os.environ.get(NATIVE_DIR_ENV)
    source = NATIVE_DIR_ENV if override else "venv"
    native = Path(override) if override else Path(sys.prefix) / "native"
    candidates = [native / "lib", native]
    for folder in candidates:
        crypto, ssl = folder / SSL_LIBS[0], folder / SSL_LIBS[1]
        if crypto.is_file() and ssl.is_file():
            return OpenSslLocation(crypto, ssl, source)
    looked = ", ".join(str(c) for c in ["the system library cache (ldconfig -p)", *candidates])
    raise EngineUnavailable(
        f"OpenSSL 1.1 ({' and '.join(SSL_LIBS)}) not found; the Aspose engine's .NET runtime "
        f"aborts without it. Looked in: {looked}. Fix: run `{FIX_COMMAND}` in the ocr-daemon "
        f"checkout {FIX_DETAIL}, or put {SSL_LIBS[1]} and {SSL_LIBS[0]} in one folder and set "
        f"{NATIVE_DIR_ENV}=/that/folder"
    )


def with_stand_in_engine(config: Config) -> tuple[Config, str | None]:
    """`config` as the daemon runs it: an Aspose engine that cannot start for want of OpenSSL
    1.1 is replaced by Tesseract. Returns the config and, when replaced, what is missing."""
    if config.engine != "aspose":
        return config, None
    try:
        find_openssl()
    except EngineUnavailable as missing:
        try:
            return config.replace(engine=STAND_IN_ENGINE), missing.message
        except ConfigError as exc:
            message = f"{missing.message}; Tesseract cannot stand in: {exc}"
            raise EngineUnavailable(message) from None
    return config, None


def _system_openssl() -> OpenSslLocation | None:
    found = _ldconfig_paths()
    for folder in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        for lib in SSL_LIBS:
            if folder and (Path(folder) / lib).is_file():
                found.setdefault(lib, Path(folder) / lib)
    if all(lib in found for lib in SSL_LIBS):
        return OpenSslLocation(found[SSL_LIBS[0]], found[SSL_LIBS[1]], "system")
    return None


def _ldconfig_paths() -> dict[str, Path]:
    """The OpenSSL 1.1 entries of the dynamic linker's cache (first one per name wins)."""
    found: dict[str, Path] = {}
    for ldconfig in ("/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            listing = subprocess.run(
                [ldconfig, "-p"], capture_output=True, text=True, check=False, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        for name, path in _LDCONFIG_LINE.findall(listing):
            found.setdefault(name, Path(path))
        break
    return found
