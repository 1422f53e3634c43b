"""Make the .NET runtime inside `aspose.ocr` loadable, then load and configure it once.

Owns: the process environment the CLR needs (invariant globalisation, no diagnostics pipes in
/tmp), finding and preloading OpenSSL 1.1, and the process-global Aspose settings (no automatic
downloads, a private resources folder, no log file in the cwd, ONNX threading).

Call `load_aspose` only inside the process that recognises: importing `aspose.ocr` starts
CoreCLR in-process, after which `fork()` is unsafe. Importing this module has no side effects, and
`find_openssl` only looks at the filesystem, so `ocr-daemon check` can call it anywhere.
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocr_daemon.config import AsposeSettings, Config
from ocr_daemon.errors import ConfigError, EngineUnavailable

NATIVE_DIR_ENV = "OCR_DAEMON_NATIVE_DIR"
SSL_LIBS = ("libcrypto.so.1.1", "libssl.so.1.1")  # preload order matters: crypto first
FIX_COMMAND = "make setup"
FIX_DETAIL = "(it runs `bash scripts/provision-native.sh .venv/native`; README: OpenSSL 1.1)"
STAND_IN_ENGINE = "tesseract"
_CLR_ENV = {"DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1", "COMPlus_EnableDiagnostics": "0"}

_LDCONFIG_LINE = re.compile(r"^\s*(lib(?:ssl|crypto)\.so\.1\.1) \(.*\) => (\S+)$", re.M)

_loaded: Any = None


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


def prepare_process() -> OpenSslLocation:
    """Set the CLR's environment and preload OpenSSL 1.1 (RTLD_GLOBAL) before the import."""
    for key, value in _CLR_ENV.items():
        os.environ.setdefault(key, value)
    location = find_openssl()
    for lib in (location.libcrypto, location.libssl):
        try:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise EngineUnavailable(f"cannot load {lib}: {exc}. Fix: run `{FIX_COMMAND}`") from None
    return location


def load_aspose(settings: AsposeSettings, resources_dir: Path) -> Any:
    """Import and configure `aspose.ocr` once per process; returns the module.

    `resources_dir` is a private folder we own (Aspose creates it): models are looked up there
    and its log file would go there. Later calls return the same module unchanged, since every
    setting here is process-global and ONNX threading only takes effect before the first
    recognition.
    """
    global _loaded  # noqa: PLW0603 - the CLR is per process, so is this cache
    if _loaded is not None:
        return _loaded
    prepare_process()
    try:
        from aspose import ocr  # noqa: PLC0415 - starts CoreCLR; only inside the worker
    except ImportError as exc:
        raise EngineUnavailable(f"aspose-ocr-python-net is not installed: {exc}") from None
    _configure(ocr, settings, resources_dir)
    _loaded = ocr
    return ocr


def _configure(ocr: Any, settings: AsposeSettings, resources_dir: Path) -> None:
    resources_dir.mkdir(parents=True, exist_ok=True)
    ocr.Resources.allow_automatic_downloads(False)
    ocr.Resources.set_local_path(str(resources_dir))
    ocr.Logging.set_logging_level(ocr.LoggingLevel.NONE)
    ocr.Logging.set_file_system(False)
    ocr.Logging.set_console(False)
    ocr.Logging.set_log_file_path(str(resources_dir / "Aspose.OCR.log.txt"))
    onnx = ocr.OnnxRuntimeSessionOptions
    onnx.set_intra_op_num_threads(settings.onnx_intra_op_threads)
    if settings.onnx_sequential:
        onnx.set_execution_mode(ocr.ExecutionModeOnnx.ORT_SEQUENTIAL)
