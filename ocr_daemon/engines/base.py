"""The engine seam: the narrow contract between the daemon and an OCR engine.

An engine runs **inside a worker process** and adds no parallelism of its own: the pool gives each
worker one engine instance, calls `warm_up()` once, then `recognize(path)` once per job. Path in,
`OcrResult` out; a problem with the input is raised as an `InputError` subclass (permanent), any
other `OcrDaemonError` is treated by its class. Results and errors must be picklable.

`config.engine` names the implementation: ``"aspose"`` (the default), ``"tesseract"``, or an
import path ``"package.module:Class"`` for a plug-in engine (the test suite's doubles use it).
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ocr_daemon.config import Config
from ocr_daemon.engines.layout import PageLayout
from ocr_daemon.errors import ConfigError

PAGE_SEPARATOR = "\f"
# the built-in warm-up page (drawn by `aspose.render_warm_up_page`) and what its text starts with
WARM_UP_LINES = ("The quick brown fox jumps over the lazy dog", "Pack my box with five dozen jugs")
WARM_UP_PREFIX = "The quick brown"  # evaluation mode returns 'The quick brown fo'
EVALUATION_NOTICE = re.compile(r"\**\s*Trial Licenses\s*\**")  # what Aspose appends without one
BUILTIN_ENGINES = {
    "aspose": "ocr_daemon.engines.aspose:AsposeEngine",
    "tesseract": "ocr_daemon.engines.tesseract:TesseractEngine",
}


@dataclass(frozen=True)
class OcrResult:
    """The text of each page, exactly as the engine returned it, plus how it was produced and,
    where the engine gives it, where that text is on each page (`layout`, same order as `pages`;
    empty when the engine gives no layout)."""

    pages: tuple[str, ...]
    evaluation_mode: bool
    warnings: tuple[str, ...] = ()
    layout: tuple[PageLayout, ...] = ()

    @property
    def text(self) -> str:
        return PAGE_SEPARATOR.join(self.pages)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def chars(self) -> int:
        return sum(len(page) for page in self.pages)

    @property
    def empty_pages(self) -> tuple[int, ...]:
        """Numbers (from 1) of the pages with no text but, perhaps, an evaluation notice: a
        blank page, or one the engine could not read (handwriting, a photo, a fragment cut
        to nothing): never reported as silently done."""
        return tuple(
            number
            for number, page in enumerate(self.pages, start=1)
            if not EVALUATION_NOTICE.sub("", page).strip()
        )


@dataclass(frozen=True)
class EngineInfo:
    """What the engine is, for `daemon.started` and `ocr-daemon check`."""

    name: str
    version: str
    licensed: bool
    detail: str = ""

    @property
    def licence(self) -> str:
        """The licence state in words: Tesseract needs none, Aspose without one is a trial."""
        if self.name != "aspose":
            return "no licence needed"
        return "licensed" if self.licensed else "evaluation mode: a fragment of each page"


# What evaluation mode means, said the same way by `check`, `daemon.started` and the README.
EVALUATION_MODE = (
    "no Aspose licence: each page returns only a fragment of its text (at most 300 characters, "
    "often much less), then a '*** Trial Licenses ***' notice"
)
EVALUATION_REMEDY = (
    "set license_file under [aspose] in the config (or OCR_DAEMON_LICENSE_FILE), or use "
    'engine = "tesseract" for full text without a licence'
)


@dataclass(frozen=True)
class EngineSettings:
    """What a worker needs to choose an engine for one job; sent with the job, picklable."""

    engine: str
    languages: tuple[str, ...]
    orientation: bool

    @classmethod
    def of(cls, config: Config) -> EngineSettings:
        return cls(config.engine, config.languages, config.orientation)

    def apply(self, config: Config) -> Config:
        """`config` with these settings, for constructing the engine they describe."""
        return dataclasses.replace(
            config, engine=self.engine, languages=self.languages, orientation=self.orientation
        )


class Engine(Protocol):
    def __init__(self, config: Config) -> None: ...

    def info(self) -> EngineInfo:
        """Name, version and licence state; cheap after construction."""
        ...

    def warm_up(self) -> OcrResult:
        """Load models by recognising a small built-in page; returns that page's result."""
        ...

    def recognize(self, path: Path) -> OcrResult:
        """OCR every page of the file at `path`."""
        ...


def engine_class(spec: str) -> type[Engine]:
    """Resolve `config.engine` to a class, without constructing it (no engine import side effects
    beyond the module's own)."""
    target = BUILTIN_ENGINES.get(spec, spec)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"unknown engine {spec!r}: use one of {', '.join(BUILTIN_ENGINES)} or 'module:Class'",
        )
    try:
        module = importlib.import_module(module_name)
        cls: type[Engine] = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load engine {spec!r}: {exc}") from None
    return cls


def load_engine(config: Config) -> Engine:
    """Construct the configured engine. Call only inside the process that will recognise."""
    return engine_class(config.engine)(config)
