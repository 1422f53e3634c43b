"""The configuration: frozen settings (`schema`), per-value rules (`values`), per-folder `[[rules]]`
(`rules`) and the `languages` vocabulary. This module re-exports the public surface."""

from ocr_daemon.config.schema import (
    LICENSE_ENV,
    AsposeSettings,
    ClusterSettings,
    Config,
    Limits,
    TesseractSettings,
    aspose_mode_problem,
    check_relationships,
    convert_value,
    load_config,
)

__all__ = [
    "LICENSE_ENV",
    "AsposeSettings",
    "ClusterSettings",
    "Config",
    "Limits",
    "TesseractSettings",
    "aspose_mode_problem",
    "check_relationships",
    "convert_value",
    "load_config",
]
