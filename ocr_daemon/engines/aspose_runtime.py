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
from pathlib import Path
from typing import Any

from ocr_daemon.config import AsposeSettings
from ocr_daemon.engines.openssl import FIX_COMMAND, OpenSslLocation, find_openssl
from ocr_daemon.errors import EngineUnavailable

_CLR_ENV = {"DOTNET_SYSTEM_GLOBALIZATION_INVARIANT": "1", "COMPlus_EnableDiagnostics": "0"}

_loaded: Any = None


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
