"""The configuration: frozen settings (`schema`), the TOML loader (`loader`), per-value rules
(`values`), per-folder `[[rules]]` (`rules`) and the `languages` vocabulary. This module
re-exports the public surface."""

from ocr_daemon.config.loader import (
    INSTALLED_CONFIG,
    LICENSE_ENV,
    convert_value,
    default_config_path,
    load_config,
)
from ocr_daemon.config.schema import (
    AsposeSettings,
    ClusterSettings,
    Config,
    Limits,
    TesseractSettings,
    aspose_mode_problem,
    check_relationships,
)

__all__ = [
    "INSTALLED_CONFIG",
    "LICENSE_ENV",
    "AsposeSettings",
    "ClusterSettings",
    "Config",
    "Limits",
    "TesseractSettings",
    "aspose_mode_problem",
    "check_relationships",
    "convert_value",
    "default_config_path",
    "load_config",
]
