"""The exception hierarchy and the process exit codes (sysexits) each error maps to.

Every error carries its exit code and a short machine-readable ``reason`` (used in logs and in
``failed/NAME.error.json``). Errors raised inside worker processes pass all their data to
``Exception.__init__`` so they survive pickling back to the daemon.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FILES_FAILED = 1  # `once`/`ocr`: some files failed (never a bug: that is SOFTWARE)
    NOT_RUNNING = 3  # `status`: no daemon is running (the LSB status code)
    USAGE = 64
    DATA_ERROR = 65
    NO_INPUT = 66
    UNAVAILABLE = 69
    SOFTWARE = 70
    CANT_CREATE = 73
    IO_ERROR = 74
    TEMP_FAIL = 75
    CONFIG = 78
    CTRL_C = 130  # interrupted from the keyboard (128 + SIGINT)


class OcrDaemonError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code: ExitCode = ExitCode.SOFTWARE
    reason: str = "error"

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message, path)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class UsageError(OcrDaemonError):
    exit_code = ExitCode.USAGE
    reason = "usage"


class ConfigError(OcrDaemonError):
    """The config file is unreadable, not TOML, or has an unknown key or a bad value."""

    exit_code = ExitCode.CONFIG
    reason = "config"


class EngineUnavailable(OcrDaemonError):
    """The OCR engine cannot start here (OpenSSL 1.1 missing, package not installed...)."""

    exit_code = ExitCode.UNAVAILABLE
    reason = "engine_unavailable"


class AlreadyRunning(OcrDaemonError):
    """Another daemon holds the lock on the same state directory."""

    exit_code = ExitCode.TEMP_FAIL
    reason = "already_running"


class FolderUnusable(OcrDaemonError):
    """A configured folder cannot be created, or the state folder cannot be written: the daemon
    stops before starting anything (`check` reports the same as a FAIL line)."""

    exit_code = ExitCode.CANT_CREATE
    reason = "folder_unusable"


class InputError(OcrDaemonError):
    """A permanent problem with one input file: retrying cannot help."""

    exit_code = ExitCode.DATA_ERROR
    reason = "bad_input"


class UnsupportedInput(InputError):
    reason = "unsupported"


class CorruptInput(InputError):
    reason = "corrupt"


class EmptyInput(InputError):
    reason = "empty"


class InputTooLarge(InputError):
    """Over a configured limit: bytes, pixels (decompression bomb) or pages."""

    reason = "too_large"


class InputMissing(InputError):
    exit_code = ExitCode.NO_INPUT
    reason = "missing"


class RecognitionFailed(InputError):
    """The engine raised while recognising this file."""

    reason = "engine_error"


class TransientError(OcrDaemonError):
    """Worth retrying later: the input stays where it is meanwhile."""

    exit_code = ExitCode.TEMP_FAIL
    reason = "transient"


class WorkerCrashed(TransientError):
    """The worker process died (segfault, abort, OOM kill) while holding the job."""

    reason = "worker_crashed"


class WorkerTimeout(TransientError):
    """The job ran past ``ocr_timeout_seconds``; the worker was killed."""

    reason = "timeout"


class OutputError(TransientError):
    """An output folder is not writable or is full."""

    exit_code = ExitCode.CANT_CREATE
    reason = "output_unwritable"


class ClusterDeliveryExhausted(InputError):
    """Every delivery the broker allows (``cluster.max_deliver``) ended without a result: the
    worker hosts that took it died or were cut off each time. Permanent: the broker will not
    hand it out again, and a file that keeps killing hosts should not be retried by hand."""

    reason = "cluster_delivery_exhausted"


class ClusterNoResult(TransientError):
    """No result came back from the cluster in time (no worker alive, broker unreachable, or a
    result lost in a coordinator crash); the job is retried under a new message ID."""

    reason = "cluster_no_result"


class ClusterUnavailable(OcrDaemonError):
    """The NATS client is not installed, or the broker cannot be reached or set up."""

    exit_code = ExitCode.UNAVAILABLE
    reason = "cluster_unavailable"
