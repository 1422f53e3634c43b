"""The configuration as frozen typed data, and what makes one valid as a whole.

`loader` builds a `Config` from a TOML file (each value's own rules are in `values`). The
relationships between keys are checked here, for a loaded config and for one changed by
`Config.replace` alike: outputs never inside the watched inbox, and every engine, language and
orientation setting the defaults or a rule can select works offline on this machine.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ocr_daemon.config import languages as langs
from ocr_daemon.config.rules import Rule
from ocr_daemon.config.values import LogFormat, OnSuccess, PdfExistingText, PdfFormat
from ocr_daemon.errors import ConfigError

PDF_RENDERER = "ocr_daemon.formats.pdf"  # the searchable PDF's renderer; found, not imported, here


@dataclass(frozen=True)
class AsposeSettings:
    """Settings of the Aspose engine; applied inside each worker process."""

    language: str = ""  # an Aspose Language name; "" = from the top-level `languages`
    detect_areas_mode: str = "UNIVERSAL"
    onnx_intra_op_threads: int = 1
    onnx_sequential: bool = True
    auto_skew: bool = False
    license_file: Path | None = None


@dataclass(frozen=True)
class TesseractSettings:
    """Settings of the Tesseract engine (and of page-orientation detection, which uses it)."""

    tessdata_dir: Path | None = None  # None: $TESSDATA_PREFIX, .venv/native/tessdata, system


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to every input before the engine sees it."""

    max_file_bytes: int = 256 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_pages: int = 200
    max_aspect_ratio: int = 100


@dataclass(frozen=True)
class ClusterSettings:
    """Scale-out over NATS JetStream (see docs/cluster.md); inert while `url` is empty."""

    url: str = ""
    coordinator_id: str = ""
    worker_id: str = ""
    stream: str = "OCR_JOBS"
    subject: str = "ocr.jobs"
    consumer: str = "ocr-workers"
    results_stream: str = "OCR_RESULTS"
    results_subject: str = "ocr.results"
    object_bucket: str = "ocr-inputs"
    workers_bucket: str = "ocr-workers"
    slots: int = 4
    local_workers: bool = True
    ack_wait_seconds: float = 30.0
    max_deliver: int = 5
    max_inline_bytes: int = 1_000_000
    duplicate_window_seconds: float = 900.0
    heartbeat_seconds: float = 5.0
    connect_timeout_seconds: float = 5.0


@dataclass(frozen=True)
class Config:
    inbox: Path = Path("/var/lib/ocr-daemon/inbox")
    outbox: Path = Path("/var/lib/ocr-daemon/outbox")
    processed: Path = Path("/var/lib/ocr-daemon/processed")
    failed: Path = Path("/var/lib/ocr-daemon/failed")
    state_dir: Path = Path("/var/lib/ocr-daemon/state")
    engine: str = "aspose"
    languages: tuple[str, ...] = ("eng",)
    orientation: bool = True
    pdf_existing_text: PdfExistingText = "skip"
    workers: int = 0
    worker_memory_mb: int = 1600
    max_jobs_per_worker: int = 500
    settle_seconds: float = 2.0
    corrupt_grace_seconds: float = 120.0
    rescan_interval_seconds: float = 300.0
    force_polling: bool | None = None
    ignore_patterns: tuple[str, ...] = ()
    queue_size: int = 10_000
    ocr_timeout_seconds: float = 600.0
    max_attempts: int = 3
    retry_backoff_seconds: float = 5.0
    shutdown_timeout_seconds: float = 60.0
    on_success: OnSuccess = "move"
    output_mode: int = 0o640
    outputs: tuple[str, ...] = ("txt",)  # formats each input yields; see formats.SUFFIX
    pdf_format: PdfFormat = "pdf"
    log_format: LogFormat = "auto"
    log_level: str = "info"
    limits: Limits = field(default_factory=Limits)
    aspose: AsposeSettings = field(default_factory=AsposeSettings)
    tesseract: TesseractSettings = field(default_factory=TesseractSettings)
    rules: tuple[Rule, ...] = ()
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    source: Path | None = None

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied and re-validated (used for CLI overrides)."""
        new = dataclasses.replace(self, **changes)
        check_relationships(new, str(self.source or "<command line>"))
        return new

    def for_path(self, rel: PurePosixPath | str) -> tuple[Config, Rule | None]:
        """The effective config for inbox-relative `rel`: the first matching rule merged over the
        defaults (keys it does not set keep the top-level values), and that rule."""
        rule = next((rule for rule in self.rules if rule.matches(rel)), None)
        return (self, None) if rule is None else (self._with(rule), rule)

    def variants(self) -> list[tuple[Config, Rule | None]]:
        """The defaults and each rule's merged config: everything the daemon may run with."""
        return [(self, None), *((self._with(rule), rule) for rule in self.rules)]

    def _with(self, rule: Rule) -> Config:
        return dataclasses.replace(self, **dict(rule.overrides))


