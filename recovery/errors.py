"""The domain's exceptions. The CLI is the only place that formats them.

RecoveryError
├── ConfigError        the configuration file or a flag is wrong
├── StoreError         the event store cannot be opened, read or written
├── Pm2Error           pm2 could not be run, or answered something unusable
│   └── Pm2NotFound    no pm2 binary was found
└── ServeError         `recovery serve` cannot start Datasette (port in use, no access control)
"""

from __future__ import annotations


class RecoveryError(Exception):
    "Base class: an error the CLI reports as one line."


class ConfigError(RecoveryError):
    "The configuration is missing or wrong."


class StoreError(RecoveryError):
    "The event store cannot be opened, read or written."


class Pm2Error(RecoveryError):
    "pm2 could not be run, or its answer could not be used."


class Pm2NotFound(Pm2Error):
    "No pm2 binary was found."


class ServeError(RecoveryError):
    "Datasette cannot be started as asked."
