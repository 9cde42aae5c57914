"""The configuration: `schema` (its shape and every default), `loading` (find, read and check a
file, with line numbers), `sample` (what `recovery init` writes). Callers import from here.
"""

from __future__ import annotations

# Durations live in recovery.units; callers still take them from here too.
from recovery.units import format_duration, parse_duration

from .loading import (
    ConfigChoice,
    app_value,
    check_file,
    find_config_path,
    format_status_ranges,
    load,
    locate_config,
    parse_status_ranges,
)
from .sample import sample, write_sample
from .schema import (
    ALERT_KINDS,
    DEFAULT_FILENAME,
    ENV_VAR,
    RESTART_COMMANDS,
    AlertsConfig,
    AppConfig,
    Config,
    FleetConfig,
    LogsConfig,
    MetricsConfig,
    Pm2Config,
    PolicyConfig,
    Problem,
    StoreConfig,
    WatchConfig,
)

__all__ = [
    "ALERT_KINDS",
    "DEFAULT_FILENAME",
    "ENV_VAR",
    "RESTART_COMMANDS",
    "AlertsConfig",
    "AppConfig",
    "Config",
    "ConfigChoice",
    "FleetConfig",
    "LogsConfig",
    "MetricsConfig",
    "Pm2Config",
    "PolicyConfig",
    "Problem",
    "StoreConfig",
    "WatchConfig",
    "app_value",
    "check_file",
    "find_config_path",
    "format_duration",
    "format_status_ranges",
    "load",
    "locate_config",
    "parse_duration",
    "parse_status_ranges",
    "sample",
    "write_sample",
]