def check_relationships(config: Config, where: str) -> None:
    """Outputs and state never live inside the watched inbox (nor the inbox inside them)."""
    inbox = config.inbox.resolve()
    for name in ("outbox", "processed", "failed", "state_dir"):
        other = getattr(config, name).resolve()
        if other == inbox or other.is_relative_to(inbox) or inbox.is_relative_to(other):
            raise ConfigError(
                f"{name} ({other}) may not be inside the inbox ({inbox}) or contain it: "
                "the daemon would pick up its own outputs",
                where,
            )
    if config.settle_seconds <= 0:
        raise ConfigError("key 'settle_seconds' must be > 0", where)
    if 0 < config.corrupt_grace_seconds < config.settle_seconds:
        raise ConfigError(
            f"key 'corrupt_grace_seconds' ({config.corrupt_grace_seconds:g}) must be 0 (off) or "
            f"at least settle_seconds ({config.settle_seconds:g}): it is how long a file that "
            "reads as corrupt must stay unchanged before it is failed",
            where,
        )
    if config.ocr_timeout_seconds <= 0:
        raise ConfigError("key 'ocr_timeout_seconds' must be > 0", where)
    _check_engines(config, where)
    _check_cluster(config.cluster, where)
    _check_outputs(config, where)


def _check_cluster(cluster: ClusterSettings, where: str) -> None:
    if cluster.url and not cluster.url.startswith(("nats://", "tls://")):
        raise ConfigError(
            f"key 'cluster.url' must start with nats:// or tls://: {cluster.url!r}", where
        )
    for key in ("ack_wait_seconds", "heartbeat_seconds", "connect_timeout_seconds"):
        if getattr(cluster, key) <= 0:
            raise ConfigError(f"key 'cluster.{key}' must be > 0", where)
    if not cluster.local_workers and not (cluster.url and cluster.slots):
        raise ConfigError(
            "key 'cluster.local_workers' = false needs cluster.url and cluster.slots >= 1", where
        )


def _check_outputs(config: Config, where: str) -> None:
    """Every `outputs` the defaults or a rule select can be made here: a PDF needs the PDF
    renderer installed (on worker hosts too: they render in their engine processes)."""
    for effective, rule in config.variants():
        at = f" (in {rule.describe()})" if rule else ""
        if "pdf" in effective.outputs and importlib.util.find_spec(PDF_RENDERER) is None:
            raise ConfigError(
                f"key 'outputs' includes \"pdf\"{at} but the searchable-PDF renderer "
                f"({PDF_RENDERER}) is not installed",
                where,
            )


def _check_engines(config: Config, where: str) -> None:
    """Every engine, language and orientation setting the defaults or a rule can select works
    offline here; otherwise a `ConfigError` now rather than a failed file later."""
    tessdata = langs.find_tessdata(config.tesseract.tessdata_dir)
    resources = config.state_dir / "aspose"
    osd_missing = langs.missing_for_tesseract([langs.OSD_MODEL], tessdata)
    for effective, rule in config.variants():
        problem = _engine_problem(effective, tessdata, resources)
        if problem is None and effective.orientation and osd_missing:
            problem = (
                f"orientation = true needs Tesseract's osd.traineddata, not found in "
                f"{tessdata or 'any tessdata folder'}: run `make setup`, set "
                "tesseract.tessdata_dir, or set orientation = false"
            )
        if problem:
            at = f" (in {rule.describe()})" if rule else ""
            raise ConfigError(f"{problem}{at}", where)


def _engine_problem(config: Config, tessdata: Path | None, resources: Path) -> str | None:
    engine = config.engine
    if engine not in ("aspose", "tesseract") and ":" not in engine:
        return f'unknown engine {engine!r}: use "aspose", "tesseract" or "package.module:Class"'
    if engine != "aspose":
        return langs.check_for_engine(engine, config.languages, tessdata, resources)
    explicit = config.aspose.language  # the older [aspose] language key wins when set
    problem = (
        None if explicit else langs.check_for_engine(engine, config.languages, tessdata, resources)
    )
    return problem or aspose_mode_problem(config.aspose, resources)


def aspose_mode_problem(aspose: AsposeSettings, resources: Path) -> str | None:
    """Why `aspose.detect_areas_mode` cannot work offline with the models in `resources`."""
    model = langs.ASPOSE_MODE_MODELS.get(aspose.detect_areas_mode.upper())
    if model is None or (resources / model).is_file():
        return None
    return (
        f"key 'aspose.detect_areas_mode' = {aspose.detect_areas_mode!r} needs the model {model}, "
        f"which is not in {resources}; Aspose would try to download it at the first file and "
        "fail offline (automatic downloads are off). Use UNIVERSAL or LEAN, or put the model there"
    )
