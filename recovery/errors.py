"""The domain's exceptions. The CLI is the only place that formats them.

RecoveryError
├── ConfigError        the configuration file or a flag is wrong
├── StoreError         the event store cannot be opened, read or written
├── Pm2Error           pm2 could not be run, or answered something unusable
│   ├── Pm2CannotRun   the pm2 binary cannot be executed (not executable, bad interpreter)
│   │   └── Pm2NotFound    no pm2 binary was found
│   └── Pm2DaemonUnavailable  PM2's daemon is down or frozen: no pm2 call was made, or it timed out
├── ServeError         `recovery serve` cannot start Datasette (port in use, no access control)
├── FleetError         the fleet store (PostgreSQL) cannot be reached or used; the message never holds its password
└── MetricsError       the metrics cannot be written or served as configured (no such folder, port in use)
"""

from __future__ import annotations

from typing import Any


class RecoveryError(Exception):
    "Base class: an error the CLI reports as one line."


class ConfigError(RecoveryError):
    "The configuration is missing or wrong."


class StoreError(RecoveryError):
    "The event store cannot be opened, read or written."


class Pm2Error(RecoveryError):
    "pm2 could not be run, or its answer could not be used."


class Pm2CannotRun(Pm2Error):
    "The pm2 binary cannot be executed at all."


class Pm2NotFound(Pm2CannotRun):
    "No pm2 binary was found."


class Pm2DaemonUnavailable(Pm2Error):
    "PM2's daemon is down or frozen; `daemon` (an observations.Pm2Daemon) says which and why."

    def __init__(self, message: str, daemon: Any) -> None:
        super().__init__(message)
        self.daemon = daemon


class ServeError(RecoveryError):
    "Datasette cannot be started as asked."


class FleetError(RecoveryError):
    "The fleet store cannot be reached or used (its URL shown without the password)."


class MetricsError(RecoveryError):
    "The metrics cannot be written or served as configured."
