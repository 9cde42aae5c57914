"""The configuration: its schema, reading and checking a file, and the sample `recovery init` writes."""

from __future__ import annotations

from recovery.units import format_duration, parse_duration

from .loading import check_file, find_config_path, format_status_ranges, load, parse_status_ranges, sample
from .schema import (
    ALERT_KINDS,
    DEFAULT_FILENAME,
    ENV_VAR,
    RESTART_COMMANDS,
    AlertsConfig,
    AppConfig,
    Config,
    LogsConfig,
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
    "LogsConfig",
    "Pm2Config",
    "PolicyConfig",
    "Problem",
    "StoreConfig",
    "WatchConfig",
    "check_file",
    "find_config_path",
    "format_duration",
    "format_status_ranges",
    "load",
    "parse_duration",
    "parse_status_ranges",
    "sample",
]
